//! One SOCKS5 connection, negotiation to relay: the async shell around
//! [`super::negotiation`] and [`super::target`], logged once at its end.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mpbond_protocol::auth::ClientId;
use mpbond_relay::relay::{relay, CloseReason, RelayOpts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{field, info, info_span, Instrument};

use super::negotiation::{password_matches, Negotiation, Progress, Refusal};
use super::target::{allowed, connect_error_reply};
use super::wire::{self, ReplyCode, Target};
use crate::admission::LimitHit;
use crate::listener::Unproven;
use crate::policy::Class;
use crate::reload::{Live, State};
use crate::session::linger_close;

/// At most this many resolved addresses are tried, one after the other.
pub const MAX_ADDRESSES_TRIED: usize = 8;

/// How a SOCKS5 connection ended.
#[derive(Debug)]
enum Close {
    Refused(Refusal),
    HandshakeTimeout,
    EarlyEof,
    Io(io::ErrorKind),
    Limit(LimitHit),
    /// The name did not resolve (or to nothing).
    Unresolved,
    PolicyRefused(Class),
    ConnectFailed(ReplyCode, io::ErrorKind),
    Relayed(CloseReason),
}

impl Close {
    /// The `outcome` label of `mpbond_socks_connections_total`.
    fn outcome(&self) -> &'static str {
        match self {
            Close::Refused(r) => r.as_str(),
            Close::HandshakeTimeout => "handshake_timeout",
            Close::EarlyEof => "eof_in_handshake",
            Close::Io(_) => "io_error",
            Close::Limit(_) => "limit_reached",
            Close::Unresolved => "unresolved",
            Close::PolicyRefused(_) => ReplyCode::NotAllowedByRuleset.as_str(),
            Close::ConnectFailed(code, _) => code.as_str(),
            Close::Relayed(_) => "relayed",
        }
    }
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Close::Refused(r) => write!(f, "refused: {}", r.as_str()),
            Close::HandshakeTimeout => f.write_str("handshake_timeout"),
            Close::EarlyEof => f.write_str("eof_in_handshake"),
            Close::Io(kind) => write!(f, "io_error: {kind}"),
            Close::Limit(hit) => write!(f, "limit_reached: {} (reply 0x01)", hit.as_str()),
            Close::Unresolved => f.write_str("unresolved (reply 0x04)"),
            Close::PolicyRefused(class) => write!(f, "policy_refused: {class} (reply 0x02)"),
            Close::ConnectFailed(code, kind) => {
                write!(f, "connect_failed: {kind} (reply {:#04x})", code.code())
            }
            Close::Relayed(CloseReason::ResetByA) => f.write_str("reset_by_client"),
            Close::Relayed(CloseReason::ResetByB) => f.write_str("reset_by_destination"),
            Close::Relayed(r) => f.write_str(r.as_str()),
        }
    }
}

/// Serve one accepted SOCKS5 connection to its end. `slot` is its accept-loop permit;
/// `unproven` counts it against its source until the client has authenticated.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    unproven: Unproven,
    state: Arc<State>,
    slot: OwnedSemaphorePermit,
) {
    let span = info_span!("socks", %peer, client = field::Empty, dest = field::Empty);
    async move {
        let started = Instant::now();
        let live = state.live();
        crate::session::opened(&state, &live, &stream);
        let mut bytes = (0, 0);
        let close = handle(stream, &state, &live, started, &mut bytes, unproven, slot).await;
        state.metrics.socks.outcome(close.outcome());
        state.metrics.connection_closed();
        let ms = started.elapsed().as_millis() as u64;
        info!(up = bytes.0, down = bytes.1, duration_ms = ms, close = %close, "socks connection closed");
    }
    .instrument(span)
    .await
}

/// The client whose SOCKS5 credential is `user`/`pass`.
fn credential(live: &Live, user: &[u8], pass: &[u8]) -> Option<ClientId> {
    let user = std::str::from_utf8(user).ok()?;
    let client = live.config.clients.iter().find(|c| c.id.as_str() == user)?;
    let expected = client.socks_password.as_ref()?;
    password_matches(expected.as_bytes(), pass).then(|| client.id.clone())
}

/// Read and answer until the negotiation is refused or ready.
async fn negotiate(stream: &mut TcpStream, live: &Live) -> io::Result<Progress> {
    let mut negotiation = Negotiation::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let step = negotiation.receive(&buf[..n], |u, p| credential(live, u, p));
        if !step.send.is_empty() {
            stream.write_all(&step.send).await?;
        }
        if step.progress != Progress::Pending {
            return Ok(step.progress);
        }
    }
}

