//! The `NETLINK_NETFILTER` socket: send a [`Batch`] and check every answer.
//!
//! [`Socket::execute`] sends the framed batch with one `send()` and reads an ACK for every
//! message. The first non-zero errno is reported with the message it belongs to; the
//! kernel then applied nothing of the batch. nfnetlink runs the batch in the sender's
//! context, so every reply is queued before `send()` returns; `SO_RCVTIMEO` still bounds
//! the wait for a reply that never comes.
//!
//! The socket lives in the network namespace of the thread that opened it. Owner tables
//! created through it are deleted by the kernel when it closes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::wire::{parse_replies, Batch, WHOLE_BATCH};
use super::NftError;

const NETLINK_NETFILTER: libc::c_int = 12;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// How long to wait for an ACK that the kernel should already have queued.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Room for one `recv()`: replies are a few dozen bytes each.
const RECV_BUF_LEN: usize = 64 * 1024;
/// Receive-buffer room to reserve per ACK (an skb each; nft reserves the same).
const ACK_ROOM: usize = 1024;
/// Socket buffers are never set below this (the kernel default is about 208 KiB).
const MIN_SOCK_BUF: usize = 256 * 1024;

/// A `NETLINK_NETFILTER` socket. Owner tables it creates live as long as it does.
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
    next_seq: u32,
    /// The buffer sizes set so far (0: kernel default).
    sndbuf: usize,
    rcvbuf: usize,
}

impl Socket {
    /// Open and bind a socket in the calling thread's network namespace.
    pub(crate) fn open() -> Result<Socket, NftError> {
        let sock_err = |source| NftError::Socket {
            what: "opening the NETLINK_NETFILTER socket",
            source,
        };
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(sock_err(io::Error::last_os_error()));
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
            return Err(sock_err(io::Error::last_os_error()));
        }
        // Best effort: without them replies are longer and carry no error string.
        let _ = set_opt(&fd, SOL_NETLINK, NETLINK_CAP_ACK, &1);
        let _ = set_opt(&fd, SOL_NETLINK, NETLINK_EXT_ACK, &1);
        let timeout = libc::timeval {
            tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        set_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout).map_err(sock_err)?;
        // Start sequence numbers somewhere unlikely to match a stray reply.
        let next_seq = std::process::id().wrapping_mul(0x9e37_79b9);
        Ok(Socket {
            fd,
            next_seq,
            sndbuf: 0,
            rcvbuf: 0,
        })
    }

    /// Send `batch` as one transaction and check that the kernel acknowledged every message.
    pub(crate) fn execute(&mut self, batch: &Batch) -> Result<(), NftError> {
        let first_seq = self.next_seq;
        let count = u32::try_from(batch.len()).unwrap_or(u32::MAX - 2);
        self.next_seq = first_seq.wrapping_add(count).wrapping_add(2);
        let wire = batch.encode(first_seq);
        self.grow_buffers(wire.len(), batch.len());
        self.send(&wire)?;

        let mut acked = vec![false; batch.len()];
        let mut failure: Option<Failure> = None;
        let mut buf = vec![0u8; RECV_BUF_LEN];
        while acked.iter().any(|done| !done) {
            // After a failure the kernel has queued everything it will send; drain, don't wait.
            let len = match self.recv(&mut buf, failure.is_some()) {
                Ok(len) => len,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock && failure.is_some() => break,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let missing = acked.iter().position(|done| !done).unwrap_or(0);
                    let message = batch.messages().get(missing);
                    let message = message.map_or(WHOLE_BATCH, |m| m.what()).to_owned();
                    return Err(NftError::NoAck { message });
                }
                Err(source) => {
                    return Err(NftError::Socket {
                        what: "receiving nf_tables replies",
                        source,
                    })
                }
            };
            for reply in parse_replies(buf.get(..len).unwrap_or_default())? {
                let index = reply.seq.wrapping_sub(first_seq);
                // Index 0 is BATCH_BEGIN and len + 1 BATCH_END: an error there fails the
                // whole batch. Anything else is a stray reply to an earlier request.
                let slot = match index as usize {
                    0 => None,
                    i if i <= batch.len() => Some(i - 1),
                    i if i == batch.len() + 1 => None,
                    _ => continue,
                };
                if reply.errno == 0 {
                    if let Some(i) = slot {
                        acked[i] = true;
                    }
                    continue;
                }
                if failure.is_none() {
                    failure = Some(Failure {
                        slot,
                        errno: reply.errno,
                        detail: reply.detail,
                    });
                }
                if slot.is_none() {
                    break;
                }
            }
            if failure.as_ref().is_some_and(|f| f.slot.is_none()) {
                break;
            }
        }
        match failure {
            None => Ok(()),
            Some(f) => {
                let message = match f.slot.and_then(|i| batch.messages().get(i)) {
                    Some(msg) => msg.what().to_owned(),
                    None => WHOLE_BATCH.to_owned(),
                };
                Err(NftError::Rejected {
                    message,
                    detail: f.detail,
                    source: io::Error::from_raw_os_error(f.errno),
                })
            }
        }
    }

    /// Make room for a large batch (netlink refuses a send bigger than the send buffer)
    /// and for all of its ACKs (lost ones would show up as `ENOBUFS`). Best effort: the
    /// `FORCE` options need `CAP_NET_ADMIN`, which changing nf_tables needs anyway.
    fn grow_buffers(&mut self, send_len: usize, acks: usize) {
        let want_snd = send_len.saturating_mul(2).max(MIN_SOCK_BUF);
        if want_snd > self.sndbuf
            && set_buf(&self.fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, want_snd).is_ok()
        {
            self.sndbuf = want_snd;
        }
        let want_rcv = acks.saturating_mul(ACK_ROOM).max(MIN_SOCK_BUF);
        if want_rcv > self.rcvbuf
            && set_buf(&self.fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, want_rcv).is_ok()
        {
            self.rcvbuf = want_rcv;
        }
    }

    fn send(&self, wire: &[u8]) -> Result<(), NftError> {
        loop {
            // SAFETY: `wire` is a valid buffer of `wire.len()` bytes for the call's duration.
            let rc =
                unsafe { libc::send(self.fd.as_raw_fd(), wire.as_ptr().cast(), wire.len(), 0) };
            if rc >= 0 {
                if rc as usize == wire.len() {
                    return Ok(());
                }
                let source = io::Error::new(io::ErrorKind::WriteZero, "short netlink send");
                return Err(NftError::Socket {
                    what: "sending the nf_tables batch",
                    source,
                });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(NftError::Socket {
                    what: "sending the nf_tables batch",
                    source: err,
                });
            }
        }
    }

    fn recv(&self, buf: &mut [u8], nonblocking: bool) -> io::Result<usize> {
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
}

/// Set a socket buffer size with `force`, falling back to `plain` (capped by sysctl).
fn set_buf(fd: &OwnedFd, force: libc::c_int, plain: libc::c_int, size: usize) -> io::Result<()> {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    set_opt(fd, libc::SOL_SOCKET, force, &size)
        .or_else(|_| set_opt(fd, libc::SOL_SOCKET, plain, &size))
}

fn set_opt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` points to a live `T` of `len` bytes.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The first failed message of a batch (`slot` None: the batch as a whole).
#[derive(Debug)]
struct Failure {
    slot: Option<usize>,
    errno: i32,
    detail: Option<String>,
}
