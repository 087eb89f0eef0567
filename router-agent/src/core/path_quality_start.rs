//! The first look at a new WAN ([`super`]): a fresh agent knows nothing of its WANs while
//! its first downloads ramp, and a far, lossy line left in the bond for the 6 s the rate
//! rule needs costs that download most of its speed (head-of-line blocking behind a
//! 300 ms path). So a WAN starts **unjudged**: while a judged WAN carries the traffic it
//! waits as a backup endpoint (`apply`), and its first probe answers decide, as soon as
//! they come (the control plane calls [`PathQuality::first_look`] on every probe report
//! while a WAN is unjudged, and every counter tick does too):
//!
//! * the WANs are looked at nearest first, so the nearest is judged fit and carries; a
//!   WAN judged fit alone (its first answer came before any other's, a lost or slow first
//!   probe of the near line) is looked at again when another answers;
//! * an RTT under [`FIRST_LOOK_MARGIN`] × the demotion bound of the nearest fit WAN is
//!   fit: the WAN joins the bond (on dsl-lte, starlink and three every WAN joins within
//!   its first probe's RTT);
//! * an RTT past it demotes the WAN at once (`first probes: rtt 300 ms vs 15 ms`), and
//!   after `restore_after` it gets one trial: back in the bond, judged by the rate rule on
//!   what it carries, so a far but fast line (satellite) earns its place back and a far
//!   slow one is demoted for good after `demote_after`.
//!
//! With no fit WAN nothing is held: the bond runs as configured.

use std::time::{Duration, Instant};

use super::{
    rtt_bound, FirstLook, Path, PathQuality, QualityChange, QualitySettings, FIRST_LOOK_MARGIN,
};
use crate::model::wan::Wan;

/// The reason an unjudged WAN waits as a backup endpoint.
pub(super) const UNJUDGED: &str = "unjudged: no probe answer yet";

impl PathQuality {
    /// Judge the unjudged WANs on their probes' RTT so far (`rtts`, per WAN). Returns one
    /// change per WAN judged: fit (`demoted: false`) or far (`demoted: true`); either way
    /// the plan changes (a fit WAN joins or lets the unjudged wait as backups).
    pub fn first_look(
        &mut self,
        rtts: &[(String, Duration)],
        wans: &[Wan],
        settings: &QualitySettings,
        now: Instant,
    ) -> Vec<QualityChange> {
        // Unjudged, or judged fit alone (its first answer came before any other's).
        let mut fresh: Vec<(&str, Duration)> = rtts
            .iter()
            .filter(|(name, _)| wans.iter().any(|w| &w.name == name && self.carries(w)))
            .filter(|(name, _)| {
                self.paths.get(name).map_or(true, |p| match p.look {
                    FirstLook::Unjudged => true,
                    FirstLook::Alone => p.demoted.is_none(),
                    FirstLook::Compared => false,
                })
            })
            .map(|(name, rtt)| (name.as_str(), *rtt))
            .collect();
        fresh.sort_by_key(|&(_, rtt)| rtt);
        let mut changes = Vec::new();
        for (name, rtt) in fresh {
            let best = self.best_fit_rtt(name, rtts, wans);
            let far = best.filter(|&best| {
                settings.enabled && rtt >= rtt_bound(best, settings) * FIRST_LOOK_MARGIN
            });
            let path = self.paths.entry(name.to_owned()).or_default();
            let look = match best {
                Some(_) => FirstLook::Compared,
                None => FirstLook::Alone,
            };
            // Judged fit alone before, and not far from what answered since: no change.
            let again = path.look != FirstLook::Unjudged && far.is_none();
            path.look = look;
            if again {
                continue;
            }
            path.since = None;
            let change = match far {
                Some(best) => {
                    let reason = format!(
                        "first probes: rtt {} ms vs {} ms",
                        rtt.as_millis(),
                        best.as_millis()
                    );
                    path.demoted = Some(reason.clone());
                    path.trial_at = Some(now + settings.restore_after);
                    QualityChange {
                        wan: name.to_owned(),
                        demoted: true,
                        reason,
                        first_look: true,
                    }
                }
                None => QualityChange {
                    wan: name.to_owned(),
                    demoted: false,
                    reason: format!("first probes: rtt {} ms", rtt.as_millis()),
                    first_look: true,
                },
            };
            changes.push(change);
        }
        changes
    }

    /// Whether some WAN is still unjudged (the control plane looks on every probe then).
    pub fn any_unjudged(&self, wans: &[Wan]) -> bool {
        wans.iter()
            .any(|w| self.carries(w) && !self.paths.get(&w.name).is_some_and(Path::judged))
    }

    /// The smallest RTT of the other fit WANs that carry traffic.
    fn best_fit_rtt(
        &self,
        name: &str,
        rtts: &[(String, Duration)],
        wans: &[Wan],
    ) -> Option<Duration> {
        wans.iter()
            .filter(|w| w.name != name && self.carries(w) && self.fit(&w.name))
            .filter_map(|w| {
                let probed = rtts.iter().find(|(n, _)| n == &w.name).map(|(_, r)| *r);
                probed.or_else(|| self.paths.get(&w.name)?.sample.rtt())
            })
            .min()
    }

    /// End the demotions on the first probes alone whose trial is due: back in the bond,
    /// judged by what they carry.
    pub(super) fn trials(&mut self, now: Instant) -> Vec<QualityChange> {
        let mut changes = Vec::new();
        for (name, path) in &mut self.paths {
            if path.trial_at.is_some_and(|at| now >= at) {
                path.trial_at = None;
                path.since = None;
                if path.demoted.take().is_some() {
                    changes.push(super::restored(name, "on trial: judged by what it carries"));
                }
            }
        }
        changes
    }
}
