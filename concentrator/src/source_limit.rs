//! Per-source limits before authentication: the decisions, without I/O.
//!
//! A source is an IPv4 address or an IPv6 /64 (one customer's prefix; an IPv4-mapped
//! address counts as its IPv4 address). For each source the [`SourceTable`] keeps
//!
//! * the number of its connections that have not authenticated yet, capped by
//!   [`SourceLimits::max_unauthenticated`], and
//! * a token bucket of new connections: [`SourceLimits::per_sec`] tokens a second, at most
//!   [`SourceLimits::burst`] saved up, one token per accepted connection.
//!
//! [`SourceTable::admit`] is asked right after `accept` and before the connection takes a
//! slot of the global pool, so one host holding idle connections or opening them in a
//! flood is refused on its own and never queues other clients behind it. Time is passed
//! in; the shell ([`crate::listener`]) owns the clock, the socket and the log line.
//!
//! The table is bounded: at [`MAX_SOURCES`] entries, idle ones (nothing unauthenticated,
//! bucket full) are dropped, and if none is idle the new source shares one overflow entry
//! with every other source that did not fit, under the same limits.
//!
//! Refusals are logged at most once per [`LOG_EVERY`] ([`SourceTable::log_due`]), with the
//! number of refusals since the last line, so a flood does not become a flood of logs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// Most sources tracked at once; beyond it they share one overflow entry.
pub const MAX_SOURCES: usize = 65_536;
/// Shortest time between two log lines about refused sources.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Tokens are counted in thousandths, so rates below one a millisecond refill smoothly.
const MILLI: u64 = 1_000;

/// The per-source limits (`[limits]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    /// Connections of one source that have not authenticated yet.
    pub max_unauthenticated: usize,
    /// New connections a second, on average.
    pub per_sec: u32,
    /// New connections one source may open at once after a quiet time.
    pub burst: u32,
}

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits {
            max_unauthenticated: 64,
            per_sec: 200,
            burst: 400,
        }
    }
}

/// Who a connection is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6Prefix(u64),
    /// Every source that found the table full.
    Overflow,
}

impl Source {
    /// The source of a peer address: IPv4 (IPv4-mapped included) as is, IPv6 by its /64.
    pub fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => Source::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

/// Which per-source limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRefusal {
    /// The source already holds `max_unauthenticated` unauthenticated connections.
    Unauthenticated,
    /// The source's bucket of new connections is empty.
    Rate,
}

impl SourceRefusal {
    /// The metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceRefusal::Unauthenticated => "unauthenticated_per_source",
            SourceRefusal::Rate => "new_connections_per_source",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    unauthenticated: usize,
    /// Thousandths of a token, as of `at`.
    milli_tokens: u64,
    at: Instant,
}

impl Entry {
    fn full(limits: &SourceLimits, now: Instant) -> Entry {
        Entry {
            unauthenticated: 0,
            milli_tokens: u64::from(limits.burst) * MILLI,
            at: now,
        }
    }

    /// Add the tokens earned since `at` (never past the burst).
    fn refill(&mut self, limits: &SourceLimits, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        let earned = elapsed
            .as_millis()
            .saturating_mul(u128::from(limits.per_sec));
        let cap = u64::from(limits.burst) * MILLI;
        let earned = u64::try_from(earned).unwrap_or(u64::MAX);
        self.milli_tokens = self.milli_tokens.saturating_add(earned).min(cap);
        self.at = now;
    }

    fn is_idle(&self, limits: &SourceLimits, now: Instant) -> bool {
        let mut e = *self;
        e.refill(limits, now);
        e.unauthenticated == 0 && e.milli_tokens >= u64::from(limits.burst) * MILLI
    }
}

/// Every source's unauthenticated connections and token bucket, and the log gate.
#[derive(Debug, Default)]
pub struct SourceTable {
    entries: HashMap<Source, Entry>,
    refused_since_log: u64,
    last_log: Option<Instant>,
}

impl SourceTable {
    /// Count a new connection of `ip` in, or say which limit refuses it. On success the
    /// connection is unauthenticated until [`SourceTable::release`] with the returned
    /// source.
    pub fn admit(
        &mut self,
        ip: IpAddr,
        limits: &SourceLimits,
        now: Instant,
    ) -> Result<Source, SourceRefusal> {
        let source = self.slot_for(Source::of(ip), limits, now);
        let entry = self
            .entries
            .entry(source)
            .or_insert_with(|| Entry::full(limits, now));
        entry.refill(limits, now);
        let verdict = if entry.unauthenticated >= limits.max_unauthenticated {
            Err(SourceRefusal::Unauthenticated)
        } else if entry.milli_tokens < MILLI {
            Err(SourceRefusal::Rate)
        } else {
            entry.milli_tokens -= MILLI;
            entry.unauthenticated += 1;
            Ok(source)
        };
        if verdict.is_err() {
            self.refused_since_log += 1;
        }
        verdict
    }

    /// A connection counted in by [`SourceTable::admit`] authenticated or ended.
    pub fn release(&mut self, source: Source) {
        if let Some(entry) = self.entries.get_mut(&source) {
            entry.unauthenticated = entry.unauthenticated.saturating_sub(1);
        }
    }

