//! One UDP flow's relay: capsules from the MPTCP stream become datagrams on a connected
//! UDP socket, and datagrams from it become capsules back, through a bounded queue.
//!
//! One task, no per-datagram allocation: the stream's bytes are read into a buffer
//! shared by the thread's flows and decoded in place ([`decode_capsule`]), and only the
//! tail of a capsule that is not whole yet is copied into the flow's own buffer;
//! datagrams from the destination are received into the same shared buffer and encoded
//! straight into the [`CapsuleQueue`](super::queue::CapsuleQueue), whose memory is
//! given back when it empties. Counters go to the metrics once per
//! burst. The relay ends when the client closes or resets, a capsule is malformed, or
//! the flow is idle (no datagram either way) for its timeout.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use mpbond_protocol::{decode_capsule, Capsule, CapsuleError};
use tokio::net::{TcpStream, UdpSocket};

use super::limits::{ClientLimits, FlowPermit};
use super::metrics::{DropReason, Tally, UdpMetrics};
use super::queue::{CapsuleQueue, QueueRefusal};
use super::sys::{send_batch, MAX_BATCH};

/// The shared read buffer: one largest datagram, or a good slice of a stream.
const SCRATCH_LEN: usize = 65_536;
/// Stream reads (of up to [`SCRATCH_LEN`] bytes each) per turn: one, so a bulk upload
/// cannot starve the downstream datagrams, whose socket buffer would overflow meanwhile.
const READS_PER_TURN: usize = 1;
/// Datagrams received per turn before the other directions get one.
const DATAGRAMS_PER_TURN: usize = 64;

/// How a flow's relay ended.
#[derive(Debug)]
pub(crate) enum FlowEnd {
    /// The client closed its side (FIN).
    ClientClosed,
    /// No datagram either way for the idle timeout.
    Idle,
    /// The client sent a capsule that ends the flow.
    Malformed(CapsuleError),
    /// Reading or writing the MPTCP stream failed (a reset, usually).
    ClientIo(io::ErrorKind),
    /// The UDP socket failed in a way that is not an ICMP report.
    DestinationIo(io::ErrorKind),
    /// A leg's flow group ended (idle, or its socket failed).
    GroupEnded,
}

impl fmt::Display for FlowEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowEnd::ClientClosed => f.write_str("client_closed"),
            FlowEnd::Idle => f.write_str("idle_timeout"),
            FlowEnd::Malformed(e) => write!(f, "malformed: {e}"),
            FlowEnd::ClientIo(kind) => write!(f, "client_io_error: {kind}"),
            FlowEnd::DestinationIo(kind) => write!(f, "destination_io_error: {kind}"),
            FlowEnd::GroupEnded => f.write_str("group_ended"),
        }
    }
}

/// What the relay needs besides its two sockets.
pub(crate) struct FlowParams<'a> {
    pub metrics: &'a UdpMetrics,
    pub permit: FlowPermit,
    pub limits: ClientLimits,
    pub idle_timeout: Duration,
    pub queue_bytes: usize,
    /// The success reply, not written yet: it goes out ahead of the first capsule.
    pub reply: Vec<u8>,
    /// How long the reply waits for the destination's first datagram.
    pub reply_hold: Duration,
}

/// Totals of one flow, for its log line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FlowTotals {
    pub up: Tally,
    pub down: Tally,
    pub dropped: u64,
}

/// Per-burst counts, flushed to the metrics and the totals together.
struct Burst {
    up: Tally,
    down: Tally,
    drops: [(DropReason, u64); 5],
}

impl Burst {
    fn new() -> Self {
        Burst {
            up: Tally::default(),
            down: Tally::default(),
            drops: [
                (DropReason::QueueFull, 0),
                (DropReason::RateLimit, 0),
                (DropReason::BadContext, 0),
                (DropReason::UnknownCapsule, 0),
                (DropReason::SendError, 0),
            ],
        }
    }

    fn drop_one(&mut self, reason: DropReason) {
        if let Some((_, n)) = self.drops.iter_mut().find(|(r, _)| *r == reason) {
            *n += 1;
        }
    }

