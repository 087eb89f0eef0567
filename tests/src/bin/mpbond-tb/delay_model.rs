//! The delay line's decisions, without I/O: for each frame that enters one
//! direction at `now`, drop it or say when it leaves.
//!
//! * **Delay and jitter**: each frame draws a one-way delay uniformly from
//!   `[delay - jitter, delay + jitter]` (clamped at 0), as netem's
//!   `delay D J` does. A direction stays a FIFO: a frame never leaves before
//!   the one ahead of it (`due = max(previous due, now + sample)`), which is
//!   how netem behaves with a rate or without reordering. Under load the
//!   delays therefore bunch towards the top of the range.
//! * **Loss**: each frame is lost with probability `loss` on its own
//!   (Bernoulli, per direction), from a seeded generator so a run can be
//!   repeated. With GSO off on the ports that feed the line (see
//!   `mpbond_tests::delay`), a frame is one packet.
//! * **Outages**: in every period of `every`, the last `length` loses every
//!   frame, both ways (both directions share the start time).

use std::time::{Duration, Instant};

/// A scripted outage: the last `length` of every `every` loses everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutageSchedule {
    pub every: Duration,
    pub length: Duration,
}

impl OutageSchedule {
    /// Whether `since_start` falls in an outage.
    pub fn in_outage(&self, since_start: Duration) -> bool {
        if self.every.is_zero() || self.length.is_zero() {
            return false;
        }
        let every = self.every.as_nanos();
        let length = self.length.as_nanos().min(every);
        since_start.as_nanos() % every >= every - length
    }
}

/// What one direction does to its frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirectionSpec {
    pub delay: Duration,
    pub jitter: Duration,
    /// Probability in `[0, 1]` that a frame is lost.
    pub loss: f64,
    pub outage: Option<OutageSchedule>,
}

/// The fate of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Send it at this time.
    SendAt(Instant),
    /// Lost at random.
    Lost,
    /// Lost in a scripted outage.
    OutageLost,
}

/// One direction's state: the spec, the RNG and the last due time.
#[derive(Debug)]
pub struct Direction {
    spec: DirectionSpec,
    start: Instant,
    rng: SplitMix64,
    last_due: Option<Instant>,
}

impl Direction {
    /// A direction started at `start` (the outage schedule's origin).
    pub fn new(spec: DirectionSpec, start: Instant, seed: u64) -> Self {
        Self {
            spec,
            start,
            rng: SplitMix64(seed),
            last_due: None,
        }
    }

    /// Decide the fate of a frame that arrives at `now`.
    pub fn admit(&mut self, now: Instant) -> Fate {
        if let Some(outage) = self.spec.outage {
            if outage.in_outage(now.saturating_duration_since(self.start)) {
                return Fate::OutageLost;
            }
        }
        if self.spec.loss > 0.0 && self.rng.unit() < self.spec.loss {
            return Fate::Lost;
        }
        let delay = self.sample_delay();
        let due = match self.last_due {
            Some(last) => (now + delay).max(last),
            None => now + delay,
        };
        self.last_due = Some(due);
        Fate::SendAt(due)
    }

    fn sample_delay(&mut self) -> Duration {
        let base = self.spec.delay.as_secs_f64();
        let jitter = self.spec.jitter.as_secs_f64();
        if jitter == 0.0 {
            return self.spec.delay;
        }
        let sample = base + jitter * (2.0 * self.rng.unit() - 1.0);
        Duration::from_secs_f64(sample.max(0.0))
    }
}

