//! One redirected LAN connection.
//!
//! 1. The original destination comes from conntrack (`SO_ORIGINAL_DST`).
//! 2. The agent connects to the concentrator over MPTCP with a sealed Convert Connect
//!    request in the SYN (TFO), without waiting for LAN data. When the first WAN gives no
//!    SYN-ACK within the core's bound, a second attempt starts from the next WAN
//!    ([`super::hedge`]); the LAN bytes go only to the one that completes first.
//! 3. LAN bytes that arrive before the Convert reply go upstream at once, right behind
//!    the request (up to [`EARLY_MAX`] in all, kept until the reply). They
//!    then cross with the handshake's final ACK: the concentrator, which waits for that
//!    ACK before it replies, has the request in hand as soon as it has connected, so the
//!    answer is not held back a round trip (as it would be if the bytes waited for the
//!    reply). The kept copy lets any failure up to the reply still fail open: the direct
//!    connection gets the same bytes first. If every subflow of the connection is on a
//!    WAN that goes down meanwhile (or on a suspect WAN, and failing: stalled, or its
//!    keepalive probe unanswered), it moves to a
//!    live WAN and sends them again ([`converse`], [`super::abandon`]).
//! 4. It reads the Convert reply before relaying downstream. An Error TLV resets the LAN
//!    connection (the client sees RST, not FIN). An OK reply starts the splice relay.
//! 5. If the concentrator cannot be reached or does not answer, the agent connects to the
//!    destination directly (plain TCP from the router), relays that, and asks the health
//!    task for an immediate probe. If that fails too, the LAN connection is reset.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use mpbond_protocol::{ErrorCode, Message};
use mpbond_relay::relay::{relay, relay_borrowed, CloseReason, RelayOpts};
use mpbond_relay::sys;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, info, info_span, warn, Instrument};

use super::abandon::moved_off;
use super::hedge::{open_hedged, Opened};
use super::{ConnContext, ConnParams};
use crate::core::buffers::for_connection;
use crate::core::Input;
use crate::upstream::{fastopen_evidence, read_reply, UpstreamError};

/// Most LAN bytes sent ahead of the Convert reply (and kept for a fail-open replay).
/// An upload must not stall on the reply: it comes a round trip after the SYN-ACK plus the
/// concentrator's connect to the destination and its 20 ms hold for the destination's
/// first bytes (`REPLY_HOLD`), while slow start lets the first subflow send 14 KiB and
/// then 28 KiB a round trip, and each joined subflow 14 KiB more. 16 KiB held uploads
/// 14–26 ms on `three`'s 10 ms line (docs/PERFORMANCE.md, issue 11, round 17); 256 KiB
/// covers the ramp of a 100 Mbit/s bond over that time. The copy grows with what the LAN
/// sends ([`EARLY_READ`] at a time), so a request-and-answer connection's copy stays
/// small. It must not exceed what a refusing concentrator reads and discards before it
/// closes (`LINGER_BYTES` in concentrator/src/session.rs, also 256 KiB): past that its
/// close becomes a reset, and the agent would fail open instead of honouring the refusal.
pub const EARLY_MAX: usize = 256 * 1024;
/// The most LAN bytes one read before the reply takes (and the copy grows by).
const EARLY_READ: usize = 16 * 1024;
/// Most times one connection moves to another WAN while it waits for its reply.
pub const MAX_MOVES: u32 = 2;
/// How often [`write_early`] looks again when no writable wakeup came.
const EARLY_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

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
    let params = ctx.params();
    let upstream = &params.upstream;
    let mut early = Vec::new();
    let failure = match open_hedged(upstream, &Message::connect(dst), ctx).await {
        Ok(opened) => match converse(&lan, dst, opened, &mut early, ctx, &params).await {
            Ok(Conversed {
                stream,
                mptcp,
                refused,
                via,
            }) => {
                // Asked again now that the handshake is surely complete.
                let mptcp = if mptcp {
                    sys::is_mptcp(&stream)
                } else {
                    Some(false)
                };
                let ahead = early.len() as u64;
                drop(early);
                let _via = ctx.stats.via(via);
                return via_concentrator(lan, stream, mptcp, refused, ahead, ctx, &params).await;
            }
            Err(error) => error,
        },
        Err(error) => error,
    };
    info!(%failure, "concentrator unavailable, relaying directly (fail open)");
    ctx.tell(Input::UpstreamFailed);
    direct(lan, dst, early, ctx, &params).await
}

