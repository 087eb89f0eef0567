//! A pipe for `splice(2)`: both ends non-blocking and close-on-exec, as large as the kernel
//! allows up to [`pipe_size`] (64 KiB by default), closed on drop.
//!
//! Pipes are reused: a direction that ends cleanly hands its (empty) pipe back to a small
//! process-wide pool ([`Pipe::recycle`]) and the next relay takes it ([`Pipe::take`]), so a
//! busy proxy does not pay `pipe2` + `F_SETPIPE_SZ` + two `close` per direction.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::{Mutex, OnceLock};

/// The pipe size asked for with `F_SETPIPE_SZ` unless `MPBOND_PIPE_SIZE` says otherwise.
/// 64 KiB (the Linux default) measured best: on the unshaped bench (docs/PERFORMANCE.md)
/// 1 MiB pipes cut 64-connection goodput to a fifth and cost 60 % more CPU per GB, since
/// 64 × 2 MiB of in-flight pages no longer stay in the CPU caches.
pub(crate) const WANTED_PIPE_SIZE: usize = 64 * 1024;
/// Most idle pipes the pool keeps.
const POOL_MAX: usize = 64;
static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

/// The pipe size to ask for: `$MPBOND_PIPE_SIZE` (bytes, 4 KiB to 16 MiB; a tuning knob
/// for measurements), else [`WANTED_PIPE_SIZE`]. Read once.
pub(crate) fn pipe_size() -> usize {
    static SIZE: OnceLock<usize> = OnceLock::new();
    *SIZE.get_or_init(|| {
        std::env::var("MPBOND_PIPE_SIZE")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map_or(WANTED_PIPE_SIZE, |n| n.clamp(4096, 16 << 20))
    })
}
/// The size assumed when `F_GETPIPE_SZ` fails (the Linux default).
const DEFAULT_PIPE_SIZE: usize = 64 * 1024;

/// An anonymous pipe used as the in-kernel buffer of one relay direction.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// A pipe from the pool, or a new one.
    pub(crate) fn take() -> io::Result<Self> {
        Self::take_from(&POOL)
    }

    fn take_from(pool: &Mutex<Vec<Pipe>>) -> io::Result<Self> {
        let pooled = pool.lock().ok().and_then(|mut pool| pool.pop());
        match pooled {
            Some(pipe) => Ok(pipe),
            None => Self::new(),
        }
    }

    /// Give an empty pipe back to the pool (dropped, so closed, if the pool is full).
    /// Only call this when every byte spliced in was spliced out again.
    pub(crate) fn recycle(self) {
        self.recycle_into(&POOL);
    }

    fn recycle_into(self, pool: &Mutex<Vec<Pipe>>) {
        if let Ok(mut pool) = pool.lock() {
            if pool.len() < POOL_MAX {
                pool.push(self);
            }
        }
    }

    /// pipe2(O_NONBLOCK | O_CLOEXEC), then try F_SETPIPE_SZ of [`pipe_size`] and keep
    /// what we get.
    pub(crate) fn new() -> io::Result<Self> {
        let mut fds = [-1 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let wanted = libc::c_int::try_from(pipe_size()).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl on a descriptor we own, with an int argument.
        let set = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, wanted) };
        let capacity = if set > 0 {
            set as usize
        } else {
            // SAFETY: as above; F_GETPIPE_SZ takes no argument.
            let got = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
            if got > 0 {
                got as usize
            } else {
                DEFAULT_PIPE_SIZE
            }
        };
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Bytes the pipe holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Move up to `len` bytes from `src` (a socket) into the pipe.
    pub(crate) fn splice_in(&self, src: RawFd, len: usize) -> io::Result<usize> {
        splice(src, self.write.as_raw_fd(), len)
    }

    /// Move up to `len` bytes from the pipe into `dst` (a socket).
    pub(crate) fn splice_out(&self, dst: RawFd, len: usize) -> io::Result<usize> {
        splice(self.read.as_raw_fd(), dst, len)
    }

    /// Read what the pipe holds into `buf` (used when splice out is refused).
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

/// splice(2) with SPLICE_F_MOVE | SPLICE_F_NONBLOCK and no offsets.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: plain syscall on descriptors the caller keeps open; null offsets mean "use
    // the file position", which pipes and sockets do not have.
    let n = unsafe { libc::splice(from, ptr::null_mut(), to, ptr::null_mut(), len, flags) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_has_a_capacity() {
        let pipe = Pipe::new().expect("pipe2");
        assert!(pipe.capacity() >= 4096);
        assert!(pipe.capacity() <= pipe_size().max(64 * 1024));
    }

    /// The kernel's identity of a pipe: the inode of its read end.
    fn inode(pipe: &Pipe) -> u64 {
        // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on a descriptor the pipe owns, into a `stat` we own.
        let rc = unsafe { libc::fstat(pipe.read.as_raw_fd(), &mut st) };
        assert_eq!(rc, 0, "fstat: {}", io::Error::last_os_error());
        st.st_ino as u64
    }

    #[test]
    fn recycled_pipes_are_reused() {
        // A pool of the test's own, so relays in other tests cannot take from it.
        let pool = Mutex::new(Vec::new());
        let first = Pipe::take_from(&pool).expect("a new pipe");
        let first_inode = inode(&first);
        first.recycle_into(&pool);
        let again = Pipe::take_from(&pool).expect("the pooled pipe");
        assert_eq!(inode(&again), first_inode, "take() made a new pipe");
        assert!(pool.lock().expect("pool").is_empty());
        let fresh = Pipe::take_from(&pool).expect("a new pipe");
        assert_ne!(inode(&fresh), first_inode, "one pipe handed out twice");
    }

    #[test]
    fn a_full_pool_closes_what_is_recycled() {
        let pool = Mutex::new(Vec::new());
        for _ in 0..POOL_MAX + 2 {
            Pipe::new().expect("pipe2").recycle_into(&pool);
        }
        assert_eq!(pool.lock().expect("pool").len(), POOL_MAX);
    }
}
