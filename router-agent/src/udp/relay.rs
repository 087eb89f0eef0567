//! One UDP flow (a LAN client's 4-tuple): through the concentrator over its own MPTCP
//! connection, or direct from the router.
//!
//! Bonded: connect over MPTCP with a sealed Convert request (Connect + UDP TLVs, in the
//! SYN while Fast Open is on), wait for the reply while the flow's first datagrams queue,
//! then carry every datagram as an RFC 9297 DATAGRAM capsule both ways. Upstream
//! datagrams wait in a [`CapsuleQueue`] of at most `[udp] queue_bytes`; one that does not
//! fit is dropped and counted, so the sender's congestion control sees loss. Capsules of
//! unknown types are skipped, DATAGRAMs of another context are dropped and counted, and a
//! broken capsule stream ends the flow.
//!
//! Direct: a plain UDP socket of the router connected to the destination (the router's
//! routes and NAT apply), used when the concentrator has no UDP relay, refused the
//! destination, or could not be reached; the datagrams that arrived meanwhile are
//! replayed to it first.
//!
//! Either way, replies reach the client from the flow socket bound to the original
//! destination, and the flow ends after its idle timeout without a datagram either way.
//!
//! With `[udp] auto_protect`, a bonded flow feeds each datagram to its
//! [`Classifier`]; once classed real-time it moves to `udp::protect` (`promote.rs`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mpbond_protocol::{decode_capsule, Capsule, ErrorCode, Message};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::book::Route;
use super::promote::{self, Drain};
use super::queue::{CapsuleQueue, QueueError};
use super::stats::{FlowGuard, ProtectOrigin, UdpStats, WanTicket};
use crate::core::buffers::for_connection;
use crate::core::classify::{Classifier, Direction};
use crate::core::Input;
use crate::proxy::ConnContext;
use crate::upstream::{fastopen_evidence, read_reply, UpstreamError};

/// `TCP_NOTSENT_LOWAT`: how many unsent bytes the MPTCP socket keeps before it stops
/// reporting writable, so the capsule queue (which drops) is where datagrams wait.
const TCP_NOTSENT_LOWAT: libc::c_int = 25;
const NOTSENT_LOWAT_BYTES: libc::c_int = 32 * 1024;
/// The per-thread receive buffer: room for the largest datagram or a good read of capsules.
const READ_BUF: usize = 128 * 1024;
/// Most bytes of early datagrams kept for a direct replay.
const EARLY_KEEP: usize = 64 * 1024;

/// What a flow tells the dispatcher.
#[derive(Debug)]
pub enum FlowEvent {
    /// The concentrator refused the flow to `dst` with `code`.
    Refused { dst: SocketAddr, code: ErrorCode },
    /// The flow `(client, dst)` ended.
    Ended { client: SocketAddr, dst: SocketAddr },
    /// A protected flow's leg was refused as Unsupported Message: the concentrator does
    /// not know the Group TLV (`udp::protect`).
    Unprotected,
    /// A bonded flow was classed real-time: carry it on as a protected flow
    /// (`promote.rs`). Its entry in the flow table stays.
    Promote(Box<Flow>),
}

/// Everything one flow task needs.
#[derive(Debug)]
pub struct Flow {
    pub client: SocketAddr,
    pub dst: SocketAddr,
    /// Bound to `dst`, connected to `client`.
    pub lan: UdpSocket,
    /// Datagrams the dispatcher's listener received for this flow.
    pub early: mpsc::Receiver<Vec<u8>>,
    pub route: Route,
    pub idle: Duration,
    pub queue_bytes: usize,
    /// Bonded: watch the flow and promote it once classed real-time (`[udp]
    /// auto_protect`, no rule protects it, the concentrator takes flow groups).
    pub classify: bool,
    /// Protected: whether a rule or the classifier chose it (status).
    pub origin: ProtectOrigin,
}

/// How a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Idle,
    Shutdown,
    UpstreamClosed,
    Reset(&'static str),
    LanError,
    /// Classed real-time: handed to `udp::protect`.
    Promoted,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::Idle => "idle",
            End::Shutdown => "shutdown",
            End::UpstreamClosed => "upstream_closed",
            End::Reset(reason) => reason,
            End::LanError => "lan_error",
            End::Promoted => "promoted",
        }
    }
}

