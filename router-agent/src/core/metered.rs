//! Metered WANs: which are held back (standby) and which carry traffic.
//!
//! Each WAN whose mode is not `off` falls in a [`Tier`]: unmetered, metered, or metered
//! past its monthly allowance. A metered WAN is used only while no WAN of a better tier
//! is available; while held back it has no MPTCP endpoint (so no subflow, not even a
//! backup one, and no handshake) and new connections never start from it, but it keeps
//! its table and rule so its own probes still go through it.
//!
//! * **Promotion is immediate.** The decision runs in every reconcile, and the control
//!   plane reconciles at once when a WAN's health moves into or out of `down` (probe,
//!   passive detection, or link loss). A held-back WAN is promoted in the reconcile that
//!   first sees no better WAN available: no timer is involved.
//! * **Demotion waits.** An active metered WAN goes back to standby only once a better
//!   WAN has been *proven* up (`up` or `degraded`, not merely `unknown`) for
//!   [`DEMOTE_AFTER`], so a flapping primary does not tear down and rebuild the metered
//!   subflows, and live connections get a subflow on the primary before the metered one
//!   goes. [`MeteredPolicy::decide`] returns when that wait ends.
//! * **At start** a metered WAN starts held back if a better WAN is available (its health
//!   still `unknown` counts), so a metered line costs nothing while the primary's first
//!   probes run.
//!
//! "Available" means link up and health not `down`. Pure: the caller passes the WANs
//! (after health), the names of the WANs over their allowance
//! ([`crate::accounting::Ledger::over_allowance`]) and the time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::model::wan::{Health, Mode, Wan};

/// How long a better WAN must be proven up before an active metered WAN is held back.
pub const DEMOTE_AFTER: Duration = Duration::from_secs(5);

/// How much a WAN costs to use: lower is used first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Unmetered,
    /// Metered, within its allowance (or with none).
    Metered,
    /// Metered and past its monthly allowance: the last resort.
    OverAllowance,
}

/// The tier of `wan`, given whether it is past its allowance.
pub fn tier(wan: &Wan, over_allowance: bool) -> Tier {
    match (wan.metered, over_allowance) {
        (false, _) => Tier::Unmetered,
        (true, false) => Tier::Metered,
        (true, true) => Tier::OverAllowance,
    }
}

/// One metered WAN moved between standby and active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeteredChange {
    pub wan: String,
    /// Now held back (true) or carrying traffic (false).
    pub standby: bool,
    pub tier: Tier,
}

/// What one decision did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeteredDecision {
    /// Promotions and demotions, for the log.
    pub changes: Vec<MeteredChange>,
    /// Decide again at this time: a pending demotion is due.
    pub wake: Option<Instant>,
}

/// The metered WANs in use, kept between decisions. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct MeteredPolicy {
    /// Metered WANs carrying traffic, each with since when a better WAN has been proven
    /// up (None: none is).
    active: BTreeMap<String, Option<Instant>>,
}

impl MeteredPolicy {
    /// Set `standby` on every WAN of `wans` (unmetered ones: never) and remember the
    /// active metered ones. `over_allowance` names the WANs past their allowance.
    pub fn decide(
        &mut self,
        wans: &mut [Wan],
        over_allowance: &BTreeSet<String>,
        now: Instant,
    ) -> MeteredDecision {
        let tiers: Vec<Tier> = wans
            .iter()
            .map(|w| tier(w, over_allowance.contains(&w.name)))
            .collect();
        let available = |w: &Wan| w.mode != Mode::Off && w.link_up && w.health != Health::Down;
        let proven = |w: &Wan| {
            w.mode != Mode::Off && w.link_up && matches!(w.health, Health::Up | Health::Degraded)
        };
        let better = |t: Tier, test: &dyn Fn(&Wan) -> bool| {
            wans.iter().zip(&tiers).any(|(w, &u)| u < t && test(w))
        };
        let mut out = MeteredDecision::default();
        let mut active = BTreeMap::new();
        let mut standby = vec![false; wans.len()];
        for (i, wan) in wans.iter().enumerate() {
            let t = tiers[i];
            if t == Tier::Unmetered || wan.mode == Mode::Off {
                continue;
            }
            let held = match self.active.get(&wan.name) {
                // Held back (or new): promoted at once when no better WAN is available.
                None => better(t, &available),
                Some(since) => {
                    if better(t, &proven) {
                        let since = since.unwrap_or(now);
                        let due = since + DEMOTE_AFTER;
                        if now >= due {
                            true
                        } else {
                            out.wake = Some(out.wake.map_or(due, |w| w.min(due)));
                            active.insert(wan.name.clone(), Some(since));
                            false
                        }
                    } else {
                        active.insert(wan.name.clone(), None);
                        false
                    }
                }
            };
            if !held {
                active.entry(wan.name.clone()).or_insert(None);
            }
            // Was active and now held (a demotion), or was held and now active.
            if self.active.contains_key(&wan.name) == held {
                out.changes.push(MeteredChange {
                    wan: wan.name.clone(),
                    standby: held,
                    tier: t,
                });
            }
            standby[i] = held;
        }
        for (wan, held) in wans.iter_mut().zip(standby) {
            wan.standby = held;
        }
        self.active = active;
        out
    }

    /// Whether metered WAN `name` is carrying traffic (not held back).
    pub fn is_active(&self, name: &str) -> bool {
        self.active.contains_key(name)
    }
}

#[cfg(test)]
#[path = "metered_tests.rs"]
mod tests;
