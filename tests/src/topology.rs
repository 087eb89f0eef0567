//! The test bed's address plan, rendered as `ip`/`tc` batch scripts, sysctls and
//! nft rulesets. Pure: nothing here touches the system, so it is unit tested.
//!
//! ```text
//!  lan ── router ──wan1── isp1 ──┐
//!                 └─wan2── isp2 ──┤ core ── vps     (192.0.2.1, 2001:db8:100::1)
//!                   ...          └──── ── server  (203.0.113.10, 2001:db8:200::10)
//! ```
//! Transit nets: ISP i ↔ core 10.250.i.0/30 and 2001:db8:250:i::/64, core ↔ VPS
//! 10.250.100.0/30, core ↔ server 10.250.200.0/30. The VPS and the server hold
//! their public addresses on `lo` and use them as the source of their default route.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// LAN client.
pub const LAN_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
/// Router, LAN side.
pub const LAN_ROUTER_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
/// LAN client, IPv6.
pub const LAN_CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x50, 0, 0, 0, 0, 2);
/// Router, LAN side, IPv6.
pub const LAN_ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x50, 0, 0, 0, 0, 1);
/// The concentrator's VPS.
pub const VPS_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The VPS, IPv6.
pub const VPS_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
/// The internet server.
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The internet server, IPv6.
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 0x10);
/// The server's transit address: private, so the concentrator must refuse it.
pub const SERVER_TRANSIT_V4: Ipv4Addr = Ipv4Addr::new(10, 250, 200, 2);
/// The VPS's transit address: private, so the concentrator must refuse it.
pub const VPS_TRANSIT_V4: Ipv4Addr = Ipv4Addr::new(10, 250, 100, 2);
/// Most WANs the plan supports.
pub const MAX_WANS: usize = 9;
/// The router's LAN interface.
pub const ROUTER_LAN_IF: &str = "br-lan";

/// One namespace of the test bed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// The LAN client.
    Lan,
    /// The OpenWrt router (runs the agent).
    Router,
    /// ISP `i` (1-based).
    Isp(usize),
    /// The internet backbone.
    Core,
    /// The VPS (runs the concentrator).
    Vps,
    /// The internet server.
    Server,
}

impl Node {
    /// The role part of the namespace name.
    pub fn role(self) -> String {
        match self {
            Self::Lan => "lan".into(),
            Self::Router => "router".into(),
            Self::Isp(i) => format!("isp{i}"),
            Self::Core => "core".into(),
            Self::Vps => "vps".into(),
            Self::Server => "server".into(),
        }
    }
}

/// Router address on WAN `i`.
pub fn wan_router_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, i as u8, 2)
}
/// ISP `i`'s address toward the router.
pub fn wan_isp_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, i as u8, 1)
}
/// Router IPv6 address on WAN `i` (2001:db8:20i::2).
pub fn wan_router_v6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, wan_v6_group(i), 0, 0, 0, 0, 2)
}
/// ISP `i`'s IPv6 address toward the router.
pub fn wan_isp_v6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, wan_v6_group(i), 0, 0, 0, 0, 1)
}
fn wan_v6_group(i: usize) -> u16 {
    // "20i" read as hex, as in the brief: WAN 1 is 2001:db8:201::/64.
    0x200 + i as u16
}

/// A veth pair: `a_if` in `a`, `b_if` in `b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// One end's namespace.
    pub a: Node,
    /// One end's interface name.
    pub a_if: String,
    /// The other end's namespace.
    pub b: Node,
    /// The other end's interface name.
    pub b_if: String,
}

/// The plan for `rates.len()` WANs, `rates[i-1]` Mbit/s each (0 = unshaped).
#[derive(Debug, Clone)]
pub struct Plan {
    /// WAN rates in Mbit/s.
    pub rates: Vec<u32>,
    /// TCP congestion control for every namespace.
    pub congestion_control: String,
    /// TBF queue length, as time at the WAN's rate.
    pub tbf_latency_ms: u32,
    /// TCP Fast Open: when true the VPS serves it (`tcp_fastopen=3`) and the
    /// router keeps the kernel default (client on); when false both get 0, and
    /// the kernel turns TCP_FASTOPEN_CONNECT into a plain handshake.
    pub fast_open: bool,
    /// The agent owns per-WAN routing: the router gets no per-WAN tables, rules,
    /// MPTCP endpoints or limits, but a main-table default route per WAN with
    /// metric [`wan_metric`] (as netifd adds them), from which the agent learns
    /// the gateways. WAN 1's (metric 0) stays the one NAT traffic follows.
    pub agent_routing: bool,
}

