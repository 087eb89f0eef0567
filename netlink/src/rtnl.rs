//! rtnetlink messages: routes and rules (built and read), links and addresses (read),
//! and the dump requests for each. No socket; no policy (which routes are whose is the
//! caller's business).
//!
//! Only the fields mpbond uses are decoded; everything else is skipped. Constants are from
//! `linux/rtnetlink.h`, `linux/fib_rules.h`, `linux/if_link.h`, `linux/if_addr.h`.

use std::net::IpAddr;

use crate::attr::{AttrBuf, Attrs};
use crate::msg::{flags, Request};

/// Message types (`RTM_*`).
pub mod rtm {
    pub const GETLINK: u16 = 18;
    pub const GETADDR: u16 = 22;
    pub const NEWROUTE: u16 = 24;
    pub const DELROUTE: u16 = 25;
    pub const GETROUTE: u16 = 26;
    pub const NEWRULE: u16 = 32;
    pub const DELRULE: u16 = 33;
    pub const GETRULE: u16 = 34;
}

/// Multicast groups (`enum rtnetlink_groups`).
pub mod groups {
    pub const LINK: u32 = 1;
    pub const IPV4_IFADDR: u32 = 5;
    pub const IPV4_ROUTE: u32 = 7;
    pub const IPV4_RULE: u32 = 8;
    pub const IPV6_IFADDR: u32 = 9;
    pub const IPV6_ROUTE: u32 = 11;
    pub const IPV6_RULE: u32 = 19;
}

pub const AF_INET: u8 = libc::AF_INET as u8;
pub const AF_INET6: u8 = libc::AF_INET6 as u8;
/// `RT_TABLE_COMPAT`: the header's table byte when the id does not fit.
pub const RT_TABLE_COMPAT: u8 = 252;
/// `RT_TABLE_MAIN`.
pub const RT_TABLE_MAIN: u32 = 254;
/// `RTN_UNICAST`.
pub const RTN_UNICAST: u8 = 1;
/// `RT_SCOPE_UNIVERSE`, `RT_SCOPE_LINK`, `RT_SCOPE_NOWHERE`.
pub const RT_SCOPE_UNIVERSE: u8 = 0;
pub const RT_SCOPE_LINK: u8 = 253;
pub const RT_SCOPE_NOWHERE: u8 = 255;
/// `FR_ACT_TO_TBL`.
pub const FR_ACT_TO_TBL: u8 = 1;
/// `IFF_UP`, `IFF_POINTOPOINT`, `IFF_LOWER_UP`.
pub const IFF_UP: u32 = 0x1;
pub const IFF_POINTOPOINT: u32 = 0x10;
pub const IFF_LOWER_UP: u32 = 0x1_0000;
/// `IFA_F_SECONDARY` (on IPv6: `IFA_F_TEMPORARY`), `IFA_F_DEPRECATED`, `IFA_F_TENTATIVE`.
pub const IFA_F_SECONDARY: u32 = 0x01;
pub const IFA_F_DEPRECATED: u32 = 0x20;
pub const IFA_F_TENTATIVE: u32 = 0x40;

mod rta {
    pub const DST: u16 = 1;
    pub const OIF: u16 = 4;
    pub const GATEWAY: u16 = 5;
    pub const PRIORITY: u16 = 6;
    pub const PREFSRC: u16 = 7;
    pub const MULTIPATH: u16 = 9;
    pub const TABLE: u16 = 15;
}

mod fra {
    pub const SRC: u16 = 2;
    pub const PRIORITY: u16 = 6;
    pub const TABLE: u16 = 15;
    pub const PROTOCOL: u16 = 21;
}

const IFLA_IFNAME: u16 = 3;
const IFLA_STATS64: u16 = 23;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;

/// `struct rtmsg` and `struct fib_rule_hdr` are 12 bytes, `ifinfomsg` 16, `ifaddrmsg` 8.
const RTMSG_LEN: usize = 12;
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
/// `struct rtnexthop`.
const RTNH_LEN: usize = 8;

fn header_table(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(RT_TABLE_COMPAT)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// One next hop of a multipath route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub gateway: Option<IpAddr>,
    pub ifindex: u32,
}

/// A route (`RTM_NEWROUTE`): the `rtmsg` fields and the attributes mpbond uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteMsg {
    pub family: u8,
    pub dst_len: u8,
    /// The full table id (`RTA_TABLE`, or the header byte without it).
    pub table: u32,
    pub protocol: u8,
    pub scope: u8,
    /// `RTN_*`.
    pub kind: u8,
    pub dst: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub prefsrc: Option<IpAddr>,
    /// The metric.
    pub priority: Option<u32>,
    pub multipath: Vec<NextHop>,
}

