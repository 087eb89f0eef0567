//! Destination policy: which addresses the concentrator will connect to. Pure, no I/O.
//!
//! The concentrator is an open relay for its authenticated clients, so by default it
//! refuses every destination that is not a globally reachable unicast address: the
//! special-purpose blocks of the IANA registries (loopback, RFC 1918, link-local, CGNAT,
//! documentation, benchmarking, ...), multicast, and the concentrator's own addresses.
//! [`destination`] holds the registry tables and decodes every IPv6 form that embeds an
//! IPv4 address (mapped, compatible, translated, NAT64, 6to4, Teredo); the embedded
//! address is checked exactly like a plain IPv4 destination, `deny`, `allow` and own
//! addresses included. Config `deny` adds prefixes and `allow` punches exceptions;
//! `allow` wins over everything else, so it opens one block deliberately.
//!
//! Layout: this file (the [`Policy`] and its [`Class`]es), [`destination`] (the pure
//! classifier the TCP, UDP and SOCKS5 paths share).

pub mod destination;

use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

/// Why a destination is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Loopback,
    /// RFC 1918 (v4) or unique local fc00::/7 (v6).
    Private,
    LinkLocal,
    /// Shared address space 100.64.0.0/10 (CGNAT).
    SharedCgnat,
    Multicast,
    /// 0.0.0.0/8 or `::`.
    Unspecified,
    /// 240.0.0.0/4 including the broadcast address.
    Reserved,
    /// Documentation: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32,
    /// 3fff::/20.
    Documentation,
    /// Benchmarking: 198.18.0.0/15, 2001:2::/48.
    Benchmarking,
    /// IETF protocol assignments: 192.0.0.0/24, and 2001::/23 outside its globally
    /// reachable blocks.
    ProtocolAssignment,
    /// The deprecated 6to4 relay anycast block 192.88.99.0/24.
    Deprecated,
    /// Site-local fec0::/10 (deprecated).
    SiteLocal,
    /// Discard-only 100::/64 and the dummy prefix 100:0:0:1::/64.
    Discard,
    /// SRv6 segment identifiers, 5f00::/16.
    Srv6Sid,
    /// NAT64 local use 64:ff9b:1::/48 outside its /96 layout (64:ff9b:1::/96), where
    /// the embedded IPv4 address cannot be located.
    Nat64LocalUse,
    /// One of the concentrator's own interface addresses.
    OwnAddress,
    /// A prefix from the config's `policy.deny`.
    Configured,
}

impl Class {
    /// Snake-case name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Loopback => "loopback",
            Class::Private => "private",
            Class::LinkLocal => "link_local",
            Class::SharedCgnat => "shared_cgnat",
            Class::Multicast => "multicast",
            Class::Unspecified => "unspecified",
            Class::Reserved => "reserved",
            Class::Documentation => "documentation",
            Class::Benchmarking => "benchmarking",
            Class::ProtocolAssignment => "protocol_assignment",
            Class::Deprecated => "deprecated",
            Class::SiteLocal => "site_local",
            Class::Discard => "discard",
            Class::Srv6Sid => "srv6_sid",
            Class::Nat64LocalUse => "nat64_local_use",
            Class::OwnAddress => "own_address",
            Class::Configured => "configured_deny",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Map a prefix inside `::ffff:0:0/96` to its IPv4 form; others are returned as is.
pub fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if v6.prefix_len() >= 96 {
            if let Some(v4) = v6.addr().to_ipv4_mapped() {
                if let Ok(n) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(n);
                }
            }
        }
    }
    net
}

/// The built-in class of an address, or `None` if it is globally reachable unicast.
/// See [`destination::classify`].
pub fn builtin_class(ip: IpAddr) -> Option<Class> {
    destination::classify(ip.to_canonical())
}

/// The effective policy: built-in classes, configured prefixes and own addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
    own: Vec<IpAddr>,
}

