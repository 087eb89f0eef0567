//! Scenario tests of discover → plan → diff, through a strict recording backend.

use super::fixture::*;
use crate::model::netops::{Limits, NetOp};
use crate::model::routing::{refresh_endpoints, DownReaction};
use crate::model::wan::{Health, Mode, WanSettings};
use crate::model::wan_health::{ProbeSettings, ProbeState};

#[test]
fn two_testbed_wans_get_tables_rules_and_endpoints() {
    let mut agent = Agent::new(WanSettings::default());
    let ops = agent.step(&testbed(2));
    let s = &agent.kernel.state;
    assert_eq!(
        agent
            .wans
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>(),
        ["eth1", "eth2"]
    );
    assert!(s
        .routes
        .contains(&route(2000, "0.0.0.0/0", Some("10.200.1.1"), 11)));
    assert!(s.routes.contains(&route(2000, "10.200.1.0/24", None, 11)));
    assert!(s
        .routes
        .contains(&route(2001, "0.0.0.0/0", Some("10.200.2.1"), 12)));
    assert!(s.rules.contains(&rule(2000, "10.200.1.2/32", 2000)));
    assert!(s.rules.contains(&rule(2001, "10.200.2.2/32", 2001)));
    assert!(s.endpoints.contains(&ep(1, "10.200.1.2", 11, false)));
    assert!(s.endpoints.contains(&ep(2, "10.200.2.2", 12, false)));
    let limits = Limits {
        subflows: 2,
        add_addr_accepted: 8,
    };
    assert_eq!(s.limits, Some(limits));
    assert_eq!(ops.first(), Some(&NetOp::SetLimits(limits)));
    let at = |op: NetOp| ops.iter().position(|o| *o == op).expect("op present");
    let connected = at(NetOp::AddRoute(route(2000, "10.200.1.0/24", None, 11)));
    let gateway = at(NetOp::AddRoute(route(
        2000,
        "0.0.0.0/0",
        Some("10.200.1.1"),
        11,
    )));
    let first_rule = at(NetOp::AddRule(rule(2000, "10.200.1.2/32", 2000)));
    let first_endpoint = at(NetOp::AddEndpoint(ep(1, "10.200.1.2", 11, false)));
    assert!(connected < gateway && gateway < first_rule && first_rule < first_endpoint);
    assert_eq!(agent.plan.tables.get("eth2"), Some(&2001));
    assert_eq!(agent.plan.endpoint_ids.get("eth1"), Some(&vec![1]));
    assert!(agent.plan.warnings.is_empty());
    // Idempotent: the same snapshot again changes nothing.
    assert!(agent.step(&testbed(2)).is_empty());
}

#[test]
fn dhcp_address_change_moves_the_rule_and_the_endpoint() {
    let mut agent = Agent::new(WanSettings::default());
    let mut snap = testbed(2);
    agent.step(&snap);
    snap.links[2].addrs = vec![addr("10.200.1.50/24")];
    let ops = agent.step(&snap);
    assert_eq!(
        ops,
        vec![
            NetOp::DelEndpoint(ep(1, "10.200.1.2", 11, false)),
            NetOp::AddRule(rule(2000, "10.200.1.50/32", 2000)),
            NetOp::AddEndpoint(ep(1, "10.200.1.50", 11, false)),
            NetOp::DelRule(rule(2000, "10.200.1.2/32", 2000)),
        ]
    );
    // A new subnet too: the connected route moves, after the endpoint.
    snap.links[2].addrs = vec![addr("10.201.1.50/24")];
    snap.routes[0].gateway = Some(ip("10.201.1.1"));
    let ops = agent.step(&snap);
    assert!(matches!(ops.first(), Some(NetOp::DelEndpoint(_))));
    assert_eq!(
        ops.last(),
        Some(&NetOp::DelRoute(route(2000, "10.200.1.0/24", None, 11)))
    );
}