impl RouteMsg {
    /// `rtmsg` + attributes (no multipath: mpbond adds single-path routes).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = vec![
            self.family,
            self.dst_len,
            0,
            0,
            header_table(self.table),
            self.protocol,
            self.scope,
            self.kind,
            0,
            0,
            0,
            0,
        ];
        let mut attrs = AttrBuf::new();
        attrs.put_u32(rta::TABLE, self.table);
        if let Some(dst) = self.dst {
            attrs.put_ip(rta::DST, dst);
        }
        if let Some(gw) = self.gateway {
            attrs.put_ip(rta::GATEWAY, gw);
        }
        if let Some(oif) = self.oif {
            attrs.put_u32(rta::OIF, oif);
        }
        if let Some(src) = self.prefsrc {
            attrs.put_ip(rta::PREFSRC, src);
        }
        if let Some(metric) = self.priority {
            attrs.put_u32(rta::PRIORITY, metric);
        }
        body.extend_from_slice(attrs.as_bytes());
        body
    }

    /// Read an `RTM_NEWROUTE` payload.
    pub fn parse(payload: &[u8]) -> Option<RouteMsg> {
        let h = payload.get(..RTMSG_LEN)?;
        let mut msg = RouteMsg {
            family: h[0],
            dst_len: h[1],
            table: u32::from(h[4]),
            protocol: h[5],
            scope: h[6],
            kind: h[7],
            ..RouteMsg::default()
        };
        for attr in Attrs::new(&payload[RTMSG_LEN..]) {
            match attr.id() {
                rta::TABLE => msg.table = attr.u32().unwrap_or(msg.table),
                rta::DST => msg.dst = attr.ip(),
                rta::GATEWAY => msg.gateway = attr.ip(),
                rta::OIF => msg.oif = attr.u32(),
                rta::PREFSRC => msg.prefsrc = attr.ip(),
                rta::PRIORITY => msg.priority = attr.u32(),
                rta::MULTIPATH => msg.multipath = parse_nexthops(attr.value),
                _ => {}
            }
        }
        Some(msg)
    }
}

/// A run of `struct rtnexthop { u16 len; u8 flags; u8 hops; int ifindex; }` + attributes.
fn parse_nexthops(mut buf: &[u8]) -> Vec<NextHop> {
    let mut hops = Vec::new();
    while buf.len() >= RTNH_LEN {
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let Some(hop) = buf.get(..len).filter(|_| len >= RTNH_LEN) else {
            break;
        };
        let gateway = Attrs::new(&hop[RTNH_LEN..])
            .find(|a| a.id() == rta::GATEWAY)
            .and_then(|a| a.ip());
        hops.push(NextHop {
            gateway,
            ifindex: u32_at(hop, 4).unwrap_or(0),
        });
        buf = buf.get(crate::attr::align4(len)..).unwrap_or_default();
    }
    hops
}

/// `ip route add` (fails with `EEXIST` if it exists).
pub fn new_route(route: &RouteMsg) -> Request {
    Request::new(rtm::NEWROUTE, flags::CREATE | flags::EXCL, route.encode())
}

/// `ip route del`.
pub fn del_route(route: &RouteMsg) -> Request {
    Request::new(rtm::DELROUTE, 0, route.encode())
}

/// Every route of `family` in every table.
pub fn dump_routes(family: u8) -> Request {
    let mut body = vec![0; RTMSG_LEN];
    body[0] = family;
    Request::dump(rtm::GETROUTE, body)
}

/// A policy rule (`RTM_NEWRULE`): the `fib_rule_hdr` fields and the attributes used.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleMsg {
    pub family: u8,
    pub src_len: u8,
    /// The full table id (`FRA_TABLE`, or the header byte without it).
    pub table: u32,
    /// `FR_ACT_*`.
    pub action: u8,
    pub priority: Option<u32>,
    pub src: Option<IpAddr>,
    pub protocol: Option<u8>,
}

