//! The agent's own routes and rules, through rtnetlink.
//!
//! [`Rtnl`] is an rtnetlink connection whose every change is checked against the kernel's
//! ACK: the connection forwards ACKs, so a request succeeds only when its ACK arrives, and
//! a connection that dies first is an error, not a silent success. Dumps keep only what
//! [`Ownership`] says is ours (see [`rtnl_msg`](super::rtnl_msg)), found by dump and never
//! by parsing `ip` output; add/delete refuse anything outside the owned ranges, so a bug
//! upstream cannot touch a foreign object.

use std::collections::BTreeSet;
use std::io;

use futures::TryStreamExt;
use netlink_packet_route::route::{RouteHeader, RouteMessage, RouteScope};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, IpVersion};

use super::model::{NetError, Ownership, Route, Rule};
use super::rtnl_msg::{parse_route, parse_rule, route_message, rule_message};
use super::{kernel_err, other_err, rtnl_err, AbortOnDrop};

/// An rtnetlink connection that checks ACKs. Dumps work as with any handle.
#[derive(Debug)]
pub struct Rtnl {
    handle: Handle,
    _task: AbortOnDrop,
}

impl Rtnl {
    /// Open the socket and spawn its connection task on the current tokio runtime.
    pub fn connect() -> Result<Rtnl, NetError> {
        let (mut conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| kernel_err("opening the rtnetlink socket", e))?;
        conn.set_forward_ack(true);
        Ok(Rtnl {
            handle,
            _task: AbortOnDrop(tokio::spawn(conn)),
        })
    }

    /// The handle, for dumps. (Its ACKs are forwarded: an rtnetlink change request sent
    /// through it reports success as `Error::NetlinkError` with no code; see [`acked`].)
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Every route in every table, IPv4 then IPv6.
    pub async fn dump_all_routes(&self) -> Result<Vec<RouteMessage>, NetError> {
        let mut all = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut filter = RouteMessage::default();
            filter.header.address_family = family;
            filter.header.table = RouteHeader::RT_TABLE_UNSPEC;
            let msgs: Vec<RouteMessage> = self
                .handle
                .route()
                .get(filter)
                .execute()
                .try_collect()
                .await
                .map_err(|e| rtnl_err("dumping routes", e))?;
            all.extend(msgs);
        }
        Ok(all)
    }

    /// Every route of ours, IPv4 and IPv6, from all tables.
    pub async fn dump_routes(&self, own: &Ownership) -> Result<BTreeSet<Route>, NetError> {
        let all = self.dump_all_routes().await?;
        Ok(all.iter().filter_map(|m| parse_route(own, m)).collect())
    }

    /// Every rule of ours, IPv4 and IPv6.
    pub async fn dump_rules(&self, own: &Ownership) -> Result<BTreeSet<Rule>, NetError> {
        let mut out = BTreeSet::new();
        for version in [IpVersion::V4, IpVersion::V6] {
            let v6 = version == IpVersion::V6;
            let dumped: Result<Vec<RuleMessage>, _> = self
                .handle
                .rule()
                .get(version)
                .execute()
                .try_collect()
                .await;
            let msgs = match dumped.map_err(|e| rtnl_err("dumping rules", e)) {
                Ok(msgs) => msgs,
                // A kernel without IPv6 has no IPv6 rules to own.
                Err(NetError::Kernel { source, .. })
                    if v6 && source.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
                {
                    Vec::new()
                }
                Err(e) => return Err(e),
            };
            out.extend(msgs.iter().filter_map(|m| parse_rule(own, m)));
        }
        Ok(out)
    }

    /// Add one owned route (`NLM_F_EXCL`: an existing one is an error).
    pub async fn add_route(&self, own: &Ownership, route: &Route) -> Result<(), NetError> {
        let op = route_op("adding", route);
        check_route(own, route, &op)?;
        let result = self
            .handle
            .route()
            .add(route_message(own, route))
            .execute()
            .await;
        acked(&op, result)
    }

    /// Delete one owned route.
    pub async fn del_route(&self, own: &Ownership, route: &Route) -> Result<(), NetError> {
        let op = route_op("deleting", route);
        check_route(own, route, &op)?;
        let mut msg = route_message(own, route);
        msg.header.scope = RouteScope::NoWhere;
        let result = self.handle.route().del(msg).execute().await;
        acked(&op, result)
    }

    /// Add one owned rule.
    pub async fn add_rule(&self, own: &Ownership, rule: &Rule) -> Result<(), NetError> {
        let op = rule_op("adding", rule);
        check_rule(own, rule, &op)?;
        let mut req = self.handle.rule().add();
        *req.message_mut() = rule_message(own, rule);
        acked(&op, req.execute().await)
    }

    /// Delete one owned rule.
    pub async fn del_rule(&self, own: &Ownership, rule: &Rule) -> Result<(), NetError> {
        let op = rule_op("deleting", rule);
        check_rule(own, rule, &op)?;
        // Without the protocol: the kernel matches it when given, and a leftover added by
        // hand (or by an older version) may not carry it.
        let mut msg = rule_message(own, rule);
        msg.attributes
            .retain(|a| !matches!(a, RuleAttribute::Protocol(_)));
        acked(&op, self.handle.rule().del(msg).execute().await)
    }
}

/// The outcome of a change request on a connection that forwards ACKs: rtnetlink hands
/// the ACK back as `NetlinkError` without a code; a stream that ends without one means
/// the connection closed before the kernel answered.
pub fn acked(op: &str, result: Result<(), rtnetlink::Error>) -> Result<(), NetError> {
    match result {
        Err(rtnetlink::Error::NetlinkError(msg)) if msg.code.is_none() => Ok(()),
        Err(e) => Err(rtnl_err(op, e)),
        Ok(()) => Err(kernel_err(
            op,
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink connection closed before the ACK",
            ),
        )),
    }
}

fn check_route(own: &Ownership, route: &Route, op: &str) -> Result<(), NetError> {
    if own.owns_table(route.table) {
        Ok(())
    } else {
        Err(other_err(op, "table outside the owned range: refused"))
    }
}

fn check_rule(own: &Ownership, rule: &Rule, op: &str) -> Result<(), NetError> {
    if own.owns_priority(rule.priority) && own.owns_table(rule.table) {
        Ok(())
    } else {
        Err(other_err(
            op,
            "priority or table outside the owned range: refused",
        ))
    }
}

fn route_op(verb: &str, r: &Route) -> String {
    let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
    format!(
        "{verb} route {}{via} oif {} table {}",
        r.dst, r.oif, r.table
    )
}

fn rule_op(verb: &str, r: &Rule) -> String {
    format!(
        "{verb} rule from {} lookup {} priority {}",
        r.from, r.table, r.priority
    )
}
