//! Path quality in simulated time: samples every 2 s, as the control plane sends them.

use std::time::{Duration, Instant};

use super::*;
use crate::core::tests::wan;

const TICK: Duration = Duration::from_secs(2);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A link as the samples see it: RTT, rate (Mbit/s) and probe loss.
#[derive(Clone, Copy)]
struct Link {
    rtt: u64,
    mbit: f64,
    loss: f64,
}

const GOOD: Link = Link {
    rtt: 15,
    mbit: 48.0,
    loss: 0.0,
};
const BAD: Link = Link {
    rtt: 310,
    mbit: 0.4,
    loss: 0.0,
};

/// Two WANs (`dsl`, `lte`) and their byte counters, stepped in 2 s ticks.
struct Bed {
    quality: PathQuality,
    settings: QualitySettings,
    wans: Vec<Wan>,
    bytes: Vec<u64>,
    now: Instant,
}

impl Bed {
    /// Two WANs whose first probes judged both fit (the rate rule's tests start here).
    fn new(settings: QualitySettings) -> Bed {
        let mut bed = Bed::fresh(settings);
        let near = [("dsl".to_owned(), ms(15)), ("lte".to_owned(), ms(20))];
        let changes = bed
            .quality
            .first_look(&near, &bed.wans, &bed.settings, bed.now);
        assert_eq!(changes.len(), 2, "both judged fit");
        bed
    }

    /// Two WANs, neither probed yet (a fresh agent).
    fn fresh(settings: QualitySettings) -> Bed {
        Bed {
            quality: PathQuality::default(),
            settings,
            wans: vec![
                wan("dsl", "10.0.1.2", Mode::On, Health::Up),
                wan("lte", "10.0.2.2", Mode::On, Health::Up),
            ],
            bytes: vec![0, 0],
            now: Instant::now(),
        }
    }

    /// One tick with these links; the changes it made. The WANs are planned as the
    /// reconcile would (`apply`), so the next tick sees the demoted one as `backup`.
    fn tick(&mut self, links: [Link; 2]) -> Vec<QualityChange> {
        self.now += TICK;
        let samples: Vec<(String, PathSample)> = self
            .wans
            .iter()
            .zip(&mut self.bytes)
            .zip(links)
            .map(|((w, bytes), link)| {
                *bytes += (link.mbit * 1e6 / 8.0 * TICK.as_secs_f64()) as u64;
                let sample = PathSample {
                    bytes: *bytes,
                    subflow_rtt: None,
                    probe_rtt: Some(ms(link.rtt)),
                    loss: link.loss,
                    loss_window_full: true,
                };
                (w.name.clone(), sample)
            })
            .collect();
        let changes = self
            .quality
            .observe(&samples, &self.wans, &self.settings, self.now);
        self.replan();
        changes
    }

    /// Plan the WANs as the reconcile does: as configured (`on`), then `apply`.
    fn replan(&mut self) {
        for w in &mut self.wans {
            w.mode = Mode::On;
        }
        self.quality.apply(&mut self.wans, &self.settings);
    }

    /// A probe answer with these RTTs so far (None: not answered yet), `after` the last
    /// tick; the changes, then the plan follows.
    fn probes(&mut self, rtts: [Option<u64>; 2], after: Duration) -> Vec<QualityChange> {
        let rtts: Vec<(String, Duration)> = self
            .wans
            .iter()
            .zip(rtts)
            .filter_map(|(w, rtt)| Some((w.name.clone(), ms(rtt?))))
            .collect();
        let changes = self
            .quality
            .first_look(&rtts, &self.wans, &self.settings, self.now + after);
        self.replan();
        changes
    }

    fn dsl_mode(&self) -> Mode {
        self.wans[0].mode
    }

    /// Ticks until a change, at most `n`; the change and the ticks it took.
    fn until_change(&mut self, links: [Link; 2], n: usize) -> Option<(QualityChange, usize)> {
        (1..=n).find_map(|i| self.tick(links).pop().map(|c| (c, i)))
    }

    fn lte_mode(&self) -> Mode {
        self.wans[1].mode
    }
}