impl RuleMsg {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = vec![
            self.family,
            0,
            self.src_len,
            0,
            header_table(self.table),
            0,
            0,
            self.action,
            0,
            0,
            0,
            0,
        ];
        let mut attrs = AttrBuf::new();
        if let Some(src) = self.src {
            attrs.put_ip(fra::SRC, src);
        }
        attrs.put_u32(fra::TABLE, self.table);
        if let Some(priority) = self.priority {
            attrs.put_u32(fra::PRIORITY, priority);
        }
        if let Some(protocol) = self.protocol {
            attrs.put_u8(fra::PROTOCOL, protocol);
        }
        body.extend_from_slice(attrs.as_bytes());
        body
    }

    /// Read an `RTM_NEWRULE` payload.
    pub fn parse(payload: &[u8]) -> Option<RuleMsg> {
        let h = payload.get(..RTMSG_LEN)?;
        let mut msg = RuleMsg {
            family: h[0],
            src_len: h[2],
            table: u32::from(h[4]),
            action: h[7],
            ..RuleMsg::default()
        };
        for attr in Attrs::new(&payload[RTMSG_LEN..]) {
            match attr.id() {
                fra::TABLE => msg.table = attr.u32().unwrap_or(msg.table),
                fra::SRC => msg.src = attr.ip(),
                fra::PRIORITY => msg.priority = attr.u32(),
                fra::PROTOCOL => msg.protocol = attr.u8(),
                _ => {}
            }
        }
        Some(msg)
    }
}

/// `ip rule add` (fails with `EEXIST` if it exists).
pub fn new_rule(rule: &RuleMsg) -> Request {
    Request::new(rtm::NEWRULE, flags::CREATE | flags::EXCL, rule.encode())
}

/// `ip rule del`.
pub fn del_rule(rule: &RuleMsg) -> Request {
    Request::new(rtm::DELRULE, 0, rule.encode())
}

/// Every rule of `family`.
pub fn dump_rules(family: u8) -> Request {
    let mut body = vec![0; RTMSG_LEN];
    body[0] = family;
    Request::dump(rtm::GETRULE, body)
}

/// A link (`RTM_NEWLINK`), read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkMsg {
    pub index: u32,
    /// `IFF_*`.
    pub flags: u32,
    pub name: String,
    /// From `IFLA_STATS64`; 0 without it.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

impl LinkMsg {
    pub fn parse(payload: &[u8]) -> Option<LinkMsg> {
        let h = payload.get(..IFINFOMSG_LEN)?;
        let mut msg = LinkMsg {
            index: u32_at(h, 4)?,
            flags: u32_at(h, 8)?,
            ..LinkMsg::default()
        };
        for attr in Attrs::new(&payload[IFINFOMSG_LEN..]) {
            match attr.id() {
                IFLA_IFNAME => msg.name = attr.str().unwrap_or_default().to_owned(),
                // struct rtnl_link_stats64 { rx_packets, tx_packets, rx_bytes, tx_bytes, .. }
                IFLA_STATS64 => {
                    msg.rx_bytes = u64_at(attr.value, 16).unwrap_or(0);
                    msg.tx_bytes = u64_at(attr.value, 24).unwrap_or(0);
                }
                _ => {}
            }
        }
        Some(msg)
    }
}

/// Every link.
pub fn dump_links() -> Request {
    Request::dump(rtm::GETLINK, vec![0; IFINFOMSG_LEN])
}

/// An address (`RTM_NEWADDR`), read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddrMsg {
    pub family: u8,
    pub prefix_len: u8,
    /// `IFA_FLAGS` (32 bits) if present, else the header's 8 bits.
    pub flags: u32,
    pub index: u32,
    /// `IFA_ADDRESS`: on point-to-point links the peer.
    pub address: Option<IpAddr>,
    /// `IFA_LOCAL`: our own address where it differs.
    pub local: Option<IpAddr>,
}

impl AddrMsg {
    pub fn parse(payload: &[u8]) -> Option<AddrMsg> {
        let h = payload.get(..IFADDRMSG_LEN)?;
        let mut msg = AddrMsg {
            family: h[0],
            prefix_len: h[1],
            flags: u32::from(h[2]),
            index: u32_at(h, 4)?,
            ..AddrMsg::default()
        };
        for attr in Attrs::new(&payload[IFADDRMSG_LEN..]) {
            match attr.id() {
                IFA_ADDRESS => msg.address = attr.ip(),
                IFA_LOCAL => msg.local = attr.ip(),
                IFA_FLAGS => msg.flags = attr.u32().unwrap_or(msg.flags),
                _ => {}
            }
        }
        Some(msg)
    }
}

/// Every address.
pub fn dump_addrs() -> Request {
    Request::dump(rtm::GETADDR, vec![0; IFADDRMSG_LEN])
}

#[cfg(test)]
#[path = "rtnl_tests.rs"]
mod tests;