/// A connection whose Convert reply came.
struct Conversed {
    stream: TcpStream,
    /// The upstream connection started as MPTCP.
    mptcp: bool,
    /// The concentrator's refusal, if it refused.
    refused: Option<ErrorCode>,
    /// The concentrator it goes through.
    via: SocketAddr,
}

/// Send the LAN's first bytes behind the request and read the Convert reply. While it
/// waits, a connection whose subflows are all on a WAN the core abandons (or on a suspect
/// one, and failing: stalled, or its keepalive probe unanswered) moves to a live one ([`super::abandon`]): the old connection is reset, a new one opens from the
/// published source (hedged as usual) with a freshly sealed request, and every LAN byte
/// sent so far (`early`, all of it kept until the reply) goes again, first. No reply
/// byte has been relayed, so the LAN client sees its stream once; the destination may
/// see the first bytes on two connections when the old one's did arrive (a
/// downstream-only black hole), as with fail open. At most [`MAX_MOVES`] moves.
async fn converse(
    lan: &TcpStream,
    dst: SocketAddr,
    opened: Opened,
    early: &mut Vec<u8>,
    ctx: &ConnContext,
    params: &ConnParams,
) -> Result<Conversed, UpstreamError> {
    let (mut connected, mut handshake) = opened;
    let mut via = params.upstream.addr;
    let mut moves = 0;
    loop {
        if let Some(evidence) = fastopen_evidence(&connected) {
            ctx.tell(Input::UpstreamConnected(evidence));
        }
        let mptcp = connected.mptcp;
        let mut stream = connected.stream;
        let fd = stream.as_raw_fd();
        let initial = stream.local_addr().ok().map(|a| a.ip());
        let reply_timeout = params.reply_timeout;
        let outcome = {
            let talk = async {
                // Bounded too: a moved connection's copy (up to `EARLY_MAX`) may not fit
                // its new socket's send buffer, and a WAN that dies after the handshake
                // would otherwise hold it until TCP gives up.
                match tokio::time::timeout(reply_timeout, write_early(&stream, early)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Err(UpstreamError::Connect(error)),
                    Err(_) => return Err(UpstreamError::Timeout(reply_timeout)),
                }
                match tokio::time::timeout(reply_timeout, send_early(lan, &stream, early)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Err(UpstreamError::Connect(error)),
                    Err(_) => return Err(UpstreamError::Timeout(reply_timeout)),
                }
                match read_reply(&mut stream, handshake, reply_timeout).await {
                    Ok(_connected) => Ok(None),
                    Err(UpstreamError::Refused(code)) => Ok(Some(code)),
                    Err(error) => Err(error),
                }
            };
            let watch = ctx.params.clone();
            tokio::select! {
                replied = talk => Ok(replied),
                to = moved_off(fd, initial, watch), if moves < MAX_MOVES => Err(to),
            }
        };
        match outcome {
            Ok(Ok(refused)) => {
                return Ok(Conversed {
                    stream,
                    mptcp,
                    refused,
                    via,
                })
            }
            Ok(Err(error)) => {
                sys::reset(stream);
                return Err(error);
            }
            Err(to) => {
                moves += 1;
                ctx.stats.moved();
                info!(
                    from = ?initial,
                    to = ?to.upstream.source,
                    sent = early.len(),
                    "the WAN this connection waited on is down or failing: moving it before any reply"
                );
                sys::reset(stream);
                (connected, handshake) =
                    open_hedged(&to.upstream, &Message::connect(dst), ctx).await?;
                via = to.upstream.addr;
            }
        }
    }
}

