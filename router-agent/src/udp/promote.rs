//! A bonded flow that `core::classify` classes real-time moves to `udp::protect`
//! (`[udp] auto_protect`): make before break, so no datagram is lost at the switch.
//!
//! ```text
//! bonded flow task: classifier says real-time after datagram n (sent on the MPTCP
//!   connection) → drain(the connection) → FlowEvent::Promote(flow) → dispatcher
//! drain task (here), for DRAIN: the capsules still queued go up, the replies to
//!   datagrams ≤ n come down to the client (through a duplicate of the flow socket)
//! protect flow task: datagrams n+1… go on two legs, their replies come back sequenced
//! ```
//!
//! Each datagram went up one way only, so nothing comes down twice; the replies to the
//! last bonded datagrams and the first protected ones may interleave for about one RTT,
//! which a real-time receiver's jitter buffer takes. The server sees the flow's source
//! address at the concentrator change once (a NAT rebinding: the flow group has its own
//! socket there). A promoted flow is never moved back (`core::classify`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use mpbond_protocol::{decode_capsule, Capsule};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::queue::CapsuleQueue;
use super::stats::UdpStats;

/// How long the old connection keeps delivering replies after the switch: longer than
/// any RTT a real-time flow is carried over.
pub const DRAIN: Duration = Duration::from_secs(1);

/// What the old connection still has to do after the switch.
#[derive(Debug)]
pub struct Drain {
    /// The flow's MPTCP connection to the concentrator.
    pub stream: Arc<TcpStream>,
    /// Capsules not yet written to it.
    pub queue: CapsuleQueue,
    /// Bytes of a capsule read in part.
    pub partial: Vec<u8>,
    /// A duplicate of the flow socket (bound to the destination, connected to the
    /// client): the replies go to the client from there.
    pub lan: socket2::Socket,
}

/// Run `drain` in a task of its own for [`DRAIN`] (or until shutdown or the connection
/// ends), then close the connection.
pub fn spawn(drain: Drain, stats: Arc<UdpStats>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let Drain {
            stream,
            mut queue,
            mut partial,
            lan,
        } = drain;
        let deadline = Instant::now() + DRAIN;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            while !queue.is_empty() {
                match stream.try_write(queue.pending()) {
                    Ok(n) => queue.consume(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return,
                }
            }
            let want_write = !queue.is_empty();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = sleep_until(deadline) => return,
                ready = stream.writable(), if want_write => {
                    if ready.is_err() {
                        return;
                    }
                }
                ready = stream.readable() => {
                    if ready.is_err() {
                        return;
                    }
                    match stream.try_read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => partial.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(_) => return,
                    }
                    let mut at = 0;
                    while let Ok(Some((capsule, used))) = decode_capsule(&partial[at..]) {
                        at += used;
                        if let Capsule::Datagram(payload) = capsule {
                            stats.down(payload.len());
                            if lan.send(payload).is_err() {
                                stats.drops_lan_busy();
                            }
                        }
                    }
                    partial.drain(..at);
                }
            }
        }
    });
}