impl Plan {
    /// Every namespace, in creation order.
    pub fn nodes(&self) -> Vec<Node> {
        let mut nodes = vec![Node::Lan, Node::Router];
        nodes.extend((1..=self.rates.len()).map(Node::Isp));
        nodes.extend([Node::Core, Node::Vps, Node::Server]);
        nodes
    }

    /// Every veth pair.
    pub fn links(&self) -> Vec<Link> {
        let link = |a, a_if: &str, b, b_if: &str| Link {
            a,
            a_if: a_if.into(),
            b,
            b_if: b_if.into(),
        };
        let mut links = vec![link(Node::Lan, "eth0", Node::Router, ROUTER_LAN_IF)];
        for i in 1..=self.rates.len() {
            links.push(link(Node::Router, &format!("wan{i}"), Node::Isp(i), "cust"));
            links.push(link(Node::Isp(i), "uplink", Node::Core, &format!("isp{i}")));
        }
        links.push(link(Node::Core, "vps", Node::Vps, "eth0"));
        links.push(link(Node::Core, "srv", Node::Server, "eth0"));
        links
    }

    /// `sysctl -w` arguments for `node`.
    pub fn sysctls(&self, node: Node) -> Vec<String> {
        let mut s: Vec<String> = [
            "net.mptcp.enabled=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        s.push(format!(
            "net.ipv4.tcp_congestion_control={}",
            self.congestion_control
        ));
        if matches!(node, Node::Router | Node::Isp(_) | Node::Core) {
            s.push("net.ipv4.ip_forward=1".into());
            s.push("net.ipv6.conf.all.forwarding=1".into());
        }
        match (node, self.fast_open) {
            (Node::Vps, true) => s.push("net.ipv4.tcp_fastopen=3".into()),
            (Node::Vps | Node::Router, false) => s.push("net.ipv4.tcp_fastopen=0".into()),
            _ => {}
        }
        s
    }

    /// The `ip -batch` script that configures `node` once its links exist.
    pub fn ip_script(&self, node: Node) -> String {
        let all = self.all_ip_lines(node);
        all.lines()
            .filter(|l| !l.starts_with("-6 "))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// The `ip -6 -batch` script for `node`: the lines where `ip` would
    /// otherwise assume IPv4 (default routes, rules).
    pub fn ip6_script(&self, node: Node) -> String {
        let all = self.all_ip_lines(node);
        all.lines()
            .filter_map(|l| l.strip_prefix("-6 "))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// Every `ip` line; those for `ip -6` start with `-6 `.
    fn all_ip_lines(&self, node: Node) -> String {
        let mut s = String::from("link set lo up\n");
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        let wans = 1..=self.rates.len();
        match node {
            Node::Lan => {
                line("link set eth0 up".into());
                line(format!("addr add {LAN_CLIENT_V4}/24 dev eth0"));
                line(format!("addr add {LAN_CLIENT_V6}/64 dev eth0 nodad"));
                line(format!("route add default via {LAN_ROUTER_V4}"));
                line(format!("-6 route add default via {LAN_ROUTER_V6}"));
            }
            Node::Router => {
                line(format!("link set {ROUTER_LAN_IF} up"));
                line(format!("addr add {LAN_ROUTER_V4}/24 dev {ROUTER_LAN_IF}"));
                line(format!(
                    "addr add {LAN_ROUTER_V6}/64 dev {ROUTER_LAN_IF} nodad"
                ));
                if !self.agent_routing {
                    line("mptcp limits set subflows 8 add_addr_accepted 8".into());
                }
                for i in wans {
                    if self.agent_routing {
                        for l in router_wan_lines(i, true) {
                            line(l);
                        }
                        continue;
                    }
                    let (dev, t) = (format!("wan{i}"), 100 + i);
                    let (r4, r6) = (wan_router_v4(i), wan_router_v6(i));
                    let (g4, g6) = (wan_isp_v4(i), wan_isp_v6(i));
                    line(format!("link set {dev} up"));
                    line(format!("addr add {r4}/24 dev {dev}"));
                    line(format!("addr add {r6}/64 dev {dev} nodad"));
                    if i == 1 {
                        line(format!("route add default via {g4} dev {dev}"));
                        line(format!("-6 route add default via {g6} dev {dev}"));
                    }
                    line(format!(
                        "route add 10.200.{i}.0/24 dev {dev} src {r4} table {t}"
                    ));
                    line(format!("route add default via {g4} dev {dev} table {t}"));
                    line(format!("route add {}/64 dev {dev} table {t}", net64(r6)));
                    line(format!("-6 route add default via {g6} dev {dev} table {t}"));
                    line(format!("rule add from {r4} table {t}"));
                    line(format!("-6 rule add from {r6} table {t}"));
                    line(format!(
                        "mptcp endpoint add {r4} dev {dev} id {} subflow",
                        BED_ENDPOINT_V4 + i
                    ));
                    line(format!(
                        "mptcp endpoint add {r6} dev {dev} id {} subflow",
                        BED_ENDPOINT_V6 + i
                    ));
                }
            }
            Node::Isp(i) => {
                line("link set cust up".into());
                line("link set uplink up".into());
                line(format!("addr add {}/24 dev cust", wan_isp_v4(i)));
                line(format!("addr add {}/64 dev cust nodad", wan_isp_v6(i)));
                line(format!("addr add 10.250.{i}.2/30 dev uplink"));
                line(format!("addr add 2001:db8:250:{i}::2/64 dev uplink nodad"));
                line(format!("route add default via 10.250.{i}.1"));
                line(format!("-6 route add default via 2001:db8:250:{i}::1"));
            }
            Node::Core => {
                for i in wans {
                    for l in core_wan_lines(i) {
                        line(l);
                    }
                }
                for (dev, n, v4net, v6net) in [
                    ("vps", 100, "192.0.2.0/24", "2001:db8:100::/48"),
                    ("srv", 200, "203.0.113.0/24", "2001:db8:200::/48"),
                ] {
                    line(format!("link set {dev} up"));
                    line(format!("addr add 10.250.{n}.1/30 dev {dev}"));
                    line(format!("addr add 2001:db8:250:{n}::1/64 dev {dev} nodad"));
                    line(format!("route add {v4net} via 10.250.{n}.2"));
                    line(format!("route add {v6net} via 2001:db8:250:{n}::2"));
                }
            }
            Node::Vps | Node::Server => {
                let (n, v4, v6) = if node == Node::Vps {
                    (100, IpAddr::V4(VPS_V4), IpAddr::V6(VPS_V6))
                } else {
                    (200, IpAddr::V4(SERVER_V4), IpAddr::V6(SERVER_V6))
                };
                line(format!("addr add {v4}/32 dev lo"));
                // nodad: without it the address is tentative until the DAD work runs,
                // and the route below with `src` can fail with "Invalid source address".
                line(format!("addr add {v6}/128 dev lo nodad"));
                line("link set eth0 up".into());
                line(format!("addr add 10.250.{n}.2/30 dev eth0"));
                line(format!("addr add 2001:db8:250:{n}::2/64 dev eth0 nodad"));
                line(format!("route add default via 10.250.{n}.1 src {v4}"));
                line(format!(
                    "-6 route add default via 2001:db8:250:{n}::1 src {v6}"
                ));
                if node == Node::Vps {
                    line("mptcp limits set subflows 8 add_addr_accepted 8".into());
                }
            }
        }
        s
    }

    /// The `tc -batch` script for `node` (empty if it shapes nothing).
    pub fn tc_script(&self, node: Node) -> String {
        let mut s = String::new();
        let mut shape = |dev: &str, rate: u32| {
            if rate > 0 {
                let _ = writeln!(
                    s,
                    "qdisc add dev {dev} root tbf rate {rate}mbit burst {} latency {}ms",
                    tbf_burst(rate),
                    self.tbf_latency_ms
                );
            }
        };
        match node {
            Node::Router => {
                for (i, &rate) in self.rates.iter().enumerate() {
                    shape(&format!("wan{}", i + 1), rate);
                }
            }
            Node::Isp(i) => shape("cust", self.rates.get(i - 1).copied().unwrap_or(0)),
            _ => {}
        }
        s
    }

    /// The nft ruleset for `node`, if any: the router's ordinary NAT (like fw4).
    pub fn nft_ruleset(&self, node: Node) -> Option<String> {
        (node == Node::Router).then(|| {
            "table inet mpbt_nat {\n\
             \tchain postrouting {\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\toifname \"wan*\" masquerade\n\
             \t}\n\
             }\n"
            .to_owned()
        })
    }
}

/// The bed's own MPTCP endpoint ids (without agent routing) are this plus the
/// WAN number for IPv4 ...
pub const BED_ENDPOINT_V4: usize = 20;
/// ... and this plus the WAN number for IPv6: outside the agent's ids 1..=8.
pub const BED_ENDPOINT_V6: usize = 40;

/// Metric of WAN `i`'s main-table default route under agent routing: 0 for
/// WAN 1 (the route NAT follows), `10 × i` for the others.
pub fn wan_metric(i: usize) -> usize {
    if i == 1 {
        0
    } else {
        10 * i
    }
}

/// The router's `ip` lines for WAN `i` under agent routing (`-6 ` prefix for
/// `ip -6`): link up (when `link`), its addresses, then its main-table default
/// routes, as DHCP and netifd would set them.
pub fn router_wan_lines(i: usize, link: bool) -> Vec<String> {
    let dev = format!("wan{i}");
    let mut l = Vec::new();
    if link {
        l.push(format!("link set {dev} up"));
    }
    l.push(format!("addr add {}/24 dev {dev}", wan_router_v4(i)));
    l.push(format!("addr add {}/64 dev {dev} nodad", wan_router_v6(i)));
    l.extend(router_default_lines(i, wan_isp_v4(i)));
    l
}

/// WAN `i`'s main-table default routes (`replace`, so re-running is harmless),
/// via `gw4` and the ISP's IPv6 address.
pub fn router_default_lines(i: usize, gw4: Ipv4Addr) -> Vec<String> {
    let (dev, metric) = (format!("wan{i}"), wan_metric(i));
    vec![
        format!("route replace default via {gw4} dev {dev} metric {metric}"),
        format!(
            "-6 route replace default via {} dev {dev} metric {metric}",
            wan_isp_v6(i)
        ),
    ]
}

/// The core's `ip` lines for its side of ISP `i`.
pub fn core_wan_lines(i: usize) -> Vec<String> {
    vec![
        format!("link set isp{i} up"),
        format!("addr add 10.250.{i}.1/30 dev isp{i}"),
        format!("addr add 2001:db8:250:{i}::1/64 dev isp{i} nodad"),
        format!("route add 10.200.{i}.0/24 via 10.250.{i}.2"),
        format!(
            "route add {}/64 via 2001:db8:250:{i}::2",
            net64(wan_isp_v6(i))
        ),
    ]
}

/// Split `ip` lines into the `ip -batch` and `ip -6 -batch` scripts.
pub fn split_families(lines: &[String]) -> (String, String) {
    let (mut v4, mut v6) = (String::new(), String::new());
    for l in lines {
        match l.strip_prefix("-6 ") {
            Some(rest) => {
                v6.push_str(rest);
                v6.push('\n');
            }
            None => {
                v4.push_str(l);
                v4.push('\n');
            }
        }
    }
    (v4, v6)
}

/// TBF burst in bytes: max(128 KiB, 4 ms at `rate_mbit`).
pub fn tbf_burst(rate_mbit: u32) -> u64 {
    let four_ms = u64::from(rate_mbit) * 1_000_000 / 8 * 4 / 1000;
    four_ms.max(128 * 1024)
}

fn net64(a: Ipv6Addr) -> Ipv6Addr {
    let s = a.segments();
    Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            rates: vec![40, 60],
            congestion_control: "reno".into(),
            tbf_latency_ms: 25,
            fast_open: true,
            agent_routing: false,
        }
    }

    #[test]
    fn addresses_follow_the_brief() {
        assert_eq!(wan_router_v4(2).to_string(), "10.200.2.2");
        assert_eq!(wan_router_v6(1).to_string(), "2001:db8:201::2");
        assert_eq!(wan_isp_v6(2).to_string(), "2001:db8:202::1");
    }

    #[test]
    fn nodes_and_links_cover_every_wan() {
        let p = plan();
        assert_eq!(p.nodes().len(), 7);
        assert_eq!(p.links().len(), 1 + 2 * 2 + 2);
        assert!(p
            .links()
            .iter()
            .all(|l| l.a_if.len() <= 15 && l.b_if.len() <= 15));
    }

    #[test]
    fn router_has_per_wan_tables_rules_and_endpoints() {
        let s = plan().ip_script(Node::Router);
        assert!(s.contains("route add default via 10.200.2.1 dev wan2 table 102"));
        assert!(s.contains("rule add from 10.200.2.2 table 102"));
        let s6 = plan().ip6_script(Node::Router);
        assert!(s6.contains("rule add from 2001:db8:202::2 table 102"));
        assert!(
            !s.contains("2001:db8:202::1 dev wan2 table"),
            "v6 defaults go to ip -6"
        );
        assert!(s6.contains("route add default via 2001:db8:202::1 dev wan2 table 102"));
        assert!(s.contains("mptcp endpoint add 10.200.1.2 dev wan1 id 21 subflow"));
        assert_eq!(
            s.matches("route add default via 10.200.").count(),
            3,
            "main + 2 tables"
        );
    }

    #[test]
    fn agent_routing_leaves_tables_rules_and_endpoints_to_the_agent() {
        let p = Plan {
            agent_routing: true,
            ..plan()
        };
        let (s, s6) = (p.ip_script(Node::Router), p.ip6_script(Node::Router));
        assert!(!s.contains("table") && !s.contains("rule") && !s.contains("mptcp"));
        assert!(s.contains("route replace default via 10.200.1.1 dev wan1 metric 0"));
        assert!(s.contains("route replace default via 10.200.2.1 dev wan2 metric 20"));
        assert!(s6.contains("route replace default via 2001:db8:202::1 dev wan2 metric 20"));
        assert!(s.contains("addr add 10.200.2.2/24 dev wan2"));
        let (v4, v6) = split_families(&core_wan_lines(3));
        assert!(v4.contains("route add 10.200.3.0/24 via 10.250.3.2") && v6.is_empty());
    }

    #[test]
    fn shaping_is_on_both_directions_and_skips_zero() {
        let mut p = plan();
        assert!(p
            .tc_script(Node::Router)
            .contains("dev wan2 root tbf rate 60mbit burst 131072"));
        assert!(p
            .tc_script(Node::Isp(1))
            .contains("dev cust root tbf rate 40mbit"));
        p.rates = vec![0, 1000];
        assert!(!p.tc_script(Node::Router).contains("wan1"));
        assert!(p.tc_script(Node::Isp(2)).contains("burst 500000"));
        assert!(p.tc_script(Node::Isp(1)).is_empty());
    }

    #[test]
    fn forwarding_and_fast_open_sysctls() {
        let p = plan();
        assert!(p
            .sysctls(Node::Core)
            .contains(&"net.ipv4.ip_forward=1".to_string()));
        assert!(!p.sysctls(Node::Lan).iter().any(|s| s.contains("forward")));
        assert!(p
            .sysctls(Node::Vps)
            .contains(&"net.ipv4.tcp_fastopen=3".to_string()));
        let no_tfo = Plan {
            fast_open: false,
            ..plan()
        };
        assert!(no_tfo
            .sysctls(Node::Router)
            .contains(&"net.ipv4.tcp_fastopen=0".to_string()));
        assert!(!p
            .sysctls(Node::Router)
            .iter()
            .any(|s| s.contains("fastopen")));
        assert!(p
            .nft_ruleset(Node::Router)
            .is_some_and(|r| r.contains("masquerade")));
    }
}
