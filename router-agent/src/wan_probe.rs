//! Per-WAN health probes: is the concentrator reachable THROUGH this WAN?
//!
//! [`probe_once`] opens a plain TCP socket (not MPTCP: an MPTCP connection could move to
//! another path and hide a dead WAN) bound to the WAN's device (`SO_BINDTODEVICE`, needs
//! `CAP_NET_RAW`) and source address, so the agent's `from ADDR lookup TABLE` rule routes
//! it out of that WAN and nowhere else. It connects to the concentrator, sends a sealed
//! Convert Info request ([`Upstream::seal`], the same cookie the proxy uses) and reads
//! the reply: a Supported TCP Extensions TLV is success, an Error TLV is
//! [`ProbeError::Rejected`] with its code (32 for a wrong key).
//!
//! # What the RTT is
//!
//! The returned duration is the **connect time**: from `connect()` to the completed
//! handshake, one SYN / SYN-ACK round trip over the WAN. It leaves out the concentrator's
//! cookie check and scheduling, so it is comparable between WANs and over time. Fast Open
//! is not used: with it the handshake would be folded into the first write, and a
//! plain-TCP probe gains nothing from it. The whole probe (connect, request, reply) must
//! finish within `timeout`.
//!
//! [`ProbeLoop`] runs [`probe_once`] for one WAN every `interval` and sends each result,
//! as a [`ProbeReport`], into a channel for the pure per-WAN state machine. It stops on
//! its [`CancellationToken`] or when the receiver is gone. A WAN whose address or device
//! changes gets a new loop (the agent cancels the old one).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpbond_protocol::{ErrorCode, Message};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument};

use crate::proxy::ConnParams;
use crate::upstream::{read_reply, Upstream, UpstreamError};

/// Why a WAN probe failed.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the concentrator refused the connection (nothing listening)")]
    Refused(#[source] io::Error),
    #[error("the concentrator is unreachable through this WAN: {0}")]
    Unreachable(#[source] io::Error),
    #[error("the concentrator rejected the probe with error {} ({:?})", .0.code(), .0)]
    Rejected(ErrorCode),
    #[error(
        "the concentrator closed the connection without answering (it does that to requests \
         it cannot authenticate: check the client id, the key and the router's clock)"
    )]
    Silent(#[source] UpstreamError),
    #[error("bad reply from the concentrator: {0}")]
    BadReply(#[source] UpstreamError),
    #[error("the concentrator's reply has no Supported TCP Extensions TLV")]
    NoExtensions,
    #[error("source {src} and concentrator {dest} are of different address families")]
    Family { src: IpAddr, dest: SocketAddr },
    #[error("cannot seal the Info request: {0}")]
    Seal(#[source] UpstreamError),
    #[error("probe socket error: {0}")]
    Io(#[source] io::Error),
}

impl ProbeError {
    /// A short snake_case label, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeError::Timeout(_) => "timeout",
            ProbeError::Refused(_) => "refused",
            ProbeError::Unreachable(_) => "unreachable",
            ProbeError::Rejected(_) | ProbeError::Silent(_) => "rejected",
            ProbeError::BadReply(_) | ProbeError::NoExtensions => "bad_reply",
            ProbeError::Family { .. } | ProbeError::Seal(_) | ProbeError::Io(_) => "local",
        }
    }

    /// Sort a socket error from connect or setup.
    fn from_io(error: io::Error, timeout: Duration) -> ProbeError {
        match error.raw_os_error() {
            Some(libc::ECONNREFUSED) => ProbeError::Refused(error),
            Some(
                libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EADDRNOTAVAIL
                | libc::ENODEV
                | libc::ENETDOWN,
            ) => ProbeError::Unreachable(error),
            Some(libc::ETIMEDOUT) => ProbeError::Timeout(timeout),
            _ => ProbeError::Io(error),
        }
    }
}

/// Probe the concentrator (`upstream.addr`) once through the WAN on `wan_device` with
/// source address `src`, within `timeout` overall. Returns the connect time (see the
/// module docs). An empty `wan_device` binds to the source address only.
pub async fn probe_once(
    wan_device: &str,
    src: IpAddr,
    upstream: &Upstream,
    timeout: Duration,
) -> Result<Duration, ProbeError> {
    match tokio::time::timeout(timeout, probe_inner(wan_device, src, upstream, timeout)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ProbeError::Timeout(timeout)),
    }
}

