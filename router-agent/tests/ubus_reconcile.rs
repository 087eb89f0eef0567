//! The reconcile with a netifd view, on an in-memory kernel (no root): the configured WAN
//! `wan` has no device of its own name; netifd's view decides its device, gateway and
//! up/down, and without a view the reconcile is exactly as before.

use std::future::Future;

use ipnet::IpNet;
use mpbond_agent::control::{KernelPort, Outcome, Reconciler};
use mpbond_agent::model::netops::{KernelState, Limits, NetOp, Ownership};
use mpbond_agent::model::wan::{
    AddrInfo, LinkInfo, Mode, ProbeSettings, Snapshot, WanSettings, WanSpec,
};
use mpbond_agent::net::backend::{NetBackend, NetError, RecordingBackend};
use mpbond_agent::ubus::{parse_dump, NetifdView};
use serde_json::json;

struct Fake {
    backend: RecordingBackend,
    snapshot: Snapshot,
}

impl NetBackend for Fake {
    fn dump(&mut self) -> impl Future<Output = Result<KernelState, NetError>> {
        self.backend.dump()
    }

    fn apply(&mut self, op: &NetOp) -> impl Future<Output = Result<(), NetError>> {
        self.backend.apply(op)
    }
}

impl KernelPort for Fake {
    fn snapshot(&mut self) -> impl Future<Output = Result<Snapshot, NetError>> {
        std::future::ready(Ok(self.snapshot.clone()))
    }

    fn loosen_rp_filter(&mut self, _device: &str) -> Result<(), NetError> {
        Ok(())
    }
}

fn link(ifindex: u32, name: &str, addr: &str) -> LinkInfo {
    let net: IpNet = addr.parse().expect("test address");
    LinkInfo {
        ifindex,
        name: name.into(),
        up: true,
        point_to_point: false,
        addrs: vec![AddrInfo {
            addr: net.addr(),
            prefix_len: net.prefix_len(),
            tentative: false,
            deprecated: false,
            temporary: false,
        }],
        rx_bytes: 0,
        tx_bytes: 0,
    }
}

/// A router whose WAN device `eth1` has an address but no main-table default route.
fn fake() -> Fake {
    Fake {
        backend: RecordingBackend::new(KernelState::default()),
        snapshot: Snapshot {
            links: vec![
                link(2, "br-lan", "192.168.50.1/24"),
                link(3, "eth1", "10.200.1.2/24"),
            ],
            routes: Vec::new(),
        },
    }
}

fn reconciler() -> Reconciler {
    let settings = WanSettings {
        wans: vec![WanSpec {
            name: "wan".into(),
            device: "wan".into(),
            mode: Mode::On,
            probe: ProbeSettings::default(),
            metering: Default::default(),
        }],
        default_probe: ProbeSettings::default(),
    };
    let limits = Limits {
        subflows: 8,
        add_addr_accepted: 8,
    };
    Reconciler::new(
        settings,
        vec!["br-lan".into()],
        Ownership::default(),
        limits,
    )
}

fn view(up: bool) -> NetifdView {
    let wan = if up {
        json!({"interface": "wan", "up": true, "proto": "dhcp", "l3_device": "eth1",
               "route": [{"target": "0.0.0.0", "mask": 0, "nexthop": "10.200.1.1"}]})
    } else {
        json!({"interface": "wan", "up": false, "proto": "dhcp"})
    };
    let dump = json!({"interface": [wan]});
    parse_dump(dump.as_object().expect("object")).expect("dump")
}

fn reconcile(r: &mut Reconciler, k: &mut Fake) -> Outcome {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(r.reconcile(k))
        .expect("reconcile")
}

fn default_routes_via_eth1(k: &Fake) -> usize {
    k.backend
        .state
        .routes
        .iter()
        .filter(|r| r.oif == 3 && r.dst.prefix_len() == 0)
        .count()
}

#[test]
fn without_a_view_the_wan_is_its_configured_device() {
    let (mut r, mut k) = (reconciler(), fake());
    let out = reconcile(&mut r, &mut k);
    assert_eq!(out.wans[0].device, "wan");
    assert!(!out.wans[0].link_up, "no device called wan");
    assert_eq!(default_routes_via_eth1(&k), 0);
}

#[test]
fn the_view_gives_device_gateway_and_state() {
    let (mut r, mut k) = (reconciler(), fake());
    r.set_netifd(Some(view(true)));
    let out = reconcile(&mut r, &mut k);
    let wan = &out.wans[0];
    assert_eq!((wan.name.as_str(), wan.device.as_str()), ("wan", "eth1"));
    assert_eq!(wan.ifindex, 3);
    assert!(wan.link_up);
    assert_eq!(wan.gateway4, Some("10.200.1.1".parse().unwrap()));
    assert_eq!(
        default_routes_via_eth1(&k),
        1,
        "the WAN table's default route"
    );
    assert_eq!(k.backend.state.endpoints.len(), 1);

    // netifd takes wan down: link down at once, the endpoint goes, the device stays.
    r.set_netifd(Some(view(false)));
    let out = reconcile(&mut r, &mut k);
    assert_eq!(out.wans[0].device, "eth1");
    assert!(!out.wans[0].link_up);
    assert!(k.backend.state.endpoints.is_empty());

    // And back.
    r.set_netifd(Some(view(true)));
    let out = reconcile(&mut r, &mut k);
    assert!(out.wans[0].link_up);
    assert_eq!(k.backend.state.endpoints.len(), 1);
}
