//! One client connection: handshake → policy → limits → connect → relay.
//!
//! The decisions are not made here. The request is judged by
//! [`ServerHandshake`] (decode, classify, authenticate: `mpbond_protocol`), the destination
//! by [`crate::policy`], the limits by [`crate::admission`], and a failed connect maps to
//! its code in [`connect_error_code`]. This module only carries them out: it reads the
//! request exactly (the client's payload follows it), writes the replies, connects and
//! relays.
//!
//! [`serve`] runs a connection inside one tracing span (peer, client, destination) and logs
//! a single line when it ends: bytes each way, duration and the close reason. It never
//! panics and never returns an error; every failure is counted in the metrics and
//! answered on the wire with an RFC 8803 Error TLV where one applies, except in quiet mode
//! (`quiet`, default on): a request the handshake refuses before its sender proved it holds
//! a key ([`Decision::is_unauthenticated_refusal`]) is closed at once without a byte. A
//! connection gives its accept-loop slot back as soon as it is refused or answered, before
//! the slow close.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mpbond_protocol::auth::ClientId;
use mpbond_protocol::{error_reply, Decision, ErrorCode, HandshakeError, ServerHandshake};
use mpbond_relay::message::read_steps;
use mpbond_relay::relay::{relay_with_lead, CloseReason, Lead, RelayOpts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{field, info, info_span, Instrument};

use crate::admission::{Admitted, LimitHit};
use crate::listener::Unproven;
use crate::policy::Class;
use crate::reload::{Live, State};

/// TCP option kinds listed in the Supported TCP Extensions reply to a probe: the options
/// the concentrator's own TCP stack uses towards destinations (MSS, window scale,
/// SACK-permitted, timestamps).
pub const SUPPORTED_TCP_OPTIONS: [u8; 4] = [2, 3, 4, 8];

/// How long to keep reading (and discarding) after an error reply, so that closing does
/// not turn into a reset that could destroy the reply in flight.
const LINGER: Duration = Duration::from_secs(2);
/// At least the agent's early window (`EARLY_MAX` in router-agent/src/proxy/conn.rs):
/// the bytes a client may send before it reads the reply.
const LINGER_BYTES: usize = 256 * 1024;
/// How often [`wait_established`] looks at the first subflow's state.
const SYN_RECV_POLL: Duration = Duration::from_millis(2);
/// The longest a refusal waits for the first subflow to be established.
const REFUSE_WAIT: Duration = Duration::from_secs(2);
/// How long the OK reply waits for the destination's first bytes, to share their segment
/// (and the agent's ACK). A server that answers the request within this time costs the
/// WAN no extra packets; a silent one gets the reply alone when it ends. Only the agent's
/// LAN bytes beyond its early window (`EARLY_MAX`) wait for the reply.
pub const REPLY_HOLD: Duration = Duration::from_millis(20);

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum Close {
    /// The relay ran and ended this way.
    Relayed(CloseReason),
    /// An authenticated Info probe was answered.
    Probe,
    /// The client closed or reset before a whole Convert message arrived.
    EarlyEof,
    HandshakeTimeout,
    /// The handshake refused the request (decode, classification or authentication).
    Refused(HandshakeError),
    /// The handshake refused an unauthenticated request and quiet mode sent nothing.
    QuietlyRefused(HandshakeError),
    PolicyRefused(Class),
    Limit(LimitHit),
    ConnectFailed(ErrorCode, io::ErrorKind),
    Io(io::ErrorKind),
    /// A UDP request while `[udp] enabled = false` (refused with code 2).
    UdpDisabled,
    /// The client's UDP flow limit refused a UDP request.
    UdpFlowLimit,
    /// A leg of a protected UDP flow could not join its group (full, another
    /// destination, or ended meanwhile).
    UdpGroupRefused(&'static str),
    /// A UDP flow relayed and ended this way.
    UdpEnded {
        end: crate::udp::relay::FlowEnd,
        /// Datagrams (up, down).
        datagrams: (u64, u64),
        /// Datagrams dropped (all reasons).
        dropped: u64,
    },
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Close::Relayed(CloseReason::ResetByA) => f.write_str("reset_by_client"),
            Close::Relayed(CloseReason::ResetByB) => f.write_str("reset_by_destination"),
            Close::Relayed(r) => f.write_str(r.as_str()),
            Close::Probe => f.write_str("probe_answered"),
            Close::EarlyEof => f.write_str("eof_in_handshake"),
            Close::HandshakeTimeout => f.write_str("handshake_timeout"),
            Close::Refused(error @ HandshakeError::Auth(_)) => {
                write!(
                    f,
                    "auth_failed: {} (error {})",
                    error.reason(),
                    error.error_code().code()
                )
            }
            Close::Refused(error) => {
                write!(
                    f,
                    "{} (error {})",
                    error.reason(),
                    error.error_code().code()
                )
            }
            Close::QuietlyRefused(error) => {
                write!(
                    f,
                    "quiet_refused: {} (error {} not sent)",
                    error.reason(),
                    error.error_code().code()
                )
            }
            Close::PolicyRefused(class) => write!(f, "policy_refused: {class}"),
            Close::Limit(hit) => write!(f, "limit_reached: {}", hit.as_str()),
            Close::ConnectFailed(code, kind) => {
                write!(f, "connect_failed: {kind} (error {})", code.code())
            }
            Close::Io(kind) => write!(f, "io_error: {kind}"),
            Close::UdpDisabled => f.write_str("udp_disabled (error 2)"),
            Close::UdpFlowLimit => f.write_str("limit_reached: udp.max_flows_per_client"),
            Close::UdpGroupRefused(why) => write!(f, "udp_group_refused: {why}"),
            Close::UdpEnded {
                end,
                datagrams: (up, down),
                dropped,
            } => write!(
                f,
                "udp {end}: {up} datagrams up, {down} down, {dropped} dropped"
            ),
        }
    }
}

