//! The redirect spec as chains of rules: each [`Rule`] holds its nf_tables expressions and
//! its nft text, so [`render`](super::render) and the netlink encoder share one source.
//!
//! ```text
//! prerouting   (nat, hook prerouting, priority dstnat - 10 = -110, policy accept)
//!   iifname <lan> meta l4proto tcp ct state related,new jump redirect_lan
//!                                                            one per LAN interface
//! redirect_lan
//!   <ip|ip6> <daddr|saddr> <prefix> return                   one per bypass prefix
//!   meta mark & 0x10000000 == 0x10000000 return              bypass by name (name_sets.rs)
//!   meta l4proto tcp redirect to :<port>                     only when redirect is on
//! ```
//!
//! `ct state related,new` changes no match: a nat chain only ever sees the first packet of
//! a connection, whose state is new or related. It is there for its `ct` expression, which
//! holds a conntrack reference on the namespace for as long as the table has LAN rules.
//! Without it the redirect rule's `redir` would hold the only one (when nothing else, such
//! as fw4's `ct state` rules, uses conntrack), and withdrawing the redirect (fail open)
//! would unregister conntrack's hooks once nf_tables frees the old rule, a few ms after
//! the commit. Redirected connections that are still open would then lose their NAT
//! translation: the client answers the listener's untranslated segments with a reset.
//!
//! fw4's `dstnat` chain hooks prerouting at priority `dstnat` (-100). Ours runs just before
//! it and only redirects, so fw4's own NAT still sees every packet we leave alone.

use std::net::IpAddr;

use ipnet::IpNet;

use super::expr::{CtKey, Expr, MetaKey, Verdict, IFNAMSIZ, NF_NAT_RANGE_PROTO_SPECIFIED, REG_1};
use super::name_sets;
use super::RedirectSpec;

/// The base chain hooked at prerouting.
pub(crate) const PREROUTING: &str = "prerouting";
/// The regular chain holding bypasses and the redirect.
pub(crate) const REDIRECT_LAN: &str = "redirect_lan";
/// `NF_INET_PRE_ROUTING`.
pub(crate) const HOOK_PREROUTING: u32 = 0;
/// `NF_IP_PRI_NAT_DST` (-100, nft's `dstnat`) minus 10: just before fw4's dstnat chain.
pub(crate) const PRIORITY: i32 = -110;
/// The base chain's declaration line, as nft prints it.
pub(crate) const PREROUTING_DECL: &str =
    "type nat hook prerouting priority dstnat - 10; policy accept;";

/// `NFPROTO_IPV4` and `NFPROTO_IPV6`, as `meta nfproto` loads them (one byte).
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
/// `IPPROTO_TCP`, as `meta l4proto` loads it (one byte).
const IPPROTO_TCP: u8 = 6;
/// `NF_CT_STATE_BIT(IP_CT_RELATED) | NF_CT_STATE_BIT(IP_CT_NEW)`: `ct state related,new`.
const CT_STATE_RELATED_NEW: u32 = (1 << 2) | (1 << 3);

/// Offsets of the source and destination addresses in the IPv4 and IPv6 headers.
const IP4_SADDR: u32 = 12;
const IP4_DADDR: u32 = 16;
const IP6_SADDR: u32 = 8;
const IP6_DADDR: u32 = 24;

/// Which address a bypass rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Src,
    Dst,
}

/// One rule: the chain it goes in, its expressions and its nft text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) chain: &'static str,
    pub(crate) exprs: Vec<Expr>,
    pub(crate) text: String,
}

/// Every rule of the table in order: prerouting's first, then redirect_lan's, then the
/// UDP chains' (`udp_rules.rs`).
pub(crate) fn rules(spec: &RedirectSpec) -> Vec<Rule> {
    let mut out: Vec<Rule> = spec
        .lan_interfaces
        .iter()
        .map(|name| lan_jump(name))
        .collect();
    out.extend(spec.bypass_dst.iter().map(|net| bypass(Field::Dst, net)));
    out.extend(spec.bypass_src.iter().map(|net| bypass(Field::Src, net)));
    if spec.bypass_names {
        out.push(name_sets::marked_return(REDIRECT_LAN));
    }
    if spec.redirect {
        out.push(redirect(spec.port));
    }
    out.extend(super::udp_rules::udp_rules(spec));
    if spec.bypass_names {
        out.push(name_sets::clear_rule());
    }
    out
}

/// `iifname "<name>"`: the interface name, zero-padded to `IFNAMSIZ`.
pub(super) fn iifname_is(name: &str) -> Vec<Expr> {
    let mut ifname = [0u8; IFNAMSIZ];
    for (dst, src) in ifname.iter_mut().zip(name.bytes()) {
        *dst = src;
    }
    vec![
        Expr::Meta {
            key: MetaKey::IifName,
            dreg: REG_1,
        },
        Expr::CmpEq {
            sreg: REG_1,
            data: ifname.to_vec(),
        },
    ]
}

