//! The UDP interception as chains of rules, built from the spec's [`UdpRedirect`]:
//!
//! ```text
//! udp_prerouting   (filter, hook prerouting, priority mangle - 10 = -160, policy accept)
//!   iifname <lan> meta l4proto udp jump udp_lan              one per LAN interface
//! udp_lan
//!   fib daddr type != unicast return       the router itself (DHCP, DNS, NTP to it),
//!                                          broadcast, multicast (mDNS)
//!   <ip|ip6> <daddr|saddr> <prefix> return the TCP redirect's bypass lists
//!   meta mark & 0x10000000 == 0x10000000 return        bypass by name (name_sets.rs)
//!   [ip daddr <prefix>] [udp dport <ports>] reject | return | tproxy...   [udp] rules
//!   meta l4proto udp tproxy to :<port> meta mark set <mark> accept        the default
//! ```
//!
//! `tproxy` hands the packet to the agent's transparent UDP socket on that port, or, when
//! no such socket exists (the agent died, or has not bound it yet), stops the rule there:
//! the mark is set only after a socket took the packet, so an unmarked packet goes on to
//! the router's NAT. Together with the owner table (gone with the agent's netlink socket)
//! a dead agent leaves no UDP black hole. While the concentrator is unreachable (fail
//! open), `bond` becomes `return`: nothing is tproxied, `block` still rejects.
//!
//! The mark routes the packet to the `local default dev lo` table of the agent's policy
//! rule (`udp::routing`), so it is delivered locally instead of forwarded.

use std::net::IpAddr;

use super::expr::{Expr, MetaKey, Verdict, REG_1, RTN_UNICAST};
use super::rules::{bypass, Field, Rule};
use super::RedirectSpec;
use crate::config::udp::{UdpAction, UdpRule};
use crate::model::udp_plan::UdpRedirect;

/// The base chain hooked at prerouting for UDP.
pub(crate) const UDP_PREROUTING: &str = "udp_prerouting";
/// The regular chain holding the UDP bypasses, rules and the tproxy.
pub(crate) const UDP_LAN: &str = "udp_lan";
/// `NF_IP_PRI_MANGLE` (-150) minus 10.
pub(crate) const UDP_PRIORITY: i32 = -160;
/// The base chain's declaration line, as nft prints it.
pub(crate) const UDP_PREROUTING_DECL: &str =
    "type filter hook prerouting priority mangle - 10; policy accept;";

/// `IPPROTO_UDP`.
const IPPROTO_UDP: u8 = 17;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
/// Offsets of the destination address in the IPv4 and IPv6 headers.
const IP4_DADDR: u32 = 16;
const IP6_DADDR: u32 = 24;

/// Every UDP rule of the table in order (none without `spec.udp`).
pub(crate) fn udp_rules(spec: &RedirectSpec) -> Vec<Rule> {
    let Some(udp) = &spec.udp else {
        return Vec::new();
    };
    let mut out: Vec<Rule> = spec.lan_interfaces.iter().map(|n| lan_jump(n)).collect();
    out.push(not_unicast());
    let chain = |mut rule: Rule| {
        rule.chain = UDP_LAN;
        rule
    };
    out.extend(spec.bypass_dst.iter().map(|n| chain(bypass(Field::Dst, n))));
    out.extend(spec.bypass_src.iter().map(|n| chain(bypass(Field::Src, n))));
    if spec.bypass_names {
        out.push(super::name_sets::marked_return(UDP_LAN));
    }
    for rule in &udp.rules {
        out.push(policy_rule(rule, udp, spec.redirect));
    }
    out.push(action_rule(
        Vec::new(),
        String::new(),
        udp.default,
        udp,
        spec.redirect,
    ));
    out
}

/// `iifname "<name>" meta l4proto udp jump udp_lan`
fn lan_jump(name: &str) -> Rule {
    let mut exprs = super::rules::iifname_is(name);
    exprs.extend(is_udp());
    exprs.push(Expr::Verdict(Verdict::Jump(UDP_LAN.to_owned())));
    Rule {
        chain: UDP_PREROUTING,
        exprs,
        text: format!("iifname \"{name}\" meta l4proto udp jump {UDP_LAN}"),
    }
}