    fn flush(&mut self, metrics: &UdpMetrics, totals: &mut FlowTotals) {
        metrics.relayed(self.up, self.down);
        totals.up.datagrams += self.up.datagrams;
        totals.up.bytes += self.up.bytes;
        totals.down.datagrams += self.down.datagrams;
        totals.down.bytes += self.down.bytes;
        for (reason, n) in &mut self.drops {
            metrics.dropped(*reason, *n);
            totals.dropped += *n;
            *n = 0;
        }
        self.up = Tally::default();
        self.down = Tally::default();
    }
}

/// Relay until the flow ends. `stream` is positioned right after the Convert request
/// (capsules sent in the SYN are still in it). The reply ([`FlowParams::reply`]) is
/// written with the destination's first datagram when it comes within
/// [`FlowParams::reply_hold`], else alone when the hold ends, as the TCP relay does
/// (`session::REPLY_HOLD`): a request answered at once (DNS) costs the WAN no extra
/// segment.
pub(crate) async fn relay(
    stream: &TcpStream,
    udp: &UdpSocket,
    mut params: FlowParams<'_>,
) -> (FlowEnd, FlowTotals) {
    let mut totals = FlowTotals::default();
    let mut burst = Burst::new();
    let mut partial: Vec<u8> = Vec::new();
    // The success reply leads the queue and waits up to `reply_hold` for the first
    // datagram from the destination, to share its segment.
    let mut queue = CapsuleQueue::with_lead(params.queue_bytes, &params.reply);
    let lead_len = params.reply.len();
    let mut holding = lead_len > 0;
    let hold = tokio::time::sleep(params.reply_hold);
    tokio::pin!(hold);
    let mut last_activity = Instant::now();
    let idle = tokio::time::sleep(params.idle_timeout);
    tokio::pin!(idle);

    let end = loop {
        let step = tokio::select! {
            ready = stream.readable() => match ready {
                Ok(()) => upstream(stream, udp, &mut partial, &mut params, &mut burst),
                Err(e) => Step::End(FlowEnd::ClientIo(e.kind())),
            },
            ready = udp.readable() => match ready {
                Ok(()) => downstream(udp, &mut queue, &mut burst),
                Err(e) => Step::End(FlowEnd::DestinationIo(e.kind())),
            },
            ready = stream.writable(), if !holding && !queue.is_empty() => match ready {
                Ok(()) => Step::Continue { active: false },
                Err(e) => Step::End(FlowEnd::ClientIo(e.kind())),
            },
            () = &mut hold, if holding => {
                holding = false;
                Step::Continue { active: false }
            }
            () = &mut idle => {
                let deadline = last_activity + params.idle_timeout;
                if Instant::now() >= deadline {
                    Step::End(FlowEnd::Idle)
                } else {
                    idle.as_mut().reset(deadline.into());
                    Step::Continue { active: false }
                }
            }
        };
        // A datagram behind the reply ends the hold.
        holding &= queue.pending() <= lead_len;
        let step = match step {
            Step::Continue { active } if holding => Ok(active),
            Step::Continue { active } => flush(stream, &mut queue).map(|()| active),
            Step::End(end) => Err(end),
        };
        burst.flush(params.metrics, &mut totals);
        match step {
            Ok(true) => last_activity = Instant::now(),
            Ok(false) => {}
            Err(end) => break end,
        }
    };
    (end, totals)
}

enum Step {
    /// Go on; `active` when a datagram went either way.
    Continue {
        active: bool,
    },
    End(FlowEnd),
}

thread_local! {
    /// One read buffer per runtime thread, shared by every flow the thread runs: the
    /// reads and receives below never hold it across an `await`, so an idle flow owns
    /// no buffer at all.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(SCRATCH_LEN));
}