    /// Unauthenticated connections of `ip`'s source now.
    pub fn unauthenticated(&self, ip: IpAddr) -> usize {
        self.entries
            .get(&Source::of(ip))
            .map_or(0, |e| e.unauthenticated)
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a log line about refusals is due at `now`: Some(refusals since the last
    /// line) at most once per [`LOG_EVERY`], and only if there were any.
    pub fn log_due(&mut self, now: Instant) -> Option<u64> {
        if self.refused_since_log == 0 {
            return None;
        }
        if let Some(last) = self.last_log {
            if now.saturating_duration_since(last) < LOG_EVERY {
                return None;
            }
        }
        self.last_log = Some(now);
        Some(std::mem::take(&mut self.refused_since_log))
    }

    /// The entry `source` is counted in: its own, or the overflow entry if the table is
    /// full of sources that are not idle.
    fn slot_for(&mut self, source: Source, limits: &SourceLimits, now: Instant) -> Source {
        if self.entries.contains_key(&source) || self.entries.len() < MAX_SOURCES {
            return source;
        }
        self.entries.retain(|_, e| !e.is_idle(limits, now));
        if self.entries.len() < MAX_SOURCES {
            source
        } else {
            Source::Overflow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_unauthenticated: usize, per_sec: u32, burst: u32) -> SourceLimits {
        SourceLimits {
            max_unauthenticated,
            per_sec,
            burst,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unauthenticated_connections_are_capped_per_source_and_released() {
        let l = limits(2, 1000, 1000);
        let t0 = Instant::now();
        let mut t = SourceTable::default();
        let a = t.admit(ip("192.0.2.1"), &l, t0).unwrap();
        t.admit(ip("192.0.2.1"), &l, t0).unwrap();
        assert_eq!(
            t.admit(ip("192.0.2.1"), &l, t0),
            Err(SourceRefusal::Unauthenticated)
        );
        // Another source is not affected.
        t.admit(ip("192.0.2.2"), &l, t0).unwrap();
        t.release(a);
        assert_eq!(t.unauthenticated(ip("192.0.2.1")), 1);
        t.admit(ip("192.0.2.1"), &l, t0).unwrap();
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let l = limits(1000, 10, 5);
        let t0 = Instant::now();
        let mut t = SourceTable::default();
        for _ in 0..5 {
            let s = t.admit(ip("192.0.2.1"), &l, t0).unwrap();
            t.release(s);
        }
        assert_eq!(t.admit(ip("192.0.2.1"), &l, t0), Err(SourceRefusal::Rate));
        // 10 a second: one token after 100 ms, not before.
        let early = t0 + Duration::from_millis(99);
        assert_eq!(
            t.admit(ip("192.0.2.1"), &l, early),
            Err(SourceRefusal::Rate)
        );
        let s = t
            .admit(ip("192.0.2.1"), &l, t0 + Duration::from_millis(100))
            .unwrap();
        t.release(s);
        // A long pause saves up no more than the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            let s = t.admit(ip("192.0.2.1"), &l, later).unwrap();
            t.release(s);
        }
        assert_eq!(
            t.admit(ip("192.0.2.1"), &l, later),
            Err(SourceRefusal::Rate)
        );
    }

    #[test]
    fn ipv6_sources_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:192.0.2.1")),
            Source::of(ip("192.0.2.1"))
        );
        let l = limits(1, 1000, 1000);
        let t0 = Instant::now();
        let mut t = SourceTable::default();
        t.admit(ip("2001:db8:1:2::1"), &l, t0).unwrap();
        assert_eq!(
            t.admit(ip("2001:db8:1:2::2"), &l, t0),
            Err(SourceRefusal::Unauthenticated)
        );
    }

    #[test]
    fn idle_sources_are_forgotten_when_the_table_is_full() {
        let l = limits(4, 1000, 2);
        let t0 = Instant::now();
        let mut t = SourceTable::default();
        for n in 0..MAX_SOURCES as u32 {
            let s = t.admit(IpAddr::V4(Ipv4Addr::from(n)), &l, t0).unwrap();
            t.release(s);
        }
        assert_eq!(t.len(), MAX_SOURCES);
        // Their buckets are not full yet: the newcomer shares the overflow entry.
        let newcomer = ip("2001:db8::1");
        assert_eq!(t.admit(newcomer, &l, t0), Ok(Source::Overflow));
        // Once refilled they are idle and make room.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(t.admit(newcomer, &l, later), Ok(Source::of(newcomer)));
        assert!(t.len() <= 2, "{}", t.len());
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_period_with_their_count() {
        let l = limits(0, 1000, 1000);
        let t0 = Instant::now();
        let mut t = SourceTable::default();
        assert_eq!(t.log_due(t0), None);
        for _ in 0..3 {
            assert!(t.admit(ip("192.0.2.1"), &l, t0).is_err());
        }
        assert_eq!(t.log_due(t0), Some(3));
        assert!(t.admit(ip("192.0.2.1"), &l, t0).is_err());
        assert_eq!(t.log_due(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.log_due(t0 + LOG_EVERY), Some(1));
        assert_eq!(t.log_due(t0 + LOG_EVERY * 3), None);
    }
}
