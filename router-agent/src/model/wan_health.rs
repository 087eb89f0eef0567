//! The per-WAN probe state machine, with mwan3-like semantics. Pure: time is passed in,
//! probe outcomes are fed in by the I/O side (`crate::wan_probe`).
//!
//! ```text
//!            `up` successes in a row                 loss > degraded_loss_pct
//!  Unknown ───────────────────────────▶ Up ◀────────────────────────────────▶ Degraded
//!     │                                 ▲ │                                     │
//!     │ `down` failures in a row        │ │ `down` failures in a row            │
//!     ▼                                 │ ▼                                     │
//!   Down ◀──────────────────────────────┴─┴─────────────────────────────────────┘
//!     ▲          `up` successes in a row (from Down)
//!     └── link_lost(): carrier loss or address removal, at once, from netlink
//! ```
//!
//! [`ProbeState::link_restored`] puts a WAN back to `Unknown` (as at start) with empty
//! counters; the probes then decide. RTT is the median of the successful probes among the
//! last `window` sent, loss the failed fraction of those. When a WAN comes back up, its
//! window keeps only the successes that brought it back, so old failures do not make it
//! `Degraded` at once.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::wan::Health;

/// What one WAN's probe loop (`crate::wan_probe::ProbeLoop`) probes, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The WAN's name, copied into every report.
    pub wan: String,
    /// The device to bind to (empty: source address only).
    pub device: String,
    /// The WAN's source address; same family as the concentrator's address.
    pub src: IpAddr,
    /// From the start of one probe to the start of the next (at least 1 ms).
    pub interval: Duration,
    /// Bound on one probe.
    pub timeout: Duration,
}

/// Probe timing and thresholds for one WAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Time between probes.
    pub interval: Duration,
    /// How long one probe may take before it counts as failed.
    pub timeout: Duration,
    /// Failed probes in a row that mark the WAN down.
    pub down: u32,
    /// Successful probes in a row that mark it up.
    pub up: u32,
    /// How many recent probes RTT and loss are computed over.
    pub window: usize,
    /// Loss (percent) above which an up WAN is `Degraded`.
    pub degraded_loss_pct: u32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            interval: Duration::from_millis(1000),
            timeout: Duration::from_millis(1000),
            down: 3,
            up: 2,
            window: 10,
            degraded_loss_pct: 20,
        }
    }
}

/// A health change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Health,
    pub to: Health,
}

/// The probe state of one WAN.
#[derive(Clone, Debug)]
pub struct ProbeState {
    settings: ProbeSettings,
    health: Health,
    fails_in_row: u32,
    oks_in_row: u32,
    /// Outcomes of the last `window` probes, oldest first: `Some(rtt)` or `None` (failed).
    history: VecDeque<Option<Duration>>,
    next_at: Option<Instant>,
    carrier: bool,
}

impl ProbeState {
    /// A WAN not probed yet (`Unknown`).
    pub fn new(settings: ProbeSettings) -> Self {
        ProbeState {
            settings,
            health: Health::Unknown,
            fails_in_row: 0,
            oks_in_row: 0,
            history: VecDeque::new(),
            next_at: None,
            carrier: true,
        }
    }

    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Whether a probe should be sent at `now`; if so, the next one is scheduled
    /// `interval` later. Never while the link is lost.
    pub fn should_probe(&mut self, now: Instant) -> bool {
        if !self.carrier || self.next_at.is_some_and(|at| now < at) {
            return false;
        }
        self.next_at = Some(now + self.settings.interval);
        true
    }

    /// When the next probe is due (`None`: now, or never while the link is lost).
    pub fn next_probe_at(&self) -> Option<Instant> {
        if self.carrier {
            self.next_at
        } else {
            None
        }
    }

