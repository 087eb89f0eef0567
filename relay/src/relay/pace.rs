//! A read budget for the directions that read an MPTCP socket (issue 18, the latency
//! guard's pacing of downloads that were already running): a token bucket shared by
//! every direction given the same [`Pace`], so a rate set for them all is split among
//! those that have data to read.
//!
//! The owner (the agent's shell, on its core's decision) sets the rate; a relay only
//! applies it. While a rate is set the direction reads at most the bucket's tokens, in
//! slices of at least [`MIN_SLICE`] (a read of a few bytes would cost a wake-up and a
//! window update each); with too few tokens it reserves a slice and waits for it (the
//! bucket owes it), so directions that want more than the rate take turns. Only a
//! direction that moved [`PACED_AFTER`] since it was last idle is paced ([`Transfer`]): a
//! bulk transfer, not a small response, also not one on a long-lived (keep-alive,
//! HTTP/2) connection that moved more before an idle gap of at least [`IDLE_GAP`]. The
//! bucket holds at most [`DEPTH`] of the rate, so a pause does not turn into a burst. A
//! direction is never left without reads: the rate is at least [`MIN_RATE`].
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
/// A direction is paced only after it moved this much since it was last idle
/// ([`IDLE_GAP`]): a small response on a connection that opened before the call (a page,
/// an interactive session) is never held back by a download's budget.
pub const PACED_AFTER: u64 = 1 << 20;
/// The lowest rate applied (bytes/s, 1 Mbit/s): a paced direction still moves.
pub const MIN_RATE: u64 = 125_000;
/// A direction whose socket was found empty and stayed so this long starts counting
/// toward [`PACED_AFTER`] again: the next response is a new transfer. Longer than a
/// running transfer's pauses (an RTT, a paced read's wait), shorter than the gap between
/// a user's requests.
pub const IDLE_GAP: Duration = Duration::from_millis(500);

/// Whether a direction is a bulk transfer, to be paced (sans-IO; time is passed in).
#[derive(Debug, Clone, Copy, Default)]
pub struct Transfer {
    /// Bytes moved since the direction was last idle.
    moved: u64,
    /// When a read last found the socket empty after reading bytes.
    drained_at: Option<Instant>,
}

impl Transfer {
    /// Whether the read the direction makes at `now` is paced: it moved [`PACED_AFTER`]
    /// since it was last idle. A direction whose last read emptied the socket at least
    /// [`IDLE_GAP`] ago was idle: it counts from zero again.
    pub fn paced(&mut self, now: Instant) -> bool {
        if self
            .drained_at
            .is_some_and(|at| now.saturating_duration_since(at) >= IDLE_GAP)
        {
            self.moved = 0;
            self.drained_at = None;
        }
        self.moved >= PACED_AFTER
    }

    /// A read at `now` got `n` bytes (0: nothing was queued); `drained`: it emptied the
    /// socket.
    pub fn read(&mut self, n: usize, drained: bool, now: Instant) {
        self.moved = self.moved.saturating_add(n as u64);
        if n > 0 {
            self.drained_at = drained.then_some(now);
        }
    }
}

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
    /// Bytes read within the budget (granted, less what was given back), for the status.
    read: u64,
}

