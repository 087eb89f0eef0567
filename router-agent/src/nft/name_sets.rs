//! Bypass by domain name: address sets the resolver fills, and the rules that let the
//! addresses in them leave by NAT like the bypass prefixes.
//!
//! The agent's table is an owner table, and nf_tables refuses every change to an owner
//! table from any other socket (`EPERM`), including dnsmasq's `add element`. So the sets
//! live in a companion table, `<table>_names`, that the agent creates without the owner
//! flag, and a packet's membership crosses to the owner table as one bit of the packet
//! mark, set just before the agent's chains and cleared just after them:
//!
//! ```text
//! table inet mpbond_names {                     # no owner flag: dnsmasq may add elements
//!     set bypass4 { type ipv4_addr; flags timeout; timeout 1d; }
//!     set bypass6 { type ipv6_addr; flags timeout; timeout 1d; }
//!     chain mark_names {                        # filter, prerouting, mangle - 20 = -170
//!         ip daddr @bypass4 meta mark set meta mark | 0x10000000
//!         ip6 daddr @bypass6 meta mark set meta mark | 0x10000000
//!     }
//! }
//! table inet mpbond {                           # the owner table (rules.rs, udp_rules.rs)
//!     chain redirect_lan { ... meta mark & 0x10000000 == 0x10000000 return ... }
//!     chain udp_lan      { ... meta mark & 0x10000000 == 0x10000000 return ... }
//!     chain names_clear {                       # filter, prerouting, dstnat + 10 = -90
//!         meta mark & 0x10000000 == 0x10000000 meta mark set meta mark & 0xefffffff
//!     }
//! }
//! ```
//!
//! Both marks happen in prerouting, before the routing decision, so no route or policy
//! rule ever sees the bit while the agent runs. Entries age out after [`SET_TIMEOUT`]
//! (dnsmasq adds them without a timeout of their own, so the set's default applies) and
//! come back with the next answer from upstream.
//!
//! Reloads re-create the chain's rules but never the sets, so their contents survive; a
//! restarted agent keeps the contents of the companion table it finds, as dnsmasq only adds
//! addresses when it asks upstream again. The companion goes away with
//! [`NftTable::remove`](super::NftTable::remove), when the names are removed from the
//! config, and otherwise at the next start (a killed agent leaves it: packets to listed
//! addresses then carry the bit until the agent is back).

use std::time::Duration;

use super::batch::{add_chain, add_rule, NFPROTO_INET};
use super::expr::{Expr, MetaKey, Verdict, REG_1};
use super::rules::Rule;
use super::wire::{AttrBuf, Batch, Msg, MsgType, NLM_F_CREATE};

/// The IPv4 set dnsmasq fills.
pub const SET4: &str = "bypass4";
/// The IPv6 set dnsmasq fills.
pub const SET6: &str = "bypass6";
/// The packet-mark bit that carries "destination is in a name set" to the owner table.
pub const NAME_MARK: u32 = 0x1000_0000;
/// How long an address stays in a set after dnsmasq added it.
pub const SET_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The companion table's base chain that sets the mark bit.
pub(crate) const MARK_CHAIN: &str = "mark_names";
/// `NF_IP_PRI_MANGLE` (-150) minus 20: before the UDP chain (-160) and the redirect (-110).
pub(crate) const MARK_PRIORITY: i32 = -170;
/// As nft prints it: it names a priority only within 10 of a standard one.
pub(crate) const MARK_DECL: &str = "type filter hook prerouting priority -170; policy accept;";
/// The owner table's base chain that clears the bit again.
pub(crate) const CLEAR_CHAIN: &str = "names_clear";
/// `NF_IP_PRI_NAT_DST` (-100) plus 10: after every NAT chain of prerouting.
pub(crate) const CLEAR_PRIORITY: i32 = -90;
pub(crate) const CLEAR_DECL: &str =
    "type filter hook prerouting priority dstnat + 10; policy accept;";

/// `NFT_SET_TIMEOUT`.
const NFT_SET_TIMEOUT: u32 = 0x10;
/// nft's `ipv4_addr` and `ipv6_addr` data types (`TYPE_IPADDR`, `TYPE_IP6ADDR`).
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_TIMEOUT: u16 = 11;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const IP4_DADDR: u32 = 16;
const IP6_DADDR: u32 = 24;

/// The companion table of the owner table `table`.
pub fn names_table(table: &str) -> String {
    format!("{table}_names")
}

