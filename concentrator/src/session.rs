//! One client connection: handshake → verify → policy → limits → connect → relay.
//!
//! [`serve`] runs a connection inside one tracing span (peer, client, destination) and logs
//! a single line when it ends: bytes each way, duration and the close reason. It never
//! panics and never returns an error; every failure is answered on the wire (an RFC 8803
//! Error TLV where one applies) and counted in the metrics.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mpbond_protocol::auth::ClientId;
use mpbond_protocol::{decode, message_len, Decoded, ErrorCode, Message, Tlv, FIXED_HEADER_LEN};
use mpbond_relay::relay::{relay_with_lead, CloseReason, Lead, RelayOpts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{field, info, info_span, Instrument};

use crate::policy::Class;
use crate::reload::State;

/// TCP option kinds listed in the Supported TCP Extensions reply to a probe: the options
/// the concentrator's own TCP stack uses towards destinations (MSS, window scale,
/// SACK-permitted, timestamps).
pub const SUPPORTED_TCP_OPTIONS: [u8; 4] = [2, 3, 4, 8];

/// How long to keep reading (and discarding) after an error reply, so that closing does
/// not turn into a reset that could destroy the reply in flight.
const LINGER: Duration = Duration::from_secs(2);
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
enum Close {
    /// The relay ran and ended this way.
    Relayed(CloseReason),
    /// An authenticated Info probe was answered.
    Probe,
    /// The client closed or reset before a whole Convert message arrived.
    EarlyEof,
    HandshakeTimeout,
    Malformed(ErrorCode),
    Unsupported,
    AuthFailed(&'static str),
    PolicyRefused(Class),
    Limit(&'static str),
    ConnectFailed(ErrorCode, io::ErrorKind),
    Io(io::ErrorKind),
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
            Close::Malformed(code) => write!(f, "malformed (error {})", code.code()),
            Close::Unsupported => f.write_str("unsupported_message (error 2)"),
            Close::AuthFailed(reason) => write!(f, "auth_failed: {reason}"),
            Close::PolicyRefused(class) => write!(f, "policy_refused: {class}"),
            Close::Limit(which) => write!(f, "limit_reached: {which}"),
            Close::ConnectFailed(code, kind) => {
                write!(f, "connect_failed: {kind} (error {})", code.code())
            }
            Close::Io(kind) => write!(f, "io_error: {kind}"),
        }
    }
}

/// Serve one accepted connection to its end. `permit` is its accept-loop slot.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    permit: OwnedSemaphorePermit,
) {
    let span = info_span!("conn", %peer, client = field::Empty, dest = field::Empty);
    async move {
        let started = Instant::now();
        state.metrics.connection_opened();
        if mpbond_relay::sys::is_mptcp(&stream) == Some(false) {
            state.metrics.fallback();
        }
        let mut bytes = (0, 0);
        let close = handle(stream, &state, started, &mut bytes).await;
        state.metrics.connection_closed();
        let ms = started.elapsed().as_millis() as u64;
        info!(up = bytes.0, down = bytes.1, duration_ms = ms, close = %close, "connection closed");
        drop(permit);
    }
    .instrument(span)
    .await
}

