//! The router's WANs, derived from what the kernel reports.
//!
//! [`Snapshot`] is the kernel's view (links with their addresses, main-table routes), as
//! `crate::net::Kernel::snapshot` dumps it. [`discover`] turns it into [`Wan`]s, either
//! from the configured list ([`WanSettings::wans`]) or, when that list is empty, by
//! auto-detection: every link with a default route in the main table that is neither a
//! LAN interface nor loopback.
//!
//! Usable addresses are IPv4 and global IPv6; link-local, tentative, deprecated and
//! temporary (privacy) addresses are skipped. The gateway of each family is the one of the
//! main table's default route through the WAN's device; point-to-point links (PPPoE, LTE
//! raw-ip) have none. A link that is down, or has no usable address, gives a WAN with
//! `link_up: false` and health [`Health::Down`], whatever the probes said.
//!
//! [`plan`] and [`diff`] live in [`super::routing`] and are re-exported here.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

pub use super::routing::{diff, plan, plan_with, refresh_endpoints, Plan, Slots};
pub use super::wan_health::ProbeSettings;

/// The main routing table's id.
pub const MAIN_TABLE: u32 = 254;
/// `RTPROT_RA`: routes learnt from IPv6 router advertisements.
pub const RTPROT_RA: u8 = 9;

/// One link as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifindex: u32,
    pub name: String,
    /// `IFF_UP && IFF_LOWER_UP` (administratively up and with carrier).
    pub up: bool,
    /// `IFF_POINTOPOINT` (PPPoE, some LTE modems).
    pub point_to_point: bool,
    pub addrs: Vec<AddrInfo>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// One address of a link. Link-local is recognised from the address itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrInfo {
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub tentative: bool,
    pub deprecated: bool,
    /// An IPv6 privacy (temporary) address.
    pub temporary: bool,
}

/// One route as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    pub table: u32,
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub protocol: u8,
}

/// The kernel's view the WANs are derived from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub links: Vec<LinkInfo>,
    /// Main-table routes, including the default routes and the RA routes.
    pub routes: Vec<RouteInfo>,
}

/// How a WAN takes part in bonding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Carries subflows.
    #[default]
    On,
    /// Carries subflows only while no `On` WAN works (MPTCP backup flag).
    Backup,
    /// Ignored: no table, no rule, no endpoint.
    Off,
}

impl Mode {
    /// The config and status spelling: `on`, `backup`, `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::Backup => "backup",
            Mode::Off => "off",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(Mode::On),
            "backup" => Ok(Mode::Backup),
            "off" => Ok(Mode::Off),
            other => Err(format!("{other:?} is not one of on, backup, off")),
        }
    }
}

/// A WAN's health, from the probes and the link state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Health {
    Up,
    /// Up, but losing more probes than the threshold.
    Degraded,
    Down,
    /// Not probed yet.
    #[default]
    Unknown,
}

impl Health {
    /// The status spelling: `up`, `degraded`, `down`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
            Health::Unknown => "unknown",
        }
    }
}

/// One WAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wan {
    pub name: String,
    pub device: String,
    /// 0 when the device does not exist.
    pub ifindex: u32,
    /// Usable addresses with their prefix length (host bits kept).
    pub addresses: Vec<IpNet>,
    pub gateway4: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    pub point_to_point: bool,
    pub mode: Mode,
    pub health: Health,
    /// The device exists, is up, has carrier and has a usable address.
    pub link_up: bool,
    /// Main-table IPv6 routes learnt from router advertisements through this device
    /// (besides the default route), copied into the WAN's table.
    pub ra_routes: Vec<(IpNet, Option<IpAddr>)>,
    /// A main-table default route through this device has no gateway (`default dev X`).
    pub dev_default4: bool,
    /// As `dev_default4`, for IPv6.
    pub dev_default6: bool,
    /// Configured as metered (`[[wan]] metered`): the probe logic may probe it sparingly.
    pub metered: bool,
    /// Held back by the metered policy (`core::metered`): no MPTCP endpoint and never
    /// the source of new connections, while a better WAN is up.
    pub standby: bool,
}

/// One configured WAN (`[[wan]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WanSpec {
    pub name: String,
    pub device: String,
    pub mode: Mode,
    pub probe: ProbeSettings,
    /// Metered or not, its allowance and billing month.
    pub metering: Metering,
}

/// A WAN's data plan: metered or not, the monthly allowance and the day the billing
/// month starts. Every WAN's bytes are counted (`crate::accounting`); only a metered one
/// is held back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metering {
    pub metered: bool,
    /// Bytes a billing month (received + sent) before the WAN is used only as a last
    /// resort; None: no allowance.
    pub allowance: Option<u64>,
    /// The day of the month (1-28) a billing month starts.
    pub reset_day: u8,
}

impl Default for Metering {
    fn default() -> Self {
        Metering {
            metered: false,
            allowance: None,
            reset_day: 1,
        }
    }
}