/// One set: name, batch id, key type, key length, nft type name, IP family.
struct SetDef {
    name: &'static str,
    id: u32,
    key_type: u32,
    key_len: u32,
    type_name: &'static str,
    nfproto: u8,
    family: &'static str,
    daddr: u32,
}

const SETS: [SetDef; 2] = [
    SetDef {
        name: SET4,
        id: 1,
        key_type: TYPE_IPADDR,
        key_len: 4,
        type_name: "ipv4_addr",
        nfproto: NFPROTO_IPV4,
        family: "ip",
        daddr: IP4_DADDR,
    },
    SetDef {
        name: SET6,
        id: 2,
        key_type: TYPE_IP6ADDR,
        key_len: 16,
        type_name: "ipv6_addr",
        nfproto: NFPROTO_IPV6,
        family: "ip6",
        daddr: IP6_DADDR,
    },
];

/// `meta mark & BIT == BIT`
fn marked() -> [Expr; 3] {
    [
        Expr::Meta {
            key: MetaKey::Mark,
            dreg: REG_1,
        },
        Expr::Mask {
            sreg: REG_1,
            dreg: REG_1,
            mask: NAME_MARK.to_ne_bytes().to_vec(),
        },
        Expr::CmpEq {
            sreg: REG_1,
            data: NAME_MARK.to_ne_bytes().to_vec(),
        },
    ]
}

/// `meta mark & 0x10000000 == 0x10000000 return`, in the owner table's `chain`.
pub(crate) fn marked_return(chain: &'static str) -> Rule {
    let mut exprs = marked().to_vec();
    exprs.push(Expr::Verdict(Verdict::Return));
    Rule {
        chain,
        exprs,
        text: format!("meta mark & {NAME_MARK:#010x} == {NAME_MARK:#010x} return"),
    }
}

/// The owner table's `names_clear` rule: take the bit off again.
pub(crate) fn clear_rule() -> Rule {
    let mut exprs = marked().to_vec();
    exprs.extend([
        Expr::Meta {
            key: MetaKey::Mark,
            dreg: REG_1,
        },
        Expr::Mask {
            sreg: REG_1,
            dreg: REG_1,
            mask: (!NAME_MARK).to_ne_bytes().to_vec(),
        },
        Expr::MetaSet {
            key: MetaKey::Mark,
            sreg: REG_1,
        },
    ]);
    Rule {
        chain: CLEAR_CHAIN,
        exprs,
        text: format!(
            "meta mark & {NAME_MARK:#010x} == {NAME_MARK:#010x} meta mark set meta mark & {:#010x}",
            !NAME_MARK
        ),
    }
}

/// The companion chain's rules: `<ip|ip6> daddr @<set> meta mark set meta mark | BIT`.
pub(crate) fn mark_rules() -> Vec<Rule> {
    SETS.iter()
        .map(|set| {
            let exprs = vec![
                Expr::Meta {
                    key: MetaKey::NfProto,
                    dreg: REG_1,
                },
                Expr::CmpEq {
                    sreg: REG_1,
                    data: vec![set.nfproto],
                },
                Expr::NetworkPayload {
                    dreg: REG_1,
                    offset: set.daddr,
                    len: set.key_len,
                },
                Expr::Lookup {
                    sreg: REG_1,
                    set: set.name.to_owned(),
                    set_id: set.id,
                },
                Expr::Meta {
                    key: MetaKey::Mark,
                    dreg: REG_1,
                },
                Expr::MaskXor {
                    sreg: REG_1,
                    dreg: REG_1,
                    mask: (!NAME_MARK).to_ne_bytes().to_vec(),
                    xor: NAME_MARK.to_ne_bytes().to_vec(),
                },
                Expr::MetaSet {
                    key: MetaKey::Mark,
                    sreg: REG_1,
                },
            ];
            Rule {
                chain: MARK_CHAIN,
                exprs,
                text: format!(
                    "{} daddr @{} meta mark set meta mark | {NAME_MARK:#010x}",
                    set.family, set.name
                ),
            }
        })
        .collect()
}

