//! Who holds the splice pipes: a relay direction holds one only while it moves data.
//!
//! A direction keeps its pipe in a [`PipeSlot`]. It takes a pipe when its source becomes
//! readable and gives it back ([`PipeSlot::idle`]) once the pipe is empty and the source
//! has nothing more to read (`splice` answered `EAGAIN`), so an idle connection holds its
//! two sockets and no pipe: two descriptors instead of six. A pipe that holds bytes is
//! never given back; a slot dropped while holding one (an error, the relay ending) closes
//! it, so no byte ever reaches another connection.
//!
//! Given-back pipes wait in one small process-wide pool (at most [`POOL_MAX`]; any more
//! are closed), so a busy direction that idles between bursts takes the same kind of
//! pipe back without `pipe2` + `F_SETPIPE_SZ` + two `close`. The pool is a `Vec` behind a
//! `Mutex` (uncontended: one push and one pop per burst), not per thread, since tokio
//! moves tasks between worker threads.
//!
//! `MPBOND_PIPE_RELEASE=0` in the environment turns the release off: each direction takes
//! its pipe when the relay starts and keeps it to the end (the behaviour before pipes
//! were released; for before/after measurements).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::pipe::Pipe;

/// Most idle pipes the pool keeps (two descriptors each, shared by all connections).
pub(crate) const POOL_MAX: usize = 64;
static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());
/// Pipes held by relay directions right now (not counting the pool).
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// Pipes held by relay directions in this process right now; pipes waiting in the pool
/// are not counted. Idle connections hold none (unless `MPBOND_PIPE_RELEASE=0`).
pub fn pipes_in_use() -> usize {
    IN_USE.load(Ordering::Relaxed)
}

/// Most descriptors the pool keeps open for pipes no connection holds.
pub const POOL_MAX_DESCRIPTORS: usize = 2 * POOL_MAX;

/// Whether idle directions give their pipes back: not when `$MPBOND_PIPE_RELEASE` is `0`
/// (or `off`/`false`). Read once.
pub(crate) fn release_enabled() -> bool {
    static RELEASE: OnceLock<bool> = OnceLock::new();
    *RELEASE.get_or_init(|| {
        !matches!(
            std::env::var("MPBOND_PIPE_RELEASE")
                .as_deref()
                .map(str::trim),
            Ok("0" | "off" | "false")
        )
    })
}

/// A pipe from the pool, or a new one.
fn take() -> io::Result<Pipe> {
    take_from(&POOL)
}

fn take_from(pool: &Mutex<Vec<Pipe>>) -> io::Result<Pipe> {
    let pooled = pool.lock().ok().and_then(|mut pool| pool.pop());
    match pooled {
        Some(pipe) => Ok(pipe),
        None => Pipe::new(),
    }
}

/// Put an empty pipe into the pool, or close it if the pool is full.
fn give_back(pipe: Pipe) {
    give_back_into(&POOL, pipe);
}

fn give_back_into(pool: &Mutex<Vec<Pipe>>, pipe: Pipe) {
    if let Ok(mut pool) = pool.lock() {
        if pool.len() < POOL_MAX {
            pool.push(pipe);
        }
    }
}

/// The pipe of one relay direction, held only while it is needed.
#[derive(Debug)]
pub(crate) struct PipeSlot {
    pipe: Option<Pipe>,
    release: bool,
}

impl PipeSlot {
    /// An empty slot; with the release off, one holding its pipe from the start.
    pub(crate) fn new() -> io::Result<Self> {
        let mut slot = PipeSlot {
            pipe: None,
            release: release_enabled(),
        };
        if !slot.release {
            slot.get()?;
        }
        Ok(slot)
    }

    /// The pipe held, if any.
    pub(crate) fn held(&self) -> Option<&Pipe> {
        self.pipe.as_ref()
    }

    /// The pipe held, or one taken from the pool (or made) now.
    pub(crate) fn get(&mut self) -> io::Result<&Pipe> {
        let pipe = match self.pipe.take() {
            Some(pipe) => pipe,
            None => {
                let pipe = take()?;
                IN_USE.fetch_add(1, Ordering::Relaxed);
                pipe
            }
        };
        Ok(self.pipe.insert(pipe))
    }

