//! The destination classifier: what kind of address a destination is. Pure, no I/O, and
//! nothing TCP-specific, so the TCP, UDP and SOCKS5 paths can share it.
//!
//! [`classify`] answers with the first [`Class`] that makes an address unfit for an open
//! relay, or `None` for a globally reachable unicast address:
//!
//! * the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and their later
//!   entries), every block that is not globally reachable: [`V4_SPECIAL`], [`V6_SPECIAL`].
//!   The longest matching prefix decides, as in the registries, so the globally reachable
//!   blocks inside `2001::/23` (TURN and PCP anycast, AMT, AS112, ORCHIDv2, Drone Remote ID)
//!   pass while the rest of it is refused;
//! * IPv4 and IPv6 multicast (`224.0.0.0/4`, `ff00::/8`), which the special-purpose
//!   registries leave to their own registries;
//! * every IPv6 form that embeds an IPv4 address ([`Embedding`], decoded by
//!   [`embedded_ipv4`]): the embedded address is classed exactly like a plain IPv4
//!   destination, so `64:ff9b::a9fe:a9fe` is link-local and `2002:7f00:1::` loopback.
//!
//! Assumptions, where the RFCs leave a choice:
//!
//! * NAT64 local use (`64:ff9b:1::/48`, RFC 8215) may use any RFC 6052 layout. Only the
//!   `/96` layout under `64:ff9b:1::/96` is decoded (the IPv4 address in the last 32
//!   bits); the rest of the `/48`, whose layout cannot be known, is refused as
//!   [`Class::Nat64LocalUse`]. `policy.allow` opens a translator that uses another layout.
//! * Teredo (`2001::/32`, RFC 4380) carries two IPv4 addresses: the server's in bits
//!   32..64 and the client's, inverted, in the last 32 bits. Both are classed; either one
//!   refused refuses the address.
//! * 6to4 (`2002::/16`, RFC 3056): the IPv4 address in bits 16..48.
//! * `192.0.0.0/24` is refused whole, its two globally reachable anycast addresses
//!   (`192.0.0.9`, `192.0.0.10`) included: a relay has no use for them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Class;

/// An IPv6 form that carries an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Embedding {
    /// IPv4-mapped, `::ffff:0:0/96` (RFC 4291).
    Mapped,
    /// IPv4-compatible, `::/96` (RFC 4291, deprecated).
    Compatible,
    /// IPv4-translated, `::ffff:0:0:0/96` (RFC 2765).
    Translated,
    /// NAT64 well-known prefix, `64:ff9b::/96` (RFC 6052).
    Nat64,
    /// NAT64 local-use prefix in its `/96` layout, `64:ff9b:1::/96` (RFC 8215).
    Nat64LocalUse,
    /// 6to4, `2002::/16` (RFC 3056).
    SixToFour,
    /// Teredo, `2001::/32` (RFC 4380).
    Teredo,
}

impl Embedding {
    /// Snake-case name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Embedding::Mapped => "ipv4_mapped",
            Embedding::Compatible => "ipv4_compatible",
            Embedding::Translated => "ipv4_translated",
            Embedding::Nat64 => "nat64",
            Embedding::Nat64LocalUse => "nat64_local_use",
            Embedding::SixToFour => "6to4",
            Embedding::Teredo => "teredo",
        }
    }
}

/// The IPv4 addresses an IPv6 address carries: one, or two for Teredo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded {
    /// The form.
    pub via: Embedding,
    /// The address (for Teredo, the server's).
    pub first: Ipv4Addr,
    /// Teredo's client address, de-obfuscated.
    pub second: Option<Ipv4Addr>,
}

impl Embedded {
    /// Every embedded IPv4 address.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        std::iter::once(self.first).chain(self.second)
    }
}

/// What a registry entry says about the addresses in its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Not globally reachable: refused as this class.
    Refuse(Class),
    /// Globally reachable although inside a refused block.
    Reachable,
    /// Carries an IPv4 address, classed instead.
    Embeds(Embedding),
}

/// IPv4 blocks refused by default: the special-purpose registry's blocks that are not
/// globally reachable, multicast, and the limited broadcast address (inside 240/4).
pub const V4_SPECIAL: &[(Ipv4Addr, u8, Class)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, Class::Unspecified),
    (Ipv4Addr::new(10, 0, 0, 0), 8, Class::Private),
    (Ipv4Addr::new(100, 64, 0, 0), 10, Class::SharedCgnat),
    (Ipv4Addr::new(127, 0, 0, 0), 8, Class::Loopback),
    (Ipv4Addr::new(169, 254, 0, 0), 16, Class::LinkLocal),
    (Ipv4Addr::new(172, 16, 0, 0), 12, Class::Private),
    (Ipv4Addr::new(192, 0, 0, 0), 24, Class::ProtocolAssignment),
    (Ipv4Addr::new(192, 0, 2, 0), 24, Class::Documentation),
    (Ipv4Addr::new(192, 88, 99, 0), 24, Class::Deprecated),
    (Ipv4Addr::new(192, 168, 0, 0), 16, Class::Private),
    (Ipv4Addr::new(198, 18, 0, 0), 15, Class::Benchmarking),
    (Ipv4Addr::new(198, 51, 100, 0), 24, Class::Documentation),
    (Ipv4Addr::new(203, 0, 113, 0), 24, Class::Documentation),
    (Ipv4Addr::new(224, 0, 0, 0), 4, Class::Multicast),
    (Ipv4Addr::new(240, 0, 0, 0), 4, Class::Reserved),
];