/// The WAN part of the config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WanSettings {
    /// Configured WANs; empty means auto-detect.
    pub wans: Vec<WanSpec>,
    /// Probe settings for auto-detected WANs.
    pub default_probe: ProbeSettings,
}

impl WanSettings {
    /// The data plan of WAN `name` (auto-detected WANs: unmetered, month from the 1st).
    pub fn metering_for(&self, name: &str) -> Metering {
        self.wans
            .iter()
            .find(|w| w.name == name)
            .map_or_else(Metering::default, |w| w.metering)
    }
}

impl WanSettings {
    /// The probe settings of WAN `name` (the configured ones, else the default).
    pub fn probe_for(&self, name: &str) -> &ProbeSettings {
        self.wans
            .iter()
            .find(|w| w.name == name)
            .map_or(&self.default_probe, |w| &w.probe)
    }
}

/// Whether `addr` can source subflows: IPv4 (not loopback, link-local or unspecified) or
/// global IPv6 (not link-local, loopback, unspecified or multicast).
pub fn usable_addr(a: &AddrInfo) -> bool {
    if a.tentative || a.deprecated || a.temporary {
        return false;
    }
    match a.addr {
        IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()),
        IpAddr::V6(v6) => {
            let link_local = v6.segments()[0] & 0xffc0 == 0xfe80;
            !(link_local || v6.is_loopback() || v6.is_unspecified() || v6.is_multicast())
        }
    }
}

/// The WANs of `snapshot`: the configured ones in config order, or the auto-detected ones
/// sorted by name. `health` holds the probe verdicts by WAN name (missing = `Unknown`).
pub fn discover(
    snapshot: &Snapshot,
    cfg: &WanSettings,
    lan: &[String],
    health: &HashMap<String, Health>,
) -> Vec<Wan> {
    if cfg.wans.is_empty() {
        let mut names: Vec<&str> = snapshot
            .links
            .iter()
            .filter(|l| !lan.iter().any(|n| n == &l.name) && l.name != "lo")
            .filter(|l| {
                snapshot
                    .routes
                    .iter()
                    .any(|r| r.table == MAIN_TABLE && r.oif == l.ifindex && r.dst.prefix_len() == 0)
            })
            .map(|l| l.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|name| build(snapshot, name, name, Mode::On, health))
            .collect()
    } else {
        cfg.wans
            .iter()
            .map(|w| {
                let mut wan = build(snapshot, &w.name, &w.device, w.mode, health);
                wan.metered = w.metering.metered;
                wan
            })
            .collect()
    }
}

fn build(
    snapshot: &Snapshot,
    name: &str,
    device: &str,
    mode: Mode,
    health: &HashMap<String, Health>,
) -> Wan {
    let link = snapshot.links.iter().find(|l| l.name == device);
    let mut wan = Wan {
        name: name.to_owned(),
        device: device.to_owned(),
        ifindex: 0,
        addresses: Vec::new(),
        gateway4: None,
        gateway6: None,
        point_to_point: false,
        mode,
        health: Health::Down,
        link_up: false,
        ra_routes: Vec::new(),
        dev_default4: false,
        dev_default6: false,
        metered: false,
        standby: false,
    };
    let Some(link) = link else {
        return wan;
    };
    wan.ifindex = link.ifindex;
    wan.point_to_point = link.point_to_point;
    wan.addresses = link
        .addrs
        .iter()
        .filter(|a| usable_addr(a))
        .filter_map(|a| IpNet::new(a.addr, a.prefix_len).ok())
        .collect();
    wan.addresses.sort_unstable();
    wan.addresses.dedup();
    for r in snapshot
        .routes
        .iter()
        .filter(|r| r.table == MAIN_TABLE && r.oif == link.ifindex)
    {
        match (r.dst.prefix_len(), r.dst, r.gateway) {
            (0, IpNet::V4(_), Some(IpAddr::V4(gw))) if wan.gateway4.is_none() => {
                wan.gateway4 = Some(gw)
            }
            (0, IpNet::V4(_), None) => wan.dev_default4 = true,
            (0, IpNet::V6(_), Some(IpAddr::V6(gw))) if wan.gateway6.is_none() => {
                wan.gateway6 = Some(gw)
            }
            (0, IpNet::V6(_), None) => wan.dev_default6 = true,
            (0, _, _) => {}
            (_, IpNet::V6(_), gw) if r.protocol == RTPROT_RA => wan.ra_routes.push((r.dst, gw)),
            _ => {}
        }
    }
    wan.ra_routes.sort_unstable();
    wan.ra_routes.dedup();
    if link.point_to_point {
        wan.gateway4 = None;
        wan.gateway6 = None;
    }
    wan.link_up = link.up && !wan.addresses.is_empty();
    wan.health = if wan.link_up {
        health.get(name).copied().unwrap_or_default()
    } else {
        Health::Down
    };
    wan
}