async fn handle(
    mut stream: TcpStream,
    state: &State,
    started: Instant,
    bytes: &mut (u64, u64),
) -> Close {
    let live = state.live();
    let limits = &live.config.limits;
    let (wire, message) =
        match tokio::time::timeout(limits.handshake_timeout, read_convert(&mut stream)).await {
            Err(_) => return Close::HandshakeTimeout,
            Ok(Err(ReadError::Eof)) => return Close::EarlyEof,
            Ok(Err(ReadError::Io(e))) => return Close::Io(e.kind()),
            Ok(Err(ReadError::Decode(code))) => {
                state.metrics.malformed();
                refuse(stream, code).await;
                return Close::Malformed(code);
            }
            Ok(Ok(m)) => m,
        };
    wait_established(&stream, started + limits.handshake_timeout).await;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let verified = {
        let mut verifier = state
            .verifier
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        verifier.verify(&wire, &message, now, |id| live.clients.get(id).cloned())
    };
    let client: ClientId = match verified {
        Ok(client) => client,
        Err(err) => {
            state.metrics.auth_failure(err.reason());
            refuse(stream, err.error_code()).await;
            return Close::AuthFailed(err.reason());
        }
    };
    tracing::Span::current().record("client", client.as_str());

    if message.first_unknown_kind().is_some() {
        refuse(stream, ErrorCode::UnsupportedMessage).await;
        return Close::Unsupported;
    }
    let dest = match message.destination() {
        Some(dest) => dest,
        None if message.is_info() => {
            let reply = Message {
                tlvs: vec![Tlv::SupportedTcpExtensions(SUPPORTED_TCP_OPTIONS.to_vec())],
            };
            if let Ok(bytes) = reply.encode() {
                state.metrics.observe_handshake(started.elapsed());
                if let Err(e) = stream.write_all(&bytes).await {
                    return Close::Io(e.kind());
                }
            }
            linger_close(stream).await;
            return Close::Probe;
        }
        None => {
            refuse(stream, ErrorCode::UnsupportedMessage).await;
            return Close::Unsupported;
        }
    };
    tracing::Span::current().record("dest", field::display(dest));

    if let Err(class) = live.policy.check(dest.ip()) {
        state.metrics.policy_refusal();
        refuse(stream, ErrorCode::NotAuthorized).await;
        return Close::PolicyRefused(class);
    }
    let admitted = match state.admission.try_admit(
        &client,
        limits.max_connections,
        limits.max_connections_per_client,
    ) {
        Ok(admitted) => admitted,
        Err(hit) => {
            state.metrics.limit_refusal();
            refuse(stream, ErrorCode::ResourceExceeded).await;
            return Close::Limit(hit.as_str());
        }
    };

    let upstream =
        match tokio::time::timeout(limits.connect_timeout, TcpStream::connect(dest)).await {
            Ok(Ok(upstream)) => upstream,
            Ok(Err(e)) => {
                let code = connect_error_code(&e);
                state.metrics.connect_error(code.code());
                refuse(stream, code).await;
                return Close::ConnectFailed(code, e.kind());
            }
            Err(_) => {
                let code = ErrorCode::NetworkFailure;
                state.metrics.connect_error(code.code());
                refuse(stream, code).await;
                return Close::ConnectFailed(code, io::ErrorKind::TimedOut);
            }
        };
    let _ = upstream.set_nodelay(true);

    let ok = match Message::ok().encode() {
        Ok(ok) => ok,
        Err(_) => return Close::Io(io::ErrorKind::InvalidData),
    };
    state.metrics.observe_handshake(started.elapsed());

    let opts = RelayOpts {
        idle_timeout: limits.idle_timeout,
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
    drop(admitted);
    Close::Relayed(stats.close)
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

enum ReadError {
    Eof,
    Io(io::Error),
    Decode(ErrorCode),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Eof
        } else {
            ReadError::Io(e)
        }
    }
}

/// Read exactly one Convert message, and not a byte more: the client's payload follows.
async fn read_convert(stream: &mut TcpStream) -> Result<(Vec<u8>, Message), ReadError> {
    let mut header = [0u8; FIXED_HEADER_LEN];
    stream.read_exact(&mut header).await?;
    let len = message_len(header).map_err(|e| ReadError::Decode(e.error_code()))?;
    let mut wire = vec![0u8; len.max(FIXED_HEADER_LEN)];
    wire[..FIXED_HEADER_LEN].copy_from_slice(&header);
    stream.read_exact(&mut wire[FIXED_HEADER_LEN..]).await?;
    match decode(&wire) {
        Ok(Decoded::Complete { message, len: used }) if used == wire.len() => Ok((wire, message)),
        Ok(_) => Err(ReadError::Decode(ErrorCode::MalformedMessage)),
        Err(e) => Err(ReadError::Decode(e.error_code())),
    }
}

/// Wait, up to `deadline`, while the first subflow of a Fast Open MPTCP connection is
/// still in SYN_RECV. Linux (seen on 6.18) accepts such a connection at SYN time but
/// never pushes bytes written before the client's final ACK arrives, until the client
/// sends again: a reply written too early can sit unsent for seconds. The wait is at
/// most half a round trip and costs nothing on an established connection. There is no
/// event for it, so it polls, every 2 ms.
async fn wait_established(stream: &TcpStream, deadline: Instant) {
    while Instant::now() < deadline
        && mpbond_relay::sys::first_subflow_state(stream) == Some(mpbond_relay::sys::TCP_SYN_RECV)
    {
        tokio::time::sleep(SYN_RECV_POLL).await;
    }
}

/// Send an Error TLV, then close without resetting.
async fn refuse(mut stream: TcpStream, code: ErrorCode) {
    wait_established(&stream, Instant::now() + REFUSE_WAIT).await;
    if let Ok(bytes) = Message::error(code).encode() {
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
    }
    linger_close(stream).await;
}

/// Half-close our side, then drain what the client still sends (bounded in time and
/// bytes) so the close is a FIN, not an RST that could overtake our reply.
async fn linger_close(mut stream: TcpStream) {
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
