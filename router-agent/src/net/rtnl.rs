//! The agent's own routes and rules, through rtnetlink.
//!
//! [`Rtnl`] is an rtnetlink socket whose every change is checked against the kernel's
//! ACK: a request succeeds only when its ACK arrives, and a socket that fails first is an
//! error, not a silent success. Dumps keep only what
//! [`Ownership`] says is ours (see [`rtnl_msg`](super::rtnl_msg)), found by dump and never
//! by parsing `ip` output; add/delete refuse anything outside the owned ranges, so a bug
//! upstream cannot touch a foreign object.

use std::collections::BTreeSet;

use mpbond_netlink::rtnl::{self, AddrMsg, LinkMsg, RouteMsg, RuleMsg, AF_INET, AF_INET6};
use mpbond_netlink::{protocol, AsyncSocket, Reply, Request};
use tokio::sync::Mutex;

use super::rtnl_msg::{parse_route, parse_rule, route_message, rule_message};
use super::types::{NetError, Ownership, Route, Rule};
use super::{kernel_err, nl_err, other_err};

/// An rtnetlink socket whose every change waits for the kernel's ACK. Requests are
/// serialised on the one socket.
#[derive(Debug)]
pub struct Rtnl {
    socket: Mutex<AsyncSocket>,
}

impl Rtnl {
    /// Open the socket and register it with the current tokio runtime.
    pub fn connect() -> Result<Rtnl, NetError> {
        let socket = AsyncSocket::open(protocol::ROUTE)
            .map_err(|e| kernel_err("opening the rtnetlink socket", e))?;
        Ok(Rtnl {
            socket: Mutex::new(socket),
        })
    }

    /// Send one request; its replies (a dump's entries), or the kernel's error as `op`.
    pub async fn request(&self, req: &Request, op: &str) -> Result<Vec<Reply>, NetError> {
        let mut socket = self.socket.lock().await;
        socket.request(req).await.map_err(|e| nl_err(op, e))
    }

    /// Every route in every table, IPv4 then IPv6.
    pub async fn dump_all_routes(&self) -> Result<Vec<RouteMsg>, NetError> {
        let mut all = Vec::new();
        for family in [AF_INET, AF_INET6] {
            let replies = self
                .request(&rtnl::dump_routes(family), "dumping routes")
                .await?;
            all.extend(replies.iter().filter_map(|r| RouteMsg::parse(&r.payload)));
        }
        Ok(all)
    }

    /// Every link.
    pub async fn dump_links(&self) -> Result<Vec<LinkMsg>, NetError> {
        let replies = self.request(&rtnl::dump_links(), "dumping links").await?;
        Ok(replies
            .iter()
            .filter_map(|r| LinkMsg::parse(&r.payload))
            .collect())
    }

    /// Every address, IPv4 and IPv6.
    pub async fn dump_addrs(&self) -> Result<Vec<AddrMsg>, NetError> {
        let replies = self
            .request(&rtnl::dump_addrs(), "dumping addresses")
            .await?;
        Ok(replies
            .iter()
            .filter_map(|r| AddrMsg::parse(&r.payload))
            .collect())
    }

    /// Every route of ours, IPv4 and IPv6, from all tables.
    pub async fn dump_routes(&self, own: &Ownership) -> Result<BTreeSet<Route>, NetError> {
        let all = self.dump_all_routes().await?;
        Ok(all.iter().filter_map(|m| parse_route(own, m)).collect())
    }

    /// Every rule of ours, IPv4 and IPv6.
    pub async fn dump_rules(&self, own: &Ownership) -> Result<BTreeSet<Rule>, NetError> {
        let mut out = BTreeSet::new();
        for family in [AF_INET, AF_INET6] {
            let replies = match self
                .request(&rtnl::dump_rules(family), "dumping rules")
                .await
            {
                Ok(replies) => replies,
                // A kernel without IPv6 has no IPv6 rules to own.
                Err(NetError::Kernel { source, .. })
                    if family == AF_INET6 && source.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
                {
                    Vec::new()
                }
                Err(e) => return Err(e),
            };
            let msgs = replies.iter().filter_map(|r| RuleMsg::parse(&r.payload));
            out.extend(msgs.filter_map(|m| parse_rule(own, &m)));
        }
        Ok(out)
    }

    /// Add one owned route (`NLM_F_EXCL`: an existing one is an error).
    pub async fn add_route(&self, own: &Ownership, route: &Route) -> Result<(), NetError> {
        let op = route_op("adding", route);
        check_route(own, route, &op)?;
        let req = rtnl::new_route(&route_message(own, route));
        self.request(&req, &op).await.map(drop)
    }

    /// Delete one owned route.
    pub async fn del_route(&self, own: &Ownership, route: &Route) -> Result<(), NetError> {
        let op = route_op("deleting", route);
        check_route(own, route, &op)?;
        let mut msg = route_message(own, route);
        msg.scope = rtnl::RT_SCOPE_NOWHERE;
        self.request(&rtnl::del_route(&msg), &op).await.map(drop)
    }

    /// Add one owned rule.
    pub async fn add_rule(&self, own: &Ownership, rule: &Rule) -> Result<(), NetError> {
        let op = rule_op("adding", rule);
        check_rule(own, rule, &op)?;
        let req = rtnl::new_rule(&rule_message(own, rule));
        self.request(&req, &op).await.map(drop)
    }

    /// Delete one owned rule.
    pub async fn del_rule(&self, own: &Ownership, rule: &Rule) -> Result<(), NetError> {
        let op = rule_op("deleting", rule);
        check_rule(own, rule, &op)?;
        // Without the protocol: the kernel matches it when given, and a leftover added by
        // hand (or by an older version) may not carry it.
        let mut msg = rule_message(own, rule);
        msg.protocol = None;
        self.request(&rtnl::del_rule(&msg), &op).await.map(drop)
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