impl Policy {
    /// Build a policy. Prefixes and addresses are canonicalised (v4-mapped → v4).
    pub fn new(deny: &[IpNet], allow: &[IpNet], own: &[IpAddr]) -> Policy {
        Policy {
            deny: deny.iter().map(|n| canonical_net(*n)).collect(),
            allow: allow.iter().map(|n| canonical_net(*n)).collect(),
            own: own.iter().map(|ip| ip.to_canonical()).collect(),
        }
    }

    /// `Ok(())` if the concentrator may connect to `ip`, else the reason it may not.
    pub fn check(&self, ip: IpAddr) -> Result<(), Class> {
        let ip = ip.to_canonical();
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return Err(Class::Configured);
        }
        if self.own.contains(&ip) {
            return Err(Class::OwnAddress);
        }
        let IpAddr::V6(v6) = ip else {
            return builtin_class(ip).map_or(Ok(()), Err);
        };
        if let Some(class) = destination::classify_v6(v6) {
            return Err(class);
        }
        // An embedded IPv4 address is checked as the destination it really is.
        match destination::embedded_ipv4(v6) {
            Some(embedded) => embedded
                .addresses()
                .try_for_each(|v4| self.check(IpAddr::V4(v4))),
            None => Ok(()),
        }
    }

    /// The own addresses this policy refuses.
    pub fn own_addresses(&self) -> &[IpAddr] {
        &self.own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn builtin_table() {
        let p = Policy::default();
        let cases: &[(&str, Option<Class>)] = &[
            ("127.0.0.1", Some(Class::Loopback)),
            ("127.255.255.254", Some(Class::Loopback)),
            ("10.0.0.1", Some(Class::Private)),
            ("10.255.255.255", Some(Class::Private)),
            ("172.16.0.1", Some(Class::Private)),
            ("172.31.255.255", Some(Class::Private)),
            ("172.32.0.1", None),
            ("172.15.255.255", None),
            ("192.168.1.1", Some(Class::Private)),
            ("192.169.0.1", None),
            ("169.254.169.254", Some(Class::LinkLocal)),
            ("100.64.0.1", Some(Class::SharedCgnat)),
            ("100.127.255.255", Some(Class::SharedCgnat)),
            ("100.128.0.1", None),
            ("100.63.255.255", None),
            ("224.0.0.1", Some(Class::Multicast)),
            ("239.255.255.255", Some(Class::Multicast)),
            ("0.0.0.0", Some(Class::Unspecified)),
            ("0.1.2.3", Some(Class::Unspecified)),
            ("240.0.0.1", Some(Class::Reserved)),
            ("255.255.255.255", Some(Class::Reserved)),
            ("203.0.113.10", Some(Class::Documentation)),
            ("192.0.2.1", Some(Class::Documentation)),
            ("198.18.0.1", Some(Class::Benchmarking)),
            ("198.19.255.255", Some(Class::Benchmarking)),
            ("198.20.0.1", None),
            ("192.0.0.8", Some(Class::ProtocolAssignment)),
            ("192.88.99.1", Some(Class::Deprecated)),
            ("192.31.196.1", None),
            ("9.9.9.9", None),
            ("8.8.8.8", None),
            ("::1", Some(Class::Loopback)),
            ("::", Some(Class::Unspecified)),
            ("fc00::1", Some(Class::Private)),
            ("fd12:3456::1", Some(Class::Private)),
            ("fe80::1", Some(Class::LinkLocal)),
            ("febf::1", Some(Class::LinkLocal)),
            ("ff02::1", Some(Class::Multicast)),
            ("2001:db8:200::10", Some(Class::Documentation)),
            ("3fff::1", Some(Class::Documentation)),
            ("fec0::1", Some(Class::SiteLocal)),
            ("100::1", Some(Class::Discard)),
            ("5f00::1", Some(Class::Srv6Sid)),
            ("2001:2::1", Some(Class::Benchmarking)),
            ("2001:5::1", Some(Class::ProtocolAssignment)),
            ("2001:1::1", None),
            ("2001:4:112::1", None),
            ("2001:20::1", None),
            ("2606:4700::1111", None),
        ];
        for (addr, want) in cases {
            let got = p.check(ip(addr)).err();
            assert_eq!(got, *want, "{addr}");
        }
    }

    #[test]
    fn v4_mapped_is_checked_as_v4() {
        let p = Policy::default();
        for (addr, want) in [
            ("::ffff:127.0.0.1", Some(Class::Loopback)),
            ("::ffff:10.1.2.3", Some(Class::Private)),
            ("::ffff:192.168.0.1", Some(Class::Private)),
            ("::ffff:169.254.1.1", Some(Class::LinkLocal)),
            ("::ffff:100.64.1.1", Some(Class::SharedCgnat)),
            ("::ffff:224.0.0.1", Some(Class::Multicast)),
            ("::ffff:0.0.0.0", Some(Class::Unspecified)),
            ("::ffff:255.255.255.255", Some(Class::Reserved)),
            ("::ffff:203.0.113.10", Some(Class::Documentation)),
            ("::ffff:9.9.9.9", None),
        ] {
            assert_eq!(p.check(ip(addr)).err(), want, "{addr}");
        }
    }

    #[test]
    fn deny_adds_and_allow_punches() {
        let p = Policy::new(
            &[net("9.9.9.99/32"), net("2606:4700:dead::/48")],
            &[net("10.9.0.0/16"), net("::ffff:127.0.0.0/104")],
            &[],
        );
        assert_eq!(p.check(ip("9.9.9.99")), Err(Class::Configured));
        assert_eq!(p.check(ip("::ffff:9.9.9.99")), Err(Class::Configured));
        assert_eq!(p.check(ip("64:ff9b::9.9.9.99")), Err(Class::Configured));
        assert_eq!(p.check(ip("9.9.9.98")), Ok(()));
        assert_eq!(p.check(ip("2606:4700:dead::1")), Err(Class::Configured));
        assert_eq!(p.check(ip("10.9.1.1")), Ok(()));
        assert_eq!(p.check(ip("::ffff:10.9.1.1")), Ok(()));
        assert_eq!(p.check(ip("10.8.1.1")), Err(Class::Private));
        assert_eq!(
            p.check(ip("127.0.0.1")),
            Ok(()),
            "mapped allow prefix applies to v4"
        );
    }

    #[test]
    fn allow_wins_over_deny() {
        let p = Policy::new(&[net("198.51.100.0/24")], &[net("198.51.100.7/32")], &[]);
        assert_eq!(p.check(ip("198.51.100.7")), Ok(()));
        assert_eq!(p.check(ip("198.51.100.8")), Err(Class::Configured));
    }

    #[test]
    fn own_addresses_refused() {
        let p = Policy::new(&[], &[], &[ip("192.0.2.1"), ip("2001:db8:100::1")]);
        assert_eq!(p.check(ip("192.0.2.1")), Err(Class::OwnAddress));
        assert_eq!(p.check(ip("::ffff:192.0.2.1")), Err(Class::OwnAddress));
        assert_eq!(p.check(ip("2001:db8:100::1")), Err(Class::OwnAddress));
        assert_eq!(p.check(ip("64:ff9b::192.0.2.1")), Err(Class::OwnAddress));
        assert_eq!(p.check(ip("2002:c000:201::")), Err(Class::OwnAddress));
        assert_eq!(p.check(ip("192.0.2.2")), Err(Class::Documentation));
        let allowed = Policy::new(&[], &[net("192.0.2.1/32")], &[ip("192.0.2.1")]);
        assert_eq!(allowed.check(ip("192.0.2.1")), Ok(()));
    }

    #[test]
    fn canonical_net_maps_only_inside_mapped_range() {
        assert_eq!(canonical_net(net("::ffff:10.0.0.0/104")), net("10.0.0.0/8"));
        assert_eq!(canonical_net(net("::ffff:0:0/96")), net("0.0.0.0/0"));
        assert_eq!(canonical_net(net("::/64")), net("::/64"));
        assert_eq!(canonical_net(net("2001:db8::/32")), net("2001:db8::/32"));
    }
}
