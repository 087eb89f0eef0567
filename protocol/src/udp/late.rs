//! Sources a leg's TCP connection has not had acknowledged in time, to send again on
//! another leg (`mode = "fec"`), sans-IO with time passed in.
//!
//! The legs are TCP. A segment lost on a WAN holds every later byte of that leg until
//! TCP retransmits it: for a thin stream that is one probe timeout or more (2 × RTT,
//! plus 200 ms when one segment is in flight), and every source the leg carries
//! meanwhile waits too. One XOR repair per block rebuilds one of them at best, and only
//! once the block closes. So each side watches its own writes: a source its connection
//! has not had acknowledged [`late_bound`] after it was written is handed back to be
//! sent on another leg, and while that is so the leg is *stuck*: every source written to
//! it is handed back at once, until the connection's acknowledgements catch up. The
//! receiver's decoder keeps the first copy of each source number and drops the other.
//!
//! The shell tells the watch what it wrote ([`LateWatch::wrote`]) and, before each
//! decision, how many bytes the connection holds unacknowledged
//! ([`LateWatch::unacked`]: `SIOCOUTQ`); the bound comes from the connection's own
//! smoothed RTT and its variation (`TCP_INFO`).

use std::collections::VecDeque;
use std::time::Duration;
use std::time::Instant;

/// Sources a watch remembers; older ones are forgotten (not resent).
pub const LATE_KEEP: usize = 64;
/// The shortest bound: below it a delayed ACK or a scheduling hiccup would make every
/// source late.
pub const LATE_MIN: Duration = Duration::from_millis(10);
/// How soon a leg's acknowledgements are read again once it is stuck; each look that
/// finds it still stuck doubles the wait, up to the late bound (a leg whose WAN died
/// may stay stuck for long, and is not read 200 times a second meanwhile).
pub const STUCK_RECHECK: Duration = Duration::from_millis(5);

/// How long after its write a source may go unacknowledged on a connection with
/// smoothed RTT `srtt` and mean deviation `rttvar`: `srtt + 4 × rttvar` (TCP's own
/// RTO without its 200 ms floor), at least `3/2 × srtt` and [`LATE_MIN`].
pub fn late_bound(srtt: Duration, rttvar: Duration) -> Duration {
    (srtt + rttvar * 4).max(srtt * 3 / 2).max(LATE_MIN)
}

#[derive(Debug)]
struct Pending<T> {
    /// The connection's byte count once it was written.
    end: u64,
    at: Instant,
    /// Handed back already (the leg is stuck while such a one is unacknowledged).
    item: Option<T>,
}

/// One leg's sources written and not yet acknowledged; see the module docs.
#[derive(Debug)]
pub struct LateWatch<T> {
    written: u64,
    pending: VecDeque<Pending<T>>,
    /// When the acknowledgements were last read while stuck.
    checked: Option<Instant>,
    /// How long after `checked` to read them again: [`STUCK_RECHECK`], doubled by
    /// each look that finds the leg still stuck.
    recheck: Duration,
    handed_back: u64,
}

impl<T> Default for LateWatch<T> {
    fn default() -> Self {
        LateWatch {
            written: 0,
            pending: VecDeque::new(),
            checked: None,
            recheck: STUCK_RECHECK,
            handed_back: 0,
        }
    }
}

impl<T> LateWatch<T> {
    /// A watch of a connection with nothing written yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `len` bytes were written to the connection at `now`: a source (`Some(item)`, to
    /// resend elsewhere if it is late) or anything else (`None`). While the leg is stuck
    /// a source is handed straight back: send it on another leg now.
    pub fn wrote(&mut self, len: usize, item: Option<T>, now: Instant) -> Option<T> {
        self.written += len as u64;
        let item = item?;
        if self.stuck() {
            self.handed_back += 1;
            self.remember(now, None);
            return Some(item);
        }
        self.remember(now, Some(item));
        None
    }

