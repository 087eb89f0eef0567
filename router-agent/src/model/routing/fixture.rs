//! Test helpers: build snapshots the way the kernel would report them, and run one
//! discover → plan → diff → apply round through a strict [`RecordingBackend`].

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::netops::{Endpoint, Limits, NetOp, Ownership, Route, Rule, ROUTE_METRIC};
use crate::model::routing::{diff, plan_reacting, DownReaction, Plan, Slots};
use crate::model::wan::{
    discover, AddrInfo, Health, LinkInfo, Mode, RouteInfo, Snapshot, Wan, WanSettings, WanSpec,
    MAIN_TABLE, RTPROT_RA,
};
use crate::net::backend::RecordingBackend;

pub fn net(s: &str) -> IpNet {
    s.parse().expect("test prefix")
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

pub fn route(table: u32, dst: &str, gw: Option<&str>, oif: u32) -> Route {
    Route {
        table,
        dst: net(dst),
        gateway: gw.map(ip),
        oif,
        prefsrc: None,
        metric: ROUTE_METRIC,
    }
}

pub fn rule(priority: u32, from: &str, table: u32) -> Rule {
    Rule {
        priority,
        from: net(from),
        table,
    }
}

pub fn ep(id: u8, a: &str, ifindex: u32, backup: bool) -> Endpoint {
    Endpoint {
        id,
        addr: ip(a),
        ifindex,
        backup,
    }
}

/// A usable address, `"10.200.1.2/24"`.
pub fn addr(s: &str) -> AddrInfo {
    let n = net(s);
    AddrInfo {
        addr: n.addr(),
        prefix_len: n.prefix_len(),
        tentative: false,
        deprecated: false,
        temporary: false,
    }
}

/// An up link with carrier and the given addresses.
pub fn link(ifindex: u32, name: &str, addrs: &[&str]) -> LinkInfo {
    LinkInfo {
        ifindex,
        name: name.into(),
        up: true,
        point_to_point: false,
        addrs: addrs.iter().map(|a| addr(a)).collect(),
        rx_bytes: 0,
        tx_bytes: 0,
    }
}

/// A main-table default route through `oif`; `gw` "" for `default dev X`.
pub fn default_via(oif: u32, gw: &str, v6: bool) -> RouteInfo {
    RouteInfo {
        table: MAIN_TABLE,
        dst: net(if v6 { "::/0" } else { "0.0.0.0/0" }),
        gateway: (!gw.is_empty()).then(|| ip(gw)),
        oif,
        protocol: if v6 { RTPROT_RA } else { 16 },
    }
}

/// WAN `i` of the test bed: `wan{i}` on `eth{i}` (ifindex 10+i), 10.200.i.2/24 via .1.
pub fn testbed_link(i: u32) -> (LinkInfo, RouteInfo) {
    let l = link(10 + i, &format!("eth{i}"), &[&format!("10.200.{i}.2/24")]);
    (l, default_via(10 + i, &format!("10.200.{i}.1"), false))
}

/// A snapshot of test-bed WANs 1..=n plus the LAN bridge and loopback.
pub fn testbed(n: u32) -> Snapshot {
    let mut s = Snapshot::default();
    s.links.push(link(1, "lo", &["127.0.0.1/8"]));
    s.links.push(link(2, "br-lan", &["192.168.50.1/24"]));
    for i in 1..=n {
        let (l, r) = testbed_link(i);
        s.links.push(l);
        s.routes.push(r);
    }
    s
}

pub fn lan() -> Vec<String> {
    vec!["br-lan".into()]
}

/// Configured WANs by (name, device, mode).
pub fn configured(wans: &[(&str, &str, Mode)]) -> WanSettings {
    WanSettings {
        wans: wans
            .iter()
            .map(|&(name, device, mode)| WanSpec {
                name: name.into(),
                device: device.into(),
                mode,
                probe: Default::default(),
                metering: Default::default(),
            })
            .collect(),
        default_probe: Default::default(),
    }
}

pub fn caps() -> Limits {
    Limits {
        subflows: 8,
        add_addr_accepted: 8,
    }
}

/// The agent's loop in miniature, kept between rounds.
#[derive(Debug)]
pub struct Agent {
    pub settings: WanSettings,
    pub own: Ownership,
    pub slots: Slots,
    pub health: HashMap<String, Health>,
    pub kernel: RecordingBackend,
    pub wans: Vec<Wan>,
    pub plan: Plan,
    pub down: DownReaction,
}

impl Agent {
    pub fn new(settings: WanSettings) -> Self {
        Agent {
            settings,
            own: Ownership::default(),
            slots: Slots::default(),
            health: HashMap::new(),
            kernel: RecordingBackend::default(),
            wans: Vec::new(),
            plan: Plan::default(),
            down: DownReaction::default(),
        }
    }

    /// Discover, plan, diff and apply; returns the ops. Panics (test failure) if the strict
    /// backend refuses an op, if the kernel does not end up as planned, or if a second
    /// diff is not empty.
    pub fn step(&mut self, snapshot: &Snapshot) -> Vec<NetOp> {
        self.wans = discover(snapshot, &self.settings, &lan(), &self.health);
        self.plan = plan_reacting(&self.wans, &self.own, caps(), &mut self.slots, self.down);
        let ops = diff(&self.kernel.state, &self.plan.desired);
        if let Err(e) = self.kernel.apply_all(&ops) {
            panic!("{e}\nops: {ops:#?}");
        }
        assert_eq!(
            self.kernel.state, self.plan.desired,
            "kernel differs from plan"
        );
        assert!(diff(&self.kernel.state, &self.plan.desired).is_empty());
        ops
    }

    /// The kernel flushes the routes through `oif` when its link goes down.
    pub fn kernel_flushes(&mut self, oif: u32) {
        self.kernel.state.routes.retain(|r| r.oif != oif);
    }

    pub fn wan(&self, name: &str) -> &Wan {
        self.wans
            .iter()
            .find(|w| w.name == name)
            .unwrap_or_else(|| panic!("no WAN {name}"))
    }
}