    /// Feed one probe outcome: `Some(rtt)` for a success, `None` for a failure or timeout.
    /// Ignored while the link is lost. Returns the health change, if any.
    pub fn record(&mut self, outcome: Option<Duration>) -> Option<Transition> {
        if !self.carrier {
            return None;
        }
        let window = self.settings.window.max(1);
        self.history.push_back(outcome);
        while self.history.len() > window {
            self.history.pop_front();
        }
        let before = self.health;
        match outcome {
            Some(_) => {
                self.oks_in_row = self.oks_in_row.saturating_add(1);
                self.fails_in_row = 0;
            }
            None => {
                self.fails_in_row = self.fails_in_row.saturating_add(1);
                self.oks_in_row = 0;
            }
        }
        let up = self.settings.up.max(1);
        let down = self.settings.down.max(1);
        self.health = match before {
            _ if self.fails_in_row >= down => Health::Down,
            Health::Unknown | Health::Down if self.oks_in_row >= up => {
                // Forget the failures that led here: keep the successes that brought it back.
                let keep = self.oks_in_row as usize;
                while self.history.len() > keep {
                    self.history.pop_front();
                }
                self.up_or_degraded()
            }
            Health::Up | Health::Degraded => self.up_or_degraded(),
            other => other,
        };
        self.transition(before)
    }

    /// Carrier loss or address removal: `Down` at once, counters reset, no probing until
    /// [`link_restored`](Self::link_restored).
    pub fn link_lost(&mut self) -> Option<Transition> {
        let before = self.health;
        self.carrier = false;
        self.health = Health::Down;
        self.fails_in_row = 0;
        self.oks_in_row = 0;
        self.transition(before)
    }

    /// The link (carrier and a usable address) is back: `Unknown`, probe at once.
    pub fn link_restored(&mut self) -> Option<Transition> {
        if self.carrier {
            return None;
        }
        let before = self.health;
        self.carrier = true;
        self.health = Health::Unknown;
        self.fails_in_row = 0;
        self.oks_in_row = 0;
        self.history.clear();
        self.next_at = None;
        self.transition(before)
    }

    /// Median RTT of the successful probes in the window.
    pub fn rtt(&self) -> Option<Duration> {
        let mut rtts: Vec<Duration> = self.history.iter().flatten().copied().collect();
        if rtts.is_empty() {
            return None;
        }
        rtts.sort_unstable();
        let mid = rtts.len() / 2;
        Some(if rtts.len() % 2 == 1 {
            rtts[mid]
        } else {
            (rtts[mid - 1] + rtts[mid]) / 2
        })
    }

    /// Failed / sent over the window, 0.0..=1.0 (0.0 when nothing was sent).
    pub fn loss(&self) -> f64 {
        if self.history.is_empty() {
            return 0.0;
        }
        let failed = self.history.iter().filter(|o| o.is_none()).count();
        failed as f64 / self.history.len() as f64
    }

    /// Probes in the window (sent and answered or failed).
    pub fn sent(&self) -> usize {
        self.history.len()
    }

    fn up_or_degraded(&self) -> Health {
        if self.loss() * 100.0 > f64::from(self.settings.degraded_loss_pct) {
            Health::Degraded
        } else {
            Health::Up
        }
    }

