//! netifd's view of the interfaces (`ubus call network.interface dump`) and what each
//! configured WAN resolves to. Pure: JSON in, values out.
//!
//! * [`parse_dump`] reads the dump into [`Iface`]s: the logical name, `up`, `dynamic`,
//!   `proto`, `l3_device`, `device`, the addresses and the default-route gateways (the
//!   `nexthop` of a `route` entry with `mask` 0).
//! * [`NetifdView::resolve`] gives a configured name's [`Resolved`] state. qmi, ncm, mbim
//!   and pppoe (with `ipv6 auto`) hand IP configuration to dynamic children named
//!   `NAME_4` and `NAME_6`; the configured interface is the union of itself and those
//!   children: the parent's `up` and `proto`, the first `l3_device` (parent first), the
//!   first gateway of each family (parent, then children, then any other up interface on
//!   the same `l3_device`, such as `wan6` beside `wan`).
//! * [`Resolver`] applies a view to the configured WANs: [`Resolver::settings`] swaps in
//!   netifd's `l3_device` for every WAN whose device was not set (a device equal to the
//!   name counts as unset), remembers it while the interface is down so the WAN keeps its
//!   device, and folds WANs that share a device into the first one; [`Resolver::adjust`]
//!   marks a WAN whose netifd interface is down as link-down and fills a gateway the main
//!   table lacks (a WAN routed in its own `ip4table`). Links and addresses stay
//!   rtnetlink's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde_json::{Map, Value as Json};
use thiserror::Error;

use crate::model::wan::{Wan, WanSettings, WanSpec};

/// The dump lacked its `interface` array.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the network.interface dump has no \"interface\" array")]
pub struct DumpError;

/// One netifd interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub up: bool,
    /// Created at runtime by a protocol handler (the `_4`/`_6` children).
    pub dynamic: bool,
    pub proto: String,
    /// The device that carries IP (absent while down).
    pub l3_device: Option<String>,
    /// The lower device (`eth1` under `pppoe-wan`).
    pub device: Option<String>,
    pub addresses: Vec<IpNet>,
    pub gateway4: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
}

/// Every interface of one dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetifdView {
    pub ifaces: Vec<Iface>,
}

/// What netifd says of one configured interface and its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub up: bool,
    pub proto: String,
    pub l3_device: Option<String>,
    pub gateway4: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    /// The interfaces it was built from: the parent, then its children.
    pub members: Vec<String>,
}