#[test]
fn gateway_change_replaces_only_the_default_route() {
    let mut agent = Agent::new(WanSettings::default());
    let mut snap = testbed(2);
    agent.step(&snap);
    snap.routes[0].gateway = Some(ip("10.200.1.254"));
    let ops = agent.step(&snap);
    assert_eq!(
        ops,
        vec![
            NetOp::DelRoute(route(2000, "0.0.0.0/0", Some("10.200.1.1"), 11)),
            NetOp::AddRoute(route(2000, "0.0.0.0/0", Some("10.200.1.254"), 11)),
        ]
    );
}

#[test]
fn carrier_loss_and_return_removes_and_restores_everything() {
    let mut agent = Agent::new(configured(&[
        ("wan1", "eth1", Mode::On),
        ("wan2", "eth2", Mode::On),
    ]));
    let mut snap = testbed(2);
    agent.step(&snap);
    let before = agent.kernel.state.clone();
    let mut probe = ProbeState::new(ProbeSettings::default());

    // Carrier lost: the netlink side marks it down at once; the kernel flushes its routes.
    snap.links[2].up = false;
    assert!(probe.link_lost().is_some());
    agent.health.insert("wan1".into(), probe.health());
    agent.kernel_flushes(11);
    let ops = agent.step(&snap);
    assert_eq!(agent.wan("wan1").health, Health::Down);
    assert!(!agent.wan("wan1").link_up);
    assert_eq!(ops[0], NetOp::DelEndpoint(ep(1, "10.200.1.2", 11, false)));
    assert!(ops.contains(&NetOp::DelRule(rule(2000, "10.200.1.2/32", 2000))));
    assert!(agent.kernel.state.endpoints.iter().all(|e| e.ifindex != 11));

    // Carrier back: Unknown (optimistic), so the table, rule and endpoint come back.
    snap.links[2].up = true;
    assert!(probe.link_restored().is_some());
    agent.health.insert("wan1".into(), probe.health());
    let ops = agent.step(&snap);
    assert!(ops.contains(&NetOp::AddEndpoint(ep(1, "10.200.1.2", 11, false))));
    assert!(ops.contains(&NetOp::AddRoute(route(
        2000,
        "0.0.0.0/0",
        Some("10.200.1.1"),
        11
    ))));
    assert_eq!(agent.kernel.state, before);
}

#[test]
fn probe_down_keeps_the_endpoint_and_its_subflows_by_default() {
    let mut agent = Agent::new(WanSettings::default());
    agent.step(&testbed(2));
    let before = agent.kernel.state.clone();
    agent.health.insert("eth1".into(), Health::Down);
    assert_eq!(
        agent.step(&testbed(2)),
        vec![],
        "nothing touched: no second dip"
    );
    assert_eq!(agent.kernel.state, before);
    agent.health.insert("eth1".into(), Health::Up);
    assert_eq!(agent.step(&testbed(2)), vec![]);
}

#[test]
fn probe_down_with_the_backup_reaction_flips_the_flag_in_place_and_back() {
    let mut agent = Agent::new(WanSettings::default());
    agent.down = DownReaction::Backup;
    agent.step(&testbed(2));
    agent.health.insert("eth1".into(), Health::Down);
    let ops = agent.step(&testbed(2));
    assert_eq!(ops, vec![NetOp::SetBackup(ep(1, "10.200.1.2", 11, true))]);
    agent.health.insert("eth1".into(), Health::Up);
    let ops = agent.step(&testbed(2));
    assert_eq!(ops, vec![NetOp::SetBackup(ep(1, "10.200.1.2", 11, false))]);
}

#[test]
fn probe_down_with_the_delete_reaction_removes_the_endpoint_but_keeps_the_path() {
    let mut agent = Agent::new(WanSettings::default());
    agent.down = DownReaction::Delete;
    agent.step(&testbed(2));
    agent.health.insert("eth1".into(), Health::Down);
    let ops = agent.step(&testbed(2));
    assert_eq!(
        ops,
        vec![NetOp::DelEndpoint(ep(1, "10.200.1.2", 11, false))]
    );
    assert!(agent
        .kernel
        .state
        .rules
        .contains(&rule(2000, "10.200.1.2/32", 2000)));
    agent.health.insert("eth1".into(), Health::Up);
    let ops = agent.step(&testbed(2));
    assert_eq!(
        ops,
        vec![NetOp::AddEndpoint(ep(1, "10.200.1.2", 11, false))]
    );
}

