//! The bytes of the MPTCP path manager (generic-netlink family `mptcp_pm`), without a
//! socket: one request builder per command, and readers of endpoints, limits and events.
//! Unknown or short attributes are skipped; nothing here panics on bad input.
//!
//! Constants are from `linux/mptcp.h` (newer kernels move the path-manager part into the
//! generated `linux/mptcp_pm.h` with the same values).

use std::net::IpAddr;

use crate::attr::{AttrBuf, Attrs};
use crate::genl;
use crate::msg::{Reply, Request};

/// `MPTCP_PM_NAME`.
pub const FAMILY_NAME: &str = "mptcp_pm";
/// `MPTCP_PM_EV_GRP_NAME`.
pub const EVENTS_GROUP: &str = "mptcp_pm_events";
/// `MPTCP_PM_VER`.
const PM_VERSION: u8 = 1;

/// `enum { MPTCP_PM_CMD_* }`.
pub mod cmd {
    pub const ADD_ADDR: u8 = 1;
    pub const DEL_ADDR: u8 = 2;
    pub const GET_ADDR: u8 = 3;
    pub const FLUSH_ADDRS: u8 = 4;
    pub const SET_LIMITS: u8 = 5;
    pub const GET_LIMITS: u8 = 6;
    pub const SET_FLAGS: u8 = 7;
}

/// `enum { MPTCP_PM_ATTR_* }`: top-level attributes of commands.
mod pm_attr {
    pub const ADDR: u16 = 1;
    pub const RCV_ADD_ADDRS: u16 = 2;
    pub const SUBFLOWS: u16 = 3;
}

/// `enum { MPTCP_PM_ADDR_ATTR_* }`: inside the nested `MPTCP_PM_ATTR_ADDR`.
mod addr_attr {
    pub const FAMILY: u16 = 1;
    pub const ID: u16 = 2;
    pub const ADDR4: u16 = 3;
    pub const ADDR6: u16 = 4;
    pub const FLAGS: u16 = 6;
    pub const IF_IDX: u16 = 7;
}

/// `MPTCP_PM_ADDR_FLAG_SUBFLOW`.
pub const FLAG_SUBFLOW: u32 = 1 << 1;
/// `MPTCP_PM_ADDR_FLAG_BACKUP`.
pub const FLAG_BACKUP: u32 = 1 << 2;

/// `enum mptcp_event_attr`.
mod ev_attr {
    pub const TOKEN: u16 = 1;
    pub const LOC_ID: u16 = 3;
    pub const REM_ID: u16 = 4;
    pub const SADDR4: u16 = 5;
    pub const SADDR6: u16 = 6;
    pub const DADDR4: u16 = 7;
    pub const DADDR6: u16 = 8;
    pub const SPORT: u16 = 9;
    pub const DPORT: u16 = 10;
    pub const BACKUP: u16 = 11;
    pub const ERROR: u16 = 12;
    pub const IF_IDX: u16 = 15;
}

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// An MPTCP endpoint (`ip mptcp endpoint`): an explicit id, an address, its interface,
/// and whether its subflows are backups. Always a `subflow` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub id: u8,
    pub addr: IpAddr,
    pub ifindex: u32,
    pub backup: bool,
}

/// The path manager's limits (`ip mptcp limits`), per network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub subflows: u32,
    pub add_addr_accepted: u32,
}

fn request(family: u16, cmd: u8, attrs: AttrBuf) -> Request {
    genl::request(family, cmd, PM_VERSION, attrs, false)
}

fn endpoint_flags(backup: bool) -> u32 {
    if backup {
        FLAG_SUBFLOW | FLAG_BACKUP
    } else {
        FLAG_SUBFLOW
    }
}

/// `ADD_ADDR`: the endpoint with its explicit id, address, interface and `subflow`
/// (plus `backup`) flags.
pub fn add_endpoint(family: u16, ep: &Endpoint) -> Request {
    let mut attrs = AttrBuf::new();
    attrs.nested(pm_attr::ADDR, |b| {
        let (af, kind) = match ep.addr {
            IpAddr::V4(_) => (AF_INET, addr_attr::ADDR4),
            IpAddr::V6(_) => (AF_INET6, addr_attr::ADDR6),
        };
        b.put_u16(addr_attr::FAMILY, af);
        b.put_u8(addr_attr::ID, ep.id);
        b.put_ip(kind, ep.addr);
        b.put_u32(addr_attr::IF_IDX, ep.ifindex);
        b.put_u32(addr_attr::FLAGS, endpoint_flags(ep.backup));
    });
    request(family, cmd::ADD_ADDR, attrs)
}

/// `DEL_ADDR`: the endpoint by id alone.
pub fn del_endpoint(family: u16, id: u8) -> Request {
    let mut attrs = AttrBuf::new();
    attrs.nested(pm_attr::ADDR, |b| b.put_u8(addr_attr::ID, id));
    request(family, cmd::DEL_ADDR, attrs)
}

/// `FLUSH_ADDRS`: every endpoint of the namespace.
pub fn flush_endpoints(family: u16) -> Request {
    request(family, cmd::FLUSH_ADDRS, AttrBuf::new())
}

/// `SET_FLAGS`: the endpoint by id (no family: the kernel looks it up by id) with the
/// new flags. Only `backup` (and `fullmesh`) can change.
pub fn set_backup(family: u16, id: u8, backup: bool) -> Request {
    let mut attrs = AttrBuf::new();
    attrs.nested(pm_attr::ADDR, |b| {
        b.put_u8(addr_attr::ID, id);
        b.put_u32(addr_attr::FLAGS, endpoint_flags(backup));
    });
    request(family, cmd::SET_FLAGS, attrs)
}

