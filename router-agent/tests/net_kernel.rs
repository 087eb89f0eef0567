//! `Kernel` as the NetBackend: owned routes, rules and endpoints through real netlink,
//! with foreign objects in the same namespace that must survive everything.

mod net_ns;

use std::collections::BTreeSet;
use std::time::Duration;

use mpbond_agent::model::netops::{
    Endpoint, KernelState, Limits, NetOp, Route, Rule, ROUTE_METRIC,
};
use mpbond_agent::net::backend::NetBackend;
use mpbond_agent::net::Kernel;
use net_ns::{ifindex, ownership, Netns};

const LIMIT: Duration = Duration::from_secs(20);

fn net(s: &str) -> ipnet::IpNet {
    s.parse().expect("test prefix")
}

/// The state one WAN (wan1: 10.200.1.2/24 via .1, 2001:db8:201::2/64 via fe80::1) needs.
fn wan1_state(oif: u32) -> KernelState {
    let route = |dst: &str, gw: Option<&str>| Route {
        table: 2000,
        dst: net(dst),
        gateway: gw.map(|g| g.parse().expect("gateway")),
        oif,
        prefsrc: None,
        metric: ROUTE_METRIC,
    };
    let rule = |priority, from: &str| Rule {
        priority,
        from: net(from),
        table: 2000,
    };
    KernelState {
        routes: BTreeSet::from([
            route("0.0.0.0/0", Some("10.200.1.1")),
            route("10.200.1.0/24", None),
            route("::/0", Some("fe80::1")),
            route("2001:db8:201::/64", None),
        ]),
        rules: BTreeSet::from([
            rule(2000, "10.200.1.2/32"),
            rule(2001, "2001:db8:201::2/128"),
        ]),
        endpoints: BTreeSet::from([Endpoint {
            id: 1,
            addr: "10.200.1.2".parse().expect("ip"),
            ifindex: oif,
            backup: false,
        }]),
        limits: Some(Limits {
            subflows: 4,
            add_addr_accepted: 0,
        }),
    }
}

/// wan1's addresses, IPv4 first.
const WAN1_ADDRS: [&str; 2] = [
    "addr add 10.200.1.2/24 dev wan1",
    "addr add 2001:db8:201::2/64 dev wan1 nodad",
];

/// A foreign route in an owned table (wrong protocol), one in main, a foreign rule
/// outside the priority range, and an endpoint outside the id range.
/// (The kernel refuses two endpoints with one address, whatever their ids.)
const FOREIGN: [&str; 4] = [
    "route add 192.0.2.0/24 via 10.200.1.1 table 2000",
    "route add 198.51.100.0/24 via 10.200.1.1",
    "rule add from 10.200.1.2 lookup 2000 priority 100",
    "mptcp endpoint add 10.200.1.42 id 42 subflow",
];

/// `ip -n NS` with each of `commands`, split at spaces.
fn ip_each(ns: &Netns, commands: &[&str]) {
    for command in commands {
        ns.ip(&command.split(' ').collect::<Vec<_>>());
    }
}

fn foreign_survived(ns: &Netns) {
    let table = ns.ip_out(&["route", "show", "table", "2000"]);
    assert!(table.contains("192.0.2.0/24 via 10.200.1.1"), "{table}");
    assert!(!table.contains("proto 93"), "owned routes left: {table}");
    let main = ns.ip_out(&["route", "show"]);
    assert!(main.contains("198.51.100.0/24"), "{main}");
    let rules = ns.ip_out(&["rule", "show"]);
    assert!(
        rules.contains("100:\tfrom 10.200.1.2 lookup 2000"),
        "{rules}"
    );
    assert!(!rules.contains("2000:"), "owned rule left: {rules}");
    let eps = ns.ip_out(&["mptcp", "endpoint", "show"]);
    assert!(eps.contains("id 42"), "{eps}");
    assert!(!eps.contains("id 1 "), "owned endpoint left: {eps}");
}