/// A connection just accepted, Convert or SOCKS5: counted (a plain TCP one as a
/// fallback), and an MPTCP one given the configured congestion control, since the
/// downloads are sent here; no Nagle delay.
pub(crate) fn opened(state: &State, live: &Live, stream: &TcpStream) {
    state.metrics.connection_opened();
    match mpbond_relay::sys::is_mptcp(stream) {
        Some(false) => state.metrics.fallback(),
        Some(true) => {
            let _ = mpbond_relay::congestion::apply(stream, live.config.relay.congestion.as_ref());
        }
        None => {}
    }
    let _ = stream.set_nodelay(true);
}

/// Serve one accepted connection to its end. `slot` is its accept-loop permit;
/// `unproven` counts it against its source until the client has authenticated.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    unproven: Unproven,
    state: Arc<State>,
    slot: OwnedSemaphorePermit,
) {
    let span = info_span!("conn", %peer, client = field::Empty, dest = field::Empty);
    async move {
        let started = Instant::now();
        opened(&state, &state.live(), &stream);
        let mut bytes = (0, 0);
        let close = handle(stream, &state, started, &mut bytes, unproven, slot).await;
        state.metrics.connection_closed();
        let ms = started.elapsed().as_millis() as u64;
        info!(up = bytes.0, down = bytes.1, duration_ms = ms, close = %close, "connection closed");
    }
    .instrument(span)
    .await
}