fn text(v: &Map<String, Json>, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn addresses(v: &Map<String, Json>, key: &str) -> Vec<IpNet> {
    let list = v.get(key).and_then(Json::as_array).map_or(&[][..], |l| l);
    list.iter()
        .filter_map(Json::as_object)
        .filter_map(|a| {
            let ip: IpAddr = a.get("address")?.as_str()?.parse().ok()?;
            let mask = u8::try_from(a.get("mask")?.as_u64()?).ok()?;
            IpNet::new(ip, mask).ok()
        })
        .collect()
}

fn parse_iface(v: &Map<String, Json>) -> Option<Iface> {
    let mut iface = Iface {
        name: text(v, "interface")?,
        up: v.get("up").and_then(Json::as_bool).unwrap_or(false),
        dynamic: v.get("dynamic").and_then(Json::as_bool).unwrap_or(false),
        proto: text(v, "proto").unwrap_or_default(),
        l3_device: text(v, "l3_device"),
        device: text(v, "device"),
        addresses: addresses(v, "ipv4-address"),
        ..Iface::default()
    };
    iface.addresses.extend(addresses(v, "ipv6-address"));
    let routes = v
        .get("route")
        .and_then(Json::as_array)
        .map_or(&[][..], |l| l);
    for r in routes.iter().filter_map(Json::as_object) {
        if r.get("mask").and_then(Json::as_u64) != Some(0) {
            continue;
        }
        match r.get("nexthop").and_then(Json::as_str).map(str::parse) {
            Some(Ok(IpAddr::V4(gw))) if !gw.is_unspecified() && iface.gateway4.is_none() => {
                iface.gateway4 = Some(gw)
            }
            Some(Ok(IpAddr::V6(gw))) if !gw.is_unspecified() && iface.gateway6.is_none() => {
                iface.gateway6 = Some(gw)
            }
            _ => {}
        }
    }
    Some(iface)
}

/// The interfaces of a `network.interface dump` reply. Entries that are not objects or
/// lack a name are skipped.
pub fn parse_dump(reply: &Map<String, Json>) -> Result<NetifdView, DumpError> {
    let list = reply
        .get("interface")
        .and_then(Json::as_array)
        .ok_or(DumpError)?;
    Ok(NetifdView {
        ifaces: list
            .iter()
            .filter_map(Json::as_object)
            .filter_map(parse_iface)
            .collect(),
    })
}

impl NetifdView {
    /// The interface called `name`.
    pub fn iface(&self, name: &str) -> Option<&Iface> {
        self.ifaces.iter().find(|i| i.name == name)
    }

    /// The configured interface `name` with its `_4`/`_6` children; None if netifd does
    /// not know `name`.
    pub fn resolve(&self, name: &str) -> Option<Resolved> {
        let parent = self.iface(name)?;
        let kids: Vec<&Iface> = [format!("{name}_4"), format!("{name}_6")]
            .iter()
            .filter_map(|n| self.iface(n))
            .collect();
        let group: Vec<&Iface> = std::iter::once(parent).chain(kids).collect();
        let l3_device = group.iter().find_map(|i| i.l3_device.clone());
        let same_device = |i: &&Iface| i.up && l3_device.is_some() && i.l3_device == l3_device;
        let others = self.ifaces.iter().filter(same_device);
        let pool: Vec<&Iface> = group.iter().copied().chain(others).collect();
        Some(Resolved {
            name: name.to_owned(),
            up: parent.up && l3_device.is_some(),
            proto: parent.proto.clone(),
            gateway4: pool.iter().find_map(|i| i.gateway4),
            gateway6: pool.iter().find_map(|i| i.gateway6),
            l3_device,
            members: group.iter().map(|i| i.name.clone()).collect(),
        })
    }
}

/// Applies the latest [`NetifdView`] to the configured WANs (see the module docs).
#[derive(Debug, Default)]
pub struct Resolver {
    view: Option<NetifdView>,
    /// The last `l3_device` netifd gave each configured WAN.
    last: BTreeMap<String, String>,
    noted: BTreeSet<String>,
}

impl Resolver {
    /// Use `view` from now on (`None`: no netifd, the settings pass unchanged).
    pub fn set_view(&mut self, view: Option<NetifdView>) {
        self.view = view;
    }

    pub fn view(&self) -> Option<&NetifdView> {
        self.view.as_ref()
    }

    /// The WAN settings with netifd's devices, and the notes not returned before (to log
    /// once each, while they last).
    pub fn settings(&mut self, cfg: &WanSettings) -> (WanSettings, Vec<String>) {
        let Some(view) = &self.view else {
            return (cfg.clone(), Vec::new());
        };
        let mut notes = Vec::new();
        let mut wans: Vec<WanSpec> = Vec::with_capacity(cfg.wans.len());
        for spec in &cfg.wans {
            let mut spec = spec.clone();
            let resolved = view.resolve(&spec.name);
            let explicit = spec.device != spec.name;
            match (&resolved, explicit) {
                (None, _) => notes.push(format!(
                    "wan {}: netifd has no interface of that name; using device {}",
                    spec.name, spec.device
                )),
                (Some(r), true) => {
                    if let Some(l3) = r.l3_device.as_ref().filter(|l3| **l3 != spec.device) {
                        notes.push(format!(
                            "wan {}: the configured device {} wins over netifd's l3_device {l3}",
                            spec.name, spec.device
                        ));
                    }
                }
                (Some(r), false) => {
                    if let Some(l3) = &r.l3_device {
                        self.last.insert(spec.name.clone(), l3.clone());
                    }
                    if let Some(dev) = self.last.get(&spec.name) {
                        spec.device.clone_from(dev);
                    }
                }
            }
            if let Some(first) = wans.iter().find(|w| w.device == spec.device) {
                notes.push(format!(
                    "wan {}: shares device {} with wan {}; bonded as {}",
                    spec.name, spec.device, first.name, first.name
                ));
                continue;
            }
            wans.push(spec);
        }
        let fresh = notes
            .iter()
            .filter(|n| !self.noted.contains(*n))
            .cloned()
            .collect();
        self.noted = notes.into_iter().collect();
        let settings = WanSettings {
            wans,
            default_probe: cfg.default_probe.clone(),
        };
        (settings, fresh)
    }

    /// netifd's verdicts on WANs discovered from the kernel: a WAN whose interface is
    /// down is not `link_up`; a gateway the main table lacks comes from netifd.
    pub fn adjust(&self, wans: &mut [Wan]) {
        let Some(view) = &self.view else {
            return;
        };
        for wan in wans.iter_mut() {
            let Some(r) = view.resolve(&wan.name) else {
                continue;
            };
            if !r.up {
                wan.link_up = false;
            }
            if r.l3_device.as_deref() != Some(wan.device.as_str()) || wan.point_to_point {
                continue;
            }
            if wan.gateway4.is_none() && !wan.dev_default4 {
                wan.gateway4 = r.gateway4;
            }
            if wan.gateway6.is_none() && !wan.dev_default6 {
                wan.gateway6 = r.gateway6;
            }
        }
    }
}