/// IPv6 blocks refused by default (the special-purpose registry's blocks that are not
/// globally reachable, site-local, multicast), with the reachable blocks inside them.
pub const V6_SPECIAL: &[(Ipv6Addr, u8, Class)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, Class::Unspecified),
    (Ipv6Addr::LOCALHOST, 128, Class::Loopback),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        Class::Discard,
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0),
        64,
        Class::Discard,
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        Class::Nat64LocalUse,
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        Class::ProtocolAssignment,
    ),
    (
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        Class::Benchmarking,
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        Class::Documentation,
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        Class::Documentation,
    ),
    (
        Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        Class::Srv6Sid,
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        Class::Private,
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        Class::LinkLocal,
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        Class::SiteLocal,
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        Class::Multicast,
    ),
];

/// Globally reachable blocks inside [`V6_SPECIAL`]'s `2001::/23`.
pub const V6_REACHABLE: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 1), 128),
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 2), 128),
    (Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 3), 128),
    (Ipv6Addr::new(0x2001, 3, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x2001, 4, 0x112, 0, 0, 0, 0, 0), 48),
    (Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28),
    (Ipv6Addr::new(0x2001, 0x30, 0, 0, 0, 0, 0, 0), 28),
];

/// IPv6 blocks that carry an IPv4 address.
pub const V6_EMBEDDING: &[(Ipv6Addr, u8, Embedding)] = &[
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0),
        96,
        Embedding::Mapped,
    ),
    (Ipv6Addr::UNSPECIFIED, 96, Embedding::Compatible),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0),
        96,
        Embedding::Translated,
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        96,
        Embedding::Nat64,
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        96,
        Embedding::Nat64LocalUse,
    ),
    (
        Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0),
        16,
        Embedding::SixToFour,
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        Embedding::Teredo,
    ),
];

fn v4_in(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn v6_in(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// The class of a plain IPv4 address, or `None` if it is globally reachable unicast.
pub fn classify_v4(ip: Ipv4Addr) -> Option<Class> {
    V4_SPECIAL
        .iter()
        .filter(|(net, len, _)| v4_in(ip, *net, *len))
        .max_by_key(|(_, len, _)| *len)
        .map(|(_, _, class)| *class)
}

/// The registry's word on an IPv6 address: the longest matching block among the
/// refused, reachable and embedding tables, or `None` outside all of them.
fn v6_verdict(ip: Ipv6Addr) -> Option<Verdict> {
    let refused = V6_SPECIAL
        .iter()
        .map(|(net, len, class)| (*net, *len, Verdict::Refuse(*class)));
    let reachable = V6_REACHABLE
        .iter()
        .map(|(net, len)| (*net, *len, Verdict::Reachable));
    let embeds = V6_EMBEDDING
        .iter()
        .map(|(net, len, via)| (*net, *len, Verdict::Embeds(*via)));
    refused
        .chain(reachable)
        .chain(embeds)
        .filter(|(net, len, _)| v6_in(ip, *net, *len))
        // On a tie (`::/128` inside `::/96` cannot tie; none other exists) the first wins.
        .fold(
            None,
            |best: Option<(u8, Verdict)>, (_, len, verdict)| match best {
                Some((best_len, _)) if best_len >= len => best,
                _ => Some((len, verdict)),
            },
        )
        .map(|(_, verdict)| verdict)
}

/// The IPv4 address(es) an IPv6 address embeds, if it is one of the [`Embedding`] forms.
/// `::` and `::1` are not IPv4-compatible addresses: they are themselves.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Embedded> {
    let Some(Verdict::Embeds(via)) = v6_verdict(ip) else {
        return None;
    };
    let bits = u128::from(ip);
    let low = Ipv4Addr::from(bits as u32);
    let (first, second) = match via {
        Embedding::SixToFour => (Ipv4Addr::from((bits >> 80) as u32), None),
        Embedding::Teredo => (
            Ipv4Addr::from((bits >> 64) as u32),
            Some(Ipv4Addr::from(!(bits as u32))),
        ),
        _ => (low, None),
    };
    Some(Embedded { via, first, second })
}

/// Why an IPv6 address, taken by itself, is refused; its embedded IPv4 addresses, if
/// any, are the caller's to class (see [`classify`]).
pub fn classify_v6(ip: Ipv6Addr) -> Option<Class> {
    match v6_verdict(ip) {
        Some(Verdict::Refuse(class)) => Some(class),
        Some(Verdict::Reachable | Verdict::Embeds(_)) | None => None,
    }
}

/// The built-in class of a destination, or `None` if it is globally reachable unicast.
/// An IPv6 address that embeds an IPv4 address takes that address's class.
pub fn classify(ip: IpAddr) -> Option<Class> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            classify_v6(v6).or_else(|| embedded_ipv4(v6)?.addresses().find_map(classify_v4))
        }
    }
}

#[cfg(test)]
#[path = "destination_tests.rs"]
mod tests;
