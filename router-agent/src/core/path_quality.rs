//! Path quality: a WAN that hurts the bond more than it helps is turned into a backup
//! endpoint until it recovers.
//!
//! MPTCP's default scheduler sends on the subflow with the lowest RTT that has room, and
//! when that one is full it still queues on the others: a slow, lossy line (5 Mbit/s at
//! 300 ms beside 50 Mbit/s at 15 ms) then holds data the receiver needs in order, and the
//! connection waits for it (head-of-line blocking), so the bond does worse than the good
//! line alone. A backup endpoint carries nothing while a non-backup subflow works, and
//! takes over at once when none does.
//!
//! Every [`crate::control`] counter tick (2 s) the control plane feeds one
//! [`PathSample`] per WAN to [`PathQuality::observe`]: the device's byte counters (the
//! rate), the RTT of its live subflows or else its probes' median, and its probe loss.
//! The policy judges the WANs that carry traffic by choice (mode `on`, link up, health up
//! or degraded, not a metered WAN held back):
//!
//! * **Bad** when its loss is at least `loss_pct` over a full probe window, or when its
//!   RTT is at least `rtt_ratio` × the best WAN's and `min_rtt_gap` more, *and* it moves
//!   at most `rate_share_pct` % of the busiest other WAN's rate while that one is busy
//!   (at least [`BUSY_RATE`]). The rate condition keeps a far but fast line (satellite)
//!   in the bond: it is judged only while there is traffic, by what it carries.
//! * **Demoted** after it has been bad for `demote_after` without a break, unless no
//!   other judged WAN would be left undemoted (never the last good WAN).
//! * **Restored** after it has been good for `restore_after`: RTT below 0.8 × the demotion
//!   bound, loss below half the threshold. A demoted WAN carries no traffic, so its rate
//!   is not asked; its probes run again since it is idle, and they see the recovery.
//!   It is restored at once when it is the only judged WAN left.
//!
//! A fresh agent has none of this evidence while its first downloads ramp, so a new WAN
//! starts **unjudged** and its first probe answers decide ([`start`]): unjudged, it waits
//! as a backup endpoint while a judged WAN carries the traffic; its first RTT within the
//! bound (× [`FIRST_LOOK_MARGIN`]) makes it judged and it joins; a first RTT past that
//! demotes it at once, and after `restore_after` it gets one **trial**, judged by the
//! rules above by what it carries (so a far but fast line earns its place back).
//!
//! [`PathQuality::apply`] marks the demoted and the unjudged WANs `Mode::Backup` in the
//! reconcile, before the routing plan, so their endpoints get the `backup` flag in place (`SET_FLAGS`, no
//! subflow is torn down) and new connections start from another WAN. Pure: time and the
//! WANs are arguments.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::model::wan::{Health, Mode, Wan};

/// A WAN at least this busy (bytes/s, 1 Mbit/s) makes another WAN's rate meaningful.
pub const BUSY_RATE: f64 = 125_000.0;
/// A demoted WAN's RTT must fall below this share of the demotion bound to count as good.
pub const RESTORE_MARGIN: f64 = 0.8;
/// A first probe RTT this many times the demotion bound demotes a WAN at once, on the
/// probes alone (little evidence: a wide margin).
pub const FIRST_LOOK_MARGIN: u32 = 2;
/// Weight of a new rate sample in the rate average.
const RATE_WEIGHT: f64 = 0.5;

/// The knobs (`[path_quality]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualitySettings {
    /// Off: no WAN is ever demoted (and any demoted one is restored).
    pub enabled: bool,
    /// RTT at least this many times the best WAN's is a bad sign.
    pub rtt_ratio: u32,
    /// ... and at least this much more than the best.
    pub min_rtt_gap: Duration,
    /// ... with at most this share (percent) of the busiest other WAN's rate.
    pub rate_share_pct: u32,
    /// Probe loss (percent, over a full window) that is bad by itself.
    pub loss_pct: u32,
    /// Bad this long without a break: demoted.
    pub demote_after: Duration,
    /// Good this long without a break: restored.
    pub restore_after: Duration,
}

impl Default for QualitySettings {
    fn default() -> Self {
        QualitySettings {
            enabled: true,
            rtt_ratio: 8,
            min_rtt_gap: Duration::from_millis(50),
            rate_share_pct: 20,
            loss_pct: 15,
            demote_after: Duration::from_secs(6),
            restore_after: Duration::from_secs(30),
        }
    }
}