    fn transition(&self, from: Health) -> Option<Transition> {
        (from != self.health).then_some(Transition {
            from,
            to: self.health,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ProbeSettings {
        ProbeSettings {
            down: 3,
            up: 2,
            window: 10,
            degraded_loss_pct: 20,
            ..ProbeSettings::default()
        }
    }

    const OK: Option<Duration> = Some(Duration::from_millis(20));

    fn feed(p: &mut ProbeState, outcomes: &[Option<Duration>]) -> Vec<Transition> {
        outcomes.iter().filter_map(|o| p.record(*o)).collect()
    }

    #[test]
    fn unknown_goes_up_after_up_successes_in_a_row() {
        let mut p = ProbeState::new(settings());
        assert_eq!(p.health(), Health::Unknown);
        assert_eq!(p.record(OK), None);
        let t = p.record(OK);
        assert_eq!(
            t,
            Some(Transition {
                from: Health::Unknown,
                to: Health::Up
            })
        );
    }

    #[test]
    fn down_after_down_failures_in_a_row_and_a_success_resets_the_streak() {
        let mut p = ProbeState::new(settings());
        feed(&mut p, &[OK, OK]);
        feed(&mut p, &[None, None, OK, None, None]);
        assert_ne!(p.health(), Health::Down, "the streak was broken");
        let t = feed(&mut p, &[None]);
        assert_eq!(t.last().map(|t| t.to), Some(Health::Down));
    }

    #[test]
    fn unknown_goes_down_without_ever_being_up() {
        let mut p = ProbeState::new(settings());
        let t = feed(&mut p, &[None, None, None]);
        assert_eq!(
            t,
            [Transition {
                from: Health::Unknown,
                to: Health::Down
            }]
        );
    }

    #[test]
    fn recovery_needs_up_successes_and_is_not_degraded_by_old_failures() {
        let mut p = ProbeState::new(settings());
        feed(&mut p, &[None; 6]);
        assert_eq!(p.health(), Health::Down);
        assert_eq!(feed(&mut p, &[OK]), []);
        let t = feed(&mut p, &[OK]);
        assert_eq!(t.last().map(|t| t.to), Some(Health::Up));
        assert_eq!(p.loss(), 0.0);
    }

    #[test]
    fn loss_above_the_threshold_degrades_and_recovers() {
        let mut p = ProbeState::new(settings());
        feed(&mut p, &[OK; 10]);
        // 3 of 10 lost, never `down` in a row.
        let t = feed(&mut p, &[None, OK, None, OK, None, OK]);
        assert_eq!(p.health(), Health::Degraded);
        assert_eq!(t[0].to, Health::Degraded);
        assert!((p.loss() - 0.3).abs() < 1e-9);
        feed(&mut p, &[OK; 10]);
        assert_eq!(p.health(), Health::Up);
        // 2 of 10 is not above 20 %.
        feed(&mut p, &[None, OK, None]);
        assert_eq!(p.health(), Health::Up);
    }

    #[test]
    fn rtt_is_the_median_of_the_window() {
        let mut p = ProbeState::new(settings());
        assert_eq!(p.rtt(), None);
        let ms = |v| Some(Duration::from_millis(v));
        feed(&mut p, &[ms(10), ms(50), None, ms(20)]);
        assert_eq!(p.rtt(), Some(Duration::from_millis(20)));
        feed(&mut p, &[ms(30)]);
        assert_eq!(p.rtt(), Some(Duration::from_millis(25)));
        assert_eq!(p.sent(), 5);
        // Only the last `window` probes count.
        feed(&mut p, &[ms(100); 10]);
        assert_eq!(p.rtt(), Some(Duration::from_millis(100)));
        assert_eq!(p.sent(), 10);
    }

    #[test]
    fn link_loss_is_down_at_once_and_restoring_starts_over() {
        let mut p = ProbeState::new(settings());
        feed(&mut p, &[OK, OK]);
        assert_eq!(
            p.link_lost(),
            Some(Transition {
                from: Health::Up,
                to: Health::Down
            })
        );
        assert_eq!(p.link_lost(), None, "already down");
        assert_eq!(p.record(OK), None, "probes are ignored without a link");
        let now = Instant::now();
        assert!(!p.should_probe(now));
        assert_eq!(p.next_probe_at(), None);
        assert_eq!(p.link_restored().map(|t| t.to), Some(Health::Unknown));
        assert_eq!(p.link_restored(), None);
        assert!(p.should_probe(now), "probe at once after the link returns");
        assert_eq!(p.sent(), 0);
    }

    #[test]
    fn probes_are_scheduled_every_interval() {
        let mut p = ProbeState::new(settings());
        let t0 = Instant::now();
        assert!(p.should_probe(t0));
        assert!(!p.should_probe(t0 + Duration::from_millis(999)));
        assert_eq!(p.next_probe_at(), Some(t0 + Duration::from_secs(1)));
        assert!(p.should_probe(t0 + Duration::from_secs(1)));
        assert!(!p.should_probe(t0 + Duration::from_millis(1500)));
    }
}
