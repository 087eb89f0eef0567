//! A WAN's busiest rate, from its device byte counter sampled every tick: what the
//! buffer sizing (`buffers`) and the latency guard (`latency_guard`) size from. Pure:
//! the counter and the time are arguments.

use std::time::{Duration, Instant};

/// A WAN slower than this (bytes/s, 100 kbit/s) carries no traffic to speak of.
pub const IDLE_RATE: f64 = 12_500.0;

/// One WAN's counter as last seen and its busiest rate since.
#[derive(Debug, Clone, Copy)]
pub struct PeakRate {
    bytes: u64,
    at: Instant,
    /// The busiest rate (bytes/s) and when it was seen.
    peak: f64,
    peak_at: Instant,
}

impl PeakRate {
    /// A WAN first seen with its counter at `bytes`: no rate yet.
    pub fn new(bytes: u64, now: Instant) -> PeakRate {
        PeakRate {
            bytes,
            at: now,
            peak: 0.0,
            peak_at: now,
        }
    }

    /// Take the counter at `now`. The rate since the last sample becomes the peak when it
    /// is at least the peak, or when the peak is older than `memory`; a rate at least
    /// `sustained` × the peak (when given) keeps the peak remembered.
    pub fn update(&mut self, bytes: u64, now: Instant, memory: Duration, sustained: Option<f64>) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        if secs > 0.0 {
            let rate = bytes.saturating_sub(self.bytes) as f64 / secs;
            let stale = now.saturating_duration_since(self.peak_at) > memory;
            if rate >= self.peak || stale {
                self.peak = rate;
                self.peak_at = now;
            } else if sustained.is_some_and(|share| rate >= self.peak * share) {
                self.peak_at = now;
            }
        }
        self.bytes = bytes;
        self.at = now;
    }

    /// The peak (bytes/s) while the WAN carries traffic: at least [`IDLE_RATE`], seen
    /// within `memory`.
    pub fn busy(&self, now: Instant, memory: Duration) -> Option<f64> {
        (self.peak >= IDLE_RATE && now.saturating_duration_since(self.peak_at) <= memory)
            .then_some(self.peak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMORY: Duration = Duration::from_secs(60);

    #[test]
    fn the_peak_is_the_busiest_rate_until_it_is_older_than_the_memory() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut rate = PeakRate::new(0, t0);
        assert_eq!(rate.busy(t0, MEMORY), None, "nothing moved yet");
        rate.update(2_000_000, at(2), MEMORY, None);
        assert_eq!(rate.busy(at(2), MEMORY), Some(1_000_000.0));
        rate.update(3_000_000, at(4), MEMORY, None);
        assert_eq!(
            rate.busy(at(4), MEMORY),
            Some(1_000_000.0),
            "slower: peak kept"
        );
        assert_eq!(rate.busy(at(63), MEMORY), None, "forgotten");
        rate.update(3_100_000, at(64), MEMORY, None);
        assert_eq!(rate.busy(at(64), MEMORY), None, "idle now: starts over");
    }

    #[test]
    fn a_sustained_share_keeps_the_peak_remembered() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut rate = PeakRate::new(0, t0);
        rate.update(2_000_000, at(2), MEMORY, Some(0.5));
        let mut bytes = 2_000_000;
        for s in (4..=100).step_by(2) {
            bytes += 1_200_000;
            rate.update(bytes, at(s), MEMORY, Some(0.5));
        }
        assert_eq!(rate.busy(at(100), MEMORY), Some(1_000_000.0));
    }
}
