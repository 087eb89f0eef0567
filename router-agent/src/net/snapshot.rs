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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::AddressFamily;

use super::model::{AddrInfo, LinkInfo, NetError, RouteInfo, Snapshot};
use super::rtnl::Rtnl;
use super::rtnl_err;

/// The main routing table (`RT_TABLE_MAIN`).
pub const MAIN_TABLE: u32 = 254;

/// Dump links, addresses and main-table routes.
pub async fn snapshot(rtnl: &Rtnl) -> Result<Snapshot, NetError> {
    let h = rtnl.handle();
    let links: Vec<LinkMessage> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| rtnl_err("dumping links", e))?;
    let addrs: Vec<AddressMessage> = h
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| rtnl_err("dumping addresses", e))?;
    let mut links: Vec<LinkInfo> = links.iter().map(parse_link).collect();
    for msg in &addrs {
        let Some(info) = parse_addr(msg) else {
            continue;
        };
        if let Some(link) = links.iter_mut().find(|l| l.ifindex == msg.header.index) {
            link.addrs.push(info);
        }
    }
    let routes = rtnl.dump_all_routes().await?;
    let routes = routes.iter().flat_map(parse_main_route).collect();
    Ok(Snapshot { links, routes })
}

/// One link message as [`LinkInfo`] (no addresses yet).
pub fn parse_link(msg: &LinkMessage) -> LinkInfo {
    let flags = msg.header.flags;
    let mut info = LinkInfo {
        ifindex: msg.header.index,
        name: String::new(),
        up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp),
        point_to_point: flags.contains(LinkFlags::Pointopoint),
        addrs: Vec::new(),
        rx_bytes: 0,
        tx_bytes: 0,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => info.name.clone_from(name),
            LinkAttribute::Stats64(stats) => {
                info.rx_bytes = stats.rx_bytes;
                info.tx_bytes = stats.tx_bytes;
            }
            _ => {}
        }
    }
    info
}

/// One address message as [`AddrInfo`], if it carries an address.
pub fn parse_addr(msg: &AddressMessage) -> Option<AddrInfo> {
    let mut address = None;
    let mut local = None;
    let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Flags(f) => flags = *f,
            _ => {}
        }
    }
    let addr = local.or(address)?;
    Some(AddrInfo {
        addr,
        prefix_len: msg.header.prefix_len,
        tentative: flags.contains(AddressFlags::Tentative),
        deprecated: flags.contains(AddressFlags::Deprecated),
        temporary: addr.is_ipv6() && flags.contains(AddressFlags::Secondary),
    })
}

fn ip_of(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A main-table unicast route as [`RouteInfo`]s (one per next hop); empty otherwise.
pub fn parse_main_route(msg: &RouteMessage) -> Vec<RouteInfo> {
    if msg.header.kind != RouteType::Unicast {
        return Vec::new();
    }
    let mut table = u32::from(msg.header.table);
    let mut dst = None;
    let mut gateway = None;
    let mut oif = 0;
    let mut hops = Vec::new();
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = ip_of(a),
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            RouteAttribute::Oif(i) => oif = *i,
            RouteAttribute::MultiPath(nexthops) => {
                for hop in nexthops {
                    let gw = hop.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => ip_of(g),
                        _ => None,
                    });
                    hops.push((gw, hop.interface_index));
                }
            }
            _ => {}
        }
    }
    if table != MAIN_TABLE {
        return Vec::new();
    }
    let unspecified = match msg.header.address_family {
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let Ok(dst) = IpNet::new(
        dst.unwrap_or(unspecified),
        msg.header.destination_prefix_length,
    ) else {
        return Vec::new();
    };
    if hops.is_empty() {
        hops.push((gateway, oif));
    }
    let protocol = u8::from(msg.header.protocol);
    hops.into_iter()
        .map(|(gateway, oif)| RouteInfo {
            table,
            dst,
            gateway,
            oif,
            protocol,
        })
        .collect()
}
