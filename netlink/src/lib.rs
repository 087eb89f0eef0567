//! The kernel interfaces of mpbond, on libc alone: one netlink codec and socket, and one
//! module of socket options. Shared by the router agent, the concentrator, the relay and
//! the test bed; it holds no policy.
//!
//! # Layout
//!
//! ```text
//! attr.rs           attributes: AttrBuf (write, nested), Attrs/Attr (read), align4
//! msg.rs            nlmsghdr, Request, Messages (data / ACK / error + extack / DONE),
//!                   Exchange: one request's replies, sans I/O
//! socket.rs         Socket: the raw netlink socket (open, bind, groups, send, recv, blocking request)
//! async_socket.rs   AsyncSocket, Subscription: the tokio shell (feature `tokio`)
//! genl.rs           generic netlink: genlmsghdr, nlctrl family resolution
//! mptcp.rs          the mptcp_pm family's requests, endpoints, limits and events
//! mptcp_client.rs   PmClient, PmEvents: the path-manager client (feature `tokio`)
//! rtnl.rs           rtnetlink: routes and rules (build, read), links and addresses (read), dumps
//! sockopt.rs        setsockopt/getsockopt: the one wrapper, and the TCP/MPTCP options by name
//! ```
//!
//! Encoding and decoding are pure functions over bytes, unit-tested without a kernel; the
//! sockets are thin shells that feed datagrams to an [`Exchange`]. The codec is written by
//! hand, not taken from the `netlink-packet-*` crates, to keep the agent small on 2 MiB
//! routers (docs/FOOTPRINT.md).

#[cfg(feature = "tokio")]
mod async_socket;
pub mod attr;
pub mod genl;
pub mod mptcp;
#[cfg(feature = "tokio")]
mod mptcp_client;
pub mod msg;
pub mod rtnl;
mod socket;
pub mod sockopt;

use std::io;

#[cfg(feature = "tokio")]
pub use async_socket::{AsyncSocket, Subscription};
pub use attr::{align4, AttrBuf, Attrs};
#[cfg(feature = "tokio")]
pub use mptcp_client::{PmClient, PmEvents};
pub use msg::{Exchange, Message, Messages, Reply, Request};
pub use socket::{protocol, Socket, RECV_BUF_LEN};

/// What can go wrong talking netlink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused the request (`NLMSG_ERROR` with a non-zero errno).
    #[error("{}{}", io::Error::from_raw_os_error(*errno), detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Kernel { errno: i32, detail: Option<String> },
    /// A reply that does not parse.
    #[error("malformed netlink reply: {0}")]
    Malformed(&'static str),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    /// The errno, from the kernel's answer or the socket.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::Malformed(_) => None,
            Error::Io(e) => e.raw_os_error(),
        }
    }
}

impl From<Error> for io::Error {
    /// Keeps the errno, so `kind()` and `raw_os_error()` work on kernel refusals.
    fn from(error: Error) -> io::Error {
        match error {
            Error::Kernel { errno, .. } => io::Error::from_raw_os_error(errno),
            Error::Malformed(what) => io::Error::new(io::ErrorKind::InvalidData, what),
            Error::Io(e) => e,
        }
    }
}
