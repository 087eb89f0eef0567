//! Destination policy: which addresses the concentrator will connect to. Pure, no I/O.
//!
//! The concentrator is an open relay for its authenticated clients, so by default it
//! refuses every destination that is not a public unicast address: loopback, RFC 1918,
//! link-local, CGNAT, multicast, unspecified, reserved/broadcast, the IPv6 equivalents, and
//! the concentrator's own addresses. v4-mapped IPv6 (`::ffff:a.b.c.d`) is mapped to IPv4
//! before any check. Config `deny` adds prefixes and `allow` punches exceptions; `allow`
//! wins over everything else.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// The built-in class of an address, or `None` if it is public unicast.
pub fn builtin_class(ip: IpAddr) -> Option<Class> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<Class> {
    let o = ip.octets();
    let class = match o[0] {
        0 => Class::Unspecified,
        10 => Class::Private,
        127 => Class::Loopback,
        100 if (o[1] & 0xc0) == 64 => Class::SharedCgnat,
        169 if o[1] == 254 => Class::LinkLocal,
        172 if (o[1] & 0xf0) == 16 => Class::Private,
        192 if o[1] == 168 => Class::Private,
        224..=239 => Class::Multicast,
        240..=255 => Class::Reserved,
        _ => return None,
    };
    Some(class)
}

fn v6_class(ip: Ipv6Addr) -> Option<Class> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some(Class::Unspecified)
    } else if ip.is_loopback() {
        Some(Class::Loopback)
    } else if (first & 0xfe00) == 0xfc00 {
        Some(Class::Private)
    } else if (first & 0xffc0) == 0xfe80 {
        Some(Class::LinkLocal)
    } else if (first & 0xff00) == 0xff00 {
        Some(Class::Multicast)
    } else {
        None
    }
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
        match builtin_class(ip) {
            Some(class) => Err(class),
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
            ("203.0.113.10", None),
            ("192.0.2.1", None),
            ("8.8.8.8", None),
            ("::1", Some(Class::Loopback)),
            ("::", Some(Class::Unspecified)),
            ("fc00::1", Some(Class::Private)),
            ("fd12:3456::1", Some(Class::Private)),
            ("fe80::1", Some(Class::LinkLocal)),
            ("febf::1", Some(Class::LinkLocal)),
            ("ff02::1", Some(Class::Multicast)),
            ("2001:db8:200::10", None),
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
            ("::ffff:203.0.113.10", None),
        ] {
            assert_eq!(p.check(ip(addr)).err(), want, "{addr}");
        }
    }

    #[test]
    fn deny_adds_and_allow_punches() {
        let p = Policy::new(
            &[net("203.0.113.99/32"), net("2001:db8:dead::/48")],
            &[net("10.9.0.0/16"), net("::ffff:127.0.0.0/104")],
            &[],
        );
        assert_eq!(p.check(ip("203.0.113.99")), Err(Class::Configured));
        assert_eq!(p.check(ip("::ffff:203.0.113.99")), Err(Class::Configured));
        assert_eq!(p.check(ip("203.0.113.98")), Ok(()));
        assert_eq!(p.check(ip("2001:db8:dead::1")), Err(Class::Configured));
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
        assert_eq!(p.check(ip("192.0.2.2")), Ok(()));
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