#[test]
fn a_far_slow_wan_is_demoted_after_the_hold_and_restored_once_good_for_long() {
    let mut bed = Bed::new(QualitySettings::default());
    let (change, ticks) = bed.until_change([GOOD, BAD], 10).expect("demoted");
    assert!(change.demoted);
    assert_eq!(change.wan, "lte");
    assert!(
        change.reason.starts_with("rtt 310 ms vs 15 ms"),
        "{}",
        change.reason
    );
    // The first tick only starts the rate; bad from the second; 6 s of it.
    assert_eq!(ticks, 5, "demote_after is 6 s of bad samples");
    assert_eq!(bed.lte_mode(), Mode::Backup);
    assert_eq!(bed.quality.demoted("lte"), Some(change.reason.as_str()));

    // Still far: stays demoted, however long.
    assert!(bed.until_change([GOOD, BAD], 30).is_none());
    assert_eq!(bed.lte_mode(), Mode::Backup);

    // Made good (and idle, as a backup is): restored after 30 s of good samples.
    let idle_good = Link {
        rtt: 20,
        mbit: 0.0,
        loss: 0.0,
    };
    let (change, ticks) = bed.until_change([GOOD, idle_good], 30).expect("restored");
    assert!(!change.demoted);
    assert_eq!(ticks, 16, "30 s of good samples, counted from the first");
    assert_eq!(bed.lte_mode(), Mode::On);
}

#[test]
fn a_break_in_the_bad_spell_restarts_the_hold() {
    let mut bed = Bed::new(QualitySettings::default());
    bed.tick([GOOD, BAD]);
    for _ in 0..3 {
        assert!(bed.tick([GOOD, BAD]).is_empty());
    }
    // One tick where the far WAN's RTT is near: the spell ends.
    let near = Link { rtt: 20, ..BAD };
    assert!(bed.tick([GOOD, near]).is_empty());
    let (_, ticks) = bed.until_change([GOOD, BAD], 10).expect("demoted");
    assert!(ticks >= 4, "the hold starts again: {ticks}");
}

#[test]
fn a_far_but_fast_wan_stays_in_the_bond() {
    // Satellite-like: 600 ms but carrying as much as the near line.
    let far_fast = Link {
        rtt: 600,
        mbit: 40.0,
        loss: 0.0,
    };
    let mut bed = Bed::new(QualitySettings::default());
    assert!(bed.until_change([GOOD, far_fast], 30).is_none());
    assert_eq!(bed.lte_mode(), Mode::On);
}

#[test]
fn dsl_lte_is_left_alone() {
    // The dsl-lte profile: 40 Mbit/s at 10 ms, 60 Mbit/s at 60 ms with 1 % loss.
    let dsl = Link {
        rtt: 10,
        mbit: 38.0,
        loss: 0.0,
    };
    let lte = Link {
        rtt: 60,
        mbit: 5.0,
        loss: 0.1,
    };
    let mut bed = Bed::new(QualitySettings::default());
    assert!(
        bed.until_change([dsl, lte], 60).is_none(),
        "6 x the RTT is under the ratio, 10 % probe loss under the threshold"
    );
}

#[test]
fn sustained_loss_demotes_alone() {
    let lossy = Link {
        rtt: 20,
        mbit: 30.0,
        loss: 0.3,
    };
    let mut bed = Bed::new(QualitySettings::default());
    let (change, _) = bed.until_change([GOOD, lossy], 10).expect("demoted");
    assert_eq!(change.reason, "loss 30%");
}

#[test]
fn the_last_good_wan_is_never_demoted() {
    let mut bed = Bed::new(QualitySettings::default());
    let lossy = Link { loss: 0.5, ..GOOD };
    // Both lossy: the first to be demoted leaves the other, which then stays.
    for _ in 0..20 {
        bed.tick([lossy, lossy]);
        let demoted = bed.wans.iter().filter(|w| w.mode == Mode::Backup).count();
        assert!(demoted <= 1);
    }
    assert!(bed.wans.iter().any(|w| w.mode == Mode::On));
}

