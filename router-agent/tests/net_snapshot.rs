//! Snapshot, monitor, sysctls and the feature probe, each in a namespace of its own.

mod net_ns;

use std::time::Duration;

use futures::StreamExt;
use mpbond_agent::net::rtnl::Rtnl;
use mpbond_agent::net::{features, monitor, snapshot, sysctl};
use net_ns::{ifindex, Netns};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
#[ignore = "needs root and netns"]
fn snapshot_sees_links_addresses_and_main_routes() {
    let ns = Netns::new();
    ns.veth("wan1", "isp1");
    ns.ip(&[
        "link", "add", "wan2", "type", "veth", "peer", "name", "isp2",
    ]);
    ns.ip(&["link", "set", "wan2", "up"]); // isp2 stays down: no carrier on wan2
    ns.ip(&["addr", "add", "10.200.1.2/24", "dev", "wan1"]);
    ns.ip(&["addr", "add", "2001:db8:201::2/64", "dev", "wan1", "nodad"]);
    ns.ip(&["addr", "add", "2001:db8:201::99/64", "dev", "wan1"]); // DAD: tentative at first
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "10.200.1.1",
        "dev",
        "wan1",
    ]);
    ns.ip(&[
        "-6", "route", "add", "default", "via", "fe80::1", "dev", "wan1", "proto", "ra",
    ]);
    // A point-to-point link (tun, as PPPoE or raw-ip LTE would be) whose IFA_ADDRESS is
    // the peer and IFA_LOCAL ours.
    ns.ip(&["tuntap", "add", "dev", "ptp0", "mode", "tun"]);
    ns.ip(&[
        "addr",
        "add",
        "10.64.0.2",
        "peer",
        "10.64.0.1/32",
        "dev",
        "ptp0",
    ]);
    ns.ip(&["link", "set", "ptp0", "up"]);
    let snap = ns.run(LIMIT, || async {
        // One datagram toward the gateway: at least an ARP request leaves wan1.
        let udp = std::net::UdpSocket::bind("10.200.1.2:0").expect("bind");
        udp.send_to(b"x", "10.200.1.1:9").expect("send");
        let rtnl = Rtnl::connect().expect("rtnetlink");
        let snap = snapshot::snapshot(&rtnl).await.expect("snapshot");
        (snap, ifindex("wan1"))
    });
    let (snap, wan1_index) = snap;
    let wan1 = snap.links.iter().find(|l| l.name == "wan1").expect("wan1");
    let wan2 = snap.links.iter().find(|l| l.name == "wan2").expect("wan2");
    assert_eq!(wan1.ifindex, wan1_index);
    assert!(wan1.up && !wan1.point_to_point);
    assert!(!wan2.up, "no carrier: {wan2:?}");
    assert!(wan1.tx_bytes > 0, "{wan1:?}");
    let isp1 = snap.links.iter().find(|l| l.name == "isp1").expect("isp1");
    assert!(isp1.rx_bytes > 0, "{isp1:?}");
    let ptp = snap.links.iter().find(|l| l.name == "ptp0").expect("ptp0");
    assert!(
        ptp.point_to_point && !ptp.up,
        "no reader, no carrier: {ptp:?}"
    );
    let local: Vec<String> = ptp.addrs.iter().map(|a| a.addr.to_string()).collect();
    assert_eq!(local, ["10.64.0.2"]);
    let v4 = wan1
        .addrs
        .iter()
        .find(|a| a.addr.to_string() == "10.200.1.2");
    let v4 = v4.expect("v4 address");
    assert_eq!(v4.prefix_len, 24);
    assert!(!v4.tentative && !v4.deprecated && !v4.temporary);
    let v6 = wan1
        .addrs
        .iter()
        .find(|a| a.addr.to_string() == "2001:db8:201::2");
    assert!(v6.is_some_and(|a| a.prefix_len == 64 && !a.tentative));
    let dad = wan1
        .addrs
        .iter()
        .find(|a| a.addr.to_string() == "2001:db8:201::99");
    assert!(dad.is_some_and(|a| a.tentative), "{:?}", wan1.addrs);

    let default4 = snap
        .routes
        .iter()
        .find(|r| r.dst.to_string() == "0.0.0.0/0")
        .expect("v4 default");
    assert_eq!(default4.gateway, Some("10.200.1.1".parse().expect("ip")));
    assert_eq!((default4.oif, default4.table), (wan1_index, 254));
    let default6 = snap
        .routes
        .iter()
        .find(|r| r.dst.to_string() == "::/0")
        .expect("v6 default");
    assert_eq!(default6.protocol, 9, "proto ra");
    assert!(snap
        .routes
        .iter()
        .any(|r| r.dst.to_string() == "10.200.1.0/24"));
    assert!(snap.routes.iter().all(|r| r.table == 254));
}