/// SplitMix64: small, fast, seedable, and good enough for loss and jitter.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(delay_ms: u64, jitter_ms: u64, loss: f64) -> DirectionSpec {
        DirectionSpec {
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
            loss,
            outage: None,
        }
    }

    fn due(fate: Fate) -> Instant {
        match fate {
            Fate::SendAt(t) => t,
            other => panic!("expected a send, got {other:?}"),
        }
    }

    #[test]
    fn constant_delay_is_exact() {
        let t0 = Instant::now();
        let mut d = Direction::new(spec(30, 0, 0.0), t0, 1);
        let at = t0 + Duration::from_millis(5);
        assert_eq!(due(d.admit(at)), at + Duration::from_millis(30));
    }

    #[test]
    fn jitter_stays_in_range_and_never_reorders() {
        let t0 = Instant::now();
        let mut d = Direction::new(spec(30, 5, 0.0), t0, 7);
        let mut last = t0;
        let (mut lowest, mut highest) = (Duration::MAX, Duration::ZERO);
        for k in 0..20_000u64 {
            // One frame every 2 ms: sparse enough that samples show through.
            let now = t0 + Duration::from_millis(2 * k);
            let at = due(d.admit(now));
            assert!(at >= last, "frame {k} would overtake the one before it");
            last = at;
            let delay = at - now;
            lowest = lowest.min(delay);
            highest = highest.max(delay);
        }
        assert!(lowest >= Duration::from_millis(25), "{lowest:?}");
        assert!(highest <= Duration::from_millis(35), "{highest:?}");
        assert!(lowest < Duration::from_millis(26), "no spread: {lowest:?}");
        assert!(
            highest > Duration::from_millis(34),
            "no spread: {highest:?}"
        );
    }

    #[test]
    fn a_burst_keeps_its_order_under_jitter() {
        let t0 = Instant::now();
        let mut d = Direction::new(spec(30, 10, 0.0), t0, 3);
        let dues: Vec<Instant> = (0..1000).map(|_| due(d.admit(t0))).collect();
        assert!(dues.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn loss_rate_is_within_a_binomial_bound() {
        let t0 = Instant::now();
        let mut d = Direction::new(spec(0, 0, 0.01), t0, 42);
        let n = 200_000u32;
        let lost = (0..n).filter(|_| d.admit(t0) == Fate::Lost).count() as f64;
        // Mean 2000, sd ≈ 44.5: ±5 sd.
        assert!((lost - 2000.0).abs() < 225.0, "lost {lost} of {n}");
    }

    #[test]
    fn no_loss_loses_nothing() {
        let t0 = Instant::now();
        let mut d = Direction::new(spec(1, 0, 0.0), t0, 42);
        assert!((0..10_000).all(|_| matches!(d.admit(t0), Fate::SendAt(_))));
    }

    #[test]
    fn the_same_seed_repeats_the_same_losses() {
        let t0 = Instant::now();
        let run = |seed| {
            let mut d = Direction::new(spec(0, 0, 0.3), t0, seed);
            (0..100)
                .map(|_| d.admit(t0) == Fate::Lost)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn outage_is_the_end_of_each_period() {
        let schedule = OutageSchedule {
            every: Duration::from_millis(15_000),
            length: Duration::from_millis(100),
        };
        let ms = Duration::from_millis;
        assert!(!schedule.in_outage(ms(0)));
        assert!(!schedule.in_outage(ms(14_899)));
        assert!(schedule.in_outage(ms(14_900)));
        assert!(schedule.in_outage(ms(14_999)));
        assert!(!schedule.in_outage(ms(15_000)));
        assert!(schedule.in_outage(ms(29_950)));
    }

    #[test]
    fn frames_in_an_outage_are_lost_and_others_pass() {
        let t0 = Instant::now();
        let mut s = spec(10, 0, 0.0);
        s.outage = Some(OutageSchedule {
            every: Duration::from_millis(1000),
            length: Duration::from_millis(100),
        });
        let mut d = Direction::new(s, t0, 1);
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(matches!(d.admit(at(899)), Fate::SendAt(_)));
        assert_eq!(d.admit(at(900)), Fate::OutageLost);
        assert_eq!(d.admit(at(999)), Fate::OutageLost);
        assert!(matches!(d.admit(at(1000)), Fate::SendAt(_)));
    }

    #[test]
    fn an_empty_outage_never_fires() {
        let zero = OutageSchedule {
            every: Duration::ZERO,
            length: Duration::from_millis(5),
        };
        assert!(!zero.in_outage(Duration::from_millis(3)));
    }
}