async fn probe_inner(
    wan_device: &str,
    src: IpAddr,
    upstream: &Upstream,
    timeout: Duration,
) -> Result<Duration, ProbeError> {
    let dest = upstream.addr;
    if src.is_ipv4() != dest.is_ipv4() {
        return Err(ProbeError::Family { src, dest });
    }
    let (handshake, request) = upstream.seal(&Message::info()).map_err(ProbeError::Seal)?;
    let socket = bound_socket(wan_device, src).map_err(|e| ProbeError::from_io(e, timeout))?;
    let started = Instant::now();
    let mut stream: TcpStream = socket
        .connect(dest)
        .await
        .map_err(|e| ProbeError::from_io(e, timeout))?;
    let rtt = started.elapsed();
    stream
        .write_all(&request)
        .await
        .map_err(|e| ProbeError::from_io(e, timeout))?;
    match read_reply(&mut stream, handshake, timeout).await {
        Ok(_supported) => Ok(rtt),
        Err(UpstreamError::Refused(code)) => Err(ProbeError::Rejected(code)),
        Err(UpstreamError::NoExtensions) => Err(ProbeError::NoExtensions),
        Err(UpstreamError::Timeout(t)) => Err(ProbeError::Timeout(t)),
        Err(silent) if silent.is_silent_close() => Err(ProbeError::Silent(silent)),
        Err(other) => Err(ProbeError::BadReply(other)),
    }
}

/// A plain TCP socket bound to `device` (unless empty) and `src` (any port).
fn bound_socket(device: &str, src: IpAddr) -> io::Result<TcpSocket> {
    let socket = match src {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if !device.is_empty() {
        socket.bind_device(Some(device.as_bytes()))?;
    }
    socket.bind(SocketAddr::new(src, 0))?;
    Ok(socket)
}

/// One probe result, for the per-WAN state machine.
#[derive(Debug)]
pub struct ProbeReport {
    /// The WAN's name.
    pub wan: String,
    /// The connect time, or why the probe failed.
    pub result: Result<Duration, ProbeError>,
    /// When the probe finished.
    pub at: Instant,
}

impl ProbeReport {
    /// The outcome as the per-WAN state machine takes it
    /// (`model::wan_health::ProbeState::record`): `Some(rtt)` or `None` for a failure.
    pub fn outcome(&self) -> Option<Duration> {
        self.result.as_ref().ok().copied()
    }
}

pub use crate::model::wan_health::ProbeTarget;

/// The probe task of one WAN.
#[derive(Debug)]
pub struct ProbeLoop {
    pub target: ProbeTarget,
    /// The current connection parameters: each probe uses the concentrator and key as
    /// they are when it starts.
    pub params: watch::Receiver<Arc<ConnParams>>,
    pub reports: mpsc::Sender<ProbeReport>,
}

impl ProbeLoop {
    /// Probe at once, then every `interval` (a slow probe delays the next one rather
    /// than bunching them), until `shutdown` or until the receiver is dropped.
    pub async fn run(self, shutdown: CancellationToken) {
        let ProbeLoop {
            target,
            params,
            reports,
        } = self;
        let span = tracing::info_span!("wan_probe", wan = %target.wan, device = %target.device);
        async move {
            let mut ticker = tokio::time::interval(target.interval.max(Duration::from_millis(1)));
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let upstream = params.borrow().upstream.clone();
                let result = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    result = probe_once(&target.device, target.src, &upstream, target.timeout) => result,
                };
                match &result {
                    Ok(rtt) => debug!(?rtt, "probe answered"),
                    Err(error) => debug!(%error, kind = error.kind(), "probe failed"),
                }
                let report = ProbeReport {
                    wan: target.wan.clone(),
                    result,
                    at: Instant::now(),
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    sent = reports.send(report) => if sent.is_err() { break },
                }
            }
            debug!("probe loop stopped");
        }
        .instrument(span)
        .await
    }

    /// [`ProbeLoop::run`] on a new task.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }
}
