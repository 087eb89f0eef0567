//! Automatic classing of real-time UDP flows (`[udp] auto_protect`, issue 18): a call's
//! audio or a game's updates are small datagrams at a steady rate, a bulk QUIC transfer
//! and a DNS or NTP exchange are not. A bonded flow's task feeds every datagram it
//! carries (direction, size, arrival time) to its own [`Classifier`]; the first time it
//! answers `true` the flow is handed to `udp::protect` (two legs, each datagram on both).
//!
//! The flow is judged in windows of [`WINDOW`] from its first datagram. A window is
//! *real-time* when, in that second:
//!
//! * upstream: [`MIN_RATE`] to [`MAX_RATE`] datagrams, half or more of at most
//!   [`SMALL`] bytes (the median), no gap between two of them over [`MAX_GAP`] (steady);
//! * downstream: at most [`MAX_RATE`] datagrams, the median at most [`SMALL`] bytes;
//! * either way at most [`MAX_BYTES`] bytes.
//!
//! Hysteresis: [`PROMOTE_AFTER`] real-time windows in a row promote the flow (a window
//! that is not, or a second with no datagram, starts the count again); a window over
//! [`MAX_BYTES`] either way marks the flow *bulk* for its life (a QUIC download that
//! pauses never turns real-time); a promoted flow stays protected until it ends (moving
//! it back would change its source port at the concentrator a second time). One-shot
//! exchanges (DNS, NTP) never reach [`MIN_RATE`].
//!
//! Pure: sizes and times are arguments; the unit tests run in simulated time.

use std::time::{Duration, Instant};

/// The length of one judged window.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Real-time windows in a row that promote a flow.
pub const PROMOTE_AFTER: u32 = 2;
/// Fewest upstream datagrams in a window (a call sends 33 to 50 a second, a game 20+).
pub const MIN_RATE: u32 = 20;
/// Most datagrams in a window, either way.
pub const MAX_RATE: u32 = 120;
/// The largest median datagram of a real-time flow, in bytes.
pub const SMALL: usize = 300;
/// Most payload bytes in a window, either way (120 × 300 B, rounded).
pub const MAX_BYTES: u64 = 40_000;
/// The longest gap between two upstream datagrams of a steady flow.
pub const MAX_GAP: Duration = Duration::from_millis(200);

/// Which way a datagram went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// LAN client → internet.
    Up,
    /// Internet → LAN client.
    Down,
}

/// One direction's counts in the current window.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    datagrams: u32,
    small: u32,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, len: usize) {
        self.datagrams = self.datagrams.saturating_add(1);
        self.bytes += len as u64;
        if len <= SMALL {
            self.small += 1;
        }
    }

    /// The median is at most [`SMALL`] (true with no datagram).
    fn median_small(&self) -> bool {
        self.small * 2 >= self.datagrams
    }
}

/// What the classifier concluded so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Not (yet) real-time.
    Undecided,
    /// Promoted: protect the flow.
    RealTime,
    /// Looked bulk once: never promoted.
    Bulk,
}

/// One flow's classifier; see the module docs.
#[derive(Debug)]
pub struct Classifier {
    window_start: Instant,
    up: Tally,
    down: Tally,
    last_up: Option<Instant>,
    max_gap: Duration,
    streak: u32,
    class: Class,
}

impl Classifier {
    /// A classifier for a flow whose first datagram arrives at `now` (not counted yet).
    pub fn new(now: Instant) -> Classifier {
        Classifier {
            window_start: now,
            up: Tally::default(),
            down: Tally::default(),
            last_up: None,
            max_gap: Duration::ZERO,
            streak: 0,
            class: Class::Undecided,
        }
    }

    /// What the flow is classed as now.
    pub fn class(&self) -> Class {
        self.class
    }

    /// Count one datagram of `len` payload bytes at `now`; `true` exactly once, when the
    /// flow is promoted to real-time.
    pub fn datagram(&mut self, direction: Direction, len: usize, now: Instant) -> bool {
        if self.class != Class::Undecided {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            self.close_window();
            if elapsed >= WINDOW * 2 {
                // A whole second without a datagram: not steady.
                self.streak = 0;
            }
            let whole = elapsed.as_nanos() / WINDOW.as_nanos();
            self.window_start += WINDOW * whole as u32;
        }
        if self.class != Class::Undecided {
            return self.class == Class::RealTime;
        }
        match direction {
            Direction::Up => {
                self.up.add(len);
                if let Some(last) = self.last_up {
                    self.max_gap = self.max_gap.max(now.saturating_duration_since(last));
                }
                self.last_up = Some(now);
            }
            Direction::Down => self.down.add(len),
        }
        false
    }

    fn close_window(&mut self) {
        let (up, down) = (self.up, self.down);
        if up.bytes > MAX_BYTES || down.bytes > MAX_BYTES {
            self.class = Class::Bulk;
        } else if self.real_time_window() {
            self.streak += 1;
            if self.streak >= PROMOTE_AFTER {
                self.class = Class::RealTime;
            }
        } else {
            self.streak = 0;
        }
        self.up = Tally::default();
        self.down = Tally::default();
        self.max_gap = Duration::ZERO;
    }

