//! netifd's dump → model → WAN devices, on dumps shaped like real `ubus call
//! network.interface dump` output (pppoe with its `wan_6` child, dhcp beside a dhcpv6
//! interface on the same device, qmi with `wwan_4`/`wwan_6`, a down interface).

mod ubus_standin;

use ipnet::IpNet;
use mpbond_agent::model::wan::{Health, Mode, ProbeSettings, Wan, WanSettings, WanSpec};
use mpbond_agent::ubus::{parse_dump, NetifdView, Resolver};
use serde_json::{json, Map};
use ubus_standin::fixture;

fn view(name: &str) -> NetifdView {
    parse_dump(&fixture(name)).expect("a dump")
}

fn spec(name: &str, device: &str) -> WanSpec {
    WanSpec {
        name: name.into(),
        device: device.into(),
        mode: Mode::On,
        probe: ProbeSettings::default(),
        metering: Default::default(),
    }
}

fn settings(specs: &[(&str, &str)]) -> WanSettings {
    WanSettings {
        wans: specs.iter().map(|(n, d)| spec(n, d)).collect(),
        default_probe: ProbeSettings::default(),
    }
}

fn devices(s: &WanSettings) -> Vec<(String, String)> {
    s.wans
        .iter()
        .map(|w| (w.name.clone(), w.device.clone()))
        .collect()
}

fn wan(name: &str, device: &str, addr: &str) -> Wan {
    Wan {
        name: name.into(),
        device: device.into(),
        ifindex: 7,
        addresses: vec![addr.parse::<IpNet>().expect("prefix")],
        gateway4: None,
        gateway6: None,
        point_to_point: false,
        mode: Mode::On,
        health: Health::Unknown,
        link_up: true,
        ra_routes: Vec::new(),
        dev_default4: false,
        dev_default6: false,
        metered: false,
        standby: false,
    }
}

#[test]
fn the_dump_is_read_into_interfaces() {
    let v = view("pppoe-dhcp.json");
    let names: Vec<&str> = v.ifaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["lan", "loopback", "wan", "wan_6", "wanb", "wanb6"]);
    let wan = v.iface("wan").expect("wan");
    assert!(wan.up && !wan.dynamic);
    assert_eq!(wan.proto, "pppoe");
    assert_eq!(wan.l3_device.as_deref(), Some("pppoe-wan"));
    assert_eq!(wan.device.as_deref(), Some("eth1"));
    assert_eq!(
        wan.addresses,
        ["198.51.100.77/32".parse::<IpNet>().unwrap()]
    );
    assert_eq!(wan.gateway4, Some("198.51.100.1".parse().unwrap()));
    let child = v.iface("wan_6").expect("wan_6");
    assert!(child.dynamic);
    assert_eq!(child.gateway6, Some("fe80::1".parse().unwrap()));
    assert_eq!(child.addresses.len(), 1);
    assert!(parse_dump(&Map::new()).is_err(), "no interface array");
    // Entries without a name, and fields of the wrong type, are skipped, not fatal.
    let odd = json!({"interface": [1, {"up": true}, {"interface": "x", "up": "yes",
        "route": [{"mask": 0, "nexthop": "garbage"}], "ipv4-address": [{"address": 5}]}]});
    let v = parse_dump(odd.as_object().unwrap()).expect("tolerant");
    assert_eq!(v.ifaces.len(), 1);
    assert!(!v.ifaces[0].up && v.ifaces[0].gateway4.is_none());
}

#[test]
fn pppoe_and_its_dhcpv6_child_are_one_wan() {
    let r = view("pppoe-dhcp.json").resolve("wan").expect("wan");
    assert!(r.up);
    assert_eq!(r.proto, "pppoe");
    assert_eq!(r.l3_device.as_deref(), Some("pppoe-wan"));
    assert_eq!(r.gateway4, Some("198.51.100.1".parse().unwrap()));
    assert_eq!(r.gateway6, Some("fe80::1".parse().unwrap()));
    assert_eq!(r.members, ["wan", "wan_6"]);
}

#[test]
fn dhcp_takes_the_v6_gateway_of_the_dhcpv6_interface_on_its_device() {
    let r = view("pppoe-dhcp.json").resolve("wanb").expect("wanb");
    assert_eq!(r.l3_device.as_deref(), Some("eth2"));
    assert_eq!(r.gateway4, Some("10.200.2.1".parse().unwrap()));
    assert_eq!(r.gateway6, Some("fe80::202:1".parse().unwrap()));
    assert_eq!(r.members, ["wanb"]);
}