async fn handle(
    mut stream: TcpStream,
    state: &State,
    live: &Live,
    started: Instant,
    bytes: &mut (u64, u64),
    unproven: Unproven,
    slot: OwnedSemaphorePermit,
) -> Close {
    let limits = &live.config.limits;
    let progress =
        match tokio::time::timeout(limits.handshake_timeout, negotiate(&mut stream, live)).await {
            Err(_) => {
                state.metrics.handshake_timeout();
                return Close::HandshakeTimeout;
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                state.metrics.early_close();
                return Close::EarlyEof;
            }
            Ok(Err(e)) => return Close::Io(e.kind()),
            Ok(Ok(progress)) => progress,
        };
    let (client, target, early) = match progress {
        Progress::Ready {
            client,
            target,
            early,
        } => (client, target, early),
        Progress::Refused(refusal) => {
            if refusal == Refusal::Credentials {
                state.metrics.auth_failure("socks_credentials");
            }
            drop(slot);
            linger_close(stream).await;
            return Close::Refused(refusal);
        }
        Progress::Pending => return Close::EarlyEof,
    };
    // The client proved its credential.
    drop(unproven);
    tracing::Span::current().record("client", client.as_str());
    tracing::Span::current().record("dest", field::display(&target));

    let admitted = match state.admission.try_admit(
        &client,
        limits.max_connections,
        limits.max_connections_per_client,
    ) {
        Ok(admitted) => admitted,
        Err(hit) => {
            state.metrics.limit_refusal();
            refuse(stream, ReplyCode::GeneralFailure, slot).await;
            return Close::Limit(hit);
        }
    };
    let deadline = tokio::time::Instant::now() + limits.connect_timeout;
    let resolved = match resolve(&target, deadline).await {
        Some(resolved) if !resolved.is_empty() => resolved,
        _ => {
            refuse(stream, ReplyCode::HostUnreachable, slot).await;
            return Close::Unresolved;
        }
    };
    let candidates = match allowed(&resolved, MAX_ADDRESSES_TRIED, |a| {
        live.policy.check(a.ip())
    }) {
        Ok(candidates) => candidates,
        Err(class) => {
            state.metrics.policy_refusal();
            refuse(stream, ReplyCode::NotAllowedByRuleset, slot).await;
            return Close::PolicyRefused(class);
        }
    };
    let mut upstream = match connect_any(&candidates, deadline).await {
        Ok(upstream) => upstream,
        Err(e) => {
            let code = connect_error_reply(&e);
            refuse(stream, code, slot).await;
            return Close::ConnectFailed(code, e.kind());
        }
    };
    let _ = upstream.set_nodelay(true);
    let ok = wire::reply(ReplyCode::Succeeded, upstream.local_addr().ok());
    if let Err(e) = stream.write_all(&ok).await {
        return Close::Io(e.kind());
    }
    if !early.is_empty() {
        if let Err(e) = upstream.write_all(&early).await {
            return Close::Io(e.kind());
        }
    }
    state.metrics.observe_handshake(started.elapsed());
    let opts = RelayOpts {
        idle_timeout: limits.idle_timeout,
        ..Default::default()
    };
    let stats = relay(stream, upstream, &opts).await;
    let up = stats.a_to_b + early.len() as u64;
    *bytes = (up, stats.b_to_a);
    state.metrics.add_bytes(client.as_str(), up, stats.b_to_a);
    state.metrics.socks.add_bytes(up, stats.b_to_a);
    drop((admitted, slot));
    Close::Relayed(stats.close)
}

/// The addresses of `target`: itself, or its name resolved by the system resolver before
/// `deadline`. `None` when the name does not resolve.
async fn resolve(target: &Target, deadline: tokio::time::Instant) -> Option<Vec<SocketAddr>> {
    match target {
        Target::Addr(addr) => Some(vec![*addr]),
        Target::Domain(name, port) => {
            let lookup = tokio::net::lookup_host((name.as_str(), *port));
            match tokio::time::timeout_at(deadline, lookup).await {
                Ok(Ok(addrs)) => Some(addrs.collect()),
                _ => None,
            }
        }
    }
}

/// Connect to the first of `candidates` that answers before `deadline`; the last error
/// when none does.
async fn connect_any(
    candidates: &[SocketAddr],
    deadline: tokio::time::Instant,
) -> io::Result<TcpStream> {
    let mut last = io::Error::from(io::ErrorKind::TimedOut);
    for addr in candidates {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = e,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
    Err(last)
}

/// Give the slot back, send the reply with `code`, then close without a reset.
async fn refuse(mut stream: TcpStream, code: ReplyCode, slot: OwnedSemaphorePermit) {
    drop(slot);
    if stream.write_all(&wire::reply(code, None)).await.is_ok() {
        linger_close(stream).await;
    }
}