/// Bring the companion table of `table` into the batch: the table, both sets and the
/// chain are added if missing (never replaced, so the sets keep their elements), then the
/// chain is flushed and its rules added.
pub(crate) fn ensure_companion(batch: &mut Batch, table: &str) {
    let names = names_table(table);
    let mut attrs = AttrBuf::new();
    attrs.put_str(NFTA_TABLE_NAME, &names);
    let what = format!("table inet {names}");
    batch.push(Msg::new(
        MsgType::NewTable,
        NLM_F_CREATE,
        NFPROTO_INET,
        attrs,
        &what,
    ));
    let timeout_ms = u64::try_from(SET_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
    for set in &SETS {
        let mut attrs = AttrBuf::new();
        attrs.put_str(NFTA_SET_TABLE, &names);
        attrs.put_str(NFTA_SET_NAME, set.name);
        attrs.put_be32(NFTA_SET_FLAGS, NFT_SET_TIMEOUT);
        attrs.put_be32(NFTA_SET_KEY_TYPE, set.key_type);
        attrs.put_be32(NFTA_SET_KEY_LEN, set.key_len);
        attrs.put_be32(NFTA_SET_ID, set.id);
        attrs.put(NFTA_SET_TIMEOUT, &timeout_ms.to_be_bytes());
        let what = format!("set inet {names} {}", set.name);
        batch.push(Msg::new(
            MsgType::NewSet,
            NLM_F_CREATE,
            NFPROTO_INET,
            attrs,
            &what,
        ));
    }
    add_chain(batch, &names, MARK_CHAIN, Some((MARK_PRIORITY, "filter")));
    let mut attrs = AttrBuf::new();
    attrs.put_str(NFTA_RULE_TABLE, &names);
    attrs.put_str(NFTA_RULE_CHAIN, MARK_CHAIN);
    let what = format!("(flush) chain inet {names} {MARK_CHAIN}");
    batch.push(Msg::new(MsgType::DelRule, 0, NFPROTO_INET, attrs, &what));
    for rule in mark_rules() {
        add_rule(batch, &names, &rule);
    }
}

/// The companion table in nft syntax, as `nft list table inet <table>_names` prints it
/// while its sets are empty (a set timeout implies `flags timeout`, which nft then omits).
pub fn render_companion(table: &str) -> String {
    let mut out = format!("table inet {} {{\n", names_table(table));
    for set in &SETS {
        out.push_str(&format!(
            "\tset {} {{\n\t\ttype {}\n\t\ttimeout 1d\n\t}}\n\n",
            set.name, set.type_name
        ));
    }
    out.push_str(&format!("\tchain {MARK_CHAIN} {{\n\t\t{MARK_DECL}\n"));
    for rule in mark_rules() {
        out.push_str(&format!("\t\t{}\n", rule.text));
    }
    out.push_str("\t}\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companion_adds_sets_without_flushing_them() {
        let mut batch = Batch::new();
        ensure_companion(&mut batch, "mpbond");
        let what: Vec<&str> = batch.messages().iter().map(|m| m.what()).collect();
        assert_eq!(
            what,
            [
                "NEWTABLE table inet mpbond_names",
                "NEWSET set inet mpbond_names bypass4",
                "NEWSET set inet mpbond_names bypass6",
                "NEWCHAIN chain inet mpbond_names mark_names",
                "DELRULE (flush) chain inet mpbond_names mark_names",
                "NEWRULE rule inet mpbond_names mark_names `ip daddr @bypass4 meta mark set meta mark | 0x10000000`",
                "NEWRULE rule inet mpbond_names mark_names `ip6 daddr @bypass6 meta mark set meta mark | 0x10000000`",
            ]
        );
        // Nothing in it deletes a table or a set.
        assert!(!what
            .iter()
            .any(|w| w.starts_with("DELTABLE") || w.starts_with("DELSET")));
    }

    #[test]
    fn the_bit_is_set_by_or_and_cleared_by_and() {
        let rule = &mark_rules()[0];
        assert!(rule.exprs.contains(&Expr::MaskXor {
            sreg: REG_1,
            dreg: REG_1,
            mask: 0xefff_ffffu32.to_ne_bytes().to_vec(),
            xor: 0x1000_0000u32.to_ne_bytes().to_vec(),
        }));
        let clear = clear_rule();
        assert_eq!(
            clear.text,
            "meta mark & 0x10000000 == 0x10000000 meta mark set meta mark & 0xefffffff"
        );
        assert_eq!(
            clear.exprs.last(),
            Some(&Expr::MetaSet {
                key: MetaKey::Mark,
                sreg: REG_1
            })
        );
        assert_eq!(
            marked_return("redirect_lan").text,
            "meta mark & 0x10000000 == 0x10000000 return"
        );
    }

    #[test]
    fn the_udp_mark_does_not_use_the_name_bit() {
        assert_eq!(crate::config::udp::DEFAULT_FWMARK & NAME_MARK, 0);
    }
}