/// Seconds since the Unix epoch, for the cookie's clock check.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn handle(
    mut stream: TcpStream,
    state: &State,
    started: Instant,
    bytes: &mut (u64, u64),
    unproven: Unproven,
    slot: OwnedSemaphorePermit,
) -> Close {
    let live = state.live();
    let limits = &live.config.limits;
    let mut handshake = ServerHandshake::new(
        &state.verifier,
        |id: &ClientId| live.clients.get(id).cloned(),
        &SUPPORTED_TCP_OPTIONS,
    );
    if let Ok(peer) = stream.peer_addr() {
        handshake = handshake.with_standard(&live.standard, peer.ip());
    }
    let read = read_steps(&mut stream, |piece| {
        handshake.receive(piece, unix_now()).step
    });
    let decision = match tokio::time::timeout(limits.handshake_timeout, read).await {
        Err(_) => {
            state.metrics.handshake_timeout();
            return Close::HandshakeTimeout;
        }
        Ok(Err(e)) if early_close(e.kind()) => {
            state.metrics.early_close();
            return Close::EarlyEof;
        }
        Ok(Err(e)) => return Close::Io(e.kind()),
        Ok(Ok(decision)) => decision,
    };
    if !decision.is_unauthenticated_refusal() {
        // The client holds a key: it no longer counts against its source's limit.
        drop(unproven);
    }
    let quiet = live.config.quiet && decision.is_unauthenticated_refusal();
    // A connect waits for the first subflow after the destination's connect, so the two
    // overlap (below); every other answer waits here, before its first write.
    if !quiet && !matches!(decision, Decision::Connect { .. }) {
        wait_established(&stream, started + limits.handshake_timeout).await;
    }

    let (client, dest, ok) = match decision {
        Decision::Refuse {
            error,
            client,
            reply,
        } => {
            if let Some(client) = &client {
                tracing::Span::current().record("client", client.as_str());
            }
            match &error {
                HandshakeError::Decode(_) => state.metrics.malformed(),
                HandshakeError::Auth(auth) => state.metrics.auth_failure(auth.reason()),
                HandshakeError::Request(_) => {}
            }
            if quiet {
                // Not a byte: dropping the socket sends a FIN, or a reset if the
                // stranger's bytes are still unread.
                state.metrics.quiet_refusal();
                drop((stream, slot));
                return Close::QuietlyRefused(error);
            }
            refuse(stream, &reply, slot).await;
            return Close::Refused(error);
        }
        Decision::Info { client, reply } => {
            tracing::Span::current().record("client", client.as_str());
            state.metrics.observe_handshake(started.elapsed());
            if let Err(e) = stream.write_all(&reply).await {
                return Close::Io(e.kind());
            }
            drop(slot);
            linger_close(stream).await;
            return Close::Probe;
        }
        Decision::Connect {
            client,
            dest,
            reply,
        } => (client, dest, reply),
        Decision::Udp {
            client,
            dest,
            group,
            reply,
        } => {
            tracing::Span::current().record("client", client.as_str());
            tracing::Span::current().record("dest", field::display(format_args!("udp:{dest}")));
            return crate::udp::serve::serve_udp(
                stream, state, &live, &client, dest, group, reply, slot, started, bytes,
            )
            .await;
        }
    };
    tracing::Span::current().record("client", client.as_str());
    tracing::Span::current().record("dest", field::display(dest));

    let admitted = match admit(state, &live, &client, dest) {
        Ok(admitted) => admitted,
        Err((code, close)) => {
            refuse(stream, &error_reply(code), slot).await;
            return close;
        }
    };

    let upstream =
        match tokio::time::timeout(limits.connect_timeout, TcpStream::connect(dest)).await {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(e)) => {
                let code = connect_error_code(&e);
                state.metrics.connect_error(code.code());
                refuse(stream, &error_reply(code), slot).await;
                return Close::ConnectFailed(code, e.kind());
            }
            Err(_) => {
                let code = ErrorCode::NetworkFailure;
                state.metrics.connect_error(code.code());
                refuse(stream, &error_reply(code), slot).await;
                return Close::ConnectFailed(code, io::ErrorKind::TimedOut);
            }
        };
    let _ = upstream.set_nodelay(true);
    // The relay's first write is the reply: the first subflow must be established by then.
    wait_established(&stream, started + limits.handshake_timeout).await;
    state.metrics.observe_handshake(started.elapsed());

    let opts = RelayOpts {
        idle_timeout: limits.idle_timeout,
        ..Default::default()
    };
    // The reply goes out with the destination's first bytes, in one segment.
    let lead = Lead {
        bytes: ok,
        hold: REPLY_HOLD,
    };
    let stats = relay_with_lead(stream, upstream, &opts, &lead).await;
    *bytes = (stats.a_to_b, stats.b_to_a);
    state
        .metrics
        .add_bytes(client.as_str(), stats.a_to_b, stats.b_to_a);
    drop((admitted, slot));
    Close::Relayed(stats.close)
}