#[test]
fn qmi_is_the_union_of_wwan_wwan_4_and_wwan_6() {
    let v = view("qmi-wwan.json");
    let r = v.resolve("wwan").expect("wwan");
    assert!(r.up);
    assert_eq!(r.proto, "qmi");
    assert_eq!(r.l3_device.as_deref(), Some("wwan0"));
    assert_eq!(r.gateway4, Some("100.71.12.10".parse().unwrap()));
    assert_eq!(r.gateway6, Some("fe80::4a0:1".parse().unwrap()));
    assert_eq!(r.members, ["wwan", "wwan_4", "wwan_6"]);
    let down = v.resolve("wan").expect("wan");
    assert!(!down.up);
    assert_eq!(down.l3_device, None);
    assert_eq!(v.resolve("nope"), None);
}

#[test]
fn configured_wans_get_netifd_devices() {
    let mut r = Resolver::default();
    let cfg = settings(&[
        ("wan", "wan"),
        ("wanb", "wanb"),
        ("wanb6", "wanb6"),
        ("lte", "lte"),
    ]);
    // No view: unchanged.
    assert_eq!(r.settings(&cfg).0, cfg);

    r.set_view(Some(view("pppoe-dhcp.json")));
    let (s, notes) = r.settings(&cfg);
    assert_eq!(
        devices(&s),
        [
            ("wan".to_string(), "pppoe-wan".to_string()),
            ("wanb".to_string(), "eth2".to_string()),
            ("lte".to_string(), "lte".to_string()),
        ],
        "wanb6 shares eth2 with wanb and folds into it; lte is unknown to netifd"
    );
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes
        .iter()
        .any(|n| n.contains("wanb6") && n.contains("eth2")));
    assert!(notes
        .iter()
        .any(|n| n.contains("lte") && n.contains("no interface")));
    // Notes come once while they last.
    assert!(r.settings(&cfg).1.is_empty());
}

#[test]
fn an_explicit_device_wins_and_a_down_interface_keeps_its_last_device() {
    let mut r = Resolver::default();
    r.set_view(Some(view("pppoe-dhcp.json")));
    let cfg = settings(&[("wan", "eth1"), ("wanb", "wanb")]);
    let (s, notes) = r.settings(&cfg);
    assert_eq!(s.wans[0].device, "eth1");
    assert_eq!(s.wans[1].device, "eth2");
    assert!(notes[0].contains("pppoe-wan"), "{notes:?}");

    // The same names, now all down (no l3_device): the last device stays.
    let mut down = view("pppoe-dhcp.json");
    for i in &mut down.ifaces {
        i.up = false;
        i.l3_device = None;
    }
    r.set_view(Some(down));
    let (s, _) = r.settings(&cfg);
    assert_eq!(s.wans[1].device, "eth2");
}

#[test]
fn netifd_down_means_link_down_and_fills_missing_gateways() {
    let mut r = Resolver::default();
    r.set_view(Some(view("qmi-wwan.json")));
    let mut wans = vec![
        wan("wwan", "wwan0", "100.71.12.9/30"),
        wan("wan", "eth1", "192.0.2.9/24"),
        wan("other", "eth5", "192.0.2.10/24"),
    ];
    r.adjust(&mut wans);
    assert!(wans[0].link_up);
    assert_eq!(wans[0].gateway4, Some("100.71.12.10".parse().unwrap()));
    assert_eq!(wans[0].gateway6, Some("fe80::4a0:1".parse().unwrap()));
    assert!(!wans[1].link_up, "netifd says wan is down");
    assert!(
        wans[2].link_up && wans[2].gateway4.is_none(),
        "unknown to netifd"
    );

    // The kernel's gateway wins; point-to-point links get none.
    let mut wans = vec![wan("wwan", "wwan0", "100.71.12.9/30")];
    wans[0].gateway4 = Some("100.71.12.11".parse().unwrap());
    wans[0].point_to_point = true;
    r.adjust(&mut wans);
    assert_eq!(wans[0].gateway4, Some("100.71.12.11".parse().unwrap()));
    assert_eq!(wans[0].gateway6, None);
}