/// Until the concentrator's reply is readable, forward what the LAN client sends (up to
/// [`EARLY_MAX`] in all, `early` included) to `upstream` behind the Convert request (the
/// first write waits for the handshake), keeping it in `early` for a move or a
/// fail-open replay. A byte is kept before it is written, so a cancelled call loses
/// none. The LAN's end of stream or error is left for the relay to see.
async fn send_early(lan: &TcpStream, upstream: &TcpStream, early: &mut Vec<u8>) -> io::Result<()> {
    while early.len() < EARLY_MAX {
        tokio::select! {
            biased;
            ready = upstream.readable() => {
                ready?;
                return Ok(());
            }
            ready = lan.readable() => {
                if ready.is_err() {
                    return Ok(());
                }
            }
        }
        let start = early.len();
        early.resize(EARLY_MAX.min(start + EARLY_READ), 0);
        let read = lan.try_read(&mut early[start..]);
        early.truncate(start + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => return Ok(()),
            Ok(_) => write_early(upstream, &early[start..]).await?,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Write `buf` to `upstream`, which may still be in SYN_SENT. Linux 6.18 sometimes
/// misses the writable wakeup when a Fast Open MPTCP connection becomes established
/// (about 1 in 300 connections in the test bed hung until the reply timeout), so the
/// wait for writability is retried every [`EARLY_RETRY`] instead of trusted alone.
async fn write_early(upstream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match upstream.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = tokio::time::timeout(EARLY_RETRY, upstream.writable()).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn via_concentrator(
    lan: TcpStream,
    upstream: TcpStream,
    mptcp: Option<bool>,
    refused: Option<ErrorCode>,
    ahead: u64,
    ctx: &ConnContext,
    params: &ConnParams,
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
    if let Some(code) = refused {
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
            up: ahead,
            down: 0,
            close: Close::Refused(code),
        };
    }
    // Sampled by the passive health check while it relays: the registry keeps the raw
    // number, so the socket closes only after the guard took it out.
    let live = ctx.stats.upstreams.register(
        &upstream,
        params.upstream.fastopen,
        for_connection(params.upstream.buffers, params.upstream.fastopen).rcvbuf,
    );
    let paced;
    let opts = match live.pace() {
        Some(pace) => {
            paced = RelayOpts {
                pace: Some(pace),
                ..params.relay.clone()
            };
            &paced
        }
        None => &params.relay,
    };
    let stats = relay_borrowed(&lan, &upstream, opts).await;
    drop(live);
    drop((lan, upstream));
    Summary {
        upstream: UpstreamKind::Concentrator,
        mptcp,
        up: ahead + stats.a_to_b,
        down: stats.b_to_a,
        close: Close::Relay(stats.close),
    }
}

/// Fail open: connect to `dst` directly, replay `early` (the LAN bytes already sent
/// to the concentrator), then relay.
async fn direct(
    lan: TcpStream,
    dst: SocketAddr,
    early: Vec<u8>,
    ctx: &ConnContext,
    params: &ConnParams,
) -> Summary {
    ctx.stats.direct();
    let connected = tokio::time::timeout(params.direct_timeout, TcpStream::connect(dst)).await;
    let failed = Summary {
        upstream: UpstreamKind::Direct,
        mptcp: None,
        up: 0,
        down: 0,
        close: Close::DirectFailed,
    };
    match connected {
        Ok(Ok(mut stream)) => {
            if let Err(error) = stream.write_all(&early).await {
                info!(%error, "direct connection failed while replaying, resetting");
                sys::reset(lan);
                return failed;
            }
            // The copy (up to `EARLY_MAX`) is not needed for the relay's lifetime.
            let replayed = early.len() as u64;
            drop(early);
            let stats = relay(lan, stream, &params.relay).await;
            Summary {
                up: replayed + stats.a_to_b,
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
            info!(timeout = ?params.direct_timeout, "direct connect timed out, resetting");
            sys::reset(lan);
            failed
        }
    }
}
