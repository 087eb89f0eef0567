//! Counters and their Prometheus text rendering.
//!
//! Hot counters are atomics. Labelled counters (per client, per auth failure reason, per
//! connect error code) live in small maps behind a `Mutex`; the per-client byte counts are
//! updated once per connection, when it closes. [`Metrics::render`] produces the text
//! exposition format served by [`crate::metrics_http`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::source_limit::SourceRefusal;

/// Upper bounds (seconds) of the handshake latency histogram buckets.
pub const HANDSHAKE_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// All concentrator metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    active: AtomicU64,
    total: AtomicU64,
    policy_refusals: AtomicU64,
    limit_refusals: AtomicU64,
    source_unauthenticated_refusals: AtomicU64,
    source_rate_refusals: AtomicU64,
    malformed: AtomicU64,
    handshake_timeouts: AtomicU64,
    early_closes: AtomicU64,
    quiet_refusals: AtomicU64,
    scrape_timeouts: AtomicU64,
    fallbacks: AtomicU64,
    reloads: AtomicU64,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    probe_datagrams: Mutex<BTreeMap<&'static str, u64>>,
    connect_errors: Mutex<BTreeMap<u8, u64>>,
    bytes: Mutex<BTreeMap<String, ClientBytes>>,
    handshake: Histogram,
    /// `mpbond_udp_*`.
    pub udp: crate::udp::UdpMetrics,
    /// `mpbond_socks_*`.
    pub socks: crate::socks::SocksMetrics,
}

#[derive(Debug, Default, Clone, Copy)]
struct ClientBytes {
    up: u64,
    down: u64,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; HANDSHAKE_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    *map.entry(key).or_insert(0) += 1;
}

