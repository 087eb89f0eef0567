//! Failover between concentrators in simulated time.

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const RTT: Duration = Duration::from_millis(20);
const INTERVAL: Duration = Duration::from_secs(1);

/// Concentrator `a`'s address (the preferred one) and `b`'s.
const A: &str = "192.0.2.1:4850";
const B: &str = "198.51.100.1:4850";

/// `a` (preferred, first probe ok) and `b`, which nobody has probed yet.
fn unprobed(t0: Instant) -> Concentrators {
    Concentrators::new(
        vec![("a".into(), vec![addr(A)]), ("b".into(), vec![addr(B)])],
        true,
        t0,
    )
}

/// [`unprobed`], with `b`'s first probe answered at `t0`.
fn two(t0: Instant) -> Concentrators {
    let mut c = unprobed(t0);
    let due = c.due_probes(t0);
    assert_eq!(
        due,
        vec![StandbyProbe {
            name: "b".into(),
            addr: addr(B)
        }],
        "the standby is probed at once"
    );
    assert!(!c.on_success("b", RTT, t0));
    c.probe_ended("b", INTERVAL, t0);
    c
}

fn states(c: &Concentrators) -> Vec<ConcentratorState> {
    c.views().into_iter().map(|v| v.state).collect()
}

use ConcentratorState::{Active, Down, Standby};

#[test]
fn the_preferred_one_is_active_and_the_other_a_standby() {
    let t0 = Instant::now();
    let c = two(t0);
    assert_eq!(c.active_name(), "a");
    assert_eq!(states(&c), vec![Active, Standby]);
    assert_eq!(c.all_addrs().len(), 2);
    assert_eq!(c.name_of(addr(B)), Some("b"));
}

#[test]
fn a_failed_connect_moves_new_connections_at_once_and_reprobes_soon() {
    let t0 = Instant::now();
    let mut c = two(t0);
    let failed = t0 + ms(3000);
    assert!(c.on_failure("a", failed), "the active one changed");
    assert_eq!(c.active_name(), "b");
    assert_eq!(c.active_addr(), addr(B));
    assert_eq!(states(&c), vec![Down, Active]);
    assert_eq!(
        c.next_deadline(),
        Some(failed + MIN_PROBE_GAP),
        "fast re-probe"
    );
    assert!(c.due_probes(failed + ms(100)).is_empty());
    assert_eq!(c.due_probes(failed + MIN_PROBE_GAP).len(), 1);
}

#[test]
fn coming_back_takes_three_good_probes_and_the_hold_down() {
    let t0 = Instant::now();
    let mut c = two(t0);
    c.on_failure("a", t0);
    // Three good probes within the hold-down: still down.
    for i in 1..=3 {
        assert!(!c.on_success("a", RTT, t0 + ms(i * 1000)));
        assert_eq!(c.active_name(), "b");
    }
    // A flap resets the count.
    assert!(!c.on_failure("a", t0 + ms(4000)));
    for i in 5..=13 {
        assert!(!c.on_success("a", RTT, t0 + ms(i * 1000)), "held at {i} s");
    }
    // 10 s after the last failure, with three good in a row: back.
    assert!(c.on_success("a", RTT, t0 + ms(14_000)));
    assert_eq!(c.active_name(), "a");
    assert_eq!(states(&c), vec![Active, Standby]);
}

#[test]
fn with_nothing_else_up_the_first_answer_wins_at_once() {
    let t0 = Instant::now();
    let mut c = two(t0);
    c.on_failure("a", t0);
    assert!(!c.on_failure("b", t0 + ms(100)), "nothing to move to");
    assert!(!c.any_answering());
    assert_eq!(states(&c), vec![Down, Down]);
    // b answers first: up and active at once (no hysteresis against failing open).
    assert!(
        !c.on_success("b", RTT, t0 + ms(500)),
        "b was already the active one"
    );
    assert_eq!(states(&c), vec![Down, Active]);
    assert!(c.any_answering());
}

#[test]
fn a_down_preferred_one_answering_first_takes_over_from_nothing() {
    let t0 = Instant::now();
    let mut c = two(t0);
    c.on_failure("a", t0);
    c.on_failure("b", t0);
    assert_eq!(c.active_name(), "b");
    assert!(c.on_success("a", RTT, t0 + ms(300)));
    assert_eq!(c.active_name(), "a");
}

#[test]
fn an_up_standby_is_probed_rarely_a_down_one_every_interval() {
    let t0 = Instant::now();
    let mut c = two(t0);
    assert_eq!(c.next_deadline(), Some(t0 + INTERVAL * STANDBY_EVERY));
    let t1 = t0 + INTERVAL * STANDBY_EVERY;
    assert_eq!(c.due_probes(t1).len(), 1);
    assert_eq!(c.next_deadline(), None, "in flight");
    c.on_failure("b", t1 + ms(50));
    c.probe_ended("b", INTERVAL, t1 + ms(50));
    assert_eq!(c.next_deadline(), Some(t1 + ms(50) + MIN_PROBE_GAP));
    c.due_probes(t1 + ms(300));
    c.on_failure("b", t1 + ms(350));
    c.probe_ended("b", INTERVAL, t1 + ms(350));
    assert!(c.next_deadline() <= Some(t1 + ms(350) + INTERVAL));
}

#[test]
fn a_standby_that_never_failed_is_up_on_its_first_answer() {
    let t0 = Instant::now();
    let mut c = unprobed(t0);
    assert_eq!(states(&c), vec![Active, Down], "b not probed yet");
    c.due_probes(t0);
    c.on_success("b", RTT, t0 + ms(30));
    assert_eq!(states(&c), vec![Active, Standby]);
}

