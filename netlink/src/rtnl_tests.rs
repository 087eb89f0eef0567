//! Unit tests of the rtnetlink messages.

use super::*;

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("test address"))
}

#[test]
fn a_route_round_trips_with_a_large_table() {
    let route = RouteMsg {
        family: AF_INET6,
        dst_len: 64,
        table: 2001,
        protocol: 200,
        scope: RT_SCOPE_UNIVERSE,
        kind: RTN_UNICAST,
        dst: ip("2001:db8:201::"),
        gateway: ip("fe80::1"),
        oif: Some(4),
        prefsrc: ip("2001:db8:201::2"),
        priority: Some(10),
        multipath: Vec::new(),
    };
    let body = route.encode();
    assert_eq!(
        body[4], RT_TABLE_COMPAT,
        "2001 does not fit the header byte"
    );
    assert_eq!(RouteMsg::parse(&body), Some(route.clone()));
    let req = new_route(&route);
    assert_eq!(req.kind, rtm::NEWROUTE);
    assert_eq!(
        req.flags & (flags::CREATE | flags::EXCL | flags::ACK),
        flags::CREATE | flags::EXCL | flags::ACK
    );
    assert_eq!(del_route(&route).kind, rtm::DELROUTE);
    assert!(dump_routes(AF_INET).is_dump());
}

#[test]
fn multipath_next_hops_are_read() {
    let mut body = RouteMsg {
        family: AF_INET,
        table: RT_TABLE_MAIN,
        kind: RTN_UNICAST,
        ..RouteMsg::default()
    }
    .encode();
    let mut hops = Vec::new();
    for (gw, ifindex) in [([10, 0, 1, 1], 3u32), ([10, 0, 2, 1], 5)] {
        let mut attrs = AttrBuf::new();
        attrs.put(rta::GATEWAY, &gw);
        let len = (RTNH_LEN + attrs.as_bytes().len()) as u16;
        hops.extend_from_slice(&len.to_ne_bytes());
        hops.extend_from_slice(&[0, 0]);
        hops.extend_from_slice(&ifindex.to_ne_bytes());
        hops.extend_from_slice(attrs.as_bytes());
    }
    let mut attrs = AttrBuf::new();
    attrs.put(rta::MULTIPATH, &hops);
    body.extend_from_slice(attrs.as_bytes());
    let msg = RouteMsg::parse(&body).expect("route");
    assert_eq!(msg.table, RT_TABLE_MAIN);
    let want = vec![
        NextHop {
            gateway: ip("10.0.1.1"),
            ifindex: 3,
        },
        NextHop {
            gateway: ip("10.0.2.1"),
            ifindex: 5,
        },
    ];
    assert_eq!(msg.multipath, want);
}

#[test]
fn a_rule_round_trips() {
    let rule = RuleMsg {
        family: AF_INET,
        src_len: 32,
        table: 2001,
        action: FR_ACT_TO_TBL,
        priority: Some(2005),
        src: ip("10.200.1.2"),
        protocol: Some(200),
    };
    assert_eq!(RuleMsg::parse(&rule.encode()), Some(rule.clone()));
    assert_eq!(new_rule(&rule).kind, rtm::NEWRULE);
    assert_eq!(del_rule(&rule).kind, rtm::DELRULE);
    assert_eq!(dump_rules(AF_INET6).body[0], AF_INET6);
}

#[test]
fn links_and_addresses_are_read() {
    let mut link = vec![0u8; IFINFOMSG_LEN];
    link[4..8].copy_from_slice(&7u32.to_ne_bytes());
    link[8..12].copy_from_slice(&(IFF_UP | IFF_LOWER_UP).to_ne_bytes());
    let mut stats = vec![0u8; 200];
    stats[16..24].copy_from_slice(&1234u64.to_ne_bytes());
    stats[24..32].copy_from_slice(&5678u64.to_ne_bytes());
    let mut attrs = AttrBuf::new();
    attrs.put_str(IFLA_IFNAME, "wan1");
    attrs.put(IFLA_STATS64, &stats);
    link.extend_from_slice(attrs.as_bytes());
    let want = LinkMsg {
        index: 7,
        flags: IFF_UP | IFF_LOWER_UP,
        name: "wan1".into(),
        rx_bytes: 1234,
        tx_bytes: 5678,
    };
    assert_eq!(LinkMsg::parse(&link), Some(want));

    let mut addr = vec![AF_INET, 32, IFA_F_SECONDARY as u8, 0];
    addr.extend_from_slice(&9u32.to_ne_bytes());
    let mut attrs = AttrBuf::new();
    attrs.put_ip(IFA_ADDRESS, "10.64.0.1".parse().expect("ip"));
    attrs.put_ip(IFA_LOCAL, "10.64.0.2".parse().expect("ip"));
    attrs.put_u32(IFA_FLAGS, IFA_F_TENTATIVE);
    addr.extend_from_slice(attrs.as_bytes());
    let got = AddrMsg::parse(&addr).expect("address");
    assert_eq!((got.index, got.prefix_len), (9, 32));
    assert_eq!((got.address, got.local), (ip("10.64.0.1"), ip("10.64.0.2")));
    assert_eq!(got.flags, IFA_F_TENTATIVE, "IFA_FLAGS wins over the header");
}

#[test]
fn garbage_does_not_panic() {
    for len in 0..64u8 {
        let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(29)).collect();
        let _ = RouteMsg::parse(&data);
        let _ = RuleMsg::parse(&data);
        let _ = LinkMsg::parse(&data);
        let _ = AddrMsg::parse(&data);
        let _ = parse_nexthops(&data);
    }
}
