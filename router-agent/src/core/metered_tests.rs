//! The metered policy in simulated time: held back while a better WAN is available,
//! promoted in the same decision that sees the last better WAN go, demoted only after
//! the better one has been proven up for `DEMOTE_AFTER`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::*;
use crate::core::preferred_source;
use crate::model::netops::{Limits, Ownership};
use crate::model::routing::plan;

fn wan(name: &str, ip: &str, metered: bool) -> Wan {
    let net: IpNet = format!("{ip}/24").parse().expect("test prefix");
    Wan {
        name: name.to_owned(),
        device: name.to_owned(),
        ifindex: 2,
        addresses: vec![net],
        gateway4: None,
        gateway6: None,
        point_to_point: true,
        mode: Mode::On,
        health: Health::Up,
        link_up: true,
        ra_routes: Vec::new(),
        dev_default4: false,
        dev_default6: false,
        metered,
        standby: false,
    }
}

fn none() -> BTreeSet<String> {
    BTreeSet::new()
}

fn standby(wans: &[Wan]) -> Vec<bool> {
    wans.iter().map(|w| w.standby).collect()
}

const CONC: &str = "192.0.2.1:4850";

fn conc() -> SocketAddr {
    CONC.parse().expect("addr")
}

#[test]
fn a_metered_wan_is_held_back_while_an_unmetered_one_is_up_or_not_yet_probed() {
    let t0 = Instant::now();
    let mut p = MeteredPolicy::default();
    let mut wans = vec![wan("dsl", "10.0.1.2", false), wan("lte", "10.0.2.2", true)];
    wans[0].health = Health::Unknown;
    let d = p.decide(&mut wans, &none(), t0);
    assert_eq!(standby(&wans), [false, true], "held at start");
    assert!(d.changes.is_empty() && d.wake.is_none(), "{d:?}");
    wans[0].health = Health::Up;
    p.decide(&mut wans, &none(), t0 + Duration::from_secs(1));
    assert_eq!(standby(&wans), [false, true]);

    // Held back: no endpoint, not a source; its table and rule stay (its probes).
    let planned = plan(&wans, &Ownership::default(), Limits::default());
    assert_eq!(planned.desired.endpoints.len(), 1);
    assert!(
        planned
            .desired
            .endpoints
            .iter()
            .all(|e| e.addr.to_string() == "10.0.1.2"),
        "{:?}",
        planned.desired.endpoints
    );
    assert!(
        planned.tables.contains_key("lte"),
        "the held WAN keeps its table"
    );
    assert_eq!(
        preferred_source(&wans, conc()),
        Some("10.0.1.2".parse().expect("ip"))
    );
}

#[test]
fn the_last_unmetered_wan_going_down_promotes_in_the_same_decision() {
    let t0 = Instant::now();
    let mut p = MeteredPolicy::default();
    let mut wans = vec![
        wan("dsl", "10.0.1.2", false),
        wan("cable", "10.0.3.2", false),
        wan("lte", "10.0.2.2", true),
    ];
    p.decide(&mut wans, &none(), t0);
    wans[0].health = Health::Down;
    p.decide(&mut wans, &none(), t0 + Duration::from_secs(1));
    assert_eq!(standby(&wans), [false, false, true], "cable is still up");
    wans[1].link_up = false;
    let at = t0 + Duration::from_secs(2);
    let d = p.decide(&mut wans, &none(), at);
    assert_eq!(standby(&wans), [false, false, false], "promoted at once");
    assert_eq!(
        d.changes,
        [MeteredChange {
            wan: "lte".into(),
            standby: false,
            tier: Tier::Metered
        }]
    );
    assert!(d.wake.is_none(), "no timer in a promotion: {d:?}");
    assert!(p.is_active("lte"));
    let planned = plan(&wans, &Ownership::default(), Limits::default());
    let lte = planned
        .desired
        .endpoints
        .iter()
        .find(|e| e.addr.to_string() == "10.0.2.2");
    assert!(
        lte.is_some_and(|e| !e.backup),
        "{:?}",
        planned.desired.endpoints
    );
    assert_eq!(
        preferred_source(&wans, conc()),
        Some("10.0.2.2".parse().expect("ip"))
    );
}

