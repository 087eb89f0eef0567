//! The fail-open state machine.
//!
//! The agent redirects LAN TCP only while the concentrator answers probes. `Up` means the
//! redirect is on. `down_after` failed probes in a row take it `Down` (redirect withdrawn,
//! LAN TCP leaves through the router's ordinary NAT); `up_after` successful probes in a
//! row bring it back `Up`. The state at start is the verdict of the first probe alone, so
//! the agent never redirects to a concentrator it has not heard from.
//!
//! Time is passed in; the machine only uses it to say how long the previous state lasted.

use std::time::{Duration, Instant};

/// Whether the redirect is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// The concentrator answers: redirect on.
    Up,
    /// Fail open: redirect off.
    Down,
}

impl LinkState {
    /// `true` when the nft table should redirect.
    pub fn redirect(self) -> bool {
        self == LinkState::Up
    }
}

/// The verdict of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Ok,
    Failed,
}

impl From<bool> for Probe {
    fn from(ok: bool) -> Probe {
        if ok {
            Probe::Ok
        } else {
            Probe::Failed
        }
    }
}

/// A change of state, returned by [`FailOpen::on_probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub from: LinkState,
    pub to: LinkState,
    /// How long the previous state lasted.
    pub after: Duration,
}

/// The state machine. See the module docs.
#[derive(Debug, Clone)]
pub struct FailOpen {
    state: LinkState,
    since: Instant,
    /// Probes in a row that disagree with `state`.
    streak: u32,
    down_after: u32,
    up_after: u32,
}

impl FailOpen {
    /// Start from the first probe's verdict. Thresholds below 1 are treated as 1.
    pub fn new(first: Probe, down_after: u32, up_after: u32, now: Instant) -> FailOpen {
        let state = match first {
            Probe::Ok => LinkState::Up,
            Probe::Failed => LinkState::Down,
        };
        FailOpen {
            state,
            since: now,
            streak: 0,
            down_after: down_after.max(1),
            up_after: up_after.max(1),
        }
    }

    /// New thresholds (a reload); the current state and streak are kept.
    pub fn set_thresholds(&mut self, down_after: u32, up_after: u32) {
        self.down_after = down_after.max(1);
        self.up_after = up_after.max(1);
    }

    /// The current state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// Feed one probe result. Returns the transition if the state changed.
    pub fn on_probe(&mut self, probe: Probe, now: Instant) -> Option<Switch> {
        let (agrees, threshold, next) = match (self.state, probe) {
            (LinkState::Up, Probe::Ok) | (LinkState::Down, Probe::Failed) => (true, 0, self.state),
            (LinkState::Up, Probe::Failed) => (false, self.down_after, LinkState::Down),
            (LinkState::Down, Probe::Ok) => (false, self.up_after, LinkState::Up),
        };
        if agrees {
            self.streak = 0;
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        if self.streak < threshold {
            return None;
        }
        let transition = Switch {
            from: self.state,
            to: next,
            after: now.saturating_duration_since(self.since),
        };
        self.state = next;
        self.since = now;
        self.streak = 0;
        Some(transition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LinkState::{Down, Up};
    use Probe::{Failed, Ok};

    /// Feed `probes` one second apart; return the state after each and the transitions.
    fn run(
        first: Probe,
        down_after: u32,
        up_after: u32,
        probes: &[Probe],
    ) -> Vec<(LinkState, bool)> {
        let t0 = Instant::now();
        let mut h = FailOpen::new(first, down_after, up_after, t0);
        probes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let changed = h.on_probe(*p, t0 + Duration::from_secs(i as u64 + 1));
                (h.state(), changed.is_some())
            })
            .collect()
    }

    #[test]
    fn starts_from_the_first_probe() {
        let t = Instant::now();
        assert_eq!(FailOpen::new(Ok, 2, 1, t).state(), Up);
        assert_eq!(FailOpen::new(Failed, 2, 1, t).state(), Down);
        assert!(Up.redirect());
        assert!(!Down.redirect());
    }

    #[test]
    fn goes_down_after_n_failures_in_a_row() {
        let got = run(Ok, 2, 1, &[Failed, Failed, Failed]);
        assert_eq!(got, vec![(Up, false), (Down, true), (Down, false)]);
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let got = run(Ok, 2, 1, &[Failed, Ok, Failed, Ok]);
        assert!(got.iter().all(|(s, changed)| *s == Up && !changed));
    }

    #[test]
    fn comes_back_after_m_successes_in_a_row() {
        let got = run(Failed, 2, 3, &[Ok, Ok, Failed, Ok, Ok, Ok, Ok]);
        let states: Vec<_> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(states, vec![Down, Down, Down, Down, Down, Up, Up]);
        assert_eq!(got.iter().filter(|(_, c)| *c).count(), 1);
    }

    #[test]
    fn thresholds_of_one_flip_at_once() {
        let got = run(Ok, 1, 1, &[Failed, Ok, Failed]);
        assert_eq!(got, vec![(Down, true), (Up, true), (Down, true)]);
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let got = run(Ok, 0, 0, &[Failed, Ok]);
        assert_eq!(got, vec![(Down, true), (Up, true)]);
    }

    #[test]
    fn transition_reports_time_in_previous_state() {
        let t0 = Instant::now();
        let mut h = FailOpen::new(Ok, 2, 1, t0);
        assert_eq!(h.on_probe(Failed, t0 + Duration::from_secs(5)), None);
        let down = h.on_probe(Failed, t0 + Duration::from_secs(6));
        let want = Switch {
            from: Up,
            to: Down,
            after: Duration::from_secs(6),
        };
        assert_eq!(down, Some(want));
        let up = h.on_probe(Ok, t0 + Duration::from_secs(10));
        let want = Switch {
            from: Down,
            to: Up,
            after: Duration::from_secs(4),
        };
        assert_eq!(up, Some(want));
    }
}