/// Relay `flow` until it ends; always reports [`FlowEvent::Ended`].
pub async fn run(
    mut flow: Flow,
    ctx: Arc<ConnContext>,
    stats: Arc<UdpStats>,
    events: mpsc::UnboundedSender<FlowEvent>,
    shutdown: CancellationToken,
) {
    let mut guard = stats.open();
    let (client, dst) = (flow.client, flow.dst);
    let end = match flow.route {
        Route::Bond => bonded(&mut flow, &ctx, &stats, &events, &mut guard, &shutdown).await,
        Route::Direct => {
            stats.direct();
            direct(&mut flow, Vec::new(), &stats, &shutdown).await
        }
    };
    if end == End::Promoted {
        info!(%client, %dst, "udp flow classed real-time: protecting it");
        drop(guard);
        stats.promoted();
        flow.classify = false;
        flow.origin = ProtectOrigin::Auto;
        let _ = events.send(FlowEvent::Promote(Box::new(flow)));
        return;
    }
    debug!(%client, %dst, end = end.as_str(), "udp flow ended");
    let _ = events.send(FlowEvent::Ended { client, dst });
}

/// The next datagram from the client: from the dispatcher's channel or the flow socket.
pub(crate) async fn next_lan(flow: &mut Flow) -> Result<Vec<u8>, End> {
    loop {
        tokio::select! {
            Some(datagram) = flow.early.recv() => return Ok(datagram),
            ready = flow.lan.readable() => {
                if ready.is_err() {
                    return Err(End::LanError);
                }
                match with_scratch(|buf| flow.lan.try_recv(buf).map(|n| buf[..n].to_vec())) {
                    Ok(datagram) => return Ok(datagram),
                    // Spurious readiness, or an ICMP error from the client (its port
                    // closed): keep the flow until idle.
                    Err(e) if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
                    ) => continue,
                    Err(_) => return Err(End::LanError),
                }
            }
        }
    }
}

thread_local! {
    /// One receive buffer per runtime thread, so an idle flow holds no 64 KiB buffer.
    static SCRATCH: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0u8; READ_BUF]);
}

/// Run `f` on this thread's scratch buffer (never across an await).
fn with_scratch<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    SCRATCH.with(|scratch| f(&mut scratch.borrow_mut()))
}

