//! The start of the `b → a` direction when `a` must first get bytes of our own: the
//! concentrator's Convert reply, ahead of the server's bytes.
//!
//! Written alone, the reply would cross the WAN as a segment of its own and cost an ACK
//! of its own. So the lead waits, up to [`Lead::hold`], for `b`'s first bytes and sends
//! both in one write: one segment where they fit. `a → b` is not held: the request that
//! the server answers flows at once. If `b` stays silent, the lead goes alone when the
//! hold ends. End of stream from `b` sends the lead and leaves the end for the pump to
//! see again (it is sticky); an error from `b` sends the lead and fails the direction as
//! the pump would, so a reset is still mirrored as a reset.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

use super::pump::{write_all_after, Meter, PumpError};

/// The most bytes of `b` read to go with the lead: a few segments' worth; the rest is
/// spliced.
const FIRST_READ: usize = 4 * 1024;

/// Bytes sent to `a` before anything from `b`.
#[derive(Debug, Clone)]
pub struct Lead {
    /// What to send first (not counted as relayed bytes).
    pub bytes: Vec<u8>,
    /// How long to wait for `b`'s first bytes to go in the same write.
    pub hold: Duration,
}

/// Send `lead` to `a`, with `b`'s first bytes if they come within the hold.
pub(crate) async fn send_lead(
    b: &TcpStream,
    a: &TcpStream,
    lead: &Lead,
    meter: &Meter<'_>,
) -> Result<(), PumpError> {
    let mut buf = Vec::with_capacity(lead.bytes.len() + FIRST_READ);
    buf.extend_from_slice(&lead.bytes);
    let mut failed = None;
    if let Ok(ready) = tokio::time::timeout(lead.hold, b.readable()).await {
        let start = buf.len();
        buf.resize(start + FIRST_READ, 0);
        let read = match ready {
            Ok(()) => b.try_read(&mut buf[start..]),
            Err(error) => Err(error),
        };
        let n = match read {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(error) => {
                failed = Some(error);
                0
            }
        };
        buf.truncate(start + n);
    }
    write_all_after(a, &buf, lead.bytes.len(), meter).await?;
    match failed {
        Some(error) => Err(PumpError::src(error)),
        None => Ok(()),
    }
}
