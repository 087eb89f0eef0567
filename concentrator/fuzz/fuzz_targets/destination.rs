//! Fuzz the destination classifier (`policy::destination`) with arbitrary addresses: it
//! never panics, an IPv6 address that embeds a refused IPv4 address is refused, and every
//! embedded form of a refused IPv4 address is refused.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use mpbond_concentrator::policy::destination::{classify, classify_v4, embedded_ipv4};

/// The IPv6 forms that carry `v4` (Teredo's client part is obfuscated).
fn forms(v4: Ipv4Addr) -> [Ipv6Addr; 6] {
    let a = u128::from(u32::from(v4));
    [
        v4.to_ipv6_mapped(),
        Ipv6Addr::from((0xffff_u128 << 32) | a),
        Ipv6Addr::from((0x0064_ff9b_u128 << 96) | a),
        Ipv6Addr::from((0x0064_ff9b_0001_u128 << 80) | a),
        Ipv6Addr::from((0x2002_u128 << 112) | (a << 80)),
        Ipv6Addr::from((0x2001_0000_u128 << 96) | (a << 64) | u128::from(!u32::from(v4))),
    ]
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = [0u8; 16];
    for (b, d) in bytes.iter_mut().zip(data) {
        *b = *d;
    }
    let v6 = Ipv6Addr::from(bytes);
    let class = classify(IpAddr::V6(v6));
    if let Some(embedded) = embedded_ipv4(v6) {
        for v4 in embedded.addresses() {
            if classify_v4(v4).is_some() {
                assert!(class.is_some(), "{v6} embeds refused {v4} but passes");
            }
        }
    }
    let v4 = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
    if classify_v4(v4).is_some() {
        for form in forms(v4) {
            assert!(
                classify(IpAddr::V6(form)).is_some(),
                "{form} carries refused {v4} but passes"
            );
        }
    }
});