async fn bonded(
    flow: &mut Flow,
    ctx: &ConnContext,
    stats: &Arc<UdpStats>,
    events: &mpsc::UnboundedSender<FlowEvent>,
    guard: &mut FlowGuard<'_>,
    shutdown: &CancellationToken,
) -> End {
    let params = ctx.params();
    let upstream = &params.upstream;
    let request = Message::udp_request(flow.dst);
    let mut early: Vec<Vec<u8>> = Vec::new();
    let (connected, handshake) = match upstream.open(&request, upstream.connect_timeout).await {
        Ok(opened) => opened,
        Err(error) => {
            info!(client = %flow.client, dst = %flow.dst, %error, "udp flow: concentrator unreachable, going direct");
            stats.upstream_failed();
            stats.direct();
            ctx.tell(Input::UpstreamFailed);
            return direct(flow, early, stats, shutdown).await;
        }
    };
    if let Some(evidence) = fastopen_evidence(&connected) {
        ctx.tell(Input::UpstreamConnected(evidence));
    }
    let fastopen = connected.fastopen;
    let mut stream = connected.stream;
    let _ = stream.set_nodelay(true);
    let _ = mpbond_netlink::sockopt::set_int(
        &stream,
        libc::IPPROTO_TCP,
        TCP_NOTSENT_LOWAT,
        NOTSENT_LOWAT_BYTES,
    );
    let mut queue = CapsuleQueue::new(flow.queue_bytes);
    let mut kept = 0usize;
    let reply = {
        let reading = read_reply(&mut stream, handshake, params.reply_timeout);
        tokio::pin!(reading);
        loop {
            tokio::select! {
                reply = &mut reading => break reply,
                got = next_lan(flow) => match got {
                    Ok(datagram) => {
                        stats.up(datagram.len());
                        if queue.push(&datagram).is_err() {
                            stats.drops_queue_full();
                        } else if kept + datagram.len() <= EARLY_KEEP {
                            kept += datagram.len();
                            early.push(datagram);
                        }
                    }
                    Err(end) => return end,
                },
                _ = shutdown.cancelled() => return End::Shutdown,
            }
        }
    };
    match reply {
        Ok(_) => {}
        Err(UpstreamError::Refused(code)) => {
            info!(client = %flow.client, dst = %flow.dst, code = code.code(), "udp flow refused by the concentrator, going direct");
            stats.refused();
            stats.direct();
            let _ = events.send(FlowEvent::Refused {
                dst: flow.dst,
                code,
            });
            return direct(flow, early, stats, shutdown).await;
        }
        Err(error) => {
            info!(client = %flow.client, dst = %flow.dst, %error, "udp flow: no reply from the concentrator, going direct");
            stats.upstream_failed();
            stats.direct();
            ctx.tell(Input::UpstreamFailed);
            return direct(flow, early, stats, shutdown).await;
        }
    }
    drop(early);
    guard.bonded();
    let stream = Arc::new(stream);
    let mut ticket = stats.track_bonded(stream.clone());
    // Sampled by the passive health check while it relays, like a TCP relay's upstream:
    // a QUIC download alone still shows a stalled WAN.
    let rcvbuf = for_connection(upstream.buffers, fastopen).rcvbuf;
    let _live = ctx
        .stats
        .upstreams
        .register(stream.as_ref(), fastopen, rcvbuf);
    relay_capsules(flow, &stream, queue, stats, &mut ticket, shutdown).await
}

