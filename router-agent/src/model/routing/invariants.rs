//! Invariants of discover, plan and diff: what never becomes a WAN, stable numbering, the
//! limits of the owned ranges, and the recording backend's own refusals.

use std::collections::HashMap;

use super::fixture::*;
use crate::model::netops::{KernelState, Limits, NetOp, Ownership};
use crate::model::routing::{diff, plan, refresh_endpoints, DownReaction};
use crate::model::wan::{discover, Health, WanSettings};
use crate::net::backend::RecordingBackend;

#[test]
fn more_wans_than_tables_are_reported() {
    let mut agent = Agent::new(WanSettings::default());
    agent.own = Ownership {
        table_count: 2,
        ..Ownership::default()
    };
    agent.step(&testbed(3));
    assert_eq!(agent.plan.tables.len(), 2);
    assert!(agent
        .plan
        .warnings
        .iter()
        .any(|w| w.contains("eth3 has no routing table")));
}

#[test]
fn lan_and_loopback_never_become_wans() {
    let mut snap = testbed(1);
    // Even with a default route through them.
    snap.routes.push(default_via(2, "192.168.50.254", false));
    snap.routes.push(default_via(1, "", false));
    let wans = discover(&snap, &WanSettings::default(), &lan(), &HashMap::new());
    let names: Vec<_> = wans.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["eth1"]);
    // A link without a default route is not auto-detected.
    let mut snap = testbed(1);
    snap.links.push(link(50, "eth9", &["10.9.9.9/24"]));
    assert_eq!(
        discover(&snap, &WanSettings::default(), &lan(), &HashMap::new()).len(),
        1
    );
}

#[test]
fn a_link_without_usable_addresses_is_down() {
    let mut snap = testbed(1);
    snap.links[2].addrs = vec![addr("fe80::2/64"), addr("169.254.3.3/16")];
    let wans = discover(&snap, &WanSettings::default(), &lan(), &HashMap::new());
    assert_eq!(wans[0].health, Health::Down);
    assert!(!wans[0].link_up);
    assert_eq!(
        plan(&wans, &Ownership::default(), caps())
            .desired
            .routes
            .len(),
        0
    );
}

#[test]
fn slots_and_ids_stay_when_wans_come_and_go() {
    let mut agent = Agent::new(WanSettings::default());
    let mut snap = testbed(2);
    agent.step(&snap);
    // A new WAN that sorts first does not renumber the others.
    snap.links.push(link(60, "aaa0", &["10.60.0.2/24"]));
    snap.routes.push(default_via(60, "10.60.0.1", false));
    let ops = agent.step(&snap);
    assert_eq!(agent.plan.tables.get("aaa0"), Some(&2002));
    assert!(ops.iter().all(|op| match op {
        NetOp::AddRoute(r) => r.oif == 60,
        NetOp::AddRule(r) => r.table == 2002,
        NetOp::AddEndpoint(e) => e.id == 3,
        NetOp::SetLimits(_) | NetOp::SetBackup(_) => true,
        _ => false,
    }));
    // eth1 goes away (its default route is gone) and comes back: same slot.
    let saved = snap.routes.remove(0);
    agent.step(&snap);
    assert!(!agent.plan.tables.contains_key("eth1"));
    snap.routes.insert(0, saved);
    agent.step(&snap);
    assert_eq!(agent.plan.tables.get("eth1"), Some(&2000));
}

#[test]
fn plan_numbers_by_sorted_name() {
    let wans = discover(
        &testbed(3),
        &WanSettings::default(),
        &lan(),
        &HashMap::new(),
    );
    let mut reversed = wans.clone();
    reversed.reverse();
    let own = Ownership::default();
    assert_eq!(plan(&wans, &own, caps()), plan(&reversed, &own, caps()));
}