/// What a direction may read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Not paced: read as much as it likes.
    Free,
    /// Up to this many bytes (taken from the bucket; give back what was not read).
    Take(usize),
    /// Up to this many bytes after this long: the tokens are reserved (the bucket owes
    /// them), so read then without asking again, and give back what was not read. A
    /// reader that asks while others wait is served after them: greedy readers share the
    /// rate in turn, whichever the runtime wakes first. A reader dropped while it waits
    /// leaves its slice owed: the others wait that much longer, once.
    After(Duration, usize),
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
        let slice = MIN_SLICE.min(want);
        if bucket.tokens >= slice as f64 {
            let n = (bucket.tokens as usize).min(want);
            bucket.tokens -= n as f64;
            bucket.read = bucket.read.saturating_add(n as u64);
            Grant::Take(n)
        } else {
            // Reserve the slice: the tokens go below zero, and the next reader waits for
            // this one's slice and then its own.
            let wait = (slice as f64 - bucket.tokens) / rate_f;
            bucket.tokens -= slice as f64;
            bucket.read = bucket.read.saturating_add(slice as u64);
            Grant::After(Duration::from_secs_f64(wait), slice)
        }
    }

    /// Give back `n` bytes granted but not read.
    pub fn refund(&self, n: usize) {
        let mut bucket = self.bucket();
        bucket.read = bucket.read.saturating_sub(n as u64);
        if bucket.rate.is_some() {
            bucket.tokens += n as f64;
        }
    }

    /// Bytes the directions read within the budget so far (granted and not given back):
    /// the evidence that they are paced, for the status.
    pub fn paced_bytes(&self) -> u64 {
        self.bucket().read
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
                Grant::After(wait, n) => {
                    assert!(wait > Duration::ZERO);
                    assert_eq!(n, MIN_SLICE);
                    got += n;
                    now += wait + Duration::from_micros(100);
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
        assert_eq!(pace.paced_bytes(), 0);
    }

    #[test]
    fn a_greedy_reader_gets_the_rate() {
        let pace = Pace::default();
        let rate = 10_000_000; // 80 Mbit/s
        pace.set_rate(Some(rate));
        let got = drain(&pace, Instant::now(), 2.0);
        assert_eq!(pace.paced_bytes(), got as u64);
        let (got, want) = (got as f64, rate as f64 * 2.0);
        assert!((got - want).abs() / want < 0.02, "got {got}, want {want}");
    }

    /// Two greedy readers, each asking again when its own wait ends (the earlier one
    /// first) and reading for 100 µs after a grant: neither starves the other.
    #[test]
    fn two_readers_share_the_rate() {
        let pace = Pace::default();
        pace.set_rate(Some(4_000_000));
        let start = Instant::now();
        let end = start + Duration::from_secs(1);
        let (mut next, mut got) = ([start, start + Duration::from_micros(50)], [0usize; 2]);
        loop {
            let who = usize::from(next[1] < next[0]);
            let now = next[who];
            if now >= end {
                break;
            }
            match pace.grant(64 << 10, now) {
                Grant::Take(n) => {
                    got[who] += n;
                    next[who] = now + Duration::from_micros(100);
                }
                Grant::After(wait, n) => {
                    got[who] += n;
                    next[who] = now + wait + Duration::from_micros(100);
                }
                Grant::Free => panic!("paced"),
            }
        }
        let total = (got[0] + got[1]) as f64;
        assert!((total - 4e6).abs() / 4e6 < 0.03, "total {total}");
        let (least, most) = (got[0].min(got[1]) as f64, got[0].max(got[1]) as f64);
        assert!(least / most > 0.8, "unfair share {got:?}");
    }

    #[test]
    fn a_transfer_is_paced_from_paced_after_until_an_idle_gap() {
        let t0 = Instant::now();
        let mut transfer = Transfer::default();
        assert!(!transfer.paced(t0));
        // A bulk download: full reads, then one that drains the socket.
        transfer.read(PACED_AFTER as usize - 1, false, t0);
        assert!(!transfer.paced(t0), "one byte short");
        transfer.read(1000, true, t0);
        // More arrives within a running transfer's pause: still paced.
        let soon = t0 + IDLE_GAP / 2;
        assert!(transfer.paced(soon));
        transfer.read(1000, true, soon);
        // A read that found nothing is no new activity: the gap counts from `soon`.
        let empty = soon + IDLE_GAP / 2;
        assert!(transfer.paced(empty));
        transfer.read(0, false, empty);
        // The next response after an idle gap is small: not paced.
        let later = soon + IDLE_GAP;
        assert!(
            !transfer.paced(later),
            "a response after an idle gap waited"
        );
        transfer.read(4000, true, later);
        assert!(!transfer.paced(later + IDLE_GAP * 4));
    }

    #[test]
    fn a_transfer_that_never_drains_stays_paced() {
        let t0 = Instant::now();
        let mut transfer = Transfer::default();
        transfer.read(PACED_AFTER as usize, false, t0);
        // Reads that fill the slice, seconds apart (a slow paced read): still one transfer.
        for s in 1..5 {
            let now = t0 + Duration::from_secs(s);
            assert!(transfer.paced(now));
            transfer.read(MIN_SLICE, false, now);
        }
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
        let read = pace.paced_bytes();
        pace.refund(n);
        assert_eq!(
            pace.paced_bytes(),
            read - n as u64,
            "a refund is not counted"
        );
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
