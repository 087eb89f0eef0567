//! Which concentrator new connections go to, when there are several.
//!
//! Each concentrator has a liveness from its authenticated probes (the active one's by
//! the core's main probe, the others' by [`Concentrators::due_probes`]) and from
//! relayed connections that could not reach it ([`Concentrators::on_failure`]). New
//! connections go to the **active** one: the first *up* concentrator in priority order.
//!
//! * **Down at once.** One failed probe or one failed relayed connect marks a
//!   concentrator down; if it was the active one, new connections move to the next up
//!   one at once, and the failed one is probed again after [`MIN_PROBE_GAP`].
//! * **Up with hysteresis.** A concentrator that failed is up again after
//!   [`RECOVER_PROBES`] successful probes in a row *and* [`HOLD_DOWN`] after its last
//!   failure; only then do new connections come back to it. A concentrator that never
//!   failed is up on its first successful probe, and so is any concentrator while no
//!   other is up (nothing to flap against: the alternative is failing open).
//! * **No up concentrator:** the active one is the first that answered its last probe,
//!   or else stays where it is; the core fails open only when none answers.
//! * **Probing:** a down concentrator every `health.interval` (to see it recover); an up
//!   standby every [`STANDBY_EVERY`] × `health.interval` (to know it is there when the
//!   active one fails).
//!
//! Connections already relayed through a concentrator that dies cannot move: they end
//! with a reset, as on any proxy.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::MIN_PROBE_GAP;

/// Successful probes in a row before a concentrator that failed is up again.
pub const RECOVER_PROBES: u32 = 3;
/// How long after its last failure a concentrator stays down at least.
pub const HOLD_DOWN: Duration = Duration::from_secs(10);
/// An up standby is probed every this many health intervals.
pub const STANDBY_EVERY: u32 = 5;

/// A concentrator's role, as the status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcentratorState {
    /// New connections go to it.
    Active,
    /// Up, and next in line.
    Standby,
    /// Its last evidence was a failure (or it has not recovered yet).
    Down,
}

impl ConcentratorState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConcentratorState::Active => "active",
            ConcentratorState::Standby => "standby",
            ConcentratorState::Down => "down",
        }
    }
}

/// One concentrator as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcentratorView {
    pub name: String,
    /// The address connections go to (the first resolved one).
    pub address: SocketAddr,
    pub state: ConcentratorState,
    /// The last successful probe's round trip.
    pub rtt: Option<Duration>,
}

/// A standby probe the shell should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyProbe {
    pub name: String,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    addrs: Vec<SocketAddr>,
    up: bool,
    /// The last evidence was a success.
    answering: bool,
    good_streak: u32,
    last_failure: Option<Instant>,
    rtt: Option<Duration>,
    next_probe: Instant,
    in_flight: bool,
}

/// The concentrators, preferred first, and which one is active. See the module docs.
#[derive(Debug, Clone)]
pub struct Concentrators {
    entries: Vec<Entry>,
    active: usize,
}

