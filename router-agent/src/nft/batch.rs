//! The nf_tables transactions [`NftTable`](super::NftTable) sends, built from a spec
//! without touching a socket:
//!
//! * [`delete_table`]: `DELTABLE`, used alone to clear a stale table and by `remove`;
//! * [`create`]: `NEWTABLE` (flags owner, exclusive), both chains, every rule;
//! * [`replace`]: `DELRULE` for the whole table (a flush), `NEWCHAIN` for both chains
//!   (an idempotent update that also re-creates a missing one), then every rule.
//!
//! With `spec.bypass_names`, `create` and `replace` also bring the companion table of
//! the name sets up to date (`name_sets.rs`), without touching the sets' contents.
//!
//! Each is one batch, so the kernel applies it atomically: packets see the old ruleset or
//! the new one, never a mix.

use super::expr::encode_list;
use super::name_sets;
use super::rules::{rules, Rule, HOOK_PREROUTING, PREROUTING, PRIORITY, REDIRECT_LAN};
use super::udp_rules::{UDP_LAN, UDP_PREROUTING, UDP_PRIORITY};
use super::wire::{AttrBuf, Batch, Msg, MsgType, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL};
use super::RedirectSpec;

/// `NFPROTO_INET`: the `inet` family, one table for IPv4 and IPv6.
pub(super) const NFPROTO_INET: u8 = 1;
/// `NFT_TABLE_F_OWNER`: the kernel deletes the table when the creating socket closes.
const NFT_TABLE_F_OWNER: u32 = 0x2;
/// `NF_ACCEPT`: the base chain's policy.
const NF_ACCEPT: u32 = 1;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;

/// `delete table inet <table>`
pub(crate) fn delete_table(table: &str) -> Batch {
    let mut batch = Batch::new();
    let mut attrs = AttrBuf::new();
    attrs.put_str(NFTA_TABLE_NAME, table);
    batch.push(Msg::new(
        MsgType::DelTable,
        0,
        NFPROTO_INET,
        attrs,
        &format!("table inet {table}"),
    ));
    batch
}

/// `add table inet <table> { flags owner; }`, both chains and every rule.
pub(crate) fn create(spec: &RedirectSpec) -> Batch {
    let mut batch = Batch::new();
    let mut attrs = AttrBuf::new();
    attrs.put_str(NFTA_TABLE_NAME, &spec.table);
    attrs.put_be32(NFTA_TABLE_FLAGS, NFT_TABLE_F_OWNER);
    let what = format!("table inet {} (flags owner)", spec.table);
    batch.push(Msg::new(
        MsgType::NewTable,
        NLM_F_CREATE | NLM_F_EXCL,
        NFPROTO_INET,
        attrs,
        &what,
    ));
    add_chains_and_rules(&mut batch, spec);
    batch
}

/// Flush the table and load `spec` into it, as one transaction.
pub(crate) fn replace(spec: &RedirectSpec) -> Batch {
    let mut batch = Batch::new();
    let mut attrs = AttrBuf::new();
    attrs.put_str(NFTA_RULE_TABLE, &spec.table);
    let what = format!("(flush) table inet {}", spec.table);
    batch.push(Msg::new(MsgType::DelRule, 0, NFPROTO_INET, attrs, &what));
    add_chains_and_rules(&mut batch, spec);
    batch
}

/// `NEWCHAIN`: a base chain on the prerouting hook with `(priority, type)` and policy
/// accept, or a regular chain (`None`).
pub(super) fn add_chain(batch: &mut Batch, table: &str, name: &str, base: Option<(i32, &str)>) {
    let mut attrs = AttrBuf::new();
    attrs.put_str(NFTA_CHAIN_TABLE, table);
    attrs.put_str(NFTA_CHAIN_NAME, name);
    if let Some((priority, kind)) = base {
        attrs.nested(NFTA_CHAIN_HOOK, |b| {
            b.put_be32(NFTA_HOOK_HOOKNUM, HOOK_PREROUTING);
            b.put_be32(NFTA_HOOK_PRIORITY, priority as u32);
        });
        attrs.put_be32(NFTA_CHAIN_POLICY, NF_ACCEPT);
        attrs.put_str(NFTA_CHAIN_TYPE, kind);
    }
    let what = format!("chain inet {table} {name}");
    batch.push(Msg::new(
        MsgType::NewChain,
        NLM_F_CREATE,
        NFPROTO_INET,
        attrs,
        &what,
    ));
}

