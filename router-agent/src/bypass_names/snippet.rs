//! Pure: the dnsmasq config the agent writes for bypass by name, and what the resolver
//! integration amounts to given the config and the installed dnsmasq.
//!
//! ```text
//! # mpbond-agent: bypass by name. Written at start and reload, removed at stop.
//! nftset=/bank.example/4#inet#mpbond_names#bypass4,6#inet#mpbond_names#bypass6
//! ```
//!
//! `nftset=` (dnsmasq 2.87 and later, built with nftset: OpenWrt's `dnsmasq-full`, not its
//! default `dnsmasq`) adds every A and AAAA answer for the name and the names under it to
//! the sets, before the client gets the answer.

use crate::config::bypass_names::NameBypass;
use crate::nft::name_sets::{names_table, SET4, SET6};

/// The file's contents for `domains` and the owner table `table`.
pub fn dnsmasq_snippet(domains: &[String], table: &str) -> String {
    let names = names_table(table);
    let mut out = String::from(
        "# mpbond-agent: bypass by name. Written at start and reload, removed at stop.\n",
    );
    for domain in domains {
        out.push_str(&format!(
            "nftset=/{domain}/4#inet#{names}#{SET4},6#inet#{names}#{SET6}\n"
        ));
    }
    out
}

/// How the sets get filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integration {
    /// No domains: nothing to fill.
    Off,
    /// The agent writes dnsmasq's config file.
    Dnsmasq,
    /// Domains, but the agent cannot make a resolver fill the sets; the reason.
    Inactive(String),
}

/// What the integration is for `names`, with `dnsmasq_version` the output of
/// `dnsmasq --version` (`None`: no dnsmasq found).
pub fn integration(names: &NameBypass, dnsmasq_version: Option<&str>) -> Integration {
    if names.domains.is_empty() {
        return Integration::Off;
    }
    if names.dnsmasq_conf.is_none() {
        return Integration::Inactive(
            "bypass.domains is set but bypass.dnsmasq_conf is not: no resolver fills the \
             name sets (see README, bypass by name)"
                .to_owned(),
        );
    }
    let Some(version) = dnsmasq_version else {
        return Integration::Inactive("dnsmasq not found: no resolver fills the name sets".into());
    };
    if !has_nftset(version) {
        return Integration::Inactive(
            "this dnsmasq was built without nftset (on OpenWrt install dnsmasq-full instead \
             of dnsmasq): no resolver fills the name sets"
                .to_owned(),
        );
    }
    Integration::Dnsmasq
}

/// Whether `dnsmasq --version`'s compile options list `nftset` (and not `no-nftset`).
fn has_nftset(version: &str) -> bool {
    version
        .lines()
        .filter(|l| l.starts_with("Compile time options"))
        .flat_map(str::split_whitespace)
        .any(|opt| opt == "nftset")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn names(domains: &[&str], conf: bool) -> NameBypass {
        NameBypass {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            dnsmasq_conf: conf.then(|| PathBuf::from("/tmp/dnsmasq.d/mpbond-bypass.conf")),
            dnsmasq_restart: Vec::new(),
        }
    }

    const DEBIAN: &str = "Dnsmasq version 2.90  Copyright (c) 2000-2024 Simon Kelley\n\
        Compile time options: IPv6 GNU-getopt DBus no-UBus i18n IDN2 DHCP DHCPv6 no-Lua \
        TFTP conntrack ipset nftset auth cryptohash DNSSEC loop-detect inotify dumpfile\n";
    const OPENWRT_DEFAULT: &str = "Dnsmasq version 2.90  Copyright (c) 2000-2024 Simon Kelley\n\
        Compile time options: IPv6 GNU-getopt no-DBus UBus no-i18n no-IDN DHCP no-DHCPv6 \
        no-Lua TFTP no-conntrack no-ipset no-nftset no-auth no-cryptohash no-DNSSEC \
        no-ID loop-detect inotify dumpfile\n";

    #[test]
    fn one_nftset_line_per_domain_for_both_families() {
        let text = dnsmasq_snippet(&["bank.example".into(), "b.test".into()], "mpbond");
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "nftset=/bank.example/4#inet#mpbond_names#bypass4,6#inet#mpbond_names#bypass6",
                "nftset=/b.test/4#inet#mpbond_names#bypass4,6#inet#mpbond_names#bypass6",
            ]
        );
    }

    #[test]
    fn the_integration_says_why_it_is_not_active() {
        assert_eq!(
            integration(&names(&[], true), Some(DEBIAN)),
            Integration::Off
        );
        assert_eq!(
            integration(&names(&["a.test"], true), Some(DEBIAN)),
            Integration::Dnsmasq
        );
        let Integration::Inactive(why) =
            integration(&names(&["a.test"], true), Some(OPENWRT_DEFAULT))
        else {
            panic!("the default OpenWrt dnsmasq has no nftset");
        };
        assert!(why.contains("dnsmasq-full"), "{why}");
        let Integration::Inactive(why) = integration(&names(&["a.test"], false), Some(DEBIAN))
        else {
            panic!("no conf file: inactive");
        };
        assert!(why.contains("bypass.dnsmasq_conf"), "{why}");
        assert!(matches!(
            integration(&names(&["a.test"], true), None),
            Integration::Inactive(_)
        ));
    }
}