/// Apply the destination policy and the connection limits to an authenticated Connect:
/// the admission guard, or the code to refuse with and how the connection ends.
pub(crate) fn admit(
    state: &State,
    live: &Live,
    client: &ClientId,
    dest: SocketAddr,
) -> Result<Admitted, (ErrorCode, Close)> {
    if let Err(class) = live.policy.check(dest.ip()) {
        state.metrics.policy_refusal();
        return Err((ErrorCode::NotAuthorized, Close::PolicyRefused(class)));
    }
    let limits = &live.config.limits;
    state
        .admission
        .try_admit(
            client,
            limits.max_connections,
            limits.max_connections_per_client,
        )
        .map_err(|hit| {
            state.metrics.limit_refusal();
            (ErrorCode::ResourceExceeded, Close::Limit(hit))
        })
}

/// Whether a read error means the client went away before its request was whole.
fn early_close(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// The RFC 8803 code for a failed destination connect.
pub fn connect_error_code(e: &io::Error) -> ErrorCode {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => ErrorCode::ConnectionReset,
        Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ENETDOWN | libc::EHOSTDOWN) => {
            ErrorCode::DestinationUnreachable
        }
        Some(libc::ETIMEDOUT) => ErrorCode::NetworkFailure,
        _ if e.kind() == io::ErrorKind::ConnectionRefused => ErrorCode::ConnectionReset,
        _ => ErrorCode::NetworkFailure,
    }
}

/// Wait, up to `deadline`, while the first subflow of a Fast Open MPTCP connection is
/// still in SYN_RECV. Linux (seen on 6.18) accepts such a connection at SYN time but
/// never pushes bytes written before the client's final ACK arrives, until the client
/// sends again: a reply written too early can sit unsent for seconds. The wait is at
/// most one round trip from the accept and costs nothing on an established connection;
/// a connect request spends it connecting to the destination. There is no event for it,
/// so it polls, every 2 ms.
async fn wait_established(stream: &TcpStream, deadline: Instant) {
    while Instant::now() < deadline
        && mpbond_relay::sys::first_subflow_state(stream) == Some(mpbond_relay::sys::TCP_SYN_RECV)
    {
        tokio::time::sleep(SYN_RECV_POLL).await;
    }
}

/// Give the accept slot back, send an Error TLV, then close without resetting. The
/// slot goes first: the wait for the subflow and the linger take seconds, and a
/// refused connection must not keep a slot from the next client meanwhile.
pub(crate) async fn refuse(mut stream: TcpStream, reply: &[u8], slot: OwnedSemaphorePermit) {
    drop(slot);
    wait_established(&stream, Instant::now() + REFUSE_WAIT).await;
    if stream.write_all(reply).await.is_err() {
        return;
    }
    linger_close(stream).await;
}

/// Half-close our side, then drain what the client still sends (bounded in time and
/// bytes) so the close is a FIN, not an RST that could overtake our reply.
pub(crate) async fn linger_close(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        while total < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_map_to_codes() {
        let code = |errno| connect_error_code(&io::Error::from_raw_os_error(errno)).code();
        assert_eq!(code(libc::ECONNREFUSED), 96);
        assert_eq!(code(libc::ENETUNREACH), 97);
        assert_eq!(code(libc::EHOSTUNREACH), 97);
        assert_eq!(code(libc::ETIMEDOUT), 65);
        assert_eq!(code(libc::EADDRNOTAVAIL), 65);
    }
}
