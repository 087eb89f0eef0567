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

/// `a` (preferred, first probe ok) and `b`, with `b`'s first probe answered at `t0`.
fn two(t0: Instant) -> Concentrators {
    let mut c = Concentrators::new(
        vec![
            ("a".into(), vec![addr("192.0.2.1:4850")]),
            ("b".into(), vec![addr("198.51.100.1:4850")]),
        ],
        true,
        t0,
    );
    let due = c.due_probes(t0);
    assert_eq!(
        due,
        vec![StandbyProbe {
            name: "b".into(),
            addr: addr("198.51.100.1:4850")
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
    assert_eq!(c.name_of(addr("198.51.100.1:4850")), Some("b"));
}

#[test]
fn a_failed_connect_moves_new_connections_at_once_and_reprobes_soon() {
    let t0 = Instant::now();
    let mut c = two(t0);
    let failed = t0 + ms(3000);
    assert!(c.on_failure("a", failed), "the active one changed");
    assert_eq!(c.active_name(), "b");
    assert_eq!(c.active_addr(), addr("198.51.100.1:4850"));
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
    let mut c = Concentrators::new(
        vec![
            ("a".into(), vec![addr("192.0.2.1:4850")]),
            ("b".into(), vec![addr("198.51.100.1:4850")]),
        ],
        true,
        t0,
    );
    assert_eq!(states(&c), vec![Active, Down], "b not probed yet");
    c.due_probes(t0);
    c.on_success("b", RTT, t0 + ms(30));
    assert_eq!(states(&c), vec![Active, Standby]);
}
