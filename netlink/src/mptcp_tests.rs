//! Unit tests of the `mptcp_pm` bytes.

use super::*;
use crate::attr::NLA_F_NESTED;

const FAMILY: u16 = 0x1d;

fn ep(id: u8, addr: &str, backup: bool) -> Endpoint {
    Endpoint {
        id,
        addr: addr.parse().expect("test address"),
        ifindex: 7,
        backup,
    }
}

/// The attributes nested in a request's `MPTCP_PM_ATTR_ADDR`.
fn inner(req: &Request) -> Vec<(u16, Vec<u8>)> {
    let (_, mut attrs) = genl::split(&req.body).expect("genl header");
    let addr = attrs.next().expect("one attribute");
    assert_eq!(addr.kind, pm_attr::ADDR | NLA_F_NESTED);
    addr.nested().map(|a| (a.id(), a.value.to_vec())).collect()
}

#[test]
fn endpoint_round_trips_v4_and_v6() {
    for want in [ep(3, "10.200.1.2", false), ep(8, "2001:db8:201::2", true)] {
        // A GET_ADDR reply has the ADD_ADDR request's layout.
        let req = add_endpoint(FAMILY, &want);
        assert_eq!(req.kind, FAMILY);
        assert_eq!(parse_endpoint(&req.body), Some(want));
    }
}

#[test]
fn add_endpoint_carries_family_flags_and_nesting() {
    let attrs = inner(&add_endpoint(FAMILY, &ep(1, "2001:db8::1", true)));
    let get = |id| attrs.iter().find(|(k, _)| *k == id).map(|(_, v)| v.clone());
    assert_eq!(
        get(addr_attr::FAMILY),
        Some(AF_INET6.to_ne_bytes().to_vec())
    );
    let flags = (FLAG_SUBFLOW | FLAG_BACKUP).to_ne_bytes().to_vec();
    assert_eq!(get(addr_attr::FLAGS), Some(flags));
    assert_eq!(get(addr_attr::IF_IDX), Some(7u32.to_ne_bytes().to_vec()));
}

#[test]
fn del_and_set_flags_name_the_id_without_family() {
    for req in [del_endpoint(FAMILY, 5), set_backup(FAMILY, 5, false)] {
        let attrs = inner(&req);
        assert!(attrs.iter().all(|(k, _)| *k != addr_attr::FAMILY));
        assert!(attrs.contains(&(addr_attr::ID, vec![5])));
    }
    assert_eq!(
        genl::split(&set_backup(FAMILY, 5, true).body).map(|s| s.0),
        Some(cmd::SET_FLAGS)
    );
}

#[test]
fn limits_round_trip_and_dump_is_a_dump() {
    let want = Limits {
        subflows: 8,
        add_addr_accepted: 2,
    };
    let reply = Reply {
        kind: FAMILY,
        payload: set_limits(FAMILY, want).body,
    };
    assert_eq!(parse_limits(&[reply]), want);
    assert!(dump_endpoints(FAMILY).is_dump());
    assert!(!get_limits(FAMILY).is_dump());
    assert_eq!(
        parse_limits(&[]),
        Limits {
            subflows: 0,
            add_addr_accepted: 0
        }
    );
}

#[test]
fn sub_established_event_parses() {
    let mut attrs = AttrBuf::new();
    attrs.put_u32(ev_attr::TOKEN, 0xdead_beef);
    attrs.put(ev_attr::SADDR4, &[10, 200, 2, 2]);
    attrs.put(ev_attr::DADDR4, &[192, 0, 2, 1]);
    attrs.put(ev_attr::SPORT, &40000u16.to_be_bytes());
    attrs.put(ev_attr::DPORT, &4850u16.to_be_bytes());
    attrs.put_u8(ev_attr::LOC_ID, 2);
    attrs.put_u8(ev_attr::BACKUP, 1);
    attrs.put_u32(ev_attr::IF_IDX, 9);
    let payload = genl::request(FAMILY, 10, 1, attrs, false).body;
    let ev = PmEvent::parse(&payload).expect("has a token");
    assert_eq!(ev.kind, PmEventKind::SubEstablished);
    assert_eq!(ev.token, 0xdead_beef);
    assert_eq!(ev.saddr, "10.200.2.2".parse().ok());
    assert_eq!(ev.daddr, "192.0.2.1".parse().ok());
    assert_eq!((ev.sport, ev.dport), (Some(40000), Some(4850)));
    assert_eq!(
        (ev.loc_id, ev.backup, ev.ifindex),
        (Some(2), Some(true), Some(9))
    );
}

#[test]
fn event_without_token_is_ignored_and_garbage_does_not_panic() {
    assert_eq!(PmEvent::parse(&[3, 1, 0, 0]), None);
    for len in 0..48u8 {
        let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(53)).collect();
        let _ = PmEvent::parse(&data);
        let _ = parse_endpoint(&data);
        let _ = parse_limits(&[Reply {
            kind: FAMILY,
            payload: data,
        }]);
    }
}