fn add_chains_and_rules(batch: &mut Batch, spec: &RedirectSpec) {
    let table = spec.table.as_str();
    add_chain(batch, table, PREROUTING, Some((PRIORITY, "nat")));
    add_chain(batch, table, REDIRECT_LAN, None);
    if spec.udp.is_some() {
        add_chain(batch, table, UDP_PREROUTING, Some((UDP_PRIORITY, "filter")));
        add_chain(batch, table, UDP_LAN, None);
    }

    if spec.bypass_names {
        let base = Some((name_sets::CLEAR_PRIORITY, "filter"));
        add_chain(batch, table, name_sets::CLEAR_CHAIN, base);
    }

    for rule in rules(spec) {
        add_rule(batch, table, &rule);
    }
    if spec.bypass_names {
        name_sets::ensure_companion(batch, table);
    }
}

/// `NEWRULE`: append `rule` to its chain in `table`.
pub(super) fn add_rule(batch: &mut Batch, table: &str, rule: &Rule) {
    let mut attrs = AttrBuf::new();
    attrs.put_str(NFTA_RULE_TABLE, table);
    attrs.put_str(NFTA_RULE_CHAIN, rule.chain);
    attrs.nested(NFTA_RULE_EXPRESSIONS, |b| encode_list(&rule.exprs, b));
    let what = format!("rule inet {table} {} `{}`", rule.chain, rule.text);
    batch.push(Msg::new(
        MsgType::NewRule,
        NLM_F_CREATE | NLM_F_APPEND,
        NFPROTO_INET,
        attrs,
        &what,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RedirectSpec {
        RedirectSpec {
            table: "mpbond".into(),
            lan_interfaces: vec!["br-lan".into(), "wlan0".into()],
            port: 4851,
            bypass_dst: vec!["10.0.0.0/8".parse().expect("net")],
            bypass_src: vec![],
            redirect: true,
            udp: None,
            bypass_names: false,
        }
    }

    #[test]
    fn create_is_table_chains_rules() {
        let batch = create(&spec());
        let what: Vec<&str> = batch.messages().iter().map(|m| m.what()).collect();
        assert_eq!(
            what,
            [
                "NEWTABLE table inet mpbond (flags owner)",
                "NEWCHAIN chain inet mpbond prerouting",
                "NEWCHAIN chain inet mpbond redirect_lan",
                "NEWRULE rule inet mpbond prerouting `iifname \"br-lan\" meta l4proto tcp ct state related,new jump redirect_lan`",
                "NEWRULE rule inet mpbond prerouting `iifname \"wlan0\" meta l4proto tcp ct state related,new jump redirect_lan`",
                "NEWRULE rule inet mpbond redirect_lan `ip daddr 10.0.0.0/8 return`",
                "NEWRULE rule inet mpbond redirect_lan `meta l4proto tcp redirect to :4851`",
            ]
        );
    }

    #[test]
    fn replace_flushes_first_and_has_no_newtable() {
        let batch = replace(&spec());
        let what: Vec<&str> = batch.messages().iter().map(|m| m.what()).collect();
        assert_eq!(what[0], "DELRULE (flush) table inet mpbond");
        assert_eq!(what.len(), create(&spec()).len());
        assert!(!what.iter().any(|w| w.starts_with("NEWTABLE")));
    }

    #[test]
    fn names_add_the_clear_chain_and_the_companion_to_the_same_batch() {
        let names = RedirectSpec {
            bypass_names: true,
            ..spec()
        };
        let batch = replace(&names);
        let what: Vec<&str> = batch.messages().iter().map(|m| m.what()).collect();
        assert!(what.contains(&"NEWCHAIN chain inet mpbond names_clear"));
        assert!(what.contains(
            &"NEWRULE rule inet mpbond redirect_lan `meta mark & 0x10000000 == 0x10000000 return`"
        ));
        assert!(what.contains(&"NEWSET set inet mpbond_names bypass4"));
        // The flush is the owner table's only; the companion's sets are never emptied.
        let flushes: Vec<&&str> = what.iter().filter(|w| w.starts_with("DELRULE")).collect();
        assert_eq!(
            flushes,
            [
                &"DELRULE (flush) table inet mpbond",
                &"DELRULE (flush) chain inet mpbond_names mark_names"
            ]
        );
        assert!(!create(&spec())
            .messages()
            .iter()
            .any(|m| m.what().contains("_names")));
    }
}