/// `SET_LIMITS`.
pub fn set_limits(family: u16, limits: Limits) -> Request {
    let mut attrs = AttrBuf::new();
    attrs.put_u32(pm_attr::RCV_ADD_ADDRS, limits.add_addr_accepted);
    attrs.put_u32(pm_attr::SUBFLOWS, limits.subflows);
    request(family, cmd::SET_LIMITS, attrs)
}

/// `GET_LIMITS`.
pub fn get_limits(family: u16) -> Request {
    request(family, cmd::GET_LIMITS, AttrBuf::new())
}

/// `GET_ADDR` dump: every endpoint.
pub fn dump_endpoints(family: u16) -> Request {
    genl::request(family, cmd::GET_ADDR, PM_VERSION, AttrBuf::new(), true)
}

/// The endpoint in a `GET_ADDR` reply, if it has an id and an address. Endpoints
/// without `subflow` are reported too; `backup` reflects the flag.
pub fn parse_endpoint(payload: &[u8]) -> Option<Endpoint> {
    let (_, attrs) = genl::split(payload)?;
    let mut attrs = attrs;
    let nested = attrs.find(|a| a.id() == pm_attr::ADDR)?;
    let mut id = None;
    let mut addr = None;
    let mut ifindex = 0;
    let mut flags = 0;
    for attr in nested.nested() {
        match attr.id() {
            addr_attr::ID => id = attr.u8(),
            addr_attr::ADDR4 | addr_attr::ADDR6 => addr = attr.ip().or(addr),
            addr_attr::IF_IDX => ifindex = attr.u32().unwrap_or(0),
            addr_attr::FLAGS => flags = attr.u32().unwrap_or(0),
            _ => {}
        }
    }
    Some(Endpoint {
        id: id?,
        addr: addr?,
        ifindex,
        backup: flags & FLAG_BACKUP != 0,
    })
}

/// The limits in the replies to `GET_LIMITS` (a missing attribute reads as 0).
pub fn parse_limits(replies: &[Reply]) -> Limits {
    let mut limits = Limits {
        subflows: 0,
        add_addr_accepted: 0,
    };
    for (_, attrs) in replies.iter().filter_map(|r| genl::split(&r.payload)) {
        for attr in attrs {
            match attr.id() {
                pm_attr::SUBFLOWS => limits.subflows = attr.u32().unwrap_or(0),
                pm_attr::RCV_ADD_ADDRS => limits.add_addr_accepted = attr.u32().unwrap_or(0),
                _ => {}
            }
        }
    }
    limits
}

/// What happened, from `enum mptcp_event_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmEventKind {
    Created,
    Established,
    Closed,
    Announced,
    Removed,
    SubEstablished,
    SubClosed,
    SubPriority,
    /// An event type this code does not know (newer kernels add listener events).
    Other(u8),
}

impl PmEventKind {
    fn from_cmd(cmd: u8) -> PmEventKind {
        match cmd {
            1 => PmEventKind::Created,
            2 => PmEventKind::Established,
            3 => PmEventKind::Closed,
            6 => PmEventKind::Announced,
            7 => PmEventKind::Removed,
            10 => PmEventKind::SubEstablished,
            11 => PmEventKind::SubClosed,
            13 => PmEventKind::SubPriority,
            other => PmEventKind::Other(other),
        }
    }
}

/// One notification from `mptcp_pm_events`. Fields the event does not carry are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmEvent {
    pub kind: PmEventKind,
    /// The MPTCP connection's local token.
    pub token: u32,
    pub saddr: Option<IpAddr>,
    pub daddr: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// The local endpoint id the subflow uses (0: the initial subflow's address).
    pub loc_id: Option<u8>,
    pub rem_id: Option<u8>,
    pub ifindex: Option<u32>,
    pub backup: Option<bool>,
    /// `sk_err` of a closed subflow.
    pub error: Option<u8>,
}

impl PmEvent {
    /// Read an event notification (a generic-netlink payload); `None` without a token.
    pub fn parse(payload: &[u8]) -> Option<PmEvent> {
        let (cmd, attrs) = genl::split(payload)?;
        PmEvent::from_attrs(cmd, attrs)
    }

    fn from_attrs(cmd: u8, attrs: Attrs<'_>) -> Option<PmEvent> {
        let mut ev = PmEvent {
            kind: PmEventKind::from_cmd(cmd),
            token: 0,
            saddr: None,
            daddr: None,
            sport: None,
            dport: None,
            loc_id: None,
            rem_id: None,
            ifindex: None,
            backup: None,
            error: None,
        };
        let mut token = None;
        for attr in attrs {
            match attr.id() {
                ev_attr::TOKEN => token = attr.u32(),
                ev_attr::LOC_ID => ev.loc_id = attr.u8(),
                ev_attr::REM_ID => ev.rem_id = attr.u8(),
                ev_attr::SADDR4 | ev_attr::SADDR6 => ev.saddr = attr.ip(),
                ev_attr::DADDR4 | ev_attr::DADDR6 => ev.daddr = attr.ip(),
                ev_attr::SPORT => ev.sport = attr.be16(),
                ev_attr::DPORT => ev.dport = attr.be16(),
                ev_attr::BACKUP => ev.backup = attr.u8().map(|b| b != 0),
                ev_attr::ERROR => ev.error = attr.u8(),
                ev_attr::IF_IDX => ev.ifindex = attr.u32(),
                _ => {}
            }
        }
        ev.token = token?;
        Some(ev)
    }
}

#[cfg(test)]
#[path = "mptcp_tests.rs"]
mod tests;