#[test]
#[ignore = "needs root and netns"]
fn monitor_nudges_when_an_address_is_added() {
    let ns = Netns::new();
    ns.veth("wan1", "isp1");
    let name = ns.name.clone();
    ns.run(LIMIT, move || async move {
        let mut nudges = monitor().expect("monitor");
        // Nothing should be pending on a quiet namespace; drain what the setup caused.
        while tokio::time::timeout(Duration::from_millis(200), nudges.next())
            .await
            .is_ok()
        {}
        // Blocking is fine here: the notification waits in the socket buffer.
        let status = std::process::Command::new("ip")
            .args(["-n", &name, "addr", "add", "10.200.9.2/24", "dev", "wan1"])
            .status()
            .expect("ip");
        assert!(status.success());
        let nudge = tokio::time::timeout(Duration::from_secs(5), nudges.next()).await;
        assert_eq!(nudge.expect("a nudge within 5 s"), Some(()));
    });
}

#[test]
#[ignore = "needs root and netns"]
fn sysctls_are_set_inside_the_namespace() {
    let ns = Netns::new();
    ns.veth("wan1", "isp1");
    let report = ns.run(LIMIT, || async {
        // Proof that /proc/sys/net shows this namespace: wan1 exists only here.
        assert!(std::path::Path::new("/proc/sys/net/ipv4/conf/wan1").exists());
        sysctl::set_rp_filter_loose("wan1").expect("rp_filter");
        let rp = std::fs::read_to_string("/proc/sys/net/ipv4/conf/wan1/rp_filter");
        assert_eq!(rp.expect("read").trim(), "2");
        assert!(sysctl::set_rp_filter_loose("nosuchdev").is_err());
        let cfg = mpbond_agent::config::MptcpConfig {
            limits: mpbond_agent::model::netops::Limits {
                subflows: 8,
                add_addr_accepted: 0,
            },
            blackhole_timeout: Some(0),
            syn_retrans_before_tcp_fallback: Some(2),
            stale_loss_cnt: Some(3),
            down_reaction: Default::default(),
            congestion: None,
            buffers: Default::default(),
        };
        let report = sysctl::apply_cpe(&cfg);
        let read = |k: &str| std::fs::read_to_string(format!("/proc/sys/net/mptcp/{k}"));
        assert_eq!(read("enabled").expect("enabled").trim(), "1");
        assert_eq!(read("blackhole_timeout").expect("exists").trim(), "0");
        if let Ok(v) = read("stale_loss_cnt") {
            assert_eq!(v.trim(), "3");
        }
        (
            report.all_set(),
            report.missing().len(),
            report.results.len(),
        )
    });
    assert!(report.0, "every existing CPE sysctl was written");
    assert!(report.1 <= 2, "only the two newest knobs may be missing");
    assert_eq!(report.2, 4);
}

#[test]
#[ignore = "needs root and netns"]
fn features_probe_is_sane_on_this_kernel() {
    let ns = Netns::new();
    let f = ns.run(LIMIT, || async { features::probe() });
    assert!(f.mptcp, "{f:?}");
    assert!(!f.release.is_empty());
    let major_minor: Vec<u32> = f
        .release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .filter_map(|p| p.parse().ok())
        .collect();
    if major_minor >= vec![6, 5] {
        // 6.5+ has every probed feature.
        assert!(f.tfo_mptcp && f.tcp_is_mptcp && f.mptcp_full_info, "{f:?}");
        assert!(f.missing().is_empty(), "{:?}", f.missing());
    }
    eprintln!("features on {}: {f:?}", f.release);
}