/// `iifname "<name>" meta l4proto tcp ct state related,new jump redirect_lan`
fn lan_jump(name: &str) -> Rule {
    let mut exprs = iifname_is(name);
    exprs.extend(is_tcp());
    exprs.extend([
        Expr::Ct {
            key: CtKey::State,
            dreg: REG_1,
        },
        Expr::Mask {
            sreg: REG_1,
            dreg: REG_1,
            mask: CT_STATE_RELATED_NEW.to_ne_bytes().to_vec(),
        },
        Expr::CmpNeq {
            sreg: REG_1,
            data: vec![0; 4],
        },
    ]);
    exprs.push(Expr::Verdict(Verdict::Jump(REDIRECT_LAN.to_owned())));
    let text =
        format!("iifname \"{name}\" meta l4proto tcp ct state related,new jump {REDIRECT_LAN}");
    Rule {
        chain: PREROUTING,
        exprs,
        text,
    }
}

/// `ip daddr 10.0.0.0/8 return` and the like. Host bits of `net` are ignored.
pub(crate) fn bypass(field: Field, net: &IpNet) -> Rule {
    let net = net.trunc();
    let (nfproto, family, offset, addr) = match (net.network(), field) {
        (IpAddr::V4(a), Field::Src) => (NFPROTO_IPV4, "ip", IP4_SADDR, a.octets().to_vec()),
        (IpAddr::V4(a), Field::Dst) => (NFPROTO_IPV4, "ip", IP4_DADDR, a.octets().to_vec()),
        (IpAddr::V6(a), Field::Src) => (NFPROTO_IPV6, "ip6", IP6_SADDR, a.octets().to_vec()),
        (IpAddr::V6(a), Field::Dst) => (NFPROTO_IPV6, "ip6", IP6_DADDR, a.octets().to_vec()),
    };
    let mut exprs = vec![
        Expr::Meta {
            key: MetaKey::NfProto,
            dreg: REG_1,
        },
        Expr::CmpEq {
            sreg: REG_1,
            data: vec![nfproto],
        },
    ];
    let prefix = usize::from(net.prefix_len());
    let text = if prefix == 0 {
        // The whole family: nothing to load.
        format!(
            "meta nfproto ipv{} return",
            if nfproto == NFPROTO_IPV4 { 4 } else { 6 }
        )
    } else {
        let len = addr.len() as u32;
        exprs.push(Expr::NetworkPayload {
            dreg: REG_1,
            offset,
            len,
        });
        if prefix < addr.len() * 8 {
            exprs.push(Expr::Mask {
                sreg: REG_1,
                dreg: REG_1,
                mask: prefix_mask(prefix, addr.len()),
            });
        }
        exprs.push(Expr::CmpEq {
            sreg: REG_1,
            data: addr,
        });
        let what = if field == Field::Src {
            "saddr"
        } else {
            "daddr"
        };
        if prefix == usize::from(net.max_prefix_len()) {
            format!("{family} {what} {} return", net.addr())
        } else {
            format!("{family} {what} {net} return")
        }
    };
    exprs.push(Expr::Verdict(Verdict::Return));
    Rule {
        chain: REDIRECT_LAN,
        exprs,
        text,
    }
}

/// `meta l4proto tcp redirect to :<port>`: both families, to the primary address of the
/// interface the packet came in on.
fn redirect(port: u16) -> Rule {
    let mut exprs = is_tcp().to_vec();
    exprs.push(Expr::Immediate {
        dreg: REG_1,
        data: port.to_be_bytes().to_vec(),
    });
    exprs.push(Expr::Redir {
        reg_proto_min: REG_1,
        flags: NF_NAT_RANGE_PROTO_SPECIFIED,
    });
    let text = format!("meta l4proto tcp redirect to :{port}");
    Rule {
        chain: REDIRECT_LAN,
        exprs,
        text,
    }
}

/// `meta l4proto tcp`
fn is_tcp() -> [Expr; 2] {
    [
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG_1,
        },
        Expr::CmpEq {
            sreg: REG_1,
            data: vec![IPPROTO_TCP],
        },
    ]
}

