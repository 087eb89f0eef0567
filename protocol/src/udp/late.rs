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
/// How often a stuck leg's acknowledgements are read, at most.
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
    handed_back: u64,
}

impl<T> Default for LateWatch<T> {
    fn default() -> Self {
        LateWatch {
            written: 0,
            pending: VecDeque::new(),
            checked: None,
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
        }
    }

    /// Whether a source handed back is still unacknowledged here.
    pub fn stuck(&self) -> bool {
        self.pending.iter().any(|p| p.item.is_none())
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
            .then(|| self.checked.map(|at| at + STUCK_RECHECK))
            .flatten();
        late.into_iter().chain(recheck).min()
    }

    /// Time has passed (read [`LateWatch::unacked`] first): append the sources late at
    /// `now` to `out`, oldest first.
    pub fn handle_timeout(&mut self, now: Instant, bound: Duration, out: &mut Vec<T>) {
        for p in &mut self.pending {
            if now.saturating_duration_since(p.at) < bound {
                break;
            }
            if let Some(item) = p.item.take() {
                self.handed_back += 1;
                out.push(item);
            }
        }
        self.checked = self.stuck().then_some(now);
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
