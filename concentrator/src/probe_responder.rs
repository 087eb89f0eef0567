//! The UDP responder for WAN probe datagrams (`mpbond_protocol::probe`).
//!
//! One UDP socket per listen address, on the same port number as the TCP listener
//! (`[probe] port` to choose another, `[probe] enabled = false` to turn it off). Each
//! datagram is checked by [`mpbond_protocol::probe::verify_request`] against the live
//! client table and the auth window; a valid request gets its 25-byte reply, anything
//! else gets silence. Nothing is kept per probe. [`SourceLimiter`] caps the answers per
//! source address (a token bucket), so the responder cannot be used as a reflector,
//! and the reply is always smaller than the request. Every datagram bumps
//! `mpbond_probe_datagrams_total{result=...}`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mpbond_protocol::probe;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::reload::State;

/// Largest datagram read: a request is at most 58 bytes; longer ones are malformed.
const RECV_BUF: usize = 128;
/// Sources remembered by the limiter before idle ones are dropped.
pub const MAX_SOURCES: usize = 16_384;

/// `[probe]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Answer probe datagrams at all.
    pub enabled: bool,
    /// The UDP port; `None`: each listen address's own port.
    pub port: Option<u16>,
    /// Answers per second per source address (also the burst).
    pub rate_per_source: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            enabled: true,
            port: None,
            rate_per_source: 10,
        }
    }
}

/// A token bucket per source address: `rate` answers a second, bursts of `rate`. Pure:
/// time is passed in. Bounded: past [`MAX_SOURCES`] entries the full buckets are dropped
/// (a full bucket is the same as a new one), and if none is full, all of them.
#[derive(Debug)]
pub struct SourceLimiter {
    rate: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl SourceLimiter {
    pub fn new(rate_per_source: u32) -> SourceLimiter {
        SourceLimiter {
            rate: f64::from(rate_per_source.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether `source` may get an answer at `now` (and take a token if so).
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&source) {
            let rate = self.rate;
            self.buckets
                .retain(|_, (tokens, at)| refill(*tokens, *at, now, rate) < rate);
            if self.buckets.len() >= MAX_SOURCES {
                self.buckets.clear();
            }
        }
        let rate = self.rate;
        let (tokens, at) = self.buckets.entry(source).or_insert((rate, now));
        let available = refill(*tokens, *at, now, rate);
        *at = now;
        if available >= 1.0 {
            *tokens = available - 1.0;
            true
        } else {
            *tokens = available;
            false
        }
    }

    /// Sources remembered now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

fn refill(tokens: f64, at: Instant, now: Instant, rate: f64) -> f64 {
    let elapsed = now.saturating_duration_since(at).as_secs_f64();
    (tokens + elapsed * rate).min(rate)
}

/// What to do with one datagram: the reply to send, or the metrics label of the silence.
pub(crate) fn answer(
    state: &State,
    limiter: &mut SourceLimiter,
    datagram: &[u8],
    source: IpAddr,
    now: Instant,
    now_unix_ms: u64,
) -> Result<[u8; probe::REPLY_LEN], &'static str> {
    let live = state.live();
    let window_ms = live.config.limits.auth_window_secs.saturating_mul(1000);
    let mut key = None;
    let request = probe::verify_request(datagram, now_unix_ms, window_ms, |id| {
        key = live.clients.get(id).cloned();
        key.clone()
    })
    .map_err(|e| e.reason())?;
    if !limiter.allow(source, now) {
        return Err("rate_limited");
    }
    let key = key.ok_or("unknown_client")?;
    Ok(probe::encode_reply(&key, &request))
}

/// Bind the probe sockets: one per TCP listen address `listening` (with its real
/// port), on `config.port` when set. A socket that cannot be bound is logged and
/// skipped: TCP service does not depend on it.
pub fn bind(listening: &[SocketAddr], config: &ProbeConfig) -> Vec<(SocketAddr, UdpSocket)> {
    if !config.enabled {
        return Vec::new();
    }
    let mut out = Vec::new();
    for addr in listening {
        let addr = SocketAddr::new(addr.ip(), config.port.unwrap_or(addr.port()));
        match bind_one(addr) {
            Ok(socket) => match socket.local_addr() {
                Ok(local) => {
                    tracing::info!(%local, "answering probe datagrams");
                    out.push((local, socket));
                }
                Err(error) => warn!(%addr, %error, "probe socket has no address"),
            },
            Err(error) => {
                warn!(%addr, %error, "cannot bind the probe socket; probes over UDP are not answered there")
            }
        }
    }
    out
}

fn bind_one(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        // As the TCP listeners: `[::]` serves IPv6 only, `0.0.0.0` serves IPv4.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Answer probe datagrams on `socket` until `shutdown`.
pub(crate) async fn serve(
    socket: UdpSocket,
    state: Arc<State>,
    rate_per_source: u32,
    shutdown: CancellationToken,
) {
    let mut limiter = SourceLimiter::new(rate_per_source);
    let mut buf = [0u8; RECV_BUF];
    loop {
        let (len, from) = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok(got) => got,
                Err(error) => {
                    // ICMP errors of earlier replies surface here; they are not fatal.
                    debug!(%error, "probe socket receive error");
                    continue;
                }
            },
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        let now_ms = u64::try_from(now_ms).unwrap_or(u64::MAX);
        let datagram = &buf[..len];
        match answer(
            &state,
            &mut limiter,
            datagram,
            from.ip(),
            Instant::now(),
            now_ms,
        ) {
            Ok(reply) => {
                state.metrics.probe_datagram("answered");
                if let Err(error) = socket.send_to(&reply, from).await {
                    debug!(%from, %error, "cannot send a probe reply");
                }
            }
            Err(reason) => state.metrics.probe_datagram(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_source_gets_its_rate_and_no_more_and_others_are_not_affected() {
        let mut l = SourceLimiter::new(4);
        let t0 = Instant::now();
        let allowed = (0..10).filter(|_| l.allow(A, t0)).count();
        assert_eq!(allowed, 4, "the burst is the rate");
        assert!(l.allow(B, t0), "another source has its own bucket");
        assert!(!l.allow(A, t0 + Duration::from_millis(100)));
        assert!(l.allow(A, t0 + Duration::from_millis(300)), "refilled");
        let later = t0 + Duration::from_secs(10);
        let allowed = (0..10).filter(|_| l.allow(A, later)).count();
        assert_eq!(allowed, 4, "never more than the burst");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut l = SourceLimiter::new(1);
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(l.allow(ip, t0));
        }
        assert!(l.len() <= MAX_SOURCES);
    }
}