#[test]
fn recording_backend_refuses_bad_orderings_and_impossible_ops() {
    let mut agent = Agent::new(WanSettings::default());
    agent.step(&testbed(1));
    let desired = agent.kernel.state.clone();
    let e = ep(1, "10.200.1.2", 11, false);
    // Endpoint before its rule and route.
    let mut k = RecordingBackend::default();
    assert!(k.apply_all(&[NetOp::AddEndpoint(e.clone())]).is_err());
    // Rule or route removed under a live endpoint.
    let mut k = RecordingBackend::new(desired.clone());
    assert!(k
        .apply_all(&[NetOp::DelRule(rule(2000, "10.200.1.2/32", 2000))])
        .is_err());
    let mut k = RecordingBackend::new(desired.clone());
    let routes: Vec<_> = desired
        .routes
        .iter()
        .cloned()
        .map(NetOp::DelRoute)
        .collect();
    assert!(k.apply_all(&routes).is_err());
    // Duplicates and missing objects, even when lenient.
    let mut k = RecordingBackend::lenient(desired.clone());
    assert!(k
        .apply_now(&NetOp::AddEndpoint(ep(1, "10.9.9.9", 11, false)))
        .is_err());
    assert!(k
        .apply_now(&NetOp::AddEndpoint(ep(7, "10.200.1.2", 11, false)))
        .is_err());
    assert!(k
        .apply_now(&NetOp::DelEndpoint(ep(7, "10.9.9.9", 11, false)))
        .is_err());
    let other_gw = route(2000, "0.0.0.0/0", Some("10.200.1.9"), 11);
    assert!(k.apply_now(&NetOp::AddRoute(other_gw.clone())).is_err());
    assert!(k.apply_now(&NetOp::DelRoute(other_gw)).is_err());
    let limits = Limits {
        subflows: 9,
        add_addr_accepted: 0,
    };
    assert!(k.apply_now(&NetOp::SetLimits(limits)).is_err());
    assert!(k.log.is_empty());
    // The whole teardown, in diff's order, is accepted.
    let mut k = RecordingBackend::new(desired.clone());
    let empty = KernelState {
        limits: desired.limits,
        ..KernelState::default()
    };
    k.apply_all(&diff(&desired, &empty))
        .expect("teardown order");
    assert_eq!(k.state, empty);
}

#[test]
fn a_vanished_wans_slot_is_reused_only_when_none_is_free() {
    let mut agent = Agent::new(WanSettings::default());
    agent.own = Ownership {
        table_count: 2,
        ..Ownership::default()
    };
    let mut snap = testbed(2);
    agent.step(&snap);
    // eth1 loses its default route (not auto-detected any more); eth3 appears.
    snap.routes.remove(0);
    let (l, r) = testbed_link(3);
    snap.links.push(l);
    snap.routes.push(r);
    agent.step(&snap);
    assert_eq!(agent.plan.tables.get("eth2"), Some(&2001));
    assert_eq!(agent.plan.tables.get("eth3"), Some(&2000));
    assert!(!agent.slots.slots.contains_key("eth1"));
    assert!(agent.plan.warnings.is_empty(), "{:?}", agent.plan.warnings);
}

#[test]
fn ownership_ranges() {
    let own = Ownership::default();
    assert_eq!(own.slot_count(), 32);
    assert_eq!(
        (own.table(0), own.table(31), own.table(32)),
        (Some(2000), Some(2031), None)
    );
    assert_eq!(own.rule_priority(3), Some(2003));
    assert!(own.owns_table(2031) && !own.owns_table(2032) && !own.owns_table(254));
    assert!(own.owns_priority(2063) && !own.owns_priority(2064) && !own.owns_priority(1999));
    assert!(own.owns_endpoint_id(8) && !own.owns_endpoint_id(0) && !own.owns_endpoint_id(9));
}

#[test]
fn a_probe_outage_then_refresh_leaves_nothing_to_refresh_while_down() {
    let mut agent = Agent::new(WanSettings::default());
    agent.down = DownReaction::Delete;
    agent.health.insert("eth1".into(), Health::Down);
    agent.step(&testbed(1));
    assert!(refresh_endpoints(&agent.kernel.state, agent.wan("eth1")).is_empty());
}