    /// The connection holds `unacked` bytes not acknowledged by the peer (sent or not).
    pub fn unacked(&mut self, unacked: u64) {
        let acked = self.written.saturating_sub(unacked);
        while self.pending.front().is_some_and(|p| p.end <= acked) {
            self.pending.pop_front();
        }
        if !self.stuck() {
            self.checked = None;
            self.recheck = STUCK_RECHECK;
        }
    }

    /// Whether a source handed back is still unacknowledged here.
    pub fn stuck(&self) -> bool {
        self.pending.iter().any(|p| p.item.is_none())
    }

    /// Whether any source is remembered here (so the acknowledgements are worth
    /// reading before the next write).
    pub fn watching(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Sources handed back so far.
    pub fn handed_back(&self) -> u64 {
        self.handed_back
    }

    /// When [`LateWatch::handle_timeout`] should run next, with late bound `bound`: the
    /// oldest source not handed back goes late, or (stuck) the next look at the
    /// acknowledgements.
    pub fn poll_timeout(&self, bound: Duration) -> Option<Instant> {
        let late = self
            .pending
            .iter()
            .find(|p| p.item.is_some())
            .map(|p| p.at + bound);
        let recheck = self
            .stuck()
            .then(|| self.checked.map(|at| at + self.recheck))
            .flatten();
        late.into_iter().chain(recheck).min()
    }

    /// Time has passed (read [`LateWatch::unacked`] first): append the sources late at
    /// `now` to `out`, oldest first. A look that finds the leg still stuck doubles the
    /// wait for the next one, up to `bound`.
    pub fn handle_timeout(&mut self, now: Instant, bound: Duration, out: &mut Vec<T>) {
        let was_stuck = self.checked.is_some();
        for p in &mut self.pending {
            if now.saturating_duration_since(p.at) < bound {
                break;
            }
            if let Some(item) = p.item.take() {
                self.handed_back += 1;
                out.push(item);
            }
        }
        if self.stuck() {
            if was_stuck {
                self.recheck = (self.recheck * 2).min(bound).max(STUCK_RECHECK);
            }
            self.checked = Some(now);
        } else {
            self.checked = None;
            self.recheck = STUCK_RECHECK;
        }
    }

    fn remember(&mut self, at: Instant, item: Option<T>) {
        if self.pending.len() == LATE_KEEP {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending {
            end: self.written,
            at,
            item,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn drain(watch: &mut LateWatch<u32>, now: Instant, bound: Duration) -> Vec<u32> {
        let mut out = Vec::new();
        watch.handle_timeout(now, bound, &mut out);
        out
    }

    #[test]
    fn the_bound_is_rto_without_its_floor() {
        assert_eq!(late_bound(20 * MS, MS), 30 * MS);
        assert_eq!(late_bound(20 * MS, 4 * MS), 36 * MS);
        assert_eq!(late_bound(2 * MS, Duration::ZERO), LATE_MIN);
    }

    #[test]
    fn acknowledged_sources_are_never_handed_back() {
        let t0 = Instant::now();
        let bound = 30 * MS;
        let mut watch = LateWatch::new();
        for i in 0..10u32 {
            let now = t0 + 20 * MS * i;
            assert_eq!(watch.wrote(200, Some(i), now), None);
            // The ACK comes one RTT later, before the next write.
            watch.unacked(0);
            assert_eq!(watch.poll_timeout(bound), None);
        }
        assert!(drain(&mut watch, t0 + 10 * bound, bound).is_empty());
        assert_eq!(watch.handed_back(), 0);
    }

    #[test]
    fn a_lost_segment_hands_its_source_and_those_behind_it_back_until_acked() {
        let t0 = Instant::now();
        let bound = 30 * MS;
        let mut watch = LateWatch::new();
        // Source 0 is written and acknowledged; source 1's segment is lost.
        watch.wrote(200, Some(0), t0);
        watch.unacked(0);
        watch.wrote(200, Some(1), t0 + 20 * MS);
        // A repair (not a source) goes behind it.
        watch.wrote(50, None, t0 + 21 * MS);
        watch.unacked(250);
        assert_eq!(watch.poll_timeout(bound), Some(t0 + 50 * MS));
        assert!(drain(&mut watch, t0 + 49 * MS, bound).is_empty());
        watch.unacked(250);
        assert_eq!(drain(&mut watch, t0 + 50 * MS, bound), [1]);
        assert!(watch.stuck());
        // Stuck: the next source comes straight back, and the acknowledgements are
        // read again shortly.
        assert_eq!(
            watch.poll_timeout(bound),
            Some(t0 + 50 * MS + STUCK_RECHECK)
        );
        assert_eq!(watch.wrote(200, Some(2), t0 + 60 * MS), Some(2));
        watch.unacked(450);
        assert!(drain(&mut watch, t0 + 55 * MS, bound).is_empty());
        // TCP retransmits: everything is acknowledged, the leg carries again.
        watch.unacked(0);
        assert!(!watch.stuck());
        assert_eq!(watch.poll_timeout(bound), None);
        assert_eq!(watch.wrote(200, Some(3), t0 + 80 * MS), None);
        assert_eq!(watch.handed_back(), 2);
    }

    #[test]
    fn a_leg_that_stays_stuck_is_read_less_and_less_often() {
        let t0 = Instant::now();
        let bound = 30 * MS;
        let mut watch = LateWatch::new();
        watch.wrote(200, Some(0), t0);
        watch.unacked(200);
        assert_eq!(drain(&mut watch, t0 + bound, bound), [0]);
        assert!(watch.stuck());
        // Each look that finds it still stuck doubles the wait, up to the bound.
        let mut now = t0 + bound;
        for wait in [5, 10, 20, 30, 30] {
            let next = watch.poll_timeout(bound).expect("stuck: a look is due");
            assert_eq!(next, now + wait * MS);
            now = next;
            watch.unacked(200);
            assert!(drain(&mut watch, now, bound).is_empty());
        }
        // Acknowledged at last: no look is due, and the next stall starts short again.
        watch.unacked(0);
        assert!(!watch.stuck());
        assert_eq!(watch.poll_timeout(bound), None);
        watch.wrote(200, Some(1), now);
        watch.unacked(200);
        assert_eq!(drain(&mut watch, now + bound, bound), [1]);
        assert_eq!(watch.poll_timeout(bound), Some(now + bound + STUCK_RECHECK));
    }

    #[test]
    fn nothing_is_watched_until_a_source_is_written() {
        let t0 = Instant::now();
        let mut watch = LateWatch::new();
        watch.wrote(100, None, t0);
        assert!(!watch.watching());
        watch.wrote(100, Some(0u32), t0);
        assert!(watch.watching());
        watch.unacked(0);
        assert!(!watch.watching());
    }

    #[test]
    fn a_partial_acknowledgement_keeps_the_rest_pending() {
        let t0 = Instant::now();
        let bound = 30 * MS;
        let mut watch = LateWatch::new();
        watch.wrote(100, Some(0), t0);
        watch.wrote(100, Some(1), t0 + 5 * MS);
        // The first is acknowledged, the second not.
        watch.unacked(100);
        assert_eq!(watch.poll_timeout(bound), Some(t0 + 35 * MS));
        assert_eq!(drain(&mut watch, t0 + 35 * MS, bound), [1]);
    }

    #[test]
    fn the_memory_is_bounded() {
        let t0 = Instant::now();
        let mut watch = LateWatch::new();
        for i in 0..(LATE_KEEP as u32 + 10) {
            watch.wrote(10, Some(i), t0);
        }
        let late = drain(&mut watch, t0 + Duration::from_secs(1), 30 * MS);
        assert_eq!(late.len(), LATE_KEEP);
        assert_eq!(late[0], 10);
    }
}
