//! Tests of the destination classifier: the examples of issue 19 by name, each
//! embedding decoded, and property tests against the registry tables.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::policy::{Class, Policy};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn refused(s: &str) -> Option<Class> {
    Policy::default().check(ip(s)).err()
}

/// Every example the audit connected through the concentrator (issue 19, item 2).
#[test]
fn issue_examples_are_refused() {
    let cases = [
        ("64:ff9b::a9fe:a9fe", Class::LinkLocal),
        ("64:ff9b::7f00:1", Class::Loopback),
        ("64:ff9b:1::7f00:1", Class::Loopback),
        ("64:ff9b:1::a9fe:a9fe", Class::LinkLocal),
        ("64:ff9b:1:2:3::808:808", Class::Nat64LocalUse),
        ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", Class::Nat64LocalUse),
        ("::ffff:0:a00:2", Class::Private),
        ("::7f00:1", Class::Loopback),
        ("2002:7f00:1::", Class::Loopback),
        ("fec0::1", Class::SiteLocal),
        ("feff:ffff::1", Class::SiteLocal),
        ("100::1", Class::Discard),
        ("100::ffff:ffff:ffff:ffff", Class::Discard),
        ("198.18.0.0", Class::Benchmarking),
        ("198.19.255.255", Class::Benchmarking),
    ];
    for (addr, class) in cases {
        assert_eq!(refused(addr), Some(class), "{addr}");
    }
}

#[test]
fn each_embedding_is_decoded() {
    let v4 = Ipv4Addr::new(8, 8, 4, 4);
    let cases = [
        ("::ffff:808:404", Embedding::Mapped),
        ("::808:404", Embedding::Compatible),
        ("::ffff:0:808:404", Embedding::Translated),
        ("64:ff9b::808:404", Embedding::Nat64),
        ("64:ff9b:1::808:404", Embedding::Nat64LocalUse),
        ("2002:808:404:1234::1", Embedding::SixToFour),
    ];
    for (addr, via) in cases {
        let v6: Ipv6Addr = addr.parse().unwrap();
        let got = embedded_ipv4(v6).unwrap_or_else(|| panic!("{addr} not decoded"));
        assert_eq!((got.via, got.first, got.second), (via, v4, None), "{addr}");
    }
    // Teredo: server 65.54.227.120, client 192.0.2.45 obfuscated (RFC 4380 section 4).
    let teredo: Ipv6Addr = "2001:0:4136:e378:8000:63bf:3fff:fdd2".parse().unwrap();
    let got = embedded_ipv4(teredo).unwrap();
    assert_eq!(got.via, Embedding::Teredo);
    assert_eq!(got.first, Ipv4Addr::new(65, 54, 227, 120));
    assert_eq!(got.second, Some(Ipv4Addr::new(192, 0, 2, 45)));
    assert_eq!(
        refused("2001:0:4136:e378:8000:63bf:3fff:fdd2"),
        Some(Class::Documentation)
    );
    // `::` and `::1` are themselves, not IPv4-compatible forms of 0.0.0.0 and 0.0.0.1.
    assert_eq!(embedded_ipv4(Ipv6Addr::UNSPECIFIED), None);
    assert_eq!(embedded_ipv4(Ipv6Addr::LOCALHOST), None);
    assert_eq!(refused("::1"), Some(Class::Loopback));
    assert_eq!(refused("::"), Some(Class::Unspecified));
    assert_eq!(embedded_ipv4("2606:4700::1111".parse().unwrap()), None);
}

#[test]
fn teredo_with_either_address_refused_is_refused() {
    // Server public (8.8.8.8), client 127.0.0.1 (obfuscated 80ff:fffe).
    assert_eq!(refused("2001:0:808:808::80ff:fffe"), Some(Class::Loopback));
    // Server 10.0.0.1, client public 8.8.4.4 (obfuscated f7f7:fbfb).
    assert_eq!(refused("2001:0:a00:1::f7f7:fbfb"), Some(Class::Private));
    assert_eq!(refused("2001:0:808:808::f7f7:fbfb"), None);
}

#[test]
fn allow_opens_one_form_deliberately() {
    let net = |s: &str| s.parse().unwrap();
    // Opening the NAT64 prefix opens the metadata address through it, nothing else.
    let p = Policy::new(&[], &[net("64:ff9b::a9fe:a9fe/128")], &[]);
    assert_eq!(p.check(ip("64:ff9b::a9fe:a9fe")), Ok(()));
    assert_eq!(p.check(ip("169.254.169.254")), Err(Class::LinkLocal));
    assert_eq!(p.check(ip("64:ff9b::7f00:1")), Err(Class::Loopback));
    // Opening an IPv4 block opens its embeddings too: they are the same destination.
    let p = Policy::new(&[], &[net("198.18.0.0/15")], &[]);
    for addr in [
        "198.18.0.1",
        "64:ff9b::c612:1",
        "2002:c612:1::",
        "::ffff:0:c612:1",
    ] {
        assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
    }
    let p = Policy::new(&[], &[net("fec0::/10"), net("64:ff9b:1::/48")], &[]);
    assert_eq!(p.check(ip("fec0::1")), Ok(()));
    assert_eq!(p.check(ip("64:ff9b:1:2::1")), Ok(()));
}

