//! The rtnetlink messages of the agent's own routes and rules, without a socket.
//!
//! A route is ours when its table is in the owned table range AND its protocol is
//! `own.route_protocol`; a rule is ours when its priority is in the owned priority range.
//! [`parse_route`] and [`parse_rule`] return `None` for everything else, so a dump keeps
//! exactly what we own. [`route_message`] and [`rule_message`] build what `ip route add`
//! and `ip rule add` would send, stamped with our protocol. The bytes are
//! `mpbond_netlink::rtnl`'s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use mpbond_netlink::rtnl::{
    RouteMsg, RuleMsg, AF_INET, AF_INET6, FR_ACT_TO_TBL, RTN_UNICAST, RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
};

use super::types::{Ownership, Route, Rule};

/// The address family byte of `addr`.
pub fn family_of(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// The unspecified address of a family byte (IPv4 unless it says IPv6).
pub fn unspecified(family: u8) -> IpAddr {
    if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// `ip route add DST [via GW] dev OIF [src PREFSRC] metric M table T proto OWN`.
/// Without a gateway an IPv4 route gets scope link, as `ip route` does.
pub fn route_message(own: &Ownership, route: &Route) -> RouteMsg {
    RouteMsg {
        family: family_of(route.dst.addr()),
        dst_len: route.dst.prefix_len(),
        table: route.table,
        protocol: own.route_protocol,
        scope: match (route.dst, route.gateway) {
            (IpNet::V4(_), None) => RT_SCOPE_LINK,
            _ => RT_SCOPE_UNIVERSE,
        },
        kind: RTN_UNICAST,
        dst: (route.dst.prefix_len() > 0).then(|| route.dst.network()),
        gateway: route.gateway,
        oif: Some(route.oif),
        prefsrc: route.prefsrc,
        priority: Some(route.metric),
        multipath: Vec::new(),
    }
}

/// The route in a dump reply, if it is ours (owned table and our protocol).
pub fn parse_route(own: &Ownership, msg: &RouteMsg) -> Option<Route> {
    if msg.protocol != own.route_protocol || !own.owns_table(msg.table) {
        return None;
    }
    let dst = msg.dst.unwrap_or(unspecified(msg.family));
    Some(Route {
        table: msg.table,
        dst: IpNet::new(dst, msg.dst_len).ok()?,
        gateway: msg.gateway,
        oif: msg.oif.unwrap_or(0),
        prefsrc: msg.prefsrc,
        metric: msg.priority.unwrap_or(0),
    })
}

/// `ip rule add from FROM lookup TABLE priority P proto OWN`.
pub fn rule_message(own: &Ownership, rule: &Rule) -> RuleMsg {
    RuleMsg {
        family: family_of(rule.from.addr()),
        src_len: rule.from.prefix_len(),
        table: rule.table,
        action: FR_ACT_TO_TBL,
        priority: Some(rule.priority),
        src: (rule.from.prefix_len() > 0).then(|| rule.from.network()),
        protocol: Some(own.route_protocol),
    }
}

/// The rule in a dump reply, if its priority is ours and it is `from … lookup TABLE`.
pub fn parse_rule(own: &Ownership, msg: &RuleMsg) -> Option<Rule> {
    let priority = msg.priority.unwrap_or(0);
    if !own.owns_priority(priority) {
        return None;
    }
    let from = msg.src.unwrap_or(unspecified(msg.family));
    Some(Rule {
        priority,
        from: IpNet::new(from, msg.src_len).ok()?,
        table: msg.table,
    })
}

#[cfg(test)]
#[path = "rtnl_msg_tests.rs"]
mod tests;