impl Concentrators {
    /// `list` (name and resolved addresses, preferred first, none empty); the first
    /// one's first probe said `first_ok`; the others are probed at once.
    pub fn new(list: Vec<(String, Vec<SocketAddr>)>, first_ok: bool, now: Instant) -> Self {
        let entries = list
            .into_iter()
            .filter(|(_, addrs)| !addrs.is_empty())
            .enumerate()
            .map(|(i, (name, addrs))| Entry {
                name,
                addrs,
                up: i == 0 && first_ok,
                answering: i == 0 && first_ok,
                good_streak: u32::from(i == 0 && first_ok),
                last_failure: (i == 0 && !first_ok).then_some(now),
                rtt: None,
                next_probe: now,
                in_flight: false,
            })
            .collect();
        Concentrators { entries, active: 0 }
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The active concentrator's name.
    pub fn active_name(&self) -> &str {
        &self.entries[self.active].name
    }

    /// The address new connections go to.
    pub fn active_addr(&self) -> SocketAddr {
        self.entries[self.active].addrs[0]
    }

    /// Every address of every concentrator (for the redirect's exclusions).
    pub fn all_addrs(&self) -> Vec<SocketAddr> {
        self.entries
            .iter()
            .flat_map(|e| e.addrs.iter().copied())
            .collect()
    }

    /// The name of the concentrator whose addresses include `addr`.
    pub fn name_of(&self, addr: SocketAddr) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.addrs.contains(&addr))
            .map(|e| e.name.as_str())
    }

    /// Some concentrator answered its last probe.
    pub fn any_answering(&self) -> bool {
        self.entries.iter().any(|e| e.answering)
    }

    /// Each concentrator with its state and RTT, preferred first.
    pub fn views(&self) -> Vec<ConcentratorView> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| ConcentratorView {
                name: e.name.clone(),
                address: e.addrs[0],
                state: if i == self.active && (e.up || e.answering) {
                    ConcentratorState::Active
                } else if e.up {
                    ConcentratorState::Standby
                } else {
                    ConcentratorState::Down
                },
                rtt: e.rtt,
            })
            .collect()
    }

    /// A probe of `name` succeeded in `rtt`. Returns whether the active one changed.
    pub fn on_success(&mut self, name: &str, rtt: Duration, now: Instant) -> bool {
        let others_up = self.entries.iter().any(|e| e.up && e.name != name);
        let Some(e) = self.entries.iter_mut().find(|e| e.name == name) else {
            return false;
        };
        e.answering = true;
        e.rtt = Some(rtt);
        e.good_streak = e.good_streak.saturating_add(1);
        let held = e
            .last_failure
            .is_some_and(|at| now.saturating_duration_since(at) < HOLD_DOWN);
        let recovered = e.last_failure.is_none() || (e.good_streak >= RECOVER_PROBES && !held);
        if !e.up && (!others_up || recovered) {
            e.up = true;
        }
        self.choose()
    }

    /// A probe of `name` failed, or a relayed connection could not reach it: it is down
    /// and probed again soon. Returns whether the active one changed.
    pub fn on_failure(&mut self, name: &str, now: Instant) -> bool {
        let Some(e) = self.entries.iter_mut().find(|e| e.name == name) else {
            return false;
        };
        e.up = false;
        e.answering = false;
        e.good_streak = 0;
        e.last_failure = Some(now);
        e.next_probe = now + MIN_PROBE_GAP;
        self.choose()
    }

    /// A probe of `name` ended (either way): the next one is due after `interval`
    /// (down) or [`STANDBY_EVERY`] of them (up).
    pub fn probe_ended(&mut self, name: &str, interval: Duration, now: Instant) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.name == name) {
            e.in_flight = false;
            let every = if e.up {
                interval * STANDBY_EVERY
            } else {
                interval
            };
            // A failure may already have asked for a sooner one.
            let soonest = if e.answering {
                now + every
            } else {
                e.next_probe.max(now + MIN_PROBE_GAP).min(now + every)
            };
            e.next_probe = soonest;
        }
    }

    /// The standbys due for a probe at `now`, marked in flight (the active one is the
    /// main probe's).
    pub fn due_probes(&mut self, now: Instant) -> Vec<StandbyProbe> {
        let active = self.active;
        self.entries
            .iter_mut()
            .enumerate()
            .filter(|(i, e)| *i != active && !e.in_flight && e.next_probe <= now)
            .map(|(_, e)| {
                e.in_flight = true;
                StandbyProbe {
                    name: e.name.clone(),
                    addr: e.addrs[0],
                }
            })
            .collect()
    }

    /// When the next standby probe is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, e)| *i != self.active && !e.in_flight)
            .map(|(_, e)| e.next_probe)
            .min()
    }

    /// Pick the active one: the first up, else the first answering, else no change.
    fn choose(&mut self) -> bool {
        let pick = self
            .entries
            .iter()
            .position(|e| e.up)
            .or_else(|| self.entries.iter().position(|e| e.answering));
        match pick {
            Some(i) if i != self.active => {
                // The demoted one is now a standby: its probes are ours to schedule.
                self.entries[self.active].in_flight = false;
                self.active = i;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
#[path = "concentrators_tests.rs"]
mod tests;