/// The decision core with two concentrators: failover, return, and fail open only when
/// neither answers.
mod with_core {
    use std::path::Path;
    use std::sync::Arc;

    use super::{addr, ms, A, B, RTT};
    use crate::config::{Config, Format};
    use crate::core::{Action, Core, Input, Notice};
    use std::time::Instant;

    fn config() -> Arc<Config> {
        let key = "ab".repeat(32);
        let text = format!(
            "[[concentrators]]\nname = \"a\"\nhost = \"192.0.2.1\"\nclient_id = \"home\"\n\
             key = \"{key}\"\n\n[[concentrators]]\nname = \"b\"\nhost = \"198.51.100.1\"\n\
             client_id = \"home\"\nkey = \"{key}\"\n\n[health]\ninterval_ms = 1000\n\
             down_after = 2\nup_after = 1\n"
        );
        Arc::new(Config::parse(&text, Format::Toml, Path::new("t.toml")).expect("config"))
    }

    fn drain(core: &mut Core) -> Vec<Action> {
        std::iter::from_fn(|| core.poll_action()).collect()
    }

    /// Both up: `a` active (first probe ok), `b` answered its first standby probe.
    fn core(t0: Instant) -> Core {
        let mut core =
            Core::with_concentrators(config(), vec![vec![addr(A)], vec![addr(B)]], true, t0);
        assert_eq!(drain(&mut core), vec![]);
        core.handle_timeout(t0);
        let probes: Vec<_> = drain(&mut core)
            .into_iter()
            .filter(|a| matches!(a, Action::ProbeStandby(p) if p.name == "b" && p.addr == addr(B)))
            .collect();
        assert_eq!(probes.len(), 1, "the standby is probed at once");
        core.handle(ok("b"), t0 + ms(20));
        assert_eq!(core.concentrator(), addr(A));
        core
    }

    fn ok(name: &str) -> Input {
        Input::ConcentratorProbed {
            name: name.into(),
            result: Ok(RTT),
        }
    }

    /// Run the timers until the main probe starts; standby probes fail (`standby_ok`
    /// false) or succeed. Returns the time it started.
    fn until_main_probe(core: &mut Core, mut now: Instant, standby_ok: bool) -> Instant {
        for _ in 0..100 {
            now = core.poll_timeout().expect("a deadline").max(now);
            core.handle_timeout(now);
            let mut main = false;
            for action in drain(core) {
                match action {
                    Action::StartProbe { .. } => main = true,
                    Action::ProbeStandby(p) => {
                        let result = if standby_ok {
                            Ok(RTT)
                        } else {
                            Err("refused".into())
                        };
                        core.handle(
                            Input::ConcentratorProbed {
                                name: p.name,
                                result,
                            },
                            now,
                        );
                    }
                    _ => {}
                }
            }
            if main {
                return now;
            }
        }
        panic!("no main probe");
    }

    fn main_probe_fails(core: &mut Core, now: Instant) -> Vec<Action> {
        let input = Input::ProbeDone {
            result: Err("connection refused".into()),
            fastopen: None,
        };
        core.handle(input, now + ms(5));
        drain(core)
    }

    #[test]
    fn a_failed_relayed_connect_moves_new_connections_to_the_standby_at_once() {
        let t0 = Instant::now();
        let mut core = core(t0);
        core.handle(Input::UpstreamFailed, t0 + ms(500));
        let actions = drain(&mut core);
        let publish = actions
            .iter()
            .position(|a| matches!(a, Action::PublishUpstream(c) if c.concentrator == addr(B)))
            .expect("new connections go to b");
        let notice = actions
            .iter()
            .position(|a| {
                matches!(a, Action::Notice(Notice::ConcentratorChosen { name, addr: at })
                    if name == "b" && *at == addr(B))
            })
            .expect("a notice");
        assert!(publish < notice, "the parameters first: {actions:?}");
        assert_eq!(core.concentrator(), addr(B));
        assert!(core.redirecting());
        assert_eq!(core.concentrator_name(addr(A)), Some("a"));
        assert_eq!(core.concentrator_addrs(), vec![addr(A), addr(B)]);
    }

    #[test]
    fn fail_open_only_when_no_concentrator_answers_and_back_when_one_does() {
        let t0 = Instant::now();
        let mut core = core(t0);
        // a's main probe fails: b answers, so no fail open.
        let t = until_main_probe(&mut core, t0 + ms(30), false);
        main_probe_fails(&mut core, t);
        assert_eq!(core.concentrator(), addr(B));
        assert!(core.redirecting(), "b answers");
        // b's main probes fail too, and a's standby probes: fail open after down_after.
        let t = until_main_probe(&mut core, t + ms(10), false);
        main_probe_fails(&mut core, t);
        assert!(core.redirecting(), "one failure of b is not yet down_after");
        let t = until_main_probe(&mut core, t + ms(10), false);
        let actions = main_probe_fails(&mut core, t);
        assert!(!core.redirecting(), "neither answers: fail open");
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::ApplyRedirect(spec) if !spec.redirect)),
            "{actions:?}"
        );
        // a answers a standby probe: it is up at once (nothing else is) and the redirect
        // comes back.
        core.handle_timeout(core.poll_timeout().expect("deadline"));
        let probe = drain(&mut core).into_iter().find_map(|a| match a {
            Action::ProbeStandby(p) => Some(p),
            _ => None,
        });
        let probe = probe.expect("the down concentrator is probed");
        assert_eq!(probe.name, "a");
        core.handle(ok("a"), t + ms(900));
        assert!(core.redirecting());
        assert_eq!(core.concentrator(), addr(A));
    }
}
