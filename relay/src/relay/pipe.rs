//! A pipe for `splice(2)`: both ends non-blocking and close-on-exec, as large as the kernel
//! allows up to 1 MiB, closed on drop.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

/// The pipe size asked for with `F_SETPIPE_SZ`.
pub(crate) const WANTED_PIPE_SIZE: usize = 1 << 20;
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
    /// pipe2(O_NONBLOCK | O_CLOEXEC), then try F_SETPIPE_SZ of 1 MiB and keep what we get.
    pub(crate) fn new() -> io::Result<Self> {
        let mut fds = [-1 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let wanted = WANTED_PIPE_SIZE as libc::c_int;
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
        assert!(pipe.capacity() <= WANTED_PIPE_SIZE.max(64 * 1024));
    }
}