/// What the shell measured of one WAN at one time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PathSample {
    /// The device's received + sent bytes (a counter: the rate is its slope).
    pub bytes: u64,
    /// The smallest smoothed RTT of its live subflows (None: no subflow).
    pub subflow_rtt: Option<Duration>,
    /// Its probes' median RTT (None: no answered probe in the window).
    pub probe_rtt: Option<Duration>,
    /// Its probes' loss, 0.0..=1.0, and whether the probe window is full.
    pub loss: f64,
    pub loss_window_full: bool,
}

impl PathSample {
    /// The RTT judged: the subflows' (what the data sees), else the probes'.
    fn rtt(&self) -> Option<Duration> {
        self.subflow_rtt.or(self.probe_rtt)
    }
}

/// A WAN's verdict, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub demoted: bool,
    /// Why it was demoted (`rtt 310 ms vs 15 ms, 0.3 vs 48.1 Mbit/s`, `loss 20%`).
    pub reason: Option<String>,
}

/// One WAN demoted or restored, for the log and the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualityChange {
    pub wan: String,
    pub demoted: bool,
    pub reason: String,
    /// Decided on the first probes of an unjudged WAN (`demoted: false`: judged fit).
    pub first_look: bool,
}

/// What is known of one WAN between samples.
#[derive(Debug, Clone, Default)]
struct Path {
    last: Option<(Instant, u64)>,
    /// Average rate, bytes/s.
    rate: f64,
    sample: PathSample,
    /// Since when it has been bad (undemoted) or good (demoted), without a break.
    since: Option<Instant>,
    demoted: Option<String>,
    /// How far its first probe answers have judged it ([`start`]).
    look: FirstLook,
    /// A demotion on the first probes alone ends in a trial at this time.
    trial_at: Option<Instant>,
}

impl Path {
    /// Its first probe RTT has been judged; until then it is unjudged.
    fn judged(&self) -> bool {
        self.look != FirstLook::Unjudged
    }
}

/// How far a WAN's first probe answers have judged it ([`start`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum FirstLook {
    /// No answer judged yet: it waits as a backup while a judged WAN carries.
    #[default]
    Unjudged,
    /// Judged with no other fit WAN to compare with: looked at again when one answers.
    Alone,
    /// Judged against the nearest fit WAN.
    Compared,
}

/// The per-WAN path quality, kept between samples. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct PathQuality {
    paths: BTreeMap<String, Path>,
    /// The unjudged WANs the last [`Self::apply`] made backup endpoints.
    held: std::collections::BTreeSet<String>,
}