/// `len` bytes with the first `prefix` bits set.
pub(crate) fn prefix_mask(prefix: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let bits = prefix.saturating_sub(i * 8).min(8);
            if bits == 0 {
                0
            } else {
                0xffu8 << (8 - bits)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(redirect: bool) -> RedirectSpec {
        RedirectSpec {
            table: "mpbond".into(),
            lan_interfaces: vec!["br-lan".into()],
            port: 4851,
            bypass_dst: vec![
                "10.1.2.3/8".parse().expect("net"),
                "fc00::/7".parse().expect("net"),
            ],
            bypass_src: vec!["192.168.1.50/32".parse().expect("net")],
            redirect,
            udp: None,
            bypass_names: false,
        }
    }

    #[test]
    fn masks_cover_the_prefix() {
        assert_eq!(prefix_mask(8, 4), vec![255, 0, 0, 0]);
        assert_eq!(prefix_mask(7, 4), vec![254, 0, 0, 0]);
        assert_eq!(prefix_mask(20, 4), vec![255, 255, 240, 0]);
        assert_eq!(prefix_mask(0, 2), vec![0, 0]);
        assert_eq!(prefix_mask(16, 2), vec![255, 255]);
    }

    #[test]
    fn rules_follow_the_spec_order() {
        let texts: Vec<_> = rules(&spec(true))
            .into_iter()
            .map(|r| (r.chain, r.text))
            .collect();
        let want = [
            (
                PREROUTING,
                "iifname \"br-lan\" meta l4proto tcp ct state related,new jump redirect_lan",
            ),
            (REDIRECT_LAN, "ip daddr 10.0.0.0/8 return"),
            (REDIRECT_LAN, "ip6 daddr fc00::/7 return"),
            (REDIRECT_LAN, "ip saddr 192.168.1.50 return"),
            (REDIRECT_LAN, "meta l4proto tcp redirect to :4851"),
        ];
        let want: Vec<_> = want.iter().map(|(c, t)| (*c, (*t).to_owned())).collect();
        assert_eq!(texts, want);
    }

    #[test]
    fn every_lan_jump_uses_conntrack() {
        for rule in rules(&spec(false)).iter().filter(|r| r.chain == PREROUTING) {
            assert!(rule.exprs.contains(&Expr::Ct {
                key: CtKey::State,
                dreg: REG_1
            }));
        }
    }

    #[test]
    fn fail_open_drops_only_the_redirect() {
        let on = rules(&spec(true));
        let off = rules(&spec(false));
        assert_eq!(off.len() + 1, on.len());
        assert_eq!(off[..], on[..off.len()]);
        assert!(off
            .iter()
            .all(|r| !r.exprs.iter().any(|e| matches!(e, Expr::Redir { .. }))));
    }

    #[test]
    fn v4_prefix_loads_masks_and_compares() {
        let rule = bypass(Field::Dst, &"10.9.9.9/8".parse().expect("net"));
        assert_eq!(
            rule.exprs,
            vec![
                Expr::Meta {
                    key: MetaKey::NfProto,
                    dreg: REG_1
                },
                Expr::CmpEq {
                    sreg: REG_1,
                    data: vec![2]
                },
                Expr::NetworkPayload {
                    dreg: REG_1,
                    offset: 16,
                    len: 4
                },
                Expr::Mask {
                    sreg: REG_1,
                    dreg: REG_1,
                    mask: vec![255, 0, 0, 0]
                },
                Expr::CmpEq {
                    sreg: REG_1,
                    data: vec![10, 0, 0, 0]
                },
                Expr::Verdict(Verdict::Return),
            ]
        );
    }

    #[test]
    fn host_prefix_has_no_mask_and_v6_uses_16_bytes() {
        let rule = bypass(Field::Src, &"2001:db8::1/128".parse().expect("net"));
        assert_eq!(rule.text, "ip6 saddr 2001:db8::1 return");
        assert!(rule.exprs.contains(&Expr::NetworkPayload {
            dreg: REG_1,
            offset: 8,
            len: 16
        }));
        assert!(!rule.exprs.iter().any(|e| matches!(e, Expr::Mask { .. })));
        assert!(rule.exprs.contains(&Expr::CmpEq {
            sreg: REG_1,
            data: vec![10]
        }));
    }

    #[test]
    fn zero_prefix_matches_the_family() {
        let rule = bypass(Field::Dst, &"::/0".parse().expect("net"));
        assert_eq!(rule.text, "meta nfproto ipv6 return");
        assert_eq!(rule.exprs.len(), 3);
    }

    #[test]
    fn lan_jump_compares_a_padded_ifname_and_redirect_loads_the_port() {
        let rule = lan_jump("br-lan");
        let mut name = b"br-lan".to_vec();
        name.resize(16, 0);
        assert_eq!(
            rule.exprs[1],
            Expr::CmpEq {
                sreg: REG_1,
                data: name
            }
        );
        let rule = redirect(4851);
        assert_eq!(
            rule.exprs[2],
            Expr::Immediate {
                dreg: REG_1,
                data: vec![0x12, 0xf3]
            }
        );
        assert_eq!(
            rule.exprs[3],
            Expr::Redir {
                reg_proto_min: REG_1,
                flags: 2
            }
        );
    }
}
