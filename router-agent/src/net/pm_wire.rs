//! The bytes of the `mptcp_pm` generic-netlink family, without a socket.
//!
//! [`PmMessage`] is one genetlink message of the family: a command (or, for multicast
//! notifications, an event type) and a flat list of [`Attr`]s. The helpers here build the
//! attributes of each request and read endpoints, limits and events out of the replies.
//! Nothing here panics on bad input: unknown or short attributes are skipped.
//!
//! Constants are from `linux/mptcp.h` (the UAPI header on this host; newer kernels move
//! the path-manager part into the generated `linux/mptcp_pm.h` with the same values).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    DecodeError, Emitable, Nla, NlaBuffer, NlasIterator, ParseableParametrized, NLA_F_NESTED,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use super::model::{Endpoint, Limits};

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

/// One netlink attribute: its type (with `NLA_F_NESTED` if nested) and raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub kind: u16,
    pub value: Vec<u8>,
}

impl Attr {
    fn new(kind: u16, value: impl Into<Vec<u8>>) -> Attr {
        Attr {
            kind,
            value: value.into(),
        }
    }

    fn nested(kind: u16, children: &[Attr]) -> Attr {
        let mut value = vec![0; children.iter().map(Emitable::buffer_len).sum()];
        emit_all(children, &mut value);
        Attr::new(kind | NLA_F_NESTED, value)
    }

    /// The type without the nested / byte-order flags.
    fn id(&self) -> u16 {
        self.kind & netlink_packet_core::NLA_TYPE_MASK
    }

    fn u8(&self) -> Option<u8> {
        self.value.first().copied()
    }

    #[cfg(test)]
    fn u16_ne(&self) -> Option<u16> {
        Some(u16::from_ne_bytes(self.value.get(..2)?.try_into().ok()?))
    }

    fn u16_be(&self) -> Option<u16> {
        Some(u16::from_be_bytes(self.value.get(..2)?.try_into().ok()?))
    }

    fn u32_ne(&self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.value.get(..4)?.try_into().ok()?))
    }

    fn ipv4(&self) -> Option<Ipv4Addr> {
        let octets: [u8; 4] = self.value.get(..4)?.try_into().ok()?;
        Some(Ipv4Addr::from(octets))
    }

    fn ipv6(&self) -> Option<Ipv6Addr> {
        let octets: [u8; 16] = self.value.get(..16)?.try_into().ok()?;
        Some(Ipv6Addr::from(octets))
    }
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        self.value.len()
    }

    fn kind(&self) -> u16 {
        self.kind
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        buffer.copy_from_slice(&self.value);
    }
}

fn emit_all(attrs: &[Attr], buffer: &mut [u8]) {
    let mut at = 0;
    for attr in attrs {
        let len = attr.buffer_len();
        if let Some(slot) = buffer.get_mut(at..at + len) {
            attr.emit(slot);
        }
        at += len;
    }
}

/// Parse a run of attributes; a malformed tail ends the list.
pub fn parse_attrs(buf: &[u8]) -> Vec<Attr> {
    let mut attrs = Vec::new();
    for nla in NlasIterator::new(buf) {
        let Ok(nla): Result<NlaBuffer<&[u8]>, _> = nla else {
            break;
        };
        let mut kind = nla.kind();
        if nla.nested_flag() {
            kind |= NLA_F_NESTED;
        }
        attrs.push(Attr::new(kind, nla.value()));
    }
    attrs
}

/// One message of the `mptcp_pm` family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmMessage {
    /// `MPTCP_PM_CMD_*` for commands and replies, `MPTCP_EVENT_*` for notifications.
    pub cmd: u8,
    pub attrs: Vec<Attr>,
}

impl GenlFamily for PmMessage {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        PM_VERSION
    }
}

impl Emitable for PmMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.iter().map(Emitable::buffer_len).sum()
    }

    fn emit(&self, buffer: &mut [u8]) {
        emit_all(&self.attrs, buffer);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for PmMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(PmMessage {
            cmd: header.cmd,
            attrs: parse_attrs(buf),
        })
    }
}

