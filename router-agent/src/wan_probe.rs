//! Per-WAN health probes: is the concentrator reachable THROUGH this WAN, both ways?
//!
//! [`probe_once`] sends one probe datagram (`mpbond_protocol::probe`: 26 + n bytes, MAC'd
//! with the client's key) over UDP to the concentrator's port, from a socket bound to
//! the WAN's device (`SO_BINDTODEVICE`, needs `CAP_NET_RAW`) and source address, so the
//! agent's `from ADDR lookup TABLE` rule routes it out of that WAN and nowhere else. The
//! concentrator answers with 25 bytes that echo the request's stamp under the same key.
//! No TCP handshake, no connection on the concentrator, no state there.
//!
//! The returned RTT is from the send to the verified reply. No verified reply within the
//! timeout is [`ProbeError::Timeout`], whichever direction lost the datagram (an
//! upstream-only and a downstream-only blackhole look the same). A datagram that is not
//! the reply (forged, or to another request) is ignored and the wait goes on. Every probe
//! reports its cost in bytes, IP and UDP headers included, sent and received.
//!
//! A concentrator that refuses the datagram (ICMP port unreachable: an older version
//! without the UDP responder) is still reachable through the WAN, so the probe falls
//! back to what older agents did: a plain TCP connection bound to the same device and
//! source, with a sealed Convert Info request ([`tcp_probe`]); its round trip is the
//! connect time, and its bytes are not counted. That keeps a WAN up while the agent is
//! upgraded before its concentrator.
//!
//! [`ProbeLoop`] is one WAN's probe task: it probes when the control plane tells it to
//! (the schedule is the pure state machine's, `model::wan_health`), with the timeout it
//! is given, and sends each result as a [`ProbeReport`]. It stops on its
//! [`CancellationToken`] or when either channel closes. A WAN whose address or device
//! changes gets a new loop (the agent cancels the old one).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mpbond_protocol::{probe, ErrorCode, Message};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument};

use crate::proxy::ConnParams;
use crate::upstream::{read_reply, Upstream, UpstreamError};

/// Why a WAN probe failed.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the concentrator's host refused the datagram (nothing listening on UDP)")]
    Refused(#[source] io::Error),
    #[error("the concentrator is unreachable through this WAN: {0}")]
    Unreachable(#[source] io::Error),
    #[error("the concentrator rejected the TCP probe with error {} ({:?})", .0.code(), .0)]
    Rejected(ErrorCode),
    #[error("source {src} and concentrator {dest} are of different address families")]
    Family { src: IpAddr, dest: SocketAddr },
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
            ProbeError::Rejected(_) => "rejected",
            ProbeError::Family { .. } | ProbeError::Io(_) => "local",
        }
    }

    /// Sort a socket error.
    fn from_io(error: io::Error) -> ProbeError {
        match error.raw_os_error() {
            Some(libc::ECONNREFUSED) => ProbeError::Refused(error),
            Some(
                libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EADDRNOTAVAIL
                | libc::ENODEV
                | libc::ENETDOWN,
            ) => ProbeError::Unreachable(error),
            _ => ProbeError::Io(error),
        }
    }
}

/// One probe's result and what it cost on the wire.
#[derive(Debug)]
pub struct ProbeOutcome {
    /// The round trip, or why the probe failed.
    pub result: Result<Duration, ProbeError>,
    /// Bytes sent and received, IP and UDP headers included.
    pub bytes: u64,
}

/// IP + UDP header bytes for a datagram to `dest`.
fn header_len(dest: SocketAddr) -> u64 {
    let len = if dest.is_ipv4() {
        probe::IPV4_UDP_HEADER
    } else {
        probe::IPV6_UDP_HEADER
    };
    len as u64
}