/// `fib daddr type != unicast return`
fn not_unicast() -> Rule {
    Rule {
        chain: UDP_LAN,
        exprs: vec![
            Expr::FibDaddrType { dreg: REG_1 },
            Expr::CmpNeq {
                sreg: REG_1,
                data: RTN_UNICAST.to_ne_bytes().to_vec(),
            },
            Expr::Verdict(Verdict::Return),
        ],
        text: "fib daddr type != unicast return".to_owned(),
    }
}

/// One `[[udp.rule]]`: its matches, then its action.
fn policy_rule(rule: &UdpRule, udp: &UdpRedirect, redirect: bool) -> Rule {
    let mut exprs = Vec::new();
    let mut text = Vec::new();
    if let Some(net) = rule.prefix {
        let (nfproto, family, offset, addr) = match net.network() {
            IpAddr::V4(a) => (NFPROTO_IPV4, "ip", IP4_DADDR, a.octets().to_vec()),
            IpAddr::V6(a) => (NFPROTO_IPV6, "ip6", IP6_DADDR, a.octets().to_vec()),
        };
        exprs.push(Expr::Meta {
            key: MetaKey::NfProto,
            dreg: REG_1,
        });
        exprs.push(Expr::CmpEq {
            sreg: REG_1,
            data: vec![nfproto],
        });
        let prefix = usize::from(net.prefix_len());
        if prefix > 0 {
            exprs.push(Expr::NetworkPayload {
                dreg: REG_1,
                offset,
                len: addr.len() as u32,
            });
            if prefix < addr.len() * 8 {
                exprs.push(Expr::Mask {
                    sreg: REG_1,
                    dreg: REG_1,
                    mask: super::rules::prefix_mask(prefix, addr.len()),
                });
            }
            exprs.push(Expr::CmpEq {
                sreg: REG_1,
                data: addr,
            });
            text.push(format!("{family} daddr {net}"));
        } else {
            text.push(format!(
                "meta nfproto ipv{}",
                if family == "ip" { 4 } else { 6 }
            ));
        }
    }
    if let Some((first, last)) = rule.ports {
        exprs.extend(is_udp());
        exprs.push(Expr::TransportPayload {
            dreg: REG_1,
            offset: 2,
            len: 2,
        });
        if first == last {
            exprs.push(Expr::CmpEq {
                sreg: REG_1,
                data: first.to_be_bytes().to_vec(),
            });
            text.push(format!("udp dport {first}"));
        } else {
            exprs.push(Expr::Range {
                sreg: REG_1,
                from: first.to_be_bytes().to_vec(),
                to: last.to_be_bytes().to_vec(),
            });
            text.push(format!("udp dport {first}-{last}"));
        }
    }
    action_rule(exprs, text.join(" "), rule.action, udp, redirect)
}

/// `matches` followed by what `action` does (`bond` is `return` while failing open).
fn action_rule(
    mut exprs: Vec<Expr>,
    matches: String,
    action: UdpAction,
    udp: &UdpRedirect,
    redirect: bool,
) -> Rule {
    let action = match action {
        // A protected flow is a bonded one to nft: both go to the transparent socket.
        UdpAction::Bond | UdpAction::Protect if !redirect => UdpAction::Direct,
        UdpAction::Protect => UdpAction::Bond,
        other => other,
    };
    let what = match action {
        UdpAction::Direct => {
            exprs.push(Expr::Verdict(Verdict::Return));
            "return".to_owned()
        }
        UdpAction::Block => {
            exprs.push(Expr::RejectPortUnreachable);
            "reject".to_owned()
        }
        UdpAction::Bond | UdpAction::Protect => {
            if matches.is_empty() {
                exprs.extend(is_udp());
            }
            exprs.push(Expr::Immediate {
                dreg: REG_1,
                data: udp.port.to_be_bytes().to_vec(),
            });
            exprs.push(Expr::Tproxy { reg_port: REG_1 });
            exprs.push(Expr::Immediate {
                dreg: REG_1,
                data: udp.fwmark.to_ne_bytes().to_vec(),
            });
            exprs.push(Expr::MetaSet {
                key: MetaKey::Mark,
                sreg: REG_1,
            });
            exprs.push(Expr::Verdict(Verdict::Accept));
            let tproxy = format!(
                "tproxy to :{} meta mark set {:#010x} accept",
                udp.port, udp.fwmark
            );
            if matches.is_empty() {
                format!("meta l4proto udp {tproxy}")
            } else {
                tproxy
            }
        }
    };
    let text = if matches.is_empty() {
        what
    } else {
        format!("{matches} {what}")
    };
    Rule {
        chain: UDP_LAN,
        exprs,
        text,
    }
}

