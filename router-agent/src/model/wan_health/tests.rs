//! Unit tests of the WAN health state machine, in simulated time.

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
    let now = Instant::now();
    outcomes.iter().filter_map(|o| p.record(*o, now)).collect()
}

/// Probes a WAN in simulated time: each due probe is answered after `rtt` when `path`
/// says the datagrams get through at that moment, else it times out.
struct Sim {
    p: ProbeState,
    now: Instant,
    rtt: Duration,
    pending: Option<(Instant, Option<Duration>)>,
    sent: u32,
    changes: Vec<(Instant, Transition)>,
}

/// One probe round trip on the wire: 34 + 25 bytes of UDP payload, 2 × 28 bytes of IPv4
/// and UDP headers, 2 × 14 bytes of Ethernet.
const ROUND_TRIP: u64 = 34 + 25 + 2 * 28 + 2 * 14;
const STEP: Duration = Duration::from_millis(5);

impl Sim {
    fn new(settings: ProbeSettings, rtt: Duration) -> Sim {
        Sim {
            p: ProbeState::new(settings),
            now: Instant::now(),
            rtt,
            pending: None,
            sent: 0,
            changes: Vec::new(),
        }
    }

    /// `path(sent_at)`: (the request arrives, the reply arrives).
    fn run(&mut self, for_: Duration, path: &dyn Fn(Instant) -> (bool, bool)) {
        let end = self.now + for_;
        while self.now < end {
            if let Some((at, outcome)) = self.pending {
                if at <= self.now {
                    self.pending = None;
                    if let Some(t) = self.p.record(outcome, self.now) {
                        self.changes.push((self.now, t));
                    }
                }
            }
            if let Some(timeout) = self.p.start_probe(self.now) {
                self.sent += 1;
                let (up, down) = path(self.now);
                self.p
                    .record_cost(if up { ROUND_TRIP } else { ROUND_TRIP / 2 }, self.now);
                self.pending = Some(if up && down && self.rtt <= timeout {
                    (self.now + self.rtt, Some(self.rtt))
                } else {
                    (self.now + timeout, None)
                });
            }
            self.now += STEP;
        }
    }

    fn health(&self) -> Health {
        self.p.health()
    }

    fn went(&self, to: Health) -> Option<Instant> {
        self.changes
            .iter()
            .find(|(_, t)| t.to == to)
            .map(|(at, _)| *at)
    }
}

fn always(_: Instant) -> (bool, bool) {
    (true, true)
}

#[test]
fn unknown_goes_up_after_up_successes_in_a_row() {
    let mut p = ProbeState::new(settings());
    let now = Instant::now();
    assert_eq!(p.health(), Health::Unknown);
    assert_eq!(p.record(OK, now), None);
    let t = p.record(OK, now);
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
    let now = Instant::now();
    feed(&mut p, &[OK, OK]);
    assert_eq!(
        p.link_lost(),
        Some(Transition {
            from: Health::Up,
            to: Health::Down
        })
    );
    assert_eq!(p.link_lost(), None, "already down");
    assert_eq!(p.record(OK, now), None, "probes are ignored without a link");
    assert_eq!(p.start_probe(now), None);
    assert_eq!(p.due_at(now), None);
    assert_eq!(p.link_restored().map(|t| t.to), Some(Health::Unknown));
    assert_eq!(p.link_restored(), None);
    assert!(
        p.start_probe(now).is_some(),
        "probe at once after the link returns"
    );
    assert_eq!(p.sent(), 0);
}

#[test]
fn one_probe_at_a_time_and_the_timeout_follows_the_rtt() {
    let mut p = ProbeState::new(settings());
    let t0 = Instant::now();
    assert_eq!(
        p.start_probe(t0),
        Some(Duration::from_secs(1)),
        "no RTT yet"
    );
    assert_eq!(
        p.start_probe(t0 + Duration::from_secs(5)),
        None,
        "in flight"
    );
    p.record(
        Some(Duration::from_millis(20)),
        t0 + Duration::from_millis(20),
    );
    assert_eq!(p.probe_timeout(), MIN_PROBE_TIMEOUT);
    let mut slow = ProbeState::new(settings());
    slow.record(Some(Duration::from_millis(150)), t0);
    assert_eq!(slow.probe_timeout(), Duration::from_millis(500));
    let mut lte = ProbeState::new(settings());
    lte.record(Some(Duration::from_millis(900)), t0);
    assert_eq!(
        lte.probe_timeout(),
        Duration::from_secs(1),
        "capped by `timeout`"
    );
}