#[test]
fn a_demoted_wan_comes_back_at_once_when_the_other_goes_down() {
    let mut bed = Bed::new(QualitySettings::default());
    bed.until_change([GOOD, BAD], 10).expect("demoted");
    bed.wans[0].health = Health::Down;
    let changes = bed.tick([GOOD, BAD]);
    assert_eq!(changes.len(), 1);
    assert!(!changes[0].demoted);
    assert_eq!(bed.lte_mode(), Mode::On);
}

#[test]
fn apply_keeps_the_demoted_wan_when_nothing_else_is_usable() {
    let mut bed = Bed::new(QualitySettings::default());
    bed.until_change([GOOD, BAD], 10).expect("demoted");
    // Between two samples the good WAN's link goes: the plan keeps the other `on`.
    let mut wans = bed.wans.clone();
    wans[1].mode = Mode::On;
    wans[0].link_up = false;
    bed.quality.apply(&mut wans, &bed.settings);
    assert_eq!(wans[1].mode, Mode::On);
}

#[test]
fn switched_off_it_demotes_nothing_and_restores_what_it_had() {
    let mut bed = Bed::new(QualitySettings::default());
    bed.until_change([GOOD, BAD], 10).expect("demoted");
    bed.settings.enabled = false;
    let changes = bed.tick([GOOD, BAD]);
    assert_eq!(changes.len(), 1);
    assert!(!changes[0].demoted);
    assert!(bed.until_change([GOOD, BAD], 30).is_none());
    assert_eq!(bed.lte_mode(), Mode::On);
}

#[test]
fn configured_backup_and_metered_standby_wans_are_not_judged() {
    let mut bed = Bed::new(QualitySettings::default());
    bed.wans[1].standby = true;
    assert!(bed.until_change([GOOD, BAD], 20).is_none());
    bed.wans[1].standby = false;
    bed.wans[1].mode = Mode::Backup;
    let samples = [("lte".to_owned(), PathSample::default())];
    let changes = bed
        .quality
        .observe(&samples, &bed.wans, &bed.settings, bed.now + TICK);
    assert!(changes.is_empty());
}

#[test]
fn a_fresh_agent_holds_an_unprobed_wan_and_demotes_a_far_one_on_its_first_probes() {
    let mut bed = Bed::fresh(QualitySettings::default());
    bed.replan();
    assert_eq!(
        (bed.dsl_mode(), bed.lte_mode()),
        (Mode::On, Mode::On),
        "nothing judged: as configured"
    );
    // The near WAN answers first: it is judged fit and carries, the other waits.
    let changes = bed.probes([Some(15), None], ms(20));
    assert_eq!(changes.len(), 1);
    assert!(changes[0].first_look && !changes[0].demoted);
    assert_eq!(bed.lte_mode(), Mode::Backup);
    let verdicts: Vec<_> = bed.quality.verdicts().collect();
    assert!(
        verdicts
            .iter()
            .any(|(n, v)| *n == "lte" && v.reason.as_deref() == Some(UNJUDGED)),
        "{verdicts:?}"
    );
    // The far WAN's first answer: demoted at once, well before the rate rule's 6 s.
    let changes = bed.probes([Some(15), Some(310)], ms(320));
    assert_eq!(changes.len(), 1);
    assert!(changes[0].demoted, "{changes:?}");
    assert_eq!(changes[0].reason, "first probes: rtt 310 ms vs 15 ms");
    assert_eq!(bed.lte_mode(), Mode::Backup);
    assert_eq!(bed.dsl_mode(), Mode::On);
    // Still far and idle: it stays demoted until its trial (restore_after, 30 s) ...
    let (change, ticks) = bed.until_change([GOOD, BAD], 30).expect("trial");
    assert_eq!(change.reason, "on trial: judged by what it carries");
    assert_eq!(ticks, 16, "the first tick 30 s after its first probes");
    assert_eq!(bed.lte_mode(), Mode::On);
    // ... where it carries little beside a busy WAN: demoted for good by the rate rule.
    let (change, ticks) = bed.until_change([GOOD, BAD], 10).expect("demoted again");
    assert!(change.demoted && !change.first_look);
    assert!(
        change.reason.starts_with("rtt 310 ms vs 15 ms"),
        "{}",
        change.reason
    );
    assert!(ticks <= 5, "{ticks}");
    assert!(
        bed.until_change([GOOD, BAD], 60).is_none(),
        "no second trial"
    );
    assert_eq!(bed.lte_mode(), Mode::Backup);
}

