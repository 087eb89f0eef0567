//! The redirect plan: which LAN TCP the nft table sends to the transparent listener.
//!
//! Everything is redirected except destinations in the built-in bypass list (private,
//! loopback, link-local, multicast and reserved ranges, which the concentrator would refuse
//! anyway or which must stay local), the concentrator's own addresses, and the user's
//! bypass destinations; and except sources in the user's bypass sources. The lists are
//! aggregated (sorted, overlaps and neighbours merged), so an nft interval set accepts them.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::Config;

/// The redirect table the agent wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectSpec {
    /// Table name in the `inet` family, normally `mpbond`.
    pub table: String,
    /// LAN interfaces whose TCP is redirected (`iifname` exact match).
    pub lan_interfaces: Vec<String>,
    /// The transparent listener's port.
    pub port: u16,
    /// Destination prefixes never redirected.
    pub bypass_dst: Vec<IpNet>,
    /// Source prefixes never redirected.
    pub bypass_src: Vec<IpNet>,
    /// False: keep the table and chains but no redirect rule (fail open).
    pub redirect: bool,
    /// The UDP interception (`None`: `[udp] enabled = false`); see `model::udp_plan`.
    pub udp: Option<super::udp_plan::UdpRedirect>,
    /// Bypass by name (`[bypass] domains` is not empty): a companion table with address
    /// sets that the resolver fills, and the rules that let their addresses pass; see
    /// `nft/name_sets.rs`.
    pub bypass_names: bool,
}

/// Destinations that are never redirected, whatever the config says.
pub const BUILTIN_BYPASS: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    // IPv4-mapped addresses never appear on the wire as real IPv6 destinations.
    "::ffff:0:0/96",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// The built-in bypass list as prefixes.
pub fn builtin_bypass() -> Vec<IpNet> {
    // The list is a constant checked by a unit test, so no entry is skipped in practice.
    BUILTIN_BYPASS
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The table the agent wants: redirect LAN TCP to `config.proxy.listen_port` unless it
/// is bypassed. `concentrator` are the resolved addresses of the concentrator.
/// `redirect` is the health verdict: with `false` the table exists but redirects nothing.
pub fn redirect_spec(config: &Config, concentrator: &[IpAddr], redirect: bool) -> RedirectSpec {
    let mut dst = builtin_bypass();
    dst.extend(concentrator.iter().map(|addr| IpNet::from(*addr)));
    dst.extend(config.bypass.destinations.iter().copied());
    RedirectSpec {
        table: config.proxy.nft_table.clone(),
        lan_interfaces: config.proxy.lan_interfaces.clone(),
        port: config.proxy.listen_port,
        bypass_dst: IpNet::aggregate(&dst),
        bypass_src: IpNet::aggregate(&config.bypass.sources),
        redirect,
        udp: super::udp_plan::udp_redirect(config),
        bypass_names: !config.bypass.names.domains.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Format;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[concentrator]\nhost = \"vps.example\"\nclient_id = \"home\"\nkey = \"{}\"\n{extra}",
            "ab".repeat(32)
        );
        Config::parse(&text, Format::Toml, Path::new("test.toml")).expect("valid test config")
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    #[test]
    fn builtin_list_parses() {
        assert_eq!(builtin_bypass().len(), BUILTIN_BYPASS.len());
    }

    #[test]
    fn concentrator_addresses_are_bypassed_as_hosts() {
        let addrs = [
            "192.0.2.1".parse().unwrap(),
            "2001:db8:100::1".parse().unwrap(),
        ];
        let spec = redirect_spec(&config(""), &addrs, true);
        assert!(spec.bypass_dst.contains(&net("192.0.2.1/32")));
        assert!(spec.bypass_dst.contains(&net("2001:db8:100::1/128")));
        assert!(!spec
            .bypass_dst
            .iter()
            .any(|n| n.contains(&net("203.0.113.10/32"))));
        assert!(spec.redirect);
        assert_eq!(spec.table, "mpbond");
        assert_eq!(spec.port, 4851);
        assert_eq!(spec.lan_interfaces, vec!["br-lan".to_string()]);
    }

    #[test]
    fn user_lists_are_aggregated() {
        let c = config(concat!(
            "[bypass]\n",
            "destinations = [\"10.1.0.0/16\", \"198.51.100.0/25\", \"198.51.100.128/25\"]\n",
            "sources = [\"192.168.50.7\", \"192.168.50.8/31\"]\n",
        ));
        let spec = redirect_spec(&c, &[], false);
        // 10.1/16 is inside the built-in 10/8, and the two halves merge.
        assert!(spec.bypass_dst.contains(&net("10.0.0.0/8")));
        assert!(!spec.bypass_dst.contains(&net("10.1.0.0/16")));
        assert!(spec.bypass_dst.contains(&net("198.51.100.0/24")));
        assert_eq!(
            spec.bypass_src,
            vec![net("192.168.50.7/32"), net("192.168.50.8/31")]
        );
        assert!(!spec.redirect);
    }

    #[test]
    fn aggregated_lists_do_not_overlap() {
        let spec = redirect_spec(&config(""), &["10.9.9.9".parse().unwrap()], true);
        for (i, a) in spec.bypass_dst.iter().enumerate() {
            for b in &spec.bypass_dst[i + 1..] {
                assert!(!a.contains(b) && !b.contains(a), "{a} overlaps {b}");
            }
        }
        // 224/4 and 240/4 merge into 224/3, which holds 255.255.255.255; the
        // concentrator is inside 10/8.
        assert!(spec.bypass_dst.contains(&net("224.0.0.0/3")));
        assert!(!spec.bypass_dst.contains(&net("255.255.255.255/32")));
        assert!(!spec.bypass_dst.contains(&net("10.9.9.9/32")));
        assert!(spec
            .bypass_dst
            .iter()
            .any(|n| n.contains(&net("10.9.9.9/32"))));
    }
}