    fn real_time_window(&self) -> bool {
        let (up, down) = (&self.up, &self.down);
        (MIN_RATE..=MAX_RATE).contains(&up.datagrams)
            && up.median_small()
            && self.max_gap <= MAX_GAP
            && down.datagrams <= MAX_RATE
            && down.median_small()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `seconds` of a stream: `up` and `down` datagrams a second of `size` bytes,
    /// evenly spaced, echoed `echo_delay` later; the time a promotion came, if it did.
    fn stream(
        c: &mut Classifier,
        start: Instant,
        seconds: u32,
        (up_rate, up_size): (u32, usize),
        (down_rate, down_size): (u32, usize),
    ) -> Option<Duration> {
        let mut events: Vec<(Duration, Direction, usize)> = Vec::new();
        for s in 0..seconds {
            let second = Duration::from_secs(s.into());
            for i in 0..up_rate {
                events.push((second + WINDOW * i / up_rate, Direction::Up, up_size));
            }
            for i in 0..down_rate {
                let at = second + WINDOW * i / down_rate + Duration::from_millis(7);
                events.push((at, Direction::Down, down_size));
            }
        }
        events.sort_by_key(|e| e.0);
        let mut promoted = None;
        for (at, dir, len) in events {
            if c.datagram(dir, len, start + at) {
                assert!(promoted.is_none(), "promoted twice");
                promoted = Some(at);
            }
        }
        promoted
    }

    #[test]
    fn a_call_of_fifty_small_datagrams_a_second_is_promoted_after_two_seconds() {
        let t0 = Instant::now();
        let mut c = Classifier::new(t0);
        let at = stream(&mut c, t0, 4, (50, 200), (50, 200)).expect("promoted");
        assert!(at >= WINDOW * PROMOTE_AFTER, "{at:?}");
        assert!(at < WINDOW * (PROMOTE_AFTER + 1), "{at:?}");
        assert_eq!(c.class(), Class::RealTime);
        // Once promoted, it stays (and says so only once).
        assert!(!c.datagram(Direction::Up, 1400, t0 + Duration::from_secs(9)));
        assert_eq!(c.class(), Class::RealTime);
    }

    #[test]
    fn a_game_with_a_silent_downstream_is_promoted_and_a_slow_stream_is_not() {
        let t0 = Instant::now();
        let mut game = Classifier::new(t0);
        assert!(stream(&mut game, t0, 4, (64, 90), (0, 0)).is_some());
        let mut slow = Classifier::new(t0);
        assert_eq!(stream(&mut slow, t0, 10, (10, 200), (10, 200)), None);
        let mut fast = Classifier::new(t0);
        assert_eq!(stream(&mut fast, t0, 10, (200, 100), (200, 100)), None);
    }

    #[test]
    fn a_bulk_quic_download_is_never_promoted_even_when_it_slows_down() {
        let t0 = Instant::now();
        // ACKs upstream are small and steady; the data downstream is not.
        let mut quic = Classifier::new(t0);
        assert_eq!(stream(&mut quic, t0, 3, (40, 50), (2000, 1350)), None);
        assert_eq!(quic.class(), Class::Bulk);
        // Later it looks like a call: still bulk.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(stream(&mut quic, later, 5, (50, 200), (50, 200)), None);
        assert_eq!(quic.class(), Class::Bulk);
        // A slow QUIC transfer (30 datagrams of 1,200 bytes a second): large median.
        let mut slow = Classifier::new(t0);
        assert_eq!(stream(&mut slow, t0, 6, (30, 60), (30, 1200)), None);
        assert_eq!(slow.class(), Class::Undecided);
    }

    #[test]
    fn dns_and_ntp_one_shots_are_never_promoted() {
        let t0 = Instant::now();
        let mut dns = Classifier::new(t0);
        assert!(!dns.datagram(Direction::Up, 40, t0));
        assert!(!dns.datagram(Direction::Down, 120, t0 + Duration::from_millis(20)));
        assert_eq!(dns.class(), Class::Undecided);
        let mut ntp = Classifier::new(t0);
        for i in 0..10u64 {
            let at = t0 + Duration::from_secs(64 * i);
            assert!(!ntp.datagram(Direction::Up, 48, at));
            assert!(!ntp.datagram(Direction::Down, 48, at + Duration::from_millis(30)));
        }
        assert_eq!(ntp.class(), Class::Undecided);
    }

    #[test]
    fn bursts_are_not_steady() {
        // 50 datagrams a second, all in the first 100 ms of each second.
        let t0 = Instant::now();
        let mut c = Classifier::new(t0);
        for s in 0..6u64 {
            for i in 0..50u64 {
                let at = t0 + Duration::from_secs(s) + Duration::from_millis(2 * i);
                assert!(!c.datagram(Direction::Up, 200, at));
            }
        }
        assert_eq!(c.class(), Class::Undecided);
    }

    #[test]
    fn a_broken_streak_starts_again() {
        let t0 = Instant::now();
        let mut c = Classifier::new(t0);
        let s = |n: u64| t0 + Duration::from_secs(n);
        // One real-time second, one slow one, one real-time one: not yet.
        assert_eq!(stream(&mut c, s(0), 1, (50, 200), (50, 200)), None);
        assert_eq!(stream(&mut c, s(1), 1, (5, 200), (5, 200)), None);
        assert_eq!(stream(&mut c, s(2), 1, (50, 200), (50, 200)), None);
        // A silent second in between breaks it too.
        assert_eq!(stream(&mut c, s(4), 1, (50, 200), (50, 200)), None);
        assert_eq!(c.class(), Class::Undecided);
        // Two more in a row: promoted when the second of them is judged.
        assert!(stream(&mut c, s(5), 3, (50, 200), (50, 200)).is_some());
        assert_eq!(c.class(), Class::RealTime);
    }
}