#[test]
fn refresh_endpoints_deletes_and_re_adds_one_wans_endpoints() {
    let mut agent = Agent::new(WanSettings::default());
    agent.step(&testbed(2));
    let before = agent.kernel.state.clone();
    let ops = refresh_endpoints(&agent.kernel.state, agent.wan("eth2"));
    let e = ep(2, "10.200.2.2", 12, false);
    assert_eq!(
        ops,
        vec![NetOp::DelEndpoint(e.clone()), NetOp::AddEndpoint(e)]
    );
    agent.kernel.apply_all(&ops).expect("refresh applies");
    assert_eq!(agent.kernel.state, before);
}

#[test]
fn a_ninth_wan_is_reported_not_crashed() {
    let mut agent = Agent::new(WanSettings::default());
    agent.down = DownReaction::Delete;
    agent.step(&testbed(9));
    let s = &agent.kernel.state;
    assert_eq!(s.endpoints.len(), 8);
    assert_eq!(agent.plan.tables.len(), 9, "every WAN still gets a table");
    assert!(s.rules.contains(&rule(2008, "10.200.9.2/32", 2008)));
    assert!(s.endpoints.iter().all(|e| e.ifindex != 19));
    assert_eq!(s.limits.map(|l| l.subflows), Some(8));
    assert_eq!(agent.plan.warnings.len(), 1, "{:?}", agent.plan.warnings);
    assert!(agent.plan.warnings[0].contains("eth9"));
    assert!(agent.plan.warnings[0].contains("the kernel allows 8"));
    // When one of the eight goes down, the ninth takes the free id.
    agent.health.insert("eth3".into(), Health::Down);
    agent.step(&testbed(9));
    assert!(agent
        .kernel
        .state
        .endpoints
        .contains(&ep(3, "10.200.9.2", 19, false)));
}

#[test]
fn duplicate_subnets_on_two_lte_modems_get_separate_tables() {
    let mut snap = testbed(0);
    for (i, a) in [(21, "192.168.8.100/24"), (22, "192.168.8.101/24")] {
        snap.links.push(link(i, &format!("wwan{}", i - 21), &[a]));
        snap.routes.push(default_via(i, "192.168.8.1", false));
    }
    let mut agent = Agent::new(WanSettings::default());
    agent.step(&snap);
    let s = &agent.kernel.state;
    assert!(s.routes.contains(&route(2000, "192.168.8.0/24", None, 21)));
    assert!(s.routes.contains(&route(2001, "192.168.8.0/24", None, 22)));
    assert!(s
        .routes
        .contains(&route(2000, "0.0.0.0/0", Some("192.168.8.1"), 21)));
    assert!(s
        .routes
        .contains(&route(2001, "0.0.0.0/0", Some("192.168.8.1"), 22)));
    assert!(s.rules.contains(&rule(2000, "192.168.8.100/32", 2000)));
    assert!(s.rules.contains(&rule(2001, "192.168.8.101/32", 2001)));
    assert_eq!(s.endpoints.len(), 2);

    // Even the same address on both: separate tables; one endpoint, and a warning.
    snap.links[3].addrs = vec![addr("192.168.8.100/24")];
    agent.step(&snap);
    let s = &agent.kernel.state;
    assert!(s.rules.contains(&rule(2001, "192.168.8.100/32", 2001)));
    assert_eq!(s.endpoints.len(), 1);
    assert!(agent.plan.warnings[0].contains("also on WAN wwan0"));
}

#[test]
fn pppoe_without_gateway_gets_a_dev_route() {
    let mut snap = testbed(1);
    let mut ppp = link(30, "pppoe-wan", &["100.64.0.5/32"]);
    ppp.point_to_point = true;
    snap.links.push(ppp);
    snap.routes.push(default_via(30, "", false));
    let mut agent = Agent::new(WanSettings::default());
    agent.step(&snap);
    let w = agent.wan("pppoe-wan");
    assert_eq!((w.gateway4, w.point_to_point), (None, true));
    let table: Vec<_> = agent
        .kernel
        .state
        .routes
        .iter()
        .filter(|r| r.oif == 30)
        .cloned()
        .collect();
    assert_eq!(table, vec![route(2001, "0.0.0.0/0", None, 30)]);
    assert!(agent
        .kernel
        .state
        .endpoints
        .contains(&ep(2, "100.64.0.5", 30, false)));
}

