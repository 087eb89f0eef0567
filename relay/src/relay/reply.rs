//! The start of the `b → a` direction when `b` first sends a reply that must not reach `a`
//! (the agent's case: the concentrator's Convert reply precedes the server's bytes).
//!
//! The bytes from `b` are read into a small buffer and shown to a checker until it accepts
//! or rejects them. Bytes read past the reply are written to `a` before the direction goes
//! on as usual. The checker is sans-IO, for example a wrapper around
//! `mpbond_protocol::decode`.

use std::io;

use tokio::net::TcpStream;

use super::pump::{write_all, Meter, PumpError};

/// The most bytes a reply may take before it counts as rejected.
pub const MAX_REPLY_LEN: usize = 16 * 1024;

/// A checker's verdict on the bytes received from `b` so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Not enough bytes yet to decide.
    NeedMore,
    /// The first `len` bytes are the reply, and it is a success: strip them and relay the
    /// rest.
    Accept {
        /// Length of the reply in bytes.
        len: usize,
    },
    /// The reply is a refusal or garbage: reset `a` and end the relay.
    Reject,
}

/// Marks a rejected reply (or end of stream before one) inside a [`PumpError`].
#[derive(Debug)]
pub(crate) struct Rejected;

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reply rejected")
    }
}

impl std::error::Error for Rejected {}

pub(crate) fn is_rejected(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<Rejected>())
}

/// Read from `b` until `check` accepts; write any bytes after the reply to `a`.
pub(crate) async fn strip_reply(
    b: &TcpStream,
    a: &TcpStream,
    check: &mut (impl FnMut(&[u8]) -> Reply + Send),
    meter: &Meter<'_>,
) -> Result<(), PumpError> {
    let rejected = || PumpError::src(io::Error::other(Rejected));
    let mut buf = vec![0; MAX_REPLY_LEN];
    let mut got = 0;
    loop {
        b.readable().await.map_err(PumpError::src)?;
        let n = match b.try_read(&mut buf[got..]) {
            Ok(0) => return Err(rejected()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(PumpError::src(e)),
        };
        got += n;
        match check(&buf[..got]) {
            Reply::NeedMore if got < buf.len() => continue,
            Reply::NeedMore | Reply::Reject => return Err(rejected()),
            Reply::Accept { len } if len <= got => {
                return write_all(a, &buf[len..got], meter).await;
            }
            Reply::Accept { .. } => return Err(rejected()),
        }
    }
}
