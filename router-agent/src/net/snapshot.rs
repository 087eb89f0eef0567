//! A full dump of what the WAN model reads: links, their addresses and the main table.
//!
//! * Links: index, name, `up` (`IFF_UP && IFF_LOWER_UP`), `IFF_POINTOPOINT`, and the
//!   64-bit rx/tx byte counters.
//! * Addresses: `IFA_LOCAL` when present (on point-to-point links `IFA_ADDRESS` is the
//!   peer), with the tentative / deprecated / temporary flags from `IFA_FLAGS` (the
//!   32-bit field) or the header. `IFA_F_TEMPORARY` shares its bit with
//!   `IFA_F_SECONDARY`, so it only means "temporary" on IPv6.
//! * Routes: unicast routes of the main table, IPv4 and IPv6, including default routes
//!   and router-advertisement routes (`proto ra`); a multipath route becomes one entry per
//!   next hop.

use ipnet::IpNet;
use mpbond_netlink::rtnl::{
    AddrMsg, LinkMsg, RouteMsg, IFA_F_DEPRECATED, IFA_F_SECONDARY, IFA_F_TENTATIVE, IFF_LOWER_UP,
    IFF_POINTOPOINT, IFF_UP, RTN_UNICAST,
};

use super::rtnl::Rtnl;
use super::rtnl_msg::unspecified;
use super::types::{AddrInfo, LinkInfo, NetError, RouteInfo, Snapshot};

/// The main routing table (`RT_TABLE_MAIN`).
pub const MAIN_TABLE: u32 = mpbond_netlink::rtnl::RT_TABLE_MAIN;

/// Dump links, addresses and main-table routes.
pub async fn snapshot(rtnl: &Rtnl) -> Result<Snapshot, NetError> {
    let links = rtnl.dump_links().await?;
    let addrs = rtnl.dump_addrs().await?;
    let mut links: Vec<LinkInfo> = links.iter().map(parse_link).collect();
    for msg in &addrs {
        let Some(info) = parse_addr(msg) else {
            continue;
        };
        if let Some(link) = links.iter_mut().find(|l| l.ifindex == msg.index) {
            link.addrs.push(info);
        }
    }
    let routes = rtnl.dump_all_routes().await?;
    let routes = routes.iter().flat_map(parse_main_route).collect();
    Ok(Snapshot { links, routes })
}

/// One link message as [`LinkInfo`] (no addresses yet).
pub fn parse_link(msg: &LinkMsg) -> LinkInfo {
    let up = IFF_UP | IFF_LOWER_UP;
    LinkInfo {
        ifindex: msg.index,
        name: msg.name.clone(),
        up: msg.flags & up == up,
        point_to_point: msg.flags & IFF_POINTOPOINT != 0,
        addrs: Vec::new(),
        rx_bytes: msg.rx_bytes,
        tx_bytes: msg.tx_bytes,
    }
}

/// One address message as [`AddrInfo`], if it carries an address.
pub fn parse_addr(msg: &AddrMsg) -> Option<AddrInfo> {
    let addr = msg.local.or(msg.address)?;
    Some(AddrInfo {
        addr,
        prefix_len: msg.prefix_len,
        tentative: msg.flags & IFA_F_TENTATIVE != 0,
        deprecated: msg.flags & IFA_F_DEPRECATED != 0,
        temporary: addr.is_ipv6() && msg.flags & IFA_F_SECONDARY != 0,
    })
}

/// A main-table unicast route as [`RouteInfo`]s (one per next hop); empty otherwise.
pub fn parse_main_route(msg: &RouteMsg) -> Vec<RouteInfo> {
    if msg.kind != RTN_UNICAST || msg.table != MAIN_TABLE {
        return Vec::new();
    }
    let dst = msg.dst.unwrap_or(unspecified(msg.family));
    let Ok(dst) = IpNet::new(dst, msg.dst_len) else {
        return Vec::new();
    };
    let mut hops: Vec<_> = msg
        .multipath
        .iter()
        .map(|h| (h.gateway, h.ifindex))
        .collect();
    if hops.is_empty() {
        hops.push((msg.gateway, msg.oif.unwrap_or(0)));
    }
    hops.into_iter()
        .map(|(gateway, oif)| RouteInfo {
            table: MAIN_TABLE,
            dst,
            gateway,
            oif,
            protocol: msg.protocol,
        })
        .collect()
}
