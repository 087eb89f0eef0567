//! The rtnetlink messages of the agent's own routes and rules, without a socket.
//!
//! A route is ours when its table is in the owned table range AND its protocol is
//! `own.route_protocol`; a rule is ours when its priority is in the owned priority range.
//! [`parse_route`] and [`parse_rule`] return `None` for everything else, so a dump keeps
//! exactly what we own. [`route_message`] and [`rule_message`] build what `ip route add`
//! and `ip rule add` would send, stamped with our protocol.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;

use super::model::{Ownership, Route, Rule};

fn family_of(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn route_addr(addr: IpAddr) -> RouteAddress {
    match addr {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn ip_of(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The header's 8-bit table field: the id itself when it fits, else `RT_TABLE_COMPAT`
/// (the full id always goes in `RTA_TABLE`).
fn compat_table(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(252)
}

/// `ip route add DST [via GW] dev OIF [src PREFSRC] metric M table T proto OWN`.
/// Without a gateway an IPv4 route gets scope link, as `ip route` does.
pub fn route_message(own: &Ownership, route: &Route) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = family_of(route.dst.addr());
    h.destination_prefix_length = route.dst.prefix_len();
    h.table = compat_table(route.table);
    h.protocol = RouteProtocol::from(own.route_protocol);
    h.kind = RouteType::Unicast;
    h.scope = match (route.dst, route.gateway) {
        (IpNet::V4(_), None) => RouteScope::Link,
        _ => RouteScope::Universe,
    };
    let attrs = &mut msg.attributes;
    attrs.push(RouteAttribute::Table(route.table));
    if route.dst.prefix_len() > 0 {
        attrs.push(RouteAttribute::Destination(route_addr(route.dst.network())));
    }
    if let Some(gw) = route.gateway {
        attrs.push(RouteAttribute::Gateway(route_addr(gw)));
    }
    attrs.push(RouteAttribute::Oif(route.oif));
    if let Some(src) = route.prefsrc {
        attrs.push(RouteAttribute::PrefSource(route_addr(src)));
    }
    attrs.push(RouteAttribute::Priority(route.metric));
    msg
}

/// The route in a dump reply, if it is ours (owned table and our protocol).
pub fn parse_route(own: &Ownership, msg: &RouteMessage) -> Option<Route> {
    if u8::from(msg.header.protocol) != own.route_protocol {
        return None;
    }
    let mut table = u32::from(msg.header.table);
    let mut dst = None;
    let mut gateway = None;
    let mut oif = 0;
    let mut prefsrc = None;
    let mut metric = 0;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = ip_of(a),
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            RouteAttribute::Oif(i) => oif = *i,
            RouteAttribute::PrefSource(a) => prefsrc = ip_of(a),
            RouteAttribute::Priority(m) => metric = *m,
            _ => {}
        }
    }
    if !own.owns_table(table) {
        return None;
    }
    let dst = dst.unwrap_or(match msg.header.address_family {
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    let dst = IpNet::new(dst, msg.header.destination_prefix_length).ok()?;
    Some(Route {
        table,
        dst,
        gateway,
        oif,
        prefsrc,
        metric,
    })
}

/// `ip rule add from FROM lookup TABLE priority P proto OWN`.
pub fn rule_message(own: &Ownership, rule: &Rule) -> RuleMessage {
    let mut msg = RuleMessage::default();
    let h = &mut msg.header;
    h.family = family_of(rule.from.addr());
    h.src_len = rule.from.prefix_len();
    h.table = compat_table(rule.table);
    h.action = RuleAction::ToTable;
    let attrs = &mut msg.attributes;
    if rule.from.prefix_len() > 0 {
        attrs.push(RuleAttribute::Source(rule.from.network()));
    }
    attrs.push(RuleAttribute::Table(rule.table));
    attrs.push(RuleAttribute::Priority(rule.priority));
    attrs.push(RuleAttribute::Protocol(RouteProtocol::from(
        own.route_protocol,
    )));
    msg
}

/// The rule in a dump reply, if its priority is ours and it is `from … lookup TABLE`.
pub fn parse_rule(own: &Ownership, msg: &RuleMessage) -> Option<Rule> {
    let mut priority = 0;
    let mut table = u32::from(msg.header.table);
    let mut source = None;
    for attr in &msg.attributes {
        match attr {
            RuleAttribute::Priority(p) => priority = *p,
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Source(a) => source = Some(*a),
            _ => {}
        }
    }
    if !own.owns_priority(priority) {
        return None;
    }
    let from = source.unwrap_or(match msg.header.family {
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    let from = IpNet::new(from, msg.header.src_len).ok()?;
    Some(Rule {
        priority,
        from,
        table,
    })
}

#[cfg(test)]
#[path = "rtnl_msg_tests.rs"]
mod tests;
