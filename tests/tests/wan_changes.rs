//! The test bed's WAN changes on their own, without mpbond: a hotplugged WAN
//! has a working ISP path (direct kernel MPTCP from the router uses it once
//! routed), link down/up and renumbering keep the router online, a blackholed
//! ISP drops everything, and an unplugged WAN leaves nothing behind.
//!
//! The routing this test adds for wan2 (table 150, priority 150, endpoint id
//! 30) is outside the agent's ranges, so [`mpbond_tests::OwnedState`] must not
//! see it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use mpbond_tests::topology::{wan_isp_v4, VPS_V4};
use mpbond_tests::{proc, Fetch, Node, TestBed};

fn vps() -> SocketAddr {
    SocketAddr::new(VPS_V4.into(), 5201)
}

/// A short plain download from the router to the VPS; whether it was intact.
fn router_fetch_ok(bed: &TestBed) -> bool {
    let fetch = Fetch::get(vps(), 2_000_000).timeout(Duration::from_secs(3));
    bed.fetch(Node::Router, &fetch).is_ok_and(|r| r.ok)
}

#[test]
#[ignore = "needs root and netns"]
fn wans_come_go_renumber_and_blackhole() {
    let mut bed = TestBed::builder()
        .wans(&[40])
        .agent_routing(true)
        .fast_open(false)
        .build();
    let _server = bed.serve(Node::Vps, vps(), true).expect("server");
    assert!(router_fetch_ok(&bed), "wan1 does not reach the VPS");

    let i = bed.add_wan(60).expect("hotplug");
    assert_eq!(i, 2);
    let gw = wan_isp_v4(2);
    for line in [
        "mptcp limits set subflows 8 add_addr_accepted 8".to_string(),
        format!("route add default via {gw} dev wan2 table 150"),
        "rule add from 10.200.2.2 table 150 priority 150".into(),
        "mptcp endpoint add 10.200.2.2 dev wan2 id 30 subflow".into(),
    ] {
        bed.exec(Node::Router, &format!("ip {line}"))
            .expect("route wan2");
    }
    assert!(
        bed.owned_state().expect("owned state").is_empty(),
        "the bed's own routing is not the agent's"
    );
    let rx2 = bed.wan_bytes(2).0;
    let fetch = Fetch::get(vps(), 30_000_000)
        .mptcp()
        .timeout(Duration::from_secs(30));
    let run = bed.spawn_fetch(Node::Router, &fetch).expect("fetch");
    let subflow = proc::wait_until(Duration::from_secs(5), || bed.subflows_on(2) > 0);
    let r = run.finish().expect("report");
    let carried = bed.wan_bytes(2).0 - rx2;
    println!(
        "hotplugged wan2: direct MPTCP ok {} {:.1} Mbit/s, wan2 carried {carried} bytes, subflow seen {subflow}",
        r.ok, r.mbit_per_s
    );
    assert!(r.ok && subflow && carried > 5_000_000);

    bed.blackhole_wan(1, true).expect("blackhole on");
    assert!(!router_fetch_ok(&bed), "ISP 1 still forwards");
    bed.blackhole_wan(1, false).expect("blackhole off");
    assert!(router_fetch_ok(&bed), "ISP 1 does not forward again");

    bed.set_link(1, false).expect("wan1 down");
    let rx2 = bed.wan_bytes(2).0;
    assert!(router_fetch_ok(&bed), "wan2's default does not take over");
    assert!(bed.wan_bytes(2).0 - rx2 > 1_000_000, "not via wan2");
    bed.set_link(1, true).expect("wan1 up");
    let rx1 = bed.wan_bytes(1).0;
    assert!(router_fetch_ok(&bed), "wan1 is not back");
    assert!(bed.wan_bytes(1).0 - rx1 > 1_000_000, "not via wan1");
    let v6 = bed
        .exec(Node::Router, "ip -6 addr show dev wan1")
        .expect("ip");
    assert!(
        v6.contains("2001:db8:201::2"),
        "IPv6 address not restored: {v6}"
    );

    let new = Ipv4Addr::new(10, 200, 1, 7);
    bed.change_wan_address(1, new).expect("renumber");
    let v4 = bed
        .exec(Node::Router, "ip -4 addr show dev wan1")
        .expect("ip");
    assert!(
        v4.contains("10.200.1.7/24") && !v4.contains("10.200.1.2/"),
        "{v4}"
    );
    assert_eq!(bed.wan_v4(1), new);
    assert!(router_fetch_ok(&bed), "offline after renumbering");
    assert!(bed
        .change_wan_address(1, Ipv4Addr::new(10, 200, 2, 9))
        .is_err());

    let isp2 = bed.ns_name(Node::Isp(2)).to_owned();
    bed.remove_wan(2).expect("unplug");
    let links = bed.exec(Node::Router, "ip link show").expect("ip");
    assert!(!links.contains("wan2"), "{links}");
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains(&isp2), "{isp2} survived");
    assert!(bed.remove_wan(5).is_err());
}