fn addr_attrs(addr: IpAddr) -> [Attr; 2] {
    match addr {
        IpAddr::V4(v4) => [
            Attr::new(addr_attr::FAMILY, AF_INET.to_ne_bytes()),
            Attr::new(addr_attr::ADDR4, v4.octets()),
        ],
        IpAddr::V6(v6) => [
            Attr::new(addr_attr::FAMILY, AF_INET6.to_ne_bytes()),
            Attr::new(addr_attr::ADDR6, v6.octets()),
        ],
    }
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
pub fn add_endpoint_attrs(ep: &Endpoint) -> Vec<Attr> {
    let [family, addr] = addr_attrs(ep.addr);
    let ifindex = i32::try_from(ep.ifindex).unwrap_or(0);
    let children = [
        family,
        Attr::new(addr_attr::ID, [ep.id]),
        addr,
        Attr::new(addr_attr::IF_IDX, ifindex.to_ne_bytes()),
        Attr::new(addr_attr::FLAGS, endpoint_flags(ep.backup).to_ne_bytes()),
    ];
    vec![Attr::nested(pm_attr::ADDR, &children)]
}

/// `DEL_ADDR`: the endpoint by id alone.
pub fn del_endpoint_attrs(id: u8) -> Vec<Attr> {
    vec![Attr::nested(
        pm_attr::ADDR,
        &[Attr::new(addr_attr::ID, [id])],
    )]
}

/// `SET_FLAGS`: the endpoint by id (no family: the kernel looks it up by id) with the
/// new flags. Only `backup` (and `fullmesh`) can change.
pub fn set_backup_attrs(id: u8, backup: bool) -> Vec<Attr> {
    let children = [
        Attr::new(addr_attr::ID, [id]),
        Attr::new(addr_attr::FLAGS, endpoint_flags(backup).to_ne_bytes()),
    ];
    vec![Attr::nested(pm_attr::ADDR, &children)]
}

/// `SET_LIMITS`.
pub fn set_limits_attrs(limits: Limits) -> Vec<Attr> {
    vec![
        Attr::new(
            pm_attr::RCV_ADD_ADDRS,
            limits.add_addr_accepted.to_ne_bytes(),
        ),
        Attr::new(pm_attr::SUBFLOWS, limits.subflows.to_ne_bytes()),
    ]
}

/// The endpoint in a `GET_ADDR` reply, if it has an id and an address. Endpoints
/// without `subflow` are reported too; `backup` reflects the flag.
pub fn parse_endpoint(msg: &PmMessage) -> Option<Endpoint> {
    let nested = msg.attrs.iter().find(|a| a.id() == pm_attr::ADDR)?;
    let mut id = None;
    let mut addr = None;
    let mut ifindex = 0;
    let mut flags = 0;
    for attr in parse_attrs(&nested.value) {
        match attr.id() {
            addr_attr::ID => id = attr.u8(),
            addr_attr::ADDR4 => addr = attr.ipv4().map(IpAddr::V4).or(addr),
            addr_attr::ADDR6 => addr = attr.ipv6().map(IpAddr::V6).or(addr),
            addr_attr::IF_IDX => ifindex = attr.u32_ne().unwrap_or(0),
            addr_attr::FLAGS => flags = attr.u32_ne().unwrap_or(0),
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

/// The limits in a `GET_LIMITS` reply (a missing attribute reads as 0).
pub fn parse_limits(msg: &PmMessage) -> Limits {
    let get = |kind| {
        msg.attrs
            .iter()
            .find(|a| a.id() == kind)
            .and_then(Attr::u32_ne)
            .unwrap_or(0)
    };
    Limits {
        subflows: get(pm_attr::SUBFLOWS),
        add_addr_accepted: get(pm_attr::RCV_ADD_ADDRS),
    }
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
    /// Read an event notification; `None` without a token.
    pub fn parse(msg: &PmMessage) -> Option<PmEvent> {
        let mut ev = PmEvent {
            kind: PmEventKind::from_cmd(msg.cmd),
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
        for attr in &msg.attrs {
            match attr.id() {
                ev_attr::TOKEN => token = attr.u32_ne(),
                ev_attr::LOC_ID => ev.loc_id = attr.u8(),
                ev_attr::REM_ID => ev.rem_id = attr.u8(),
                ev_attr::SADDR4 => ev.saddr = attr.ipv4().map(IpAddr::V4),
                ev_attr::SADDR6 => ev.saddr = attr.ipv6().map(IpAddr::V6),
                ev_attr::DADDR4 => ev.daddr = attr.ipv4().map(IpAddr::V4),
                ev_attr::DADDR6 => ev.daddr = attr.ipv6().map(IpAddr::V6),
                ev_attr::SPORT => ev.sport = attr.u16_be(),
                ev_attr::DPORT => ev.dport = attr.u16_be(),
                ev_attr::BACKUP => ev.backup = attr.u8().map(|b| b != 0),
                ev_attr::ERROR => ev.error = attr.u8(),
                ev_attr::IF_IDX => ev.ifindex = attr.u32_ne(),
                _ => {}
            }
        }
        ev.token = token?;
        Some(ev)
    }
}

/// `u16` family attribute, for tests of what the kernel would see.
#[cfg(test)]
fn family_of(attrs: &[Attr]) -> Option<u16> {
    attrs
        .iter()
        .find(|a| a.id() == addr_attr::FAMILY)
        .and_then(Attr::u16_ne)
}

#[cfg(test)]
#[path = "pm_wire_tests.rs"]
mod tests;