/// Read what the stream has (a few reads at most) and send every whole DATAGRAM. Only
/// the tail of a capsule that is not whole yet is kept in the flow's own `partial`.
fn upstream(
    stream: &TcpStream,
    udp: &UdpSocket,
    partial: &mut Vec<u8>,
    params: &mut FlowParams<'_>,
    burst: &mut Burst,
) -> Step {
    SCRATCH.with_borrow_mut(|scratch| {
        let mut active = false;
        for _ in 0..READS_PER_TURN {
            scratch.clear();
            match stream.try_read_buf(scratch) {
                Ok(0) => return Step::End(FlowEnd::ClientClosed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Step::End(FlowEnd::ClientIo(e.kind())),
            }
            let bytes: &[u8] = if partial.is_empty() {
                scratch
            } else {
                partial.extend_from_slice(scratch);
                partial
            };
            let used = match send_capsules(bytes, udp, params, burst) {
                Ok((used, sent)) => {
                    active |= sent;
                    used
                }
                Err(e) => return Step::End(FlowEnd::Malformed(e)),
            };
            if partial.is_empty() {
                partial.extend_from_slice(&scratch[used..]);
            } else {
                partial.drain(..used);
            }
        }
        if partial.is_empty() && partial.capacity() > 0 {
            // Give a finished capsule's buffer back: idle flows hold nothing.
            *partial = Vec::new();
        }
        Step::Continue { active }
    })
}

/// Send every whole DATAGRAM capsule at the start of `bytes`, [`MAX_BATCH`] per call:
/// the bytes used, and whether any DATAGRAM was among them.
fn send_capsules(
    bytes: &[u8],
    udp: &UdpSocket,
    params: &mut FlowParams<'_>,
    burst: &mut Burst,
) -> Result<(usize, bool), CapsuleError> {
    let mut used = 0;
    let mut active = false;
    let mut batch: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
    let mut queued = 0;
    let mut result = Ok(());
    loop {
        let capsule = match decode_capsule(&bytes[used..]) {
            Ok(Some((capsule, n))) => {
                used += n;
                capsule
            }
            Ok(None) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        match capsule {
            Capsule::Datagram(payload) => {
                active = true;
                if params.permit.take(params.limits, Instant::now()) {
                    batch[queued] = payload;
                    queued += 1;
                    if queued == MAX_BATCH {
                        send_all(udp, &batch[..queued], burst);
                        queued = 0;
                    }
                } else {
                    burst.drop_one(DropReason::RateLimit);
                }
            }
            // A plain flow takes context 0 only.
            Capsule::OtherContext { .. } | Capsule::Sequenced { .. } => {
                burst.drop_one(DropReason::BadContext)
            }
            Capsule::Unknown { .. } => burst.drop_one(DropReason::UnknownCapsule),
        }
    }
    send_all(udp, &batch[..queued], burst);
    result.map(|()| (used, active))
}

/// Send `datagrams` now and count them; what the socket does not take (a full send
/// buffer, an ICMP error reported on this send) is lost, and counted as `send_error`.
fn send_all(udp: &UdpSocket, datagrams: &[&[u8]], burst: &mut Burst) {
    let mut rest = datagrams;
    while !rest.is_empty() {
        let sent = match send_batch(udp, rest) {
            Ok(0) | Err(_) => {
                // Drop the datagram the call stopped at, then try the others.
                burst.drop_one(DropReason::SendError);
                1
            }
            Ok(sent) => {
                for datagram in &rest[..sent] {
                    burst.up.add(datagram.len());
                }
                sent
            }
        };
        rest = &rest[sent.min(rest.len())..];
    }
}

/// Receive what the UDP socket has (a burst at most) into the queue.
fn downstream(udp: &UdpSocket, queue: &mut CapsuleQueue, burst: &mut Burst) -> Step {
    SCRATCH.with_borrow_mut(|datagram| {
        let mut active = false;
        for _ in 0..DATAGRAMS_PER_TURN {
            datagram.clear();
            match udp.try_recv_buf(datagram) {
                Ok(n) => {
                    active = true;
                    match queue.push(&datagram[..n]) {
                        Ok(()) => burst.down.add(n),
                        Err(QueueRefusal::Full | QueueRefusal::Encode(_)) => {
                            burst.drop_one(DropReason::QueueFull)
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // An ICMP error for an earlier send (port unreachable...): UDP goes on.
                Err(e) if is_icmp_report(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::End(FlowEnd::DestinationIo(e.kind())),
            }
        }
        Step::Continue { active }
    })
}

/// Write as much of the queue as the stream takes now.
pub(crate) fn flush(stream: &TcpStream, queue: &mut CapsuleQueue) -> Result<(), FlowEnd> {
    while !queue.is_empty() {
        match stream.try_write(queue.front()) {
            Ok(n) => queue.consume(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FlowEnd::ClientIo(e.kind())),
        }
    }
    Ok(())
}

/// Whether a UDP socket error is a deferred ICMP report rather than a broken socket.
pub(crate) fn is_icmp_report(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
                | libc::EMSGSIZE
                | libc::EPROTO
        )
    )
}