#[test]
fn an_idle_healthy_wan_is_probed_at_the_idle_interval() {
    let mut sim = Sim::new(settings(), Duration::from_millis(20));
    sim.run(Duration::from_secs(2), &always);
    assert_eq!(sim.health(), Health::Up);
    let before = sim.sent;
    sim.run(Duration::from_secs(60), &always);
    assert_eq!(sim.sent - before, 20, "one probe every 3 s");
}

#[test]
fn a_busy_healthy_wan_is_not_probed_and_is_checked_when_its_traffic_stops() {
    let mut sim = Sim::new(settings(), Duration::from_millis(20));
    sim.run(Duration::from_secs(2), &always);
    assert_eq!(sim.health(), Health::Up);
    let busy = PassiveSample {
        subflows: 2,
        active: true,
        srtt: Some(Duration::from_millis(20)),
        ..PassiveSample::default()
    };
    let before = sim.sent;
    for _ in 0..120 {
        sim.p.passive(&busy, sim.now);
        sim.run(Duration::from_millis(250), &always);
    }
    assert_eq!(sim.sent, before, "30 s of traffic, no probe");
    let quiet = PassiveSample {
        active: false,
        ..busy
    };
    sim.p.passive(&quiet, sim.now);
    assert!(sim.p.suspicious(sim.now), "traffic stopped: check the WAN");
    sim.run(Duration::from_millis(900), &always);
    assert_eq!(sim.sent - before, 2, "`up` probes at the short interval");
    assert!(!sim.p.suspicious(sim.now));
    let before = sim.sent;
    sim.run(Duration::from_secs(9), &always);
    assert_eq!(sim.sent - before, 3, "then idle again");
}

#[test]
fn samples_that_stop_coming_end_the_busy_spell_too() {
    let mut sim = Sim::new(settings(), Duration::from_millis(20));
    sim.run(Duration::from_secs(2), &always);
    let busy = PassiveSample {
        subflows: 1,
        active: true,
        ..PassiveSample::default()
    };
    sim.p.passive(&busy, sim.now);
    assert!(sim.p.busy(sim.now));
    let before = sim.sent;
    sim.run(PASSIVE_FRESH + Duration::from_millis(900), &always);
    assert_eq!(
        sim.sent - before,
        2,
        "probed at the short interval once idle"
    );
}

/// The blackhole starts at every phase of the idle schedule, for several RTTs: the
/// WAN is `down` within 5 s each time.
#[test]
fn an_idle_wans_blackhole_is_down_within_5_s() {
    for rtt_ms in [1, 20, 60, 100] {
        for phase_ms in (0..3000).step_by(250) {
            let mut sim = Sim::new(settings(), Duration::from_millis(rtt_ms));
            sim.run(Duration::from_secs(10), &always);
            assert_eq!(sim.health(), Health::Up);
            sim.run(Duration::from_millis(phase_ms), &always);
            let start = sim.now;
            sim.run(Duration::from_secs(8), &|at| (at < start, at < start));
            let down = sim.went(Health::Down).expect("detected");
            let took = down - start;
            assert!(
                took <= Duration::from_secs(5),
                "rtt {rtt_ms} ms, phase {phase_ms} ms: {took:?}"
            );
        }
    }
}

/// A datagram probe that gets no reply fails whichever way its datagrams were lost:
/// upstream only (the request never arrives) and downstream only (the reply is lost)
/// are both detected, and both recover.
#[test]
fn one_direction_blackholes_are_detected_and_recovered() {
    type Path = fn(bool) -> (bool, bool);
    let cases: [(&str, Path); 2] = [
        ("upstream only", |dark| (!dark, true)),
        ("downstream only", |dark| (true, !dark)),
    ];
    for (name, path) in cases {
        let mut sim = Sim::new(settings(), Duration::from_millis(20));
        sim.run(Duration::from_secs(5), &always);
        let start = sim.now;
        let end = start + Duration::from_secs(10);
        sim.run(Duration::from_secs(15), &|at| path(at >= start && at < end));
        let down = sim.went(Health::Down).expect(name);
        assert!(down - start <= Duration::from_secs(5), "{name}");
        let up = sim
            .changes
            .iter()
            .find(|(at, t)| *at > down && t.to == Health::Up)
            .expect(name);
        assert!(up.0 >= end, "{name}: up only once the path works");
        assert!(
            up.0 - end <= Duration::from_secs(2),
            "{name}: recovery seen at the short interval"
        );
    }
}