#[test]
fn a_fresh_agent_bonds_near_wans_on_their_first_probes() {
    // dsl-lte (10 ms and 60 ms with 10 ms jitter), three (10/30/60), starlink (40/15),
    // and one past the rate rule's bound but not its double: left to the rate rule.
    for (near, far) in [(10, 70), (10, 60), (15, 40), (15, 200)] {
        let mut bed = Bed::fresh(QualitySettings::default());
        bed.replan();
        bed.probes([Some(near), None], ms(near));
        assert_eq!(bed.lte_mode(), Mode::Backup, "waits for its probe");
        let changes = bed.probes([Some(near), Some(far)], ms(far));
        assert!(!changes[0].demoted, "{near}/{far}: {changes:?}");
        assert_eq!((bed.dsl_mode(), bed.lte_mode()), (Mode::On, Mode::On));
        assert!(bed.quality.verdicts().all(|(_, v)| !v.demoted));
    }
}

#[test]
fn a_far_but_fast_wan_earns_its_place_back_on_trial() {
    let far_fast = Link {
        rtt: 600,
        mbit: 40.0,
        loss: 0.0,
    };
    let mut bed = Bed::fresh(QualitySettings::default());
    bed.probes([Some(15), None], ms(20));
    let changes = bed.probes([Some(15), Some(600)], ms(600));
    assert!(changes[0].demoted);
    let (change, _) = bed.until_change([GOOD, far_fast], 30).expect("trial");
    assert!(!change.demoted);
    assert!(bed.until_change([GOOD, far_fast], 60).is_none());
    assert_eq!(bed.lte_mode(), Mode::On);
}

#[test]
fn switched_off_a_fresh_agent_holds_nothing() {
    let settings = QualitySettings {
        enabled: false,
        ..QualitySettings::default()
    };
    let mut bed = Bed::fresh(settings);
    bed.probes([Some(15), None], ms(20));
    assert_eq!(bed.lte_mode(), Mode::On);
    bed.probes([Some(15), Some(310)], ms(320));
    assert_eq!(bed.lte_mode(), Mode::On);
}

#[test]
fn a_single_wan_is_never_held() {
    let mut bed = Bed::fresh(QualitySettings::default());
    bed.wans.truncate(1);
    bed.bytes.truncate(1);
    bed.replan();
    assert_eq!(bed.dsl_mode(), Mode::On);
    let rtts = [("dsl".to_owned(), ms(15))];
    let changes = bed
        .quality
        .first_look(&rtts, &bed.wans, &bed.settings, bed.now);
    assert!(!changes[0].demoted);
    bed.replan();
    assert_eq!(bed.dsl_mode(), Mode::On);
}

#[test]
fn a_far_wan_that_answered_first_is_demoted_when_the_near_one_answers() {
    let mut bed = Bed::fresh(QualitySettings::default());
    // The near line's first probe was lost: the far one answers first, alone, fit.
    let changes = bed.probes([None, Some(310)], ms(320));
    assert!(!changes[0].demoted);
    assert_eq!(bed.dsl_mode(), Mode::Backup, "dsl waits, unjudged");
    let changes = bed.probes([Some(15), Some(310)], ms(800));
    let lte = changes
        .iter()
        .find(|c| c.wan == "lte")
        .expect("lte looked at again");
    assert!(lte.demoted, "{changes:?}");
    assert_eq!((bed.dsl_mode(), bed.lte_mode()), (Mode::On, Mode::Backup));
    // A near WAN judged alone stays fit when the other answers far.
    let mut bed = Bed::fresh(QualitySettings::default());
    bed.probes([Some(15), None], ms(20));
    let changes = bed.probes([Some(15), Some(310)], ms(320));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].wan, "lte");
}
