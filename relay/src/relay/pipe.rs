//! A pipe for `splice(2)`: both ends non-blocking and close-on-exec, as large as the kernel
//! allows up to [`pipe_size`] (64 KiB by default), closed on drop.
//!
//! Who holds a pipe when, and the pool of empty ones, is the `pool` module's business.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::OnceLock;

/// The pipe size asked for with `F_SETPIPE_SZ` unless `MPBOND_PIPE_SIZE` says otherwise.
/// 64 KiB (the Linux default) measured best: on the unshaped bench (docs/PERFORMANCE.md)
/// 1 MiB pipes cut 64-connection goodput to a fifth and cost 60 % more CPU per GB, since
/// 64 × 2 MiB of in-flight pages no longer stay in the CPU caches.
pub(crate) const WANTED_PIPE_SIZE: usize = 64 * 1024;

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

    /// The read end (tests compare pipes by its inode).
    #[cfg(test)]
    pub(crate) fn read_fd(&self) -> &OwnedFd {
        &self.read
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
}