    /// The direction went idle: its pipe is empty and its source had nothing to read.
    /// Gives the pipe back unless the release is off. Only call with an empty pipe.
    pub(crate) fn idle(&mut self) {
        if self.release {
            self.put_back();
        }
    }

    /// Give the pipe back to the pool. Only call with an empty pipe (every byte spliced
    /// in was spliced out again).
    pub(crate) fn put_back(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            IN_USE.fetch_sub(1, Ordering::Relaxed);
            give_back(pipe);
        }
    }
}

impl Drop for PipeSlot {
    /// A pipe still held may hold bytes: close it, never pool it.
    fn drop(&mut self) {
        if self.pipe.take().is_some() {
            IN_USE.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, RawFd};

    use super::*;

    /// The kernel's identity of a pipe: the inode behind a descriptor.
    fn inode(fd: RawFd) -> u64 {
        // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on a descriptor the caller keeps open, into a `stat` we own.
        let rc = unsafe { libc::fstat(fd, &mut st) };
        assert_eq!(rc, 0, "fstat: {}", io::Error::last_os_error());
        st.st_ino as u64
    }

    fn pipe_inode(pipe: &Pipe) -> u64 {
        inode(pipe.read_fd().as_raw_fd())
    }

    #[test]
    fn pooled_pipes_are_reused() {
        // A pool of the test's own, so relays in other tests cannot take from it.
        let pool = Mutex::new(Vec::new());
        let first = take_from(&pool).expect("a new pipe");
        let first_inode = pipe_inode(&first);
        give_back_into(&pool, first);
        let again = take_from(&pool).expect("the pooled pipe");
        assert_eq!(pipe_inode(&again), first_inode, "take() made a new pipe");
        assert!(pool.lock().expect("pool").is_empty());
        let fresh = take_from(&pool).expect("a new pipe");
        assert_ne!(pipe_inode(&fresh), first_inode, "one pipe handed out twice");
    }

    #[test]
    fn a_full_pool_closes_what_is_given_back() {
        let pool = Mutex::new(Vec::new());
        for _ in 0..POOL_MAX + 2 {
            give_back_into(&pool, Pipe::new().expect("pipe2"));
        }
        assert_eq!(pool.lock().expect("pool").len(), POOL_MAX);
    }

    #[test]
    fn a_slot_takes_lazily_and_gives_back_when_idle() {
        let mut slot = PipeSlot {
            pipe: None,
            release: true,
        };
        assert!(slot.held().is_none(), "a new slot holds no pipe");
        let inode = pipe_inode(slot.get().expect("a pipe"));
        assert_eq!(
            pipe_inode(slot.get().expect("the same pipe")),
            inode,
            "get() while holding took another pipe"
        );
        slot.idle();
        assert!(slot.held().is_none(), "idle() kept the pipe");
    }

    #[test]
    fn a_slot_with_the_release_off_keeps_its_pipe_when_idle() {
        let mut slot = PipeSlot {
            pipe: None,
            release: false,
        };
        slot.get().expect("a pipe");
        slot.idle();
        assert!(slot.held().is_some(), "idle() gave the pipe back");
        slot.put_back();
        assert!(slot.held().is_none(), "put_back() kept the pipe");
    }

    /// A slot dropped with its pipe closes the pipe (it may hold bytes) rather than
    /// pooling it.
    #[test]
    fn a_dropped_slot_closes_its_pipe() {
        let mut slot = PipeSlot {
            pipe: None,
            release: true,
        };
        let pipe = slot.get().expect("a pipe");
        let fd = pipe.read_fd().as_raw_fd();
        let inode = pipe_inode(pipe);
        drop(slot);
        // The descriptor number may be reused by another test's pipe at once, so compare
        // the pipe behind it, not just whether it is open.
        // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on a descriptor number, into a `stat` we own; a closed one fails.
        let rc = unsafe { libc::fstat(fd, &mut st) };
        assert!(
            rc != 0 || st.st_ino as u64 != inode,
            "the pipe is still open"
        );
    }
}