#[test]
fn the_idle_cost_is_within_budget_unmetered_and_metered() {
    for (settings, budget) in [(settings(), 5_000_000), (settings().metered(), 1_000_000)] {
        let mut sim = Sim::new(settings, Duration::from_millis(30));
        sim.run(Duration::from_secs(20 * 60), &always);
        let per_day = sim.p.probe_bytes_per_day(sim.now).unwrap();
        assert!(per_day <= budget, "{per_day} B a day over {budget}");
        assert!(per_day > budget / 20, "measured, not zero: {per_day}");
    }
}

#[test]
fn a_down_wan_is_probed_fast_for_a_minute_then_at_the_idle_interval() {
    let mut sim = Sim::new(settings(), Duration::from_millis(20));
    sim.run(Duration::from_secs(4), &|_| (false, false));
    assert_eq!(sim.health(), Health::Down);
    let before = sim.sent;
    sim.run(DOWN_FAST_FOR, &|_| (false, false));
    // Back to back: each probe waits its whole timeout (1 s: no RTT known).
    assert!(sim.sent - before >= 55, "fast: {}", sim.sent - before);
    let before = sim.sent;
    sim.run(Duration::from_secs(30), &|_| (false, false));
    assert_eq!(sim.sent - before, 10, "then every idle interval");
}

fn stalled(wait_ms: u64) -> PassiveSample {
    PassiveSample {
        subflows: 1,
        active: true,
        ack_wait: Some(Duration::from_millis(wait_ms)),
        retransmitting: true,
        srtt: Some(Duration::from_millis(20)),
    }
}

#[test]
fn a_busy_wans_blackhole_is_down_from_passive_samples_alone() {
    let mut sim = Sim::new(settings(), Duration::from_millis(20));
    sim.run(Duration::from_secs(2), &always);
    let before = sim.sent;
    let mut down = None;
    // Samples every 250 ms; the last ACK came at 0.
    for i in 0..8u64 {
        sim.run(Duration::from_millis(250), &always);
        let sample = if i == 0 { stalled(0) } else { stalled(i * 250) };
        if let Some(t) = sim.p.passive(&sample, sim.now) {
            down = Some((i * 250, t));
            break;
        }
    }
    let (at, t) = down.expect("passive stall detected");
    assert_eq!(t.to, Health::Down);
    assert!(at <= 1000, "seen after {at} ms");
    assert!(
        sim.changes.iter().all(|(_, t)| t.to != Health::Down),
        "the passive sample said it, not a probe"
    );
    assert!(sim.sent - before <= 1, "at most one check probe");
}

#[test]
fn no_stall_without_a_retransmission_or_below_the_threshold() {
    let mut p = ProbeState::new(settings());
    let now = Instant::now();
    feed(&mut p, &[OK, OK]);
    let sample = PassiveSample {
        retransmitting: false,
        ..stalled(5000)
    };
    assert_eq!(p.passive(&sample, now + Duration::from_secs(10)), None);
    assert_eq!(
        p.passive(&stalled(500), now + Duration::from_secs(10)),
        None
    );
    assert!(p.suspicious(now), "half the threshold is suspicious");
    let slow = PassiveSample {
        srtt: Some(Duration::from_millis(300)),
        ..stalled(1000)
    };
    assert_eq!(
        p.passive(&slow, now + Duration::from_secs(10)),
        None,
        "4 RTTs on a slow path"
    );
}

#[test]
fn a_stall_older_than_the_recovery_is_ignored() {
    let mut sim = Sim::new(settings(), Duration::from_millis(20));
    sim.run(Duration::from_secs(2), &always);
    let t = sim.p.passive(&stalled(1000), sim.now);
    assert_eq!(t.map(|t| t.to), Some(Health::Down));
    sim.run(Duration::from_secs(2), &always);
    assert_eq!(sim.health(), Health::Up, "probes bring it back");
    // The old subflow has now waited 3 s; its stall began before the recovery.
    assert_eq!(sim.p.passive(&stalled(3000), sim.now), None);
    assert_eq!(sim.health(), Health::Up);
    // A new stall after the recovery counts.
    sim.run(Duration::from_secs(2), &always);
    let t = sim.p.passive(&stalled(1000), sim.now);
    assert_eq!(t.map(|t| t.to), Some(Health::Down));
}
