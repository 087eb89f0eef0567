//! The `NETLINK_NETFILTER` socket: send a [`Batch`] and check every answer.
//!
//! [`Socket::execute`] sends the framed batch with one `send()` and reads an ACK for every
//! message. The first non-zero errno is reported with the message it belongs to; the
//! kernel then applied nothing of the batch. nfnetlink runs the batch in the sender's
//! context, so every reply is queued before `send()` returns; `SO_RCVTIMEO` still bounds
//! the wait for a reply that never comes.
//!
//! The socket is `mpbond-netlink`'s; it lives in the network namespace of the thread that
//! opened it. Owner tables created through it are deleted by the kernel when it closes.

use std::io;
use std::time::Duration;

use mpbond_netlink::sockopt::{set_rcvbuf_force, set_sndbuf_force};
use mpbond_netlink::{protocol, RECV_BUF_LEN};

use super::wire::{parse_replies, Batch, WHOLE_BATCH};
use super::NftError;

/// How long to wait for an ACK that the kernel should already have queued.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive-buffer room to reserve per ACK (an skb each; nft reserves the same).
const ACK_ROOM: usize = 1024;
/// Socket buffers are never set below this (the kernel default is about 208 KiB).
const MIN_SOCK_BUF: usize = 256 * 1024;

/// A `NETLINK_NETFILTER` socket. Owner tables it creates live as long as it does.
#[derive(Debug)]
pub(crate) struct Socket {
    socket: mpbond_netlink::Socket,
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
        let socket = mpbond_netlink::Socket::open(protocol::NETFILTER).map_err(sock_err)?;
        socket.set_recv_timeout(REPLY_TIMEOUT).map_err(sock_err)?;
        Ok(Socket {
            socket,
            sndbuf: 0,
            rcvbuf: 0,
        })
    }

    /// Send `batch` as one transaction and check that the kernel acknowledged every message.
    pub(crate) fn execute(&mut self, batch: &Batch) -> Result<(), NftError> {
        let count = u32::try_from(batch.len()).unwrap_or(u32::MAX - 2);
        let first_seq = self.socket.take_seqs(count.wrapping_add(2));
        let wire = batch.encode(first_seq);
        self.grow_buffers(wire.len(), batch.len());
        self.socket.send(&wire).map_err(|source| NftError::Socket {
            what: "sending the nf_tables batch",
            source,
        })?;

        let mut acked = vec![false; batch.len()];
        let mut failure: Option<Failure> = None;
        let mut buf = vec![0u8; RECV_BUF_LEN];
        while acked.iter().any(|done| !done) {
            // After a failure the kernel has queued everything it will send; drain, don't wait.
            let len = match self.socket.recv(&mut buf, failure.is_some()) {
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
        if want_snd > self.sndbuf && set_sndbuf_force(&self.socket, int(want_snd)).is_ok() {
            self.sndbuf = want_snd;
        }
        let want_rcv = acks.saturating_mul(ACK_ROOM).max(MIN_SOCK_BUF);
        if want_rcv > self.rcvbuf && set_rcvbuf_force(&self.socket, int(want_rcv)).is_ok() {
            self.rcvbuf = want_rcv;
        }
    }
}

/// A buffer size as setsockopt's `int`.
fn int(size: usize) -> libc::c_int {
    libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX)
}

/// The first failed message of a batch (`slot` None: the batch as a whole).
#[derive(Debug)]
struct Failure {
    slot: Option<usize>,
    errno: i32,
    detail: Option<String>,
}
