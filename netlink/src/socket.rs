//! The raw netlink socket: open, bind, join multicast groups, send, receive.
//!
//! [`Socket::request`] is the blocking shell around [`Exchange`]: send one request, read
//! datagrams until the exchange is complete. `SO_RCVTIMEO` bounds each wait, so a reply
//! that never comes is an error (`WouldBlock`), not a hang. The async shell is
//! [`AsyncSocket`](crate::AsyncSocket) (feature `tokio`).
//!
//! A socket lives in the network namespace of the thread that opened it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::msg::{Exchange, Reply, Request};
use crate::{sockopt, Error};

/// Netlink protocols (`NETLINK_*` in `linux/netlink.h`).
pub mod protocol {
    pub const ROUTE: libc::c_int = 0;
    pub const NETFILTER: libc::c_int = 12;
    pub const GENERIC: libc::c_int = 16;
}

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// Room for one datagram: the kernel sends dump parts of up to 32 KiB.
pub const RECV_BUF_LEN: usize = 64 * 1024;

/// A bound netlink socket.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    next_seq: u32,
}

impl Socket {
    /// Open `protocol` and bind it (the kernel picks the port id). Errors come back
    /// capped, with the extended ACK's text where the kernel has one.
    pub fn open(protocol: libc::c_int) -> io::Result<Socket> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let addr_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_nl of `addr_len` bytes.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), addr_len) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // Best effort: without them replies are longer and carry no error string.
        let _ = sockopt::set_int(&fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
        let _ = sockopt::set_int(&fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
        // Start sequence numbers somewhere unlikely to match a stray reply.
        let next_seq = std::process::id().wrapping_mul(0x9e37_79b9) | 1;
        Ok(Socket { fd, next_seq })
    }

    /// Bound every blocking receive.
    pub fn set_recv_timeout(&self, timeout: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 1e6: fits every width of suseconds_t.
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        sockopt::set(&self.fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
    }

    /// Receive the notifications of multicast `group`.
    pub fn join_group(&self, group: u32) -> io::Result<()> {
        sockopt::set(&self.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group)
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        let on = libc::c_int::from(on);
        // SAFETY: FIONBIO reads one c_int from a live value.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::FIONBIO, &on) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Take `count` consecutive sequence numbers; returns the first.
    pub fn take_seqs(&mut self, count: u32) -> u32 {
        let first = self.next_seq;
        self.next_seq = first.wrapping_add(count.max(1));
        first
    }

    /// Send one datagram to the kernel, whole.
    pub fn send(&self, wire: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: `wire` is a valid buffer of `wire.len()` bytes for the call.
            let rc =
                unsafe { libc::send(self.fd.as_raw_fd(), wire.as_ptr().cast(), wire.len(), 0) };
            if rc >= 0 {
                return if rc as usize == wire.len() {
                    Ok(())
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "short netlink send",
                    ))
                };
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Receive one datagram (`MSG_DONTWAIT` with `nonblocking`).
    pub fn recv(&self, buf: &mut [u8], nonblocking: bool) -> io::Result<usize> {
        let flags = if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        loop {
            // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes.
            let rc = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
            if rc >= 0 {
                return Ok(rc as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Send `req` and read until its ACK (or, for a dump, `NLMSG_DONE`). Blocking: set a
    /// receive timeout first.
    pub fn request(&mut self, req: &Request) -> Result<Vec<Reply>, Error> {
        let seq = self.take_seqs(1);
        self.send(&req.encode(seq))?;
        let mut exchange = Exchange::new(seq, req);
        let mut buf = vec![0u8; RECV_BUF_LEN];
        loop {
            let len = self.recv(&mut buf, false)?;
            if exchange.feed(buf.get(..len).unwrap_or_default())? {
                return Ok(exchange.into_replies());
            }
        }
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