/// Probe the concentrator (`upstream.addr`, over UDP) once through the WAN on
/// `wan_device` with source address `src`, stamped `stamp_ms` (unix milliseconds,
/// strictly increasing per WAN), waiting up to `timeout` for the reply. An empty
/// `wan_device` binds to the source address only.
pub async fn probe_once(
    wan_device: &str,
    src: IpAddr,
    upstream: &Upstream,
    stamp_ms: u64,
    timeout: Duration,
) -> ProbeOutcome {
    let dest = upstream.addr;
    let mut bytes = 0;
    let result = async {
        if src.is_ipv4() != dest.is_ipv4() {
            return Err(ProbeError::Family { src, dest });
        }
        let socket = bound_socket(wan_device, src, dest).map_err(ProbeError::from_io)?;
        let request = probe::encode_request(&upstream.client_id, &upstream.key, stamp_ms);
        let tag = probe::request_tag(&request).unwrap_or_default();
        let started = Instant::now();
        socket.send(&request).await.map_err(ProbeError::from_io)?;
        bytes += request.len() as u64 + header_len(dest);
        let wait = async {
            let mut buf = [0u8; 64];
            loop {
                let len = socket.recv(&mut buf).await.map_err(ProbeError::from_io)?;
                bytes += len as u64 + header_len(dest);
                match probe::verify_reply(&buf[..len], &upstream.key, stamp_ms, &tag) {
                    Ok(()) => return Ok(started.elapsed()),
                    Err(error) => debug!(%error, "ignoring a datagram that is not the reply"),
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result,
            Err(_elapsed) => Err(ProbeError::Timeout(timeout)),
        }
    }
    .await;
    let result = match result {
        Err(ProbeError::Refused(_)) => {
            debug!("probe datagram refused; trying a TCP probe (an older concentrator?)");
            tcp_probe(wan_device, src, upstream, timeout).await
        }
        other => other,
    };
    ProbeOutcome { result, bytes }
}

/// The fallback probe: connect over plain TCP from `src` on `wan_device`, send a sealed
/// Info request, read the reply, all within `timeout`. The round trip is the connect
/// time. A refusal of the connection or of the request is [`ProbeError::Refused`] or
/// [`ProbeError::Rejected`].
pub async fn tcp_probe(
    wan_device: &str,
    src: IpAddr,
    upstream: &Upstream,
    timeout: Duration,
) -> Result<Duration, ProbeError> {
    let attempt = async {
        let (handshake, request) = upstream
            .seal(&Message::info())
            .map_err(|_| ProbeError::Io(io::Error::other("cannot seal the Info request")))?;
        let socket = match src {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(ProbeError::from_io)?;
        if !wan_device.is_empty() {
            socket
                .bind_device(Some(wan_device.as_bytes()))
                .map_err(ProbeError::from_io)?;
        }
        socket
            .bind(SocketAddr::new(src, 0))
            .map_err(ProbeError::from_io)?;
        let started = Instant::now();
        let mut stream = socket
            .connect(upstream.addr)
            .await
            .map_err(ProbeError::from_io)?;
        let rtt = started.elapsed();
        stream
            .write_all(&request)
            .await
            .map_err(ProbeError::from_io)?;
        match read_reply(&mut stream, handshake, timeout).await {
            Ok(_supported) => Ok(rtt),
            Err(UpstreamError::Refused(code)) => Err(ProbeError::Rejected(code)),
            Err(UpstreamError::Timeout(t)) => Err(ProbeError::Timeout(t)),
            Err(other) => Err(ProbeError::Io(io::Error::other(other.to_string()))),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ProbeError::Timeout(timeout)),
    }
}

/// A UDP socket bound to `device` (unless empty) and `src` (any port), connected to
/// `dest` (so only its datagrams are received).
fn bound_socket(device: &str, src: IpAddr, dest: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(dest);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if !device.is_empty() {
        socket.bind_device(Some(device.as_bytes()))?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::new(src, 0).into())?;
    socket.connect(&dest.into())?;
    UdpSocket::from_std(socket.into())
}

/// Unix milliseconds now, at least `after + 1`.
pub fn next_stamp(after: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    now.max(after.saturating_add(1))
}

/// One probe result, for the per-WAN state machine.
#[derive(Debug)]
pub struct ProbeReport {
    /// The WAN's name.
    pub wan: String,
    /// The round trip, or why the probe failed.
    pub result: Result<Duration, ProbeError>,
    /// Bytes the probe sent and received, headers included.
    pub bytes: u64,
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
    /// "Probe now, with this timeout", from the control plane.
    pub requests: mpsc::Receiver<Duration>,
    pub reports: mpsc::Sender<ProbeReport>,
}

impl ProbeLoop {
    /// Probe on each request until `shutdown` or until a channel closes.
    pub async fn run(self, shutdown: CancellationToken) {
        let ProbeLoop {
            target,
            params,
            mut requests,
            reports,
        } = self;
        let span = tracing::info_span!("wan_probe", wan = %target.wan, device = %target.device);
        async move {
            let mut stamp = 0;
            loop {
                let timeout = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    request = requests.recv() => match request {
                        Some(timeout) => timeout,
                        None => break,
                    },
                };
                let upstream = params.borrow().upstream.clone();
                stamp = next_stamp(stamp);
                let outcome = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    outcome = probe_once(&target.device, target.src, &upstream, stamp, timeout) => outcome,
                };
                match &outcome.result {
                    Ok(rtt) => debug!(?rtt, "probe answered"),
                    Err(error) => debug!(%error, kind = error.kind(), "probe failed"),
                }
                let report = ProbeReport {
                    wan: target.wan.clone(),
                    result: outcome.result,
                    bytes: outcome.bytes,
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