fn v4_in_table(ip: Ipv4Addr) -> bool {
    V4_SPECIAL.iter().any(|(net, len, _)| v4_in(ip, *net, *len))
}

fn v6_special_refused(ip: Ipv6Addr) -> bool {
    classify_v6(ip).is_some()
}

/// An IPv4 block from [`V4_SPECIAL`] and an address inside it.
fn v4_special() -> impl Strategy<Value = Ipv4Addr> {
    (0..V4_SPECIAL.len(), any::<u32>()).prop_map(|(i, host)| {
        let (net, len, _) = V4_SPECIAL[i];
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        Ipv4Addr::from((u32::from(net) & mask) | (host & !mask))
    })
}

/// A globally reachable IPv4 unicast address.
fn v4_public() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>()
        .prop_map(Ipv4Addr::from)
        .prop_filter("public", |ip| !v4_in_table(*ip))
}

/// Every IPv6 form of `v4` (Teredo with a public server and `v4` as the client).
fn embeddings(v4: Ipv4Addr, noise: u64) -> Vec<Ipv6Addr> {
    let x = u128::from(u32::from(v4));
    let public_server = u128::from(u32::from(Ipv4Addr::new(8, 8, 8, 8)));
    vec![
        Ipv6Addr::from(0xffff_0000_0000 | x),
        Ipv6Addr::from(x),
        Ipv6Addr::from(0xffff_0000_0000_0000 | x),
        Ipv6Addr::from((0x64_ff9b_u128 << 96) | x),
        Ipv6Addr::from((0x64_ff9b_0001_u128 << 80) | x),
        Ipv6Addr::from((0x2002_u128 << 112) | (x << 80) | u128::from(noise)),
        Ipv6Addr::from(
            (0x2001_0000_u128 << 96)
                | (public_server << 64)
                | (u128::from(noise as u32) << 32)
                | u128::from(!u32::from(v4)),
        ),
    ]
}

proptest! {
    #[test]
    fn any_v4_special_address_is_refused_unless_allowed(v4 in v4_special()) {
        let p = Policy::default();
        prop_assert!(p.check(IpAddr::V4(v4)).is_err(), "{}", v4);
        let open = Policy::new(&[], &[IpAddr::V4(v4).into()], &[]);
        prop_assert_eq!(open.check(IpAddr::V4(v4)), Ok(()));
    }

    #[test]
    fn every_embedding_of_a_refused_v4_is_refused(v4 in v4_special(), noise in any::<u64>()) {
        let p = Policy::default();
        for v6 in embeddings(v4, noise) {
            prop_assert!(p.check(IpAddr::V6(v6)).is_err(), "{} embeds {}", v6, v4);
        }
    }

    #[test]
    fn a_public_v4_and_its_embeddings_pass(v4 in v4_public(), noise in any::<u64>()) {
        let p = Policy::default();
        prop_assert_eq!(p.check(IpAddr::V4(v4)), Ok(()));
        for v6 in embeddings(v4, noise) {
            prop_assert_eq!(p.check(IpAddr::V6(v6)), Ok(()), "{} embeds {}", v6, v4);
        }
    }

    #[test]
    fn any_v6_special_address_is_refused_unless_allowed(
        i in 0..V6_SPECIAL.len(),
        host in any::<u128>(),
    ) {
        let (net, len, _) = V6_SPECIAL[i];
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        let v6 = Ipv6Addr::from((u128::from(net) & mask) | (host & !mask));
        let reachable = V6_REACHABLE.iter().any(|(n, l)| v6_in(v6, *n, *l));
        let embeds = embedded_ipv4(v6).is_some();
        prop_assume!(!reachable && !embeds);
        prop_assert!(v6_special_refused(v6));
        prop_assert!(Policy::default().check(IpAddr::V6(v6)).is_err(), "{}", v6);
        let open = Policy::new(&[], &[IpAddr::V6(v6).into()], &[]);
        prop_assert_eq!(open.check(IpAddr::V6(v6)), Ok(()));
    }

    #[test]
    fn classify_never_panics(bits in any::<u128>(), v4 in any::<u32>()) {
        let _ = classify(IpAddr::V6(Ipv6Addr::from(bits)));
        let _ = classify(IpAddr::V4(Ipv4Addr::from(v4)));
    }
}
