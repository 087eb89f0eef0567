//! The policy routing tproxy needs: packets nft marked with `[udp] fwmark` look up
//! `[udp] route_table`, which holds `local default dev lo`, so they are delivered to the
//! agent's socket instead of forwarded. IPv4 and IPv6, added at start, removed at stop.
//!
//! A crash leaves the rule and the route behind. That is harmless: only nft's tproxy rule
//! sets the mark, after a live transparent socket took the packet, and that rule is gone
//! with the agent (owner table); the next start replaces both.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use mpbond_netlink::rtnl::{self, RouteMsg, RuleMsg};
use mpbond_netlink::{protocol, AttrBuf, Socket};

/// `FRA_FWMARK` and `FRA_FWMASK`.
const FRA_FWMARK: u16 = 10;
const FRA_FWMASK: u16 = 16;
/// `FR_ACT_TO_TBL`.
const FR_ACT_TO_TBL: u8 = 1;
/// `RTN_LOCAL`, `RT_SCOPE_HOST`, `RTPROT_STATIC`.
const RTN_LOCAL: u8 = 2;
const RT_SCOPE_HOST: u8 = 254;
const RTPROT_STATIC: u8 = 4;

/// The rule and route of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Family {
    rule: RuleMsg,
    route: RouteMsg,
}

/// The installed rules and routes; [`LocalRouting::remove`] takes them away.
#[derive(Debug)]
pub struct LocalRouting {
    families: Vec<Family>,
    fwmark: u32,
}

/// Why the policy routing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("cannot add {what}: {source}")]
    Add {
        what: &'static str,
        #[source]
        source: mpbond_netlink::Error,
    },
}

fn families(table: u32, priority: u32, lo: u32) -> Vec<Family> {
    [
        (libc::AF_INET as u8, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        (libc::AF_INET6 as u8, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
    ]
    .into_iter()
    .map(|(family, any)| Family {
        rule: RuleMsg {
            family,
            table,
            action: FR_ACT_TO_TBL,
            priority: Some(priority),
            ..RuleMsg::default()
        },
        route: RouteMsg {
            family,
            dst_len: 0,
            table,
            protocol: RTPROT_STATIC,
            scope: RT_SCOPE_HOST,
            kind: RTN_LOCAL,
            dst: Some(any),
            oif: Some(lo),
            ..RouteMsg::default()
        },
    })
    .collect()
}

fn rule_request(rule: &RuleMsg, fwmark: u32, add: bool) -> mpbond_netlink::Request {
    let mut req = if add {
        rtnl::new_rule(rule)
    } else {
        rtnl::del_rule(rule)
    };
    let mut attrs = AttrBuf::new();
    attrs.put_u32(FRA_FWMARK, fwmark);
    attrs.put_u32(FRA_FWMASK, u32::MAX);
    req.body.extend_from_slice(attrs.as_bytes());
    req
}

fn open() -> Result<Socket, RoutingError> {
    let socket = Socket::open(protocol::ROUTE).map_err(RoutingError::Socket)?;
    socket
        .set_recv_timeout(Duration::from_secs(2))
        .map_err(RoutingError::Socket)?;
    Ok(socket)
}

fn exists(error: &mpbond_netlink::Error) -> bool {
    matches!(error, mpbond_netlink::Error::Kernel { errno, .. } if *errno == libc::EEXIST)
}

impl LocalRouting {
    /// Add `fwmark → table` rules at `priority` and the `local default dev lo` routes,
    /// replacing a crash's leftovers. IPv6 failing (no IPv6 in the kernel) is logged,
    /// not fatal.
    pub fn install(fwmark: u32, table: u32, priority: u32) -> Result<LocalRouting, RoutingError> {
        // SAFETY: a NUL-terminated literal.
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        let mut socket = open()?;
        let mut installed = Vec::new();
        for family in families(table, priority, lo) {
            let v6 = family.rule.family == libc::AF_INET6 as u8;
            // Leftovers of a crash: remove, then add fresh.
            let _ = socket.request(&rule_request(&family.rule, fwmark, false));
            let _ = socket.request(&rtnl::del_route(&family.route));
            let added = socket
                .request(&rtnl::new_route(&family.route))
                .or_else(|e| if exists(&e) { Ok(Vec::new()) } else { Err(e) })
                .map_err(|source| RoutingError::Add {
                    what: "the local route for tproxy",
                    source,
                })
                .and_then(|_| {
                    socket
                        .request(&rule_request(&family.rule, fwmark, true))
                        .or_else(|e| if exists(&e) { Ok(Vec::new()) } else { Err(e) })
                        .map_err(|source| RoutingError::Add {
                            what: "the fwmark rule for tproxy",
                            source,
                        })
                });
            match added {
                Ok(_) => installed.push(family),
                Err(error) if v6 => {
                    tracing::warn!(%error, "no IPv6 tproxy routing: LAN IPv6 UDP goes out by NAT")
                }
                Err(error) => return Err(error),
            }
        }
        Ok(LocalRouting {
            families: installed,
            fwmark,
        })
    }

    /// Remove the rules and routes.
    pub fn remove(self) {
        let Ok(mut socket) = open() else {
            return;
        };
        for family in &self.families {
            let _ = socket.request(&rule_request(&family.rule, self.fwmark, false));
            let _ = socket.request(&rtnl::del_route(&family.route));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_carries_mark_and_mask() {
        let fams = families(4852, 4852, 1);
        let req = rule_request(&fams[0].rule, 0x4d42, true);
        let tail = &req.body[req.body.len() - 16..];
        assert_eq!(&tail[2..4], &FRA_FWMARK.to_ne_bytes());
        assert_eq!(&tail[4..8], &0x4d42u32.to_ne_bytes());
        assert_eq!(&tail[10..12], &FRA_FWMASK.to_ne_bytes());
        assert_eq!(fams[1].route.kind, RTN_LOCAL);
        assert_eq!(fams[1].route.dst, Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)));
    }
}