#[test]
fn demotion_waits_until_the_unmetered_wan_is_proven_up_for_a_while() {
    let t0 = Instant::now();
    let mut p = MeteredPolicy::default();
    let mut wans = vec![wan("dsl", "10.0.1.2", false), wan("lte", "10.0.2.2", true)];
    wans[0].health = Health::Down;
    p.decide(&mut wans, &none(), t0);
    assert_eq!(standby(&wans), [false, false]);

    // Back, but not yet probed: the metered WAN stays in use, with no deadline.
    wans[0].health = Health::Unknown;
    let d = p.decide(&mut wans, &none(), t0 + Duration::from_secs(1));
    assert_eq!((standby(&wans), d.wake), (vec![false, false], None));

    // Proven up: the demotion is due DEMOTE_AFTER later, and the decision says when.
    let up = t0 + Duration::from_secs(2);
    wans[0].health = Health::Up;
    let d = p.decide(&mut wans, &none(), up);
    assert_eq!(
        (standby(&wans), d.wake),
        (vec![false, false], Some(up + DEMOTE_AFTER))
    );
    let d = p.decide(
        &mut wans,
        &none(),
        up + DEMOTE_AFTER - Duration::from_millis(1),
    );
    assert_eq!(standby(&wans), [false, false]);
    assert_eq!(
        d.wake,
        Some(up + DEMOTE_AFTER),
        "the deadline does not slide"
    );

    // A flap restarts the wait.
    wans[0].health = Health::Down;
    p.decide(&mut wans, &none(), up + Duration::from_secs(3));
    wans[0].health = Health::Up;
    let again = up + Duration::from_secs(4);
    let d = p.decide(&mut wans, &none(), again);
    assert_eq!(d.wake, Some(again + DEMOTE_AFTER));
    let d = p.decide(&mut wans, &none(), again + DEMOTE_AFTER);
    assert_eq!(standby(&wans), [false, true]);
    assert_eq!(d.changes.len(), 1);
    assert!(d.changes[0].standby && d.wake.is_none(), "{d:?}");
    assert!(!p.is_active("lte"));
}

#[test]
fn past_its_allowance_a_metered_wan_is_the_last_resort() {
    let t0 = Instant::now();
    let mut p = MeteredPolicy::default();
    let mut wans = vec![
        wan("dsl", "10.0.1.2", false),
        wan("lte", "10.0.2.2", true),
        wan("sat", "10.0.4.2", true),
    ];
    let over: BTreeSet<String> = ["lte".to_owned()].into();
    p.decide(&mut wans, &over, t0);
    assert_eq!(standby(&wans), [false, true, true]);
    wans[0].health = Health::Down;
    p.decide(&mut wans, &over, t0);
    assert_eq!(
        standby(&wans),
        [false, true, false],
        "sat is within its allowance"
    );
    wans[2].health = Health::Down;
    let d = p.decide(&mut wans, &over, t0);
    assert_eq!(standby(&wans), [false, false, false], "nothing else works");
    assert_eq!(d.changes[0].tier, Tier::OverAllowance);

    // Crossing the allowance while in use: held back once a within-allowance WAN is up.
    let mut p = MeteredPolicy::default();
    let mut wans = vec![wan("lte", "10.0.2.2", true), wan("sat", "10.0.4.2", true)];
    p.decide(&mut wans, &none(), t0);
    assert_eq!(
        standby(&wans),
        [false, false],
        "no unmetered WAN: both metered in use"
    );
    let d = p.decide(&mut wans, &over, t0);
    assert_eq!(d.wake, Some(t0 + DEMOTE_AFTER));
    p.decide(&mut wans, &over, t0 + DEMOTE_AFTER);
    assert_eq!(standby(&wans), [true, false]);
}

#[test]
fn backup_mode_unmetered_wans_count_and_off_wans_do_not() {
    let t0 = Instant::now();
    let mut p = MeteredPolicy::default();
    let mut wans = vec![wan("dsl", "10.0.1.2", false), wan("lte", "10.0.2.2", true)];
    wans[0].mode = Mode::Backup;
    p.decide(&mut wans, &none(), t0);
    assert_eq!(standby(&wans), [false, true]);
    wans[0].mode = Mode::Off;
    p.decide(&mut wans, &none(), t0);
    assert_eq!(standby(&wans), [false, false]);
}