#[test]
#[ignore = "needs root and netns"]
fn apply_dump_delete_and_cleanup_touch_only_owned_objects() {
    let ns = Netns::new();
    ns.veth("wan1", "isp1");
    ip_each(&ns, &WAN1_ADDRS);
    ip_each(&ns, &FOREIGN);
    ns.run(LIMIT, || async {
        let mut kernel = Kernel::connect(ownership()).await.expect("connect");
        let want = wan1_state(ifindex("wan1"));
        let mut ops: Vec<NetOp> = Vec::new();
        ops.push(NetOp::SetLimits(want.limits.expect("set")));
        ops.extend(want.routes.iter().cloned().map(NetOp::AddRoute));
        ops.extend(want.rules.iter().cloned().map(NetOp::AddRule));
        ops.extend(want.endpoints.iter().cloned().map(NetOp::AddEndpoint));
        for op in &ops {
            kernel
                .apply(op)
                .await
                .unwrap_or_else(|e| panic!("{op:?}: {e}"));
        }
        assert_eq!(kernel.dump().await.expect("dump"), want);

        // Deleting one of each leaves the rest.
        let route = want.routes.first().expect("a route").clone();
        let rule = want.rules.first().expect("a rule").clone();
        kernel
            .apply(&NetOp::DelRoute(route.clone()))
            .await
            .expect("del route");
        kernel
            .apply(&NetOp::DelRule(rule.clone()))
            .await
            .expect("del rule");
        let now = kernel.dump().await.expect("dump");
        assert!(!now.routes.contains(&route) && now.routes.len() == 3);
        assert!(!now.rules.contains(&rule) && now.rules.len() == 1);
        let err = kernel
            .apply(&NetOp::DelRoute(route))
            .await
            .expect_err("gone");
        assert!(err.to_string().contains("deleting route"), "{err}");

        // Objects outside the owned ranges are refused before reaching the kernel.
        let mut foreign = want.routes.first().expect("a route").clone();
        foreign.table = 254;
        assert!(kernel.apply(&NetOp::AddRoute(foreign)).await.is_err());
        let mut ep = want.endpoints.first().expect("an endpoint").clone();
        ep.id = 42;
        assert!(kernel.apply(&NetOp::DelEndpoint(ep)).await.is_err());

        let removed = kernel.cleanup().await.expect("cleanup");
        assert_eq!(removed, 3 + 1 + 1);
        let left = kernel.dump().await.expect("dump");
        assert!(left.routes.is_empty() && left.rules.is_empty() && left.endpoints.is_empty());
    });
    foreign_survived(&ns);
}

#[test]
#[ignore = "needs root and netns"]
fn cleanup_after_a_crash_removes_leftovers_found_by_dump() {
    let ns = Netns::new();
    ns.veth("wan1", "isp1");
    ip_each(&ns, &WAN1_ADDRS[..1]);
    ip_each(&ns, &FOREIGN);
    // Leftovers of a previous run, made with `ip` as another process would have.
    ip_each(
        &ns,
        &[
            "route add default via 10.200.1.1 table 2005 proto 93",
            "route add 10.200.1.0/24 dev wan1 table 2031 proto 93",
            "rule add from 10.200.1.2 lookup 2005 priority 2063",
            "mptcp endpoint add 10.200.1.2 id 8 subflow dev wan1",
        ],
    );
    // Just outside the ranges: table 2032, priority 2064, endpoint id 9.
    ip_each(
        &ns,
        &[
            "route add default via 10.200.1.1 table 2032 proto 93",
            "rule add from 10.200.1.3 lookup 2032 priority 2064",
            "mptcp endpoint add 10.200.1.9 id 9 signal",
        ],
    );
    ns.run(LIMIT, || async {
        let mut kernel = Kernel::connect(ownership()).await.expect("connect");
        let found = kernel.dump().await.expect("dump");
        assert_eq!(
            (found.routes.len(), found.rules.len(), found.endpoints.len()),
            (2, 1, 1)
        );
        assert_eq!(kernel.cleanup().await.expect("cleanup"), 4);
        let left = kernel.dump().await.expect("dump");
        assert_eq!(
            left.routes.len() + left.rules.len() + left.endpoints.len(),
            0,
            "{left:?}"
        );
        assert_eq!(kernel.cleanup().await.expect("idempotent"), 0);
    });
    foreign_survived(&ns);
    let outside = ns.ip_out(&["route", "show", "table", "2032"]);
    assert!(outside.contains("default via 10.200.1.1"), "{outside}");
    let rules = ns.ip_out(&["rule", "show"]);
    assert!(rules.contains("2064:"), "{rules}");
    assert!(ns.ip_out(&["mptcp", "endpoint", "show"]).contains("id 9"));
}