impl PathQuality {
    /// Record one sample per WAN at `now` and judge them. `wans` are the WANs as last
    /// planned (their mode as configured). Returns the demotions and restorations.
    pub fn observe(
        &mut self,
        samples: &[(String, PathSample)],
        wans: &[Wan],
        settings: &QualitySettings,
        now: Instant,
    ) -> Vec<QualityChange> {
        for (name, sample) in samples {
            self.record(name, *sample, now);
        }
        self.paths
            .retain(|name, _| wans.iter().any(|w| &w.name == name));
        let rtts: Vec<(String, Duration)> = samples
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.rtt()?)))
            .collect();
        let mut changes = self.first_look(&rtts, wans, settings, now);
        changes.extend(self.judge(wans, settings, now));
        changes
    }

    fn record(&mut self, name: &str, sample: PathSample, now: Instant) {
        let path = self.paths.entry(name.to_owned()).or_default();
        if let Some((then, bytes)) = path.last {
            let secs = now.saturating_duration_since(then).as_secs_f64();
            if secs > 0.0 {
                // A counter that went back (a re-created device) counts as idle.
                let rate = sample.bytes.saturating_sub(bytes) as f64 / secs;
                path.rate = RATE_WEIGHT * rate + (1.0 - RATE_WEIGHT) * path.rate;
            }
        }
        path.last = Some((now, sample.bytes));
        path.sample = sample;
    }

    fn judge(
        &mut self,
        wans: &[Wan],
        settings: &QualitySettings,
        now: Instant,
    ) -> Vec<QualityChange> {
        let judged: Vec<&str> = wans
            .iter()
            .filter(|w| self.judged(w) && self.paths.get(&w.name).is_some_and(Path::judged))
            .map(|w| w.name.as_str())
            .collect();
        let mut changes = self.trials(now);
        // Off, or only one WAN to judge: every demoted WAN comes back at once. (A WAN
        // demoted on its first probes may not be `up` yet: it counts.)
        let carried = wans
            .iter()
            .filter(|w| self.carries(w) && self.paths.get(&w.name).is_some_and(Path::judged))
            .count();
        if !settings.enabled || carried < 2 {
            for (name, path) in &mut self.paths {
                path.trial_at = None;
                if path.demoted.take().is_some() {
                    let why = if settings.enabled {
                        "no other WAN to carry the traffic"
                    } else {
                        "path quality control is off"
                    };
                    changes.push(restored(name, why));
                }
                path.since = None;
            }
            return changes;
        }
        for &name in &judged {
            let verdict = self.bad(name, &judged, settings);
            let others_good = judged
                .iter()
                .any(|&o| o != name && self.paths[o].demoted.is_none());
            let path = self.paths.get_mut(name).expect("judged WANs have a path");
            match (&path.demoted, verdict) {
                (None, Badness::Bad(reason)) => {
                    let since = *path.since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= settings.demote_after && others_good
                    {
                        path.demoted = Some(reason.clone());
                        path.since = None;
                        changes.push(QualityChange {
                            wan: name.to_owned(),
                            demoted: true,
                            reason,
                            first_look: false,
                        });
                    }
                }
                (None, _) => path.since = None,
                (Some(_), Badness::Good) => {
                    let since = *path.since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= settings.restore_after {
                        path.demoted = None;
                        path.since = None;
                        changes.push(restored(name, "good again"));
                    }
                }
                (Some(_), _) => path.since = None,
            }
        }
        // A demoted WAN whose every peer is demoted too (or gone) is the last one: restore.
        let demoted: Vec<&str> = judged
            .iter()
            .copied()
            .filter(|&n| self.paths[n].demoted.is_some())
            .collect();
        if demoted.len() == judged.len() {
            for name in demoted {
                let path = self.paths.get_mut(name).expect("judged");
                path.demoted = None;
                path.since = None;
                changes.push(restored(name, "no other WAN to carry the traffic"));
            }
        }
        changes
    }

    /// Whether `name` is bad now, good now, or cannot be told.
    fn bad(&self, name: &str, judged: &[&str], s: &QualitySettings) -> Badness {
        let path = &self.paths[name];
        let sample = &path.sample;
        let loss_pct = sample.loss * 100.0;
        let others = || {
            judged
                .iter()
                .filter(|&&o| o != name)
                .map(|&o| &self.paths[o])
        };
        let best_rtt = others()
            .filter(|p| p.demoted.is_none())
            .filter_map(|p| p.sample.rtt())
            .min();
        if path.demoted.is_some() {
            let (Some(rtt), Some(best)) = (sample.rtt(), best_rtt) else {
                return Badness::Unknown;
            };
            let bound = rtt_bound(best, s).mul_f64(RESTORE_MARGIN);
            let lossy = sample.loss_window_full && loss_pct * 2.0 >= f64::from(s.loss_pct);
            return if rtt < bound && !lossy {
                Badness::Good
            } else {
                Badness::Unknown
            };
        }
        if sample.loss_window_full && loss_pct >= f64::from(s.loss_pct) {
            return Badness::Bad(format!("loss {loss_pct:.0}%"));
        }
        let (Some(rtt), Some(best)) = (sample.rtt(), best_rtt) else {
            return Badness::Unknown;
        };
        let busiest = others().map(|p| p.rate).fold(0.0, f64::max);
        if rtt < rtt_bound(best, s) || busiest < BUSY_RATE {
            return Badness::Good;
        }
        if path.rate * 100.0 <= busiest * f64::from(s.rate_share_pct) {
            let mbit = |r: f64| r * 8.0 / 1e6;
            return Badness::Bad(format!(
                "rtt {} ms vs {} ms, {:.1} vs {:.1} Mbit/s",
                rtt.as_millis(),
                best.as_millis(),
                mbit(path.rate),
                mbit(busiest)
            ));
        }
        Badness::Good
    }

    /// Mark the demoted WANs `Mode::Backup` (the reconcile, before the plan), and the
    /// unjudged ones while a judged WAN carries the traffic. A demoted WAN is left as it is
    /// when no other judged WAN is usable now: the plan never takes the last good WAN out
    /// of the bond, even between two samples.
    pub fn apply(&mut self, wans: &mut [Wan], settings: &QualitySettings) {
        let usable: Vec<bool> = wans
            .iter()
            .map(|w| self.carries(w) && self.fit(&w.name))
            .collect();
        let demote: Vec<bool> = wans
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let demoted = self.carries(w) && self.demoted(&w.name).is_some();
                let others = usable.iter().enumerate().any(|(j, &u)| j != i && u);
                demoted && others
            })
            .collect();
        let any_usable = usable.iter().any(|&u| u);
        self.held.clear();
        for (wan, demote) in wans.iter_mut().zip(demote) {
            let unjudged = settings.enabled
                && any_usable
                && wan.mode == Mode::On
                && self.carries(wan)
                && !self.paths.get(&wan.name).is_some_and(Path::judged);
            if unjudged {
                self.held.insert(wan.name.clone());
            }
            if demote || unjudged {
                wan.mode = Mode::Backup;
            }
        }
    }

    /// Judged, and not demoted.
    fn fit(&self, name: &str) -> bool {
        self.paths
            .get(name)
            .is_some_and(|p| p.judged() && p.demoted.is_none())
    }

    /// A WAN that would carry traffic by choice: as [`Self::judged`], or not probed yet.
    fn carries(&self, w: &Wan) -> bool {
        self.by_choice(w) && w.link_up && !w.standby && w.health != Health::Down
    }

    /// Mode `on`, or `backup` only because this policy made it so.
    fn by_choice(&self, w: &Wan) -> bool {
        w.mode == Mode::On
            || (w.mode == Mode::Backup
                && (self.demoted(&w.name).is_some() || self.held.contains(&w.name)))
    }

    /// A WAN the policy judges: carrying traffic by choice (mode `on`, or `backup` only
    /// because this policy demoted it), link up, health up or degraded, not held back.
    fn judged(&self, w: &Wan) -> bool {
        self.by_choice(w)
            && w.link_up
            && !w.standby
            && matches!(w.health, Health::Up | Health::Degraded)
    }

    /// Why `name` is demoted, if it is.
    pub fn demoted(&self, name: &str) -> Option<&str> {
        self.paths.get(name).and_then(|p| p.demoted.as_deref())
    }

    /// The verdict of every WAN sampled so far, and of each unjudged WAN held as backup.
    pub fn verdicts(&self) -> impl Iterator<Item = (&str, Verdict)> {
        let sampled = self.paths.iter().map(|(name, p)| {
            let held = self.held.contains(name);
            let reason = match (&p.demoted, held) {
                (Some(why), _) => Some(why.clone()),
                (None, true) => Some(UNJUDGED.to_owned()),
                (None, false) => None,
            };
            let verdict = Verdict {
                demoted: reason.is_some(),
                reason,
            };
            (name.as_str(), verdict)
        });
        let unsampled = self
            .held
            .iter()
            .filter(|name| !self.paths.contains_key(*name))
            .map(|name| {
                let verdict = Verdict {
                    demoted: true,
                    reason: Some(UNJUDGED.to_owned()),
                };
                (name.as_str(), verdict)
            });
        sampled.chain(unsampled)
    }
}

/// What one look at a WAN says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Badness {
    Bad(String),
    Good,
    /// Not enough to tell (no RTT, no traffic): timers restart.
    Unknown,
}

/// The RTT from which a WAN is far: `rtt_ratio` × best, and at least `min_rtt_gap` more.
fn rtt_bound(best: Duration, s: &QualitySettings) -> Duration {
    (best * s.rtt_ratio).max(best + s.min_rtt_gap)
}

fn restored(name: &str, why: &str) -> QualityChange {
    QualityChange {
        wan: name.to_owned(),
        demoted: false,
        reason: why.to_owned(),
        first_look: false,
    }
}

#[path = "path_quality_start.rs"]
mod start;
use start::UNJUDGED;

#[cfg(test)]
#[path = "path_quality_tests.rs"]
mod tests;
