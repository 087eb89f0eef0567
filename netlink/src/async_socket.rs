//! The async shell: a [`Socket`] in tokio's reactor (feature `tokio`).
//!
//! * [`AsyncSocket::request`] sends one request and awaits its [`Exchange`];
//! * [`Subscription`] is a socket joined to multicast groups, read as a sequence of data
//!   messages. It ends (`None`) when the socket fails, e.g. with `ENOBUFS` after its
//!   receive buffer overran: the caller subscribes again and re-reads the state.
//!
//! Create both inside a tokio runtime with I/O enabled.

use std::collections::VecDeque;
use std::io;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::msg::{Exchange, Message, Messages, Reply, Request};
use crate::socket::{Socket, RECV_BUF_LEN};
use crate::Error;

/// A non-blocking netlink socket registered with tokio.
#[derive(Debug)]
pub struct AsyncSocket {
    io: AsyncFd<Socket>,
    buf: Vec<u8>,
}

impl AsyncSocket {
    /// Open and bind a socket of `protocol` (see [`crate::protocol`]).
    pub fn open(protocol: libc::c_int) -> io::Result<AsyncSocket> {
        AsyncSocket::new(Socket::open(protocol)?)
    }

    /// Make `socket` non-blocking and register it.
    pub fn new(socket: Socket) -> io::Result<AsyncSocket> {
        socket.set_nonblocking(true)?;
        // SAFETY: `Socket` owns its descriptor and returns that same one from
        // `as_raw_fd` until it is dropped, which is after the AsyncFd lets go of it.
        let io = unsafe { AsyncFd::register(socket) }?;
        Ok(AsyncSocket {
            io,
            buf: vec![0; RECV_BUF_LEN],
        })
    }

    pub fn socket(&self) -> &Socket {
        self.io.get_ref()
    }

    /// Send `req` and await its ACK (or, for a dump, `NLMSG_DONE`). Returns the data
    /// messages that answered it.
    pub async fn request(&mut self, req: &Request) -> Result<Vec<Reply>, Error> {
        let seq = self.io.get_mut().take_seqs(1);
        let wire = req.encode(seq);
        let AsyncSocket { io, buf } = self;
        io.async_io(Interest::WRITABLE, |s| s.send(&wire)).await?;
        let mut exchange = Exchange::new(seq, req);
        loop {
            let len = io
                .async_io(Interest::READABLE, |s| s.recv(buf, true))
                .await?;
            if exchange.feed(buf.get(..len).unwrap_or_default())? {
                return Ok(exchange.into_replies());
            }
        }
    }

    /// Poll for one datagram.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        loop {
            let mut guard = ready!(self.io.poll_read_ready(cx))?;
            match guard.try_io(|inner| inner.get_ref().recv(&mut self.buf, true)) {
                Ok(Ok(len)) => return Poll::Ready(Ok(self.buf.get(..len).unwrap_or_default())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// A socket joined to multicast groups, read as data messages.
#[derive(Debug)]
pub struct Subscription {
    socket: AsyncSocket,
    queued: VecDeque<Reply>,
    failed: bool,
}

impl Subscription {
    /// Open a socket of `protocol` and join `groups`.
    pub fn open(protocol: libc::c_int, groups: &[u32]) -> io::Result<Subscription> {
        let socket = Socket::open(protocol)?;
        for group in groups {
            socket.join_group(*group)?;
        }
        Ok(Subscription {
            socket: AsyncSocket::new(socket)?,
            queued: VecDeque::new(),
            failed: false,
        })
    }

    /// The next data message; `None` once the socket has failed.
    pub fn poll_next_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Reply>> {
        loop {
            if let Some(msg) = self.queued.pop_front() {
                return Poll::Ready(Some(msg));
            }
            if self.failed {
                return Poll::Ready(None);
            }
            match ready!(self.socket.poll_recv(cx)) {
                Ok(datagram) => {
                    for msg in Messages::new(datagram) {
                        match msg {
                            Ok(Message::Data { kind, payload, .. }) => {
                                self.queued.push_back(Reply {
                                    kind,
                                    payload: payload.to_vec(),
                                })
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                }
                Err(_) => self.failed = true,
            }
        }
    }

    /// The next data message; `None` once the socket has failed.
    pub async fn next_message(&mut self) -> Option<Reply> {
        std::future::poll_fn(|cx| self.poll_next_message(cx)).await
    }
}