/// `meta l4proto udp`
fn is_udp() -> [Expr; 2] {
    [
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG_1,
        },
        Expr::CmpEq {
            sreg: REG_1,
            data: vec![IPPROTO_UDP],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(redirect: bool, rules: Vec<UdpRule>, default: UdpAction) -> RedirectSpec {
        RedirectSpec {
            table: "mpbond".into(),
            lan_interfaces: vec!["br-lan".into()],
            port: 4851,
            bypass_dst: vec!["10.0.0.0/8".parse().expect("net")],
            bypass_src: vec![],
            redirect,
            udp: Some(UdpRedirect {
                port: 4852,
                fwmark: 0x4d42,
                rules,
                default,
            }),
            bypass_names: false,
        }
    }

    fn texts(spec: &RedirectSpec) -> Vec<String> {
        udp_rules(spec).into_iter().map(|r| r.text).collect()
    }

    fn rule(ports: Option<(u16, u16)>, prefix: Option<&str>, action: UdpAction) -> UdpRule {
        UdpRule {
            ports,
            prefix: prefix.map(|p| p.parse().expect("net")),
            action,
            mode: Default::default(),
        }
    }

    #[test]
    fn default_bond_tproxies_after_the_exclusions() {
        assert_eq!(
            texts(&spec(true, vec![], UdpAction::Bond)),
            [
                "iifname \"br-lan\" meta l4proto udp jump udp_lan",
                "fib daddr type != unicast return",
                "ip daddr 10.0.0.0/8 return",
                "meta l4proto udp tproxy to :4852 meta mark set 0x00004d42 accept",
            ]
        );
    }

    #[test]
    fn the_mark_is_set_only_after_tproxy_found_a_socket() {
        let rules = udp_rules(&spec(true, vec![], UdpAction::Bond));
        let last = &rules.last().expect("rule").exprs;
        let tproxy = last.iter().position(|e| matches!(e, Expr::Tproxy { .. }));
        let mark = last.iter().position(|e| matches!(e, Expr::MetaSet { .. }));
        assert!(tproxy.expect("tproxy") < mark.expect("mark set"));
    }

    #[test]
    fn rules_render_in_order_and_fail_open_keeps_only_blocks() {
        let rules = vec![
            rule(Some((443, 443)), None, UdpAction::Block),
            rule(Some((3478, 3481)), Some("203.0.113.0/24"), UdpAction::Bond),
            rule(None, Some("2001:db8::/32"), UdpAction::Direct),
        ];
        let on = texts(&spec(true, rules.clone(), UdpAction::Bond));
        assert_eq!(
            on[3..],
            [
                "udp dport 443 reject",
                "ip daddr 203.0.113.0/24 udp dport 3478-3481 tproxy to :4852 meta mark set 0x00004d42 accept",
                "ip6 daddr 2001:db8::/32 return",
                "meta l4proto udp tproxy to :4852 meta mark set 0x00004d42 accept",
            ]
        );
        let off = udp_rules(&spec(false, rules, UdpAction::Bond));
        assert!(off
            .iter()
            .all(|r| !r.exprs.iter().any(|e| matches!(e, Expr::Tproxy { .. }))));
        assert!(off
            .iter()
            .any(|r| r.exprs.contains(&Expr::RejectPortUnreachable)));
        assert_eq!(off.last().expect("default").text, "return");
    }

    #[test]
    fn protect_tproxies_as_bond_and_fails_open_as_direct() {
        let rules = vec![rule(Some((3478, 3497)), None, UdpAction::Protect)];
        let on = texts(&spec(true, rules.clone(), UdpAction::Protect));
        assert_eq!(
            on[3..],
            [
                "udp dport 3478-3497 tproxy to :4852 meta mark set 0x00004d42 accept",
                "meta l4proto udp tproxy to :4852 meta mark set 0x00004d42 accept",
            ]
        );
        let off = texts(&spec(false, rules, UdpAction::Protect));
        assert_eq!(off[3..], ["udp dport 3478-3497 return", "return"]);
    }

    #[test]
    fn disabled_udp_has_no_rules() {
        let mut s = spec(true, vec![], UdpAction::Bond);
        s.udp = None;
        assert!(udp_rules(&s).is_empty());
    }
}