async fn relay_capsules(
    flow: &mut Flow,
    stream: &Arc<TcpStream>,
    mut queue: CapsuleQueue,
    stats: &Arc<UdpStats>,
    ticket: &mut WanTicket<'_>,
    shutdown: &CancellationToken,
) -> End {
    // Bytes of a capsule not yet whole; empty (no allocation) between capsules.
    let mut partial: Vec<u8> = Vec::new();
    let mut deadline = Instant::now() + flow.idle;
    let mut classifier = flow
        .classify
        .then(|| Classifier::new(std::time::Instant::now()));
    let mut real_time = false;
    loop {
        if real_time {
            if let Ok(lan) = socket2::SockRef::from(&flow.lan).try_clone() {
                let drain = Drain {
                    stream: stream.clone(),
                    queue,
                    partial,
                    lan,
                };
                promote::spawn(drain, stats.clone(), shutdown.clone());
                return End::Promoted;
            }
            // No descriptor for the drain: stay bonded.
            classifier = None;
            real_time = false;
        }
        // Write what the socket takes now; the rest waits for writable.
        while !queue.is_empty() {
            match stream.try_write(queue.pending()) {
                Ok(n) => queue.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return End::UpstreamClosed,
            }
        }
        let want_write = !queue.is_empty();
        tokio::select! {
            _ = shutdown.cancelled() => return End::Shutdown,
            _ = sleep_until(deadline) => return End::Idle,
            ready = stream.writable(), if want_write => {
                if ready.is_err() {
                    return End::UpstreamClosed;
                }
            }
            ready = stream.readable() => {
                if ready.is_err() {
                    return End::UpstreamClosed;
                }
                let read = with_scratch(|buf| match stream.try_read(buf) {
                    Ok(0) => Err(End::UpstreamClosed),
                    Ok(n) => {
                        partial.extend_from_slice(&buf[..n]);
                        Ok(())
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    Err(_) => Err(End::UpstreamClosed),
                });
                if let Err(end) = read {
                    return end;
                }
                let mut at = 0;
                loop {
                    match decode_capsule(&partial[at..]) {
                        Ok(Some((capsule, used))) => {
                            at += used;
                            match capsule {
                                Capsule::Datagram(payload) => {
                                    deadline = Instant::now() + flow.idle;
                                    if let Some(c) = classifier.as_mut() {
                                        let now = std::time::Instant::now();
                                        real_time |= c.datagram(Direction::Down, payload.len(), now);
                                    }
                                    stats.down(payload.len());
                                    ticket.carried(payload.len());
                                    if send_now(&flow.lan, payload).is_err() {
                                        stats.drops_lan_busy();
                                    }
                                }
                                // A plain flow takes context 0 only (sequenced
                                // datagrams belong to a protected flow's legs).
                                Capsule::OtherContext { .. } | Capsule::Sequenced { .. } => {
                                    stats.drops_other_context()
                                }
                                Capsule::Unknown { .. } => {}
                            }
                        }
                        Ok(None) => break,
                        Err(error) => {
                            stats.resets();
                            return End::Reset(error.reason());
                        }
                    }
                }
                if at == partial.len() {
                    // Nothing pending: give the memory back (an idle flow holds none).
                    partial = Vec::new();
                } else {
                    partial.drain(..at);
                }
            }
            got = next_lan(flow) => match got {
                Ok(datagram) => {
                    deadline = Instant::now() + flow.idle;
                    stats.up(datagram.len());
                    ticket.carried(datagram.len());
                    if let Some(c) = classifier.as_mut() {
                        let now = std::time::Instant::now();
                        real_time |= c.datagram(Direction::Up, datagram.len(), now);
                    }
                    match queue.push(&datagram) {
                        Ok(()) => {}
                        Err(QueueError::Full) => stats.drops_queue_full(),
                        Err(QueueError::Capsule(_)) => stats.drops_lan_busy(),
                    }
                }
                Err(end) => return end,
            },
        }
    }
}

/// Send one datagram on a connected socket now, or fail (a full buffer drops it). The
/// syscall goes straight to the non-blocking socket: tokio's `try_send` reports
/// `WouldBlock` on a socket whose first writable event it has not seen yet, which would
/// drop the first datagram of every new flow.
pub(crate) fn send_now(sock: &UdpSocket, datagram: &[u8]) -> io::Result<usize> {
    socket2::SockRef::from(sock).send(datagram)
}

/// Relay `flow` from the router itself, after replaying `early`.
async fn direct(
    flow: &mut Flow,
    early: Vec<Vec<u8>>,
    stats: &UdpStats,
    shutdown: &CancellationToken,
) -> End {
    let bind: SocketAddr = if flow.dst.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let out = match UdpSocket::bind(bind).await {
        Ok(out) => out,
        Err(_) => return End::LanError,
    };
    if out.connect(flow.dst).await.is_err() {
        return End::LanError;
    }
    // The source address the router's routes chose: the WAN this flow's bytes count on.
    let local = out.local_addr().map_or(bind.ip(), |a| a.ip());
    let ticket = stats.track_direct(local);
    for datagram in &early {
        if send_now(&out, datagram).is_ok() {
            ticket.sent(datagram.len());
        }
    }
    let mut deadline = Instant::now() + flow.idle;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return End::Shutdown,
            _ = sleep_until(deadline) => return End::Idle,
            ready = out.readable() => {
                if ready.is_err() {
                    return End::UpstreamClosed;
                }
                let got = with_scratch(|buf| {
                    out.try_recv(buf).map(|n| {
                        let sent = send_now(&flow.lan, &buf[..n]);
                        (n, sent.is_ok())
                    })
                });
                match got {
                    Ok((n, sent)) => {
                        deadline = Instant::now() + flow.idle;
                        stats.down(n);
                        ticket.received(n);
                        if !sent {
                            stats.drops_lan_busy();
                        }
                    }
                    Err(e) if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
                    ) => continue,
                    Err(_) => return End::UpstreamClosed,
                }
            }
            got = next_lan(flow) => match got {
                Ok(datagram) => {
                    deadline = Instant::now() + flow.idle;
                    stats.up(datagram.len());
                    match send_now(&out, &datagram) {
                        Ok(_) => ticket.sent(datagram.len()),
                        Err(_) => stats.drops_lan_busy(),
                    }
                }
                Err(end) => return end,
            },
        }
    }
}