#[test]
fn configured_point_to_point_wan_without_main_default_still_gets_a_dev_route() {
    let mut snap = testbed(0);
    let mut lte = link(31, "wwan0", &["10.64.3.7/30"]);
    lte.point_to_point = true;
    snap.links.push(lte);
    let mut agent = Agent::new(configured(&[("lte", "wwan0", Mode::On)]));
    agent.step(&snap);
    assert!(agent
        .kernel
        .state
        .routes
        .contains(&route(2000, "0.0.0.0/0", None, 31)));
    assert!(agent
        .kernel
        .state
        .routes
        .contains(&route(2000, "10.64.3.4/30", None, 31)));
}

#[test]
fn ipv6_only_wan_uses_global_addresses_and_ra_routes() {
    let mut snap = testbed(0);
    let mut l = link(40, "eth6", &["2001:db8:201::2/64", "fe80::2/64"]);
    let mut tentative = addr("2001:db8:201::99/64");
    tentative.tentative = true;
    let mut temporary = addr("2001:db8:201::1234/64");
    temporary.temporary = true;
    let mut deprecated = addr("2001:db8:201::dead/64");
    deprecated.deprecated = true;
    l.addrs.extend([tentative, temporary, deprecated]);
    snap.links.push(l);
    snap.routes.push(default_via(40, "fe80::1", true));
    let mut ra = default_via(40, "fe80::1", true);
    ra.dst = net("2001:db8:999::/48");
    snap.routes.push(ra);
    let mut agent = Agent::new(WanSettings::default());
    agent.step(&snap);
    let w = agent.wan("eth6");
    assert_eq!(w.addresses, vec![net("2001:db8:201::2/64")]);
    assert_eq!(w.gateway6, Some("fe80::1".parse().expect("v6")));
    let s = &agent.kernel.state;
    let expected = [
        route(2000, "::/0", Some("fe80::1"), 40),
        route(2000, "2001:db8:201::/64", None, 40),
        route(2000, "2001:db8:999::/48", Some("fe80::1"), 40),
    ];
    assert_eq!(s.routes.iter().cloned().collect::<Vec<_>>(), expected);
    assert_eq!(
        s.rules.iter().cloned().collect::<Vec<_>>(),
        [rule(2000, "2001:db8:201::2/128", 2000)]
    );
    assert_eq!(
        s.endpoints.iter().cloned().collect::<Vec<_>>(),
        [ep(1, "2001:db8:201::2", 40, false)]
    );
}

#[test]
fn backup_mode_sets_the_backup_flag_and_a_mode_change_flips_it_in_place() {
    let mut agent = Agent::new(configured(&[
        ("wan1", "eth1", Mode::On),
        ("wan2", "eth2", Mode::Backup),
    ]));
    agent.step(&testbed(2));
    assert!(agent
        .kernel
        .state
        .endpoints
        .contains(&ep(2, "10.200.2.2", 12, true)));
    agent.settings.wans[1].mode = Mode::On;
    let ops = agent.step(&testbed(2));
    assert_eq!(ops, vec![NetOp::SetBackup(ep(2, "10.200.2.2", 12, false))]);
}

#[test]
fn mode_off_gets_nothing_and_missing_devices_are_down() {
    let mut agent = Agent::new(configured(&[
        ("wan1", "eth1", Mode::Off),
        ("wan2", "eth2", Mode::On),
        ("wan3", "usb0", Mode::On),
    ]));
    agent.step(&testbed(2));
    let s = &agent.kernel.state;
    assert!(s.routes.iter().all(|r| r.oif == 12));
    assert!(s.rules.iter().all(|r| r.table == 2000));
    assert_eq!(s.endpoints.len(), 1);
    let missing = agent.wan("wan3");
    assert_eq!((missing.ifindex, missing.link_up), (0, false));
    assert_eq!(missing.health, Health::Down);
}