impl Metrics {
    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection ended (whatever the outcome).
    pub fn connection_closed(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Bytes relayed for one connection of `client`: `up` is client → destination.
    pub fn add_bytes(&self, client: &str, up: u64, down: u64) {
        let mut map = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(client.to_owned()).or_default();
        entry.up = entry.up.saturating_add(up);
        entry.down = entry.down.saturating_add(down);
    }

    /// Authentication failed; `reason` is `AuthError::reason()`.
    pub fn auth_failure(&self, reason: &'static str) {
        bump(&self.auth_failures, reason);
    }

    /// A probe datagram arrived; `result` is `answered`, `rate_limited` or
    /// `probe::ProbeError::reason()`.
    pub fn probe_datagram(&self, result: &'static str) {
        bump(&self.probe_datagrams, result);
    }

    /// Probe datagrams counted so far with `result`.
    pub fn probe_datagrams(&self, result: &str) -> u64 {
        let map = self
            .probe_datagrams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(result).copied().unwrap_or(0)
    }

    /// The destination policy refused a connection.
    pub fn policy_refusal(&self) {
        self.policy_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// A Convert message could not be decoded.
    pub fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// A client sent no whole Convert request within the handshake timeout.
    pub fn handshake_timeout(&self) {
        self.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// A client closed (or reset) before a whole Convert request arrived.
    pub fn early_close(&self) {
        self.early_closes.fetch_add(1, Ordering::Relaxed);
    }

    /// Quiet mode closed an unauthenticated request without an answer.
    pub fn quiet_refusal(&self) {
        self.quiet_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// A metrics request was not read and answered within its deadline.
    pub fn scrape_timeout(&self) {
        self.scrape_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection limit refused a connection.
    pub fn limit_refusal(&self) {
        self.limit_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// A per-source limit refused a connection before it took a slot.
    pub fn source_limit_refusal(&self, hit: SourceRefusal) {
        let counter = match hit {
            SourceRefusal::Unauthenticated => &self.source_unauthenticated_refusals,
            SourceRefusal::Rate => &self.source_rate_refusals,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// An accepted connection was plain TCP (MPTCP stripped or not used).
    pub fn fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// A successful config reload.
    pub fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// Connecting to a destination failed and `code` was sent back.
    pub fn connect_error(&self, code: u8) {
        bump(&self.connect_errors, code);
    }

    /// Time from accept to the Convert reply.
    pub fn observe_handshake(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in HANDSHAKE_BUCKETS.iter().zip(&self.handshake.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.handshake.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.handshake
            .sum_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// Number of connections currently open.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        simple(
            &mut out,
            "mpbond_connections_active",
            "gauge",
            "Connections open now.",
            load(&self.active),
        );
        simple(
            &mut out,
            "mpbond_connections_total",
            "counter",
            "Connections accepted.",
            load(&self.total),
        );
        head(
            &mut out,
            "mpbond_bytes_total",
            "counter",
            "Bytes relayed, per client; up is client to destination.",
        );
        {
            let map = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
            for (client, b) in map.iter() {
                let c = escape(client);
                let _ = writeln!(
                    out,
                    "mpbond_bytes_total{{client=\"{c}\",direction=\"up\"}} {}",
                    b.up
                );
                let _ = writeln!(
                    out,
                    "mpbond_bytes_total{{client=\"{c}\",direction=\"down\"}} {}",
                    b.down
                );
            }
        }
        head(
            &mut out,
            "mpbond_auth_failures_total",
            "counter",
            "Convert messages that failed authentication, by reason.",
        );
        {
            let map = self
                .auth_failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (reason, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "mpbond_auth_failures_total{{reason=\"{}\"}} {n}",
                    escape(reason)
                );
            }
        }
        head(
            &mut out,
            "mpbond_probe_datagrams_total",
            "counter",
            "WAN probe datagrams received over UDP, by result.",
        );
        {
            let map = self
                .probe_datagrams
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (result, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "mpbond_probe_datagrams_total{{result=\"{}\"}} {n}",
                    escape(result)
                );
            }
        }
        simple(
            &mut out,
            "mpbond_policy_refusals_total",
            "counter",
            "Destinations refused by policy.",
            load(&self.policy_refusals),
        );
        simple(
            &mut out,
            "mpbond_limit_refusals_total",
            "counter",
            "Connections refused by a connection limit.",
            load(&self.limit_refusals),
        );
        head(
            &mut out,
            "mpbond_source_limit_refusals_total",
            "counter",
            "Connections reset before authentication by a per-source limit, by limit.",
        );
        for (hit, counter) in [
            (
                SourceRefusal::Unauthenticated,
                &self.source_unauthenticated_refusals,
            ),
            (SourceRefusal::Rate, &self.source_rate_refusals),
        ] {
            let _ = writeln!(
                out,
                "mpbond_source_limit_refusals_total{{limit=\"{}\"}} {}",
                hit.as_str(),
                load(counter)
            );
        }
        simple(
            &mut out,
            "mpbond_malformed_total",
            "counter",
            "Convert messages that could not be decoded.",
            load(&self.malformed),
        );
        simple(
            &mut out,
            "mpbond_handshake_timeouts_total",
            "counter",
            "Connections that sent no whole Convert request within the handshake timeout.",
            load(&self.handshake_timeouts),
        );
        simple(
            &mut out,
            "mpbond_early_closes_total",
            "counter",
            "Connections closed by the client before a whole Convert request.",
            load(&self.early_closes),
        );
        simple(
            &mut out,
            "mpbond_quiet_refusals_total",
            "counter",
            "Unauthenticated requests closed without an answer (quiet mode).",
            load(&self.quiet_refusals),
        );
        simple(
            &mut out,
            "mpbond_scrape_timeouts_total",
            "counter",
            "Metrics requests not read and answered within their deadline.",
            load(&self.scrape_timeouts),
        );
        simple(
            &mut out,
            "mpbond_fallbacks_total",
            "counter",
            "Accepted connections that were plain TCP, not MPTCP.",
            load(&self.fallbacks),
        );
        simple(
            &mut out,
            "mpbond_reloads_total",
            "counter",
            "Successful configuration reloads.",
            load(&self.reloads),
        );
        head(
            &mut out,
            "mpbond_connect_errors_total",
            "counter",
            "Failed destination connects, by RFC 8803 error code sent.",
        );
        {
            let map = self
                .connect_errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (code, n) in map.iter() {
                let _ = writeln!(out, "mpbond_connect_errors_total{{code=\"{code}\"}} {n}");
            }
        }
        head(
            &mut out,
            "mpbond_handshake_seconds",
            "histogram",
            "Time from accept to the Convert reply.",
        );
        for (bound, bucket) in HANDSHAKE_BUCKETS.iter().zip(&self.handshake.buckets) {
            let _ = writeln!(
                out,
                "mpbond_handshake_seconds_bucket{{le=\"{bound}\"}} {}",
                load(bucket)
            );
        }
        let count = load(&self.handshake.count);
        let _ = writeln!(
            out,
            "mpbond_handshake_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = load(&self.handshake.sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "mpbond_handshake_seconds_sum {sum}");
        let _ = writeln!(out, "mpbond_handshake_seconds_count {count}");
        self.udp.render(&mut out);
        self.socks.render(&mut out);
        out
    }
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn simple(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    head(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Escape a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::default();
        m.connection_opened();
        m.connection_opened();
        m.connection_closed();
        m.add_bytes("home", 100, 2000);
        m.add_bytes("home", 1, 1);
        m.auth_failure("bad_tag");
        m.auth_failure("bad_tag");
        m.auth_failure("replay");
        m.policy_refusal();
        m.fallback();
        m.handshake_timeout();
        m.early_close();
        m.early_close();
        m.quiet_refusal();
        m.scrape_timeout();
        m.connect_error(96);
        m.observe_handshake(Duration::from_millis(3));
        m.observe_handshake(Duration::from_secs(10));
        let text = m.render();
        for line in [
            "mpbond_connections_active 1",
            "mpbond_connections_total 2",
            "mpbond_bytes_total{client=\"home\",direction=\"up\"} 101",
            "mpbond_bytes_total{client=\"home\",direction=\"down\"} 2001",
            "mpbond_auth_failures_total{reason=\"bad_tag\"} 2",
            "mpbond_auth_failures_total{reason=\"replay\"} 1",
            "mpbond_policy_refusals_total 1",
            "mpbond_fallbacks_total 1",
            "mpbond_handshake_timeouts_total 1",
            "mpbond_early_closes_total 2",
            "mpbond_quiet_refusals_total 1",
            "mpbond_scrape_timeouts_total 1",
            "mpbond_connect_errors_total{code=\"96\"} 1",
            "mpbond_handshake_seconds_bucket{le=\"0.001\"} 0",
            "mpbond_handshake_seconds_bucket{le=\"0.005\"} 1",
            "mpbond_handshake_seconds_bucket{le=\"5\"} 1",
            "mpbond_handshake_seconds_bucket{le=\"+Inf\"} 2",
            "mpbond_handshake_seconds_sum 10.003",
            "mpbond_handshake_seconds_count 2",
            "# TYPE mpbond_handshake_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
