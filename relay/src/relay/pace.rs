//! A read budget for the directions that read an MPTCP socket (issue 18, the latency
//! guard's pacing of downloads that were already running): a token bucket shared by
//! every direction given the same [`Pace`], so a rate set for them all is split among
//! those that have data to read.
//!
//! The owner (the agent's shell, on its core's decision) sets the rate; a relay only
//! applies it. While a rate is set the direction reads at most the bucket's tokens, in
//! slices of at least [`MIN_SLICE`] (a read of a few bytes would cost a wake-up and a
//! window update each), and waits for the tokens otherwise. Only a direction that moved
//! [`PACED_AFTER`] is paced: a bulk transfer, not a small response. The bucket holds at most
//! [`DEPTH`] of the rate, so a pause does not turn into a burst. A direction is never
//! left without reads: the rate is at least [`MIN_RATE`].
//!
//! Why reading slower helps: the concentrator's kernel may send only what the agent's
//! receive window lets it. Read at a rate below the lines', the socket's receive buffer
//! fills, the window then opens only as fast as it is read, and the queue in front of
//! the WANs' download shapers drains (docs/DESIGN.md, "Small flows under load").

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The smallest read a paced direction makes (bytes).
pub const MIN_SLICE: usize = 16 * 1024;
/// The bucket holds at most this long of the rate (and at least [`MIN_SLICE`]).
pub const DEPTH: Duration = Duration::from_millis(4);
/// A direction is paced only after it moved this much: a small response on a connection
/// that opened before the call (a page, an interactive session) is never held back by a
/// download's budget.
pub const PACED_AFTER: u64 = 1 << 20;
/// The lowest rate applied (bytes/s, 1 Mbit/s): a paced direction still moves.
pub const MIN_RATE: u64 = 125_000;

/// A shared read budget (see the module docs).
#[derive(Debug, Default)]
pub struct Pace {
    bucket: Mutex<Bucket>,
}

#[derive(Debug, Default)]
struct Bucket {
    /// Bytes a second; `None`: not paced.
    rate: Option<u64>,
    tokens: f64,
    at: Option<Instant>,
}

/// What a direction may read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Not paced: read as much as it likes.
    Free,
    /// Up to this many bytes (taken from the bucket; give back what was not read).
    Take(usize),
    /// Nothing yet: ask again after this long.
    Wait(Duration),
}

impl Pace {
    /// Pace the directions at `rate` bytes a second together (`None`: no longer).
    pub fn set_rate(&self, rate: Option<u64>) {
        let mut bucket = self.bucket();
        let rate = rate.map(|r| r.max(MIN_RATE));
        if bucket.rate != rate {
            bucket.rate = rate;
            bucket.tokens = 0.0;
            bucket.at = None;
        }
    }

    /// The rate set now.
    pub fn rate(&self) -> Option<u64> {
        self.bucket().rate
    }

    /// Ask for up to `want` bytes at `now`.
    pub fn grant(&self, want: usize, now: Instant) -> Grant {
        let mut bucket = self.bucket();
        let Some(rate) = bucket.rate else {
            return Grant::Free;
        };
        let rate_f = rate as f64;
        let depth = (rate_f * DEPTH.as_secs_f64()).max(MIN_SLICE as f64);
        let elapsed = bucket.at.map_or(depth / rate_f, |at| {
            now.saturating_duration_since(at).as_secs_f64()
        });
        bucket.tokens = (bucket.tokens + elapsed * rate_f).min(depth);
        bucket.at = Some(now);
        let slice = MIN_SLICE.min(want) as f64;
        if bucket.tokens >= slice {
            let n = (bucket.tokens as usize).min(want);
            bucket.tokens -= n as f64;
            Grant::Take(n)
        } else {
            Grant::Wait(Duration::from_secs_f64((slice - bucket.tokens) / rate_f))
        }
    }

    /// Give back `n` bytes granted but not read.
    pub fn refund(&self, n: usize) {
        let mut bucket = self.bucket();
        if bucket.rate.is_some() {
            bucket.tokens += n as f64;
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive one greedy reader for `secs` in simulated time; bytes it got.
    fn drain(pace: &Pace, start: Instant, secs: f64) -> usize {
        let (mut now, end, mut got) = (start, start + Duration::from_secs_f64(secs), 0);
        while now < end {
            match pace.grant(64 << 10, now) {
                Grant::Free => panic!("paced"),
                Grant::Take(n) => {
                    assert!((MIN_SLICE..=64 << 10).contains(&n), "slice {n}");
                    got += n;
                    now += Duration::from_micros(100);
                }
                Grant::Wait(wait) => {
                    assert!(wait > Duration::ZERO);
                    now += wait;
                }
            }
        }
        got
    }

    #[test]
    fn unpaced_is_free() {
        let pace = Pace::default();
        assert_eq!(pace.grant(1 << 16, Instant::now()), Grant::Free);
        pace.set_rate(Some(1_000_000));
        pace.set_rate(None);
        assert_eq!(pace.grant(1 << 16, Instant::now()), Grant::Free);
    }

    #[test]
    fn a_greedy_reader_gets_the_rate() {
        let pace = Pace::default();
        let rate = 10_000_000; // 80 Mbit/s
        pace.set_rate(Some(rate));
        let got = drain(&pace, Instant::now(), 2.0) as f64;
        let want = rate as f64 * 2.0;
        assert!((got - want).abs() / want < 0.02, "got {got}, want {want}");
    }

    #[test]
    fn two_readers_share_the_rate() {
        let pace = Pace::default();
        pace.set_rate(Some(4_000_000));
        let start = Instant::now();
        let (mut now, mut got) = (start, [0usize; 2]);
        let end = start + Duration::from_secs(1);
        let mut turn = 0;
        while now < end {
            // The readers take turns at the tokens as they come.
            match pace.grant(64 << 10, now) {
                Grant::Take(n) => {
                    got[turn] += n;
                    turn ^= 1;
                }
                Grant::Wait(wait) => now += wait,
                Grant::Free => panic!("paced"),
            }
        }
        let total = (got[0] + got[1]) as f64;
        assert!((total - 4e6).abs() / 4e6 < 0.03, "total {total}");
        assert!(got[0].abs_diff(got[1]) < 4 * MIN_SLICE, "{got:?}");
    }

    #[test]
    fn a_pause_is_not_a_burst_and_refunds_count() {
        let pace = Pace::default();
        pace.set_rate(Some(10_000_000));
        let start = Instant::now();
        let _ = pace.grant(64 << 10, start);
        // A second later the bucket holds at most DEPTH of the rate.
        let later = start + Duration::from_secs(1);
        let Grant::Take(n) = pace.grant(1 << 20, later) else {
            panic!("no grant after a pause");
        };
        assert!(n <= 40_000, "burst of {n}");
        pace.refund(n);
        assert_eq!(pace.grant(1 << 20, later), Grant::Take(n));
    }

    #[test]
    fn the_rate_has_a_floor() {
        let pace = Pace::default();
        pace.set_rate(Some(1));
        assert_eq!(pace.rate(), Some(MIN_RATE));
        let got = drain(&pace, Instant::now(), 4.0) as f64;
        assert!(got >= 3.5 * MIN_RATE as f64, "{got}");
    }
}
