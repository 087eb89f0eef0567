//! One redirected LAN connection.
//!
//! 1. The original destination comes from conntrack (`SO_ORIGINAL_DST`).
//! 2. The agent connects to the concentrator over MPTCP with a sealed Convert Connect
//!    request in the SYN (TFO), without waiting for LAN data.
//! 3. It reads the Convert reply *before* relaying. The LAN client's bytes wait in the
//!    socket buffer meanwhile, which costs no round trip: the concentrator replies only
//!    after its own connect, and nothing could flow downstream before that anyway. Because
//!    no LAN byte has been consumed yet, any failure up to here can still fail open.
//! 4. An Error TLV in the reply resets the LAN connection (the client sees RST, not FIN).
//!    An OK reply starts the splice relay.
//! 5. If the concentrator cannot be reached or does not answer, the agent connects to the
//!    destination directly (plain TCP from the router), relays that, and asks the health
//!    task for an immediate probe. If that fails too, the LAN connection is reset.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mpbond_protocol::{ErrorCode, Message};
use mpbond_relay::relay::{relay, CloseReason};
use mpbond_relay::sys;
use tokio::net::TcpStream;
use tracing::{debug, info, info_span, warn, Instrument};

use super::ConnContext;
use crate::upstream::read_reply;

/// Where a connection's traffic went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// Through the concentrator over MPTCP.
    Concentrator,
    /// Fail open: straight to the destination.
    Direct,
}

impl fmt::Display for UpstreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpstreamKind::Concentrator => "concentrator",
            UpstreamKind::Direct => "direct",
        })
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Relayed; the relay's close reason.
    Relay(CloseReason),
    /// The concentrator answered with this error; the LAN side was reset.
    Refused(ErrorCode),
    /// The direct connect failed; the LAN side was reset.
    DirectFailed,
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Close::Relay(reason) => f.write_str(reason.as_str()),
            Close::Refused(code) => write!(f, "refused({})", code.code()),
            Close::DirectFailed => f.write_str("direct_failed"),
        }
    }
}

/// The outcome of one connection, logged once at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub upstream: UpstreamKind,
    /// Whether the upstream connection is MPTCP (`None`: unknown or direct).
    pub mptcp: Option<bool>,
    /// Bytes LAN → destination.
    pub up: u64,
    /// Bytes destination → LAN.
    pub down: u64,
    pub close: Close,
}

/// Serve an accepted LAN connection: find its original destination, handle it, and log
/// one summary line in a span carrying the client and destination.
pub async fn serve_accepted(lan: TcpStream, client: SocketAddr, ctx: Arc<ConnContext>) {
    let _active = ctx.stats.open();
    let dst = match sys::original_dst(&lan) {
        Ok(dst) => dst,
        Err(error) => {
            info!(%client, %error, "no original destination, dropping connection");
            return;
        }
    };
    if lan.local_addr().ok() == Some(dst) {
        info!(%client, "connection to the listener itself (not redirected), dropping");
        return;
    }
    let span = info_span!("conn", %client, %dst);
    let started = Instant::now();
    let summary = handle(lan, dst, &ctx).instrument(span.clone()).await;
    let _enter = span.enter();
    let duration_ms = started.elapsed().as_millis() as u64;
    let (upstream, close, up, down) = (summary.upstream, summary.close, summary.up, summary.down);
    let mptcp = summary
        .mptcp
        .map_or("unknown", |m| if m { "yes" } else { "no" });
    match upstream {
        UpstreamKind::Concentrator => {
            debug!(%upstream, mptcp, up, down, duration_ms, %close, "connection closed")
        }
        UpstreamKind::Direct => {
            info!(%upstream, up, down, duration_ms, %close, "connection closed")
        }
    }
}

/// Handle a LAN connection whose original destination is `dst`. Never panics; every
/// failure ends in a relay, a reset LAN socket, or both sockets dropped.
pub async fn handle(lan: TcpStream, dst: SocketAddr, ctx: &ConnContext) -> Summary {
    let failure = match ctx
        .upstream
        .open(&Message::connect(dst), ctx.upstream.connect_timeout)
        .await
    {
        Ok(connected) => {
            let mut stream = connected.stream;
            match read_reply(&mut stream, ctx.reply_timeout).await {
                Ok(reply) => {
                    // Asked again now that the handshake is surely complete.
                    let mptcp = if connected.mptcp {
                        sys::is_mptcp(&stream)
                    } else {
                        Some(false)
                    };
                    return via_concentrator(lan, stream, mptcp, &reply, ctx).await;
                }
                Err(error) => {
                    sys::reset(stream);
                    error
                }
            }
        }
        Err(error) => error,
    };
    info!(%failure, "concentrator unavailable, relaying directly (fail open)");
    ctx.probe_now.notify_one();
    direct(lan, dst, ctx).await
}

async fn via_concentrator(
    lan: TcpStream,
    upstream: TcpStream,
    mptcp: Option<bool>,
    reply: &Message,
    ctx: &ConnContext,
) -> Summary {
    if mptcp == Some(false) {
        if ctx.stats.mptcp_fallback() {
            warn!(
                "an upstream connection fell back from MPTCP to plain TCP, so it is not \
                 bonded; check that the concentrator has MPTCP. Logged once, counted in \
                 mptcp_fallbacks."
            );
        } else {
            debug!("upstream connection fell back to plain TCP");
        }
    }
    if let Some(code) = reply.error_code() {
        ctx.stats.refused();
        info!(
            code = code.code(),
            "concentrator refused the connection ({code:?}), resetting"
        );
        sys::reset(lan);
        drop(upstream);
        return Summary {
            upstream: UpstreamKind::Concentrator,
            mptcp,
            up: 0,
            down: 0,
            close: Close::Refused(code),
        };
    }
    let stats = relay(lan, upstream, &ctx.relay).await;
    Summary {
        upstream: UpstreamKind::Concentrator,
        mptcp,
        up: stats.a_to_b,
        down: stats.b_to_a,
        close: Close::Relay(stats.close),
    }
}

async fn direct(lan: TcpStream, dst: SocketAddr, ctx: &ConnContext) -> Summary {
    ctx.stats.direct();
    let connected = tokio::time::timeout(ctx.direct_timeout, TcpStream::connect(dst)).await;
    let failed = Summary {
        upstream: UpstreamKind::Direct,
        mptcp: None,
        up: 0,
        down: 0,
        close: Close::DirectFailed,
    };
    match connected {
        Ok(Ok(stream)) => {
            let stats = relay(lan, stream, &ctx.relay).await;
            Summary {
                up: stats.a_to_b,
                down: stats.b_to_a,
                close: Close::Relay(stats.close),
                ..failed
            }
        }
        Ok(Err(error)) => {
            info!(%error, "direct connect failed, resetting");
            sys::reset(lan);
            failed
        }
        Err(_) => {
            info!(timeout = ?ctx.direct_timeout, "direct connect timed out, resetting");
            sys::reset(lan);
            failed
        }
    }
}
