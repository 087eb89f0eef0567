//! The table in nft syntax: what [`NftTable`](super::NftTable) puts in the kernel, laid out
//! as `nft list table inet <name>` prints it. Pure; for logs, docs and the golden test. The
//! rule lines come from [`rules`](super::rules), the same list the netlink encoder sends.

use std::fmt::Write as _;

use super::name_sets::{CLEAR_CHAIN, CLEAR_DECL};
use super::rules::{rules, PREROUTING, PREROUTING_DECL, REDIRECT_LAN};
use super::udp_rules::{UDP_LAN, UDP_PREROUTING, UDP_PREROUTING_DECL};
use super::RedirectSpec;

/// The ruleset `spec` describes, in nft syntax (`nft -f` accepts it).
pub fn render(spec: &RedirectSpec) -> String {
    let rules = rules(spec);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "table inet {} {{", spec.table);
    let _ = writeln!(out, "\tflags owner\n");
    let _ = writeln!(out, "\tchain {PREROUTING} {{");
    let _ = writeln!(out, "\t\t{PREROUTING_DECL}");
    for rule in rules.iter().filter(|r| r.chain == PREROUTING) {
        let _ = writeln!(out, "\t\t{}", rule.text);
    }
    let _ = writeln!(out, "\t}}\n");
    let _ = writeln!(out, "\tchain {REDIRECT_LAN} {{");
    for rule in rules.iter().filter(|r| r.chain == REDIRECT_LAN) {
        let _ = writeln!(out, "\t\t{}", rule.text);
    }
    let _ = writeln!(out, "\t}}");
    if spec.udp.is_some() {
        let _ = writeln!(out, "\n\tchain {UDP_PREROUTING} {{");
        let _ = writeln!(out, "\t\t{UDP_PREROUTING_DECL}");
        for rule in rules.iter().filter(|r| r.chain == UDP_PREROUTING) {
            let _ = writeln!(out, "\t\t{}", rule.text);
        }
        let _ = writeln!(out, "\t}}\n");
        let _ = writeln!(out, "\tchain {UDP_LAN} {{");
        for rule in rules.iter().filter(|r| r.chain == UDP_LAN) {
            let _ = writeln!(out, "\t\t{}", rule.text);
        }
        let _ = writeln!(out, "\t}}");
    }
    if spec.bypass_names {
        let _ = writeln!(out, "\n\tchain {CLEAR_CHAIN} {{");
        let _ = writeln!(out, "\t\t{CLEAR_DECL}");
        for rule in rules.iter().filter(|r| r.chain == CLEAR_CHAIN) {
            let _ = writeln!(out, "\t\t{}", rule.text);
        }
        let _ = writeln!(out, "\t}}");
    }
    let _ = writeln!(out, "}}");
    out
}
