//! Unit tests for the `mptcp_pm` wire helpers.

use super::*;

fn ep(id: u8, addr: &str, backup: bool) -> Endpoint {
    Endpoint {
        id,
        addr: addr.parse().expect("test address"),
        ifindex: 7,
        backup,
    }
}

fn reply(cmd: u8, attrs: Vec<Attr>) -> PmMessage {
    // Round-trip through bytes, as a reply from the kernel would arrive.
    let msg = PmMessage { cmd, attrs };
    let mut buf = vec![0; msg.buffer_len()];
    msg.emit(&mut buf);
    let header = GenlHeader { cmd, version: 1 };
    PmMessage::parse_with_param(&buf, header).expect("parses")
}

#[test]
fn endpoint_round_trips_v4_and_v6() {
    for want in [ep(3, "10.200.1.2", false), ep(8, "2001:db8:201::2", true)] {
        let got = parse_endpoint(&reply(cmd::GET_ADDR, add_endpoint_attrs(&want)));
        assert_eq!(got, Some(want));
    }
}

#[test]
fn add_endpoint_carries_family_flags_and_nesting() {
    let attrs = add_endpoint_attrs(&ep(1, "2001:db8::1", true));
    assert_eq!(attrs.len(), 1);
    assert_eq!(attrs[0].kind, pm_attr::ADDR | NLA_F_NESTED);
    let inner = parse_attrs(&attrs[0].value);
    assert_eq!(family_of(&inner), Some(AF_INET6));
    let flags = inner.iter().find(|a| a.id() == addr_attr::FLAGS);
    assert_eq!(
        flags.and_then(Attr::u32_ne),
        Some(FLAG_SUBFLOW | FLAG_BACKUP)
    );
}

#[test]
fn del_and_set_flags_name_the_id_without_family() {
    for attrs in [del_endpoint_attrs(5), set_backup_attrs(5, false)] {
        let inner = parse_attrs(&attrs[0].value);
        assert_eq!(family_of(&inner), None);
        let id = inner.iter().find(|a| a.id() == addr_attr::ID);
        assert_eq!(id.and_then(Attr::u8), Some(5));
    }
}

#[test]
fn limits_round_trip() {
    let want = Limits {
        subflows: 8,
        add_addr_accepted: 2,
    };
    assert_eq!(
        parse_limits(&reply(cmd::GET_LIMITS, set_limits_attrs(want))),
        want
    );
}

#[test]
fn sub_established_event_parses() {
    let attrs = vec![
        Attr::new(ev_attr::TOKEN, 0xdead_beefu32.to_ne_bytes()),
        Attr::new(ev_attr::SADDR4, [10, 200, 2, 2]),
        Attr::new(ev_attr::DADDR4, [192, 0, 2, 1]),
        Attr::new(ev_attr::SPORT, 40000u16.to_be_bytes()),
        Attr::new(ev_attr::DPORT, 4850u16.to_be_bytes()),
        Attr::new(ev_attr::LOC_ID, [2]),
        Attr::new(ev_attr::BACKUP, [1]),
        Attr::new(ev_attr::IF_IDX, 9i32.to_ne_bytes()),
    ];
    let ev = PmEvent::parse(&reply(10, attrs)).expect("has a token");
    assert_eq!(ev.kind, PmEventKind::SubEstablished);
    assert_eq!(ev.token, 0xdead_beef);
    assert_eq!(ev.saddr, Some("10.200.2.2".parse().expect("ip")));
    assert_eq!(ev.daddr, Some("192.0.2.1".parse().expect("ip")));
    assert_eq!((ev.sport, ev.dport), (Some(40000), Some(4850)));
    assert_eq!(
        (ev.loc_id, ev.backup, ev.ifindex),
        (Some(2), Some(true), Some(9))
    );
}

#[test]
fn event_without_token_is_ignored_and_garbage_does_not_panic() {
    assert_eq!(PmEvent::parse(&reply(3, vec![])), None);
    for len in 0..48u8 {
        let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(53)).collect();
        let msg = PmMessage {
            cmd: 10,
            attrs: parse_attrs(&data),
        };
        let _ = PmEvent::parse(&msg);
        let _ = parse_endpoint(&msg);
        let _ = parse_limits(&msg);
    }
}
