//! nf_tables expressions as data ([`Expr`]) and their netlink encoding.
//!
//! A rule is a list of expressions that load values into registers, compare them and set
//! a verdict. [`encode_list`] writes `NFTA_RULE_EXPRESSIONS`: one `NFTA_LIST_ELEM` per
//! expression, each holding `NFTA_EXPR_NAME` and the nested `NFTA_EXPR_DATA`. Every `u32`
//! attribute is big-endian, as the kernel reads them with `ntohl`. The layouts match what
//! `nft --debug=netlink` shows for the same rules (libnftnl's `expr/*.c` builders).

use super::wire::AttrBuf;

/// `NFT_REG_VERDICT`: the verdict register.
pub(crate) const REG_VERDICT: u32 = 0;
/// `NFT_REG_1`: a 16-byte data register (room for an IPv6 address or an interface name).
pub(crate) const REG_1: u32 = 1;

/// `IFNAMSIZ`: `meta iifname` loads the name as a zero-padded 16-byte buffer.
pub(crate) const IFNAMSIZ: usize = 16;

/// `NFT_JUMP`.
const NFT_JUMP: i32 = -3;
/// `NFT_RETURN`.
const NFT_RETURN: i32 = -5;
/// `NF_ACCEPT`.
const NF_ACCEPT: i32 = 1;
/// `NF_NAT_RANGE_PROTO_SPECIFIED` (`linux/netfilter/nf_nat.h`): the port range is set.
pub(crate) const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 0x2;

// Attribute numbers (enum nft_*_attributes in linux/netfilter/nf_tables.h).
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_REDIR_REG_PROTO_MIN: u16 = 1;
const NFTA_REDIR_FLAGS: u16 = 3;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_META_SREG: u16 = 3;
const NFTA_RANGE_SREG: u16 = 1;
const NFTA_RANGE_OP: u16 = 2;
const NFTA_RANGE_FROM_DATA: u16 = 3;
const NFTA_RANGE_TO_DATA: u16 = 4;
const NFTA_FIB_DREG: u16 = 1;
const NFTA_FIB_RESULT: u16 = 2;
const NFTA_FIB_FLAGS: u16 = 3;
const NFTA_TPROXY_FAMILY: u16 = 1;
const NFTA_TPROXY_REG_PORT: u16 = 3;
const NFTA_REJECT_TYPE: u16 = 1;
const NFTA_REJECT_ICMP_CODE: u16 = 2;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_SET_ID: u16 = 4;

/// `NFT_PAYLOAD_TRANSPORT_HEADER`.
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
/// `NFT_RANGE_EQ`.
const NFT_RANGE_EQ: u32 = 0;
/// `NFT_FIB_RESULT_ADDRTYPE`: the `RTN_*` type of the looked-up address.
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
/// `NFTA_FIB_F_DADDR`: look up the destination address.
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
/// `NFT_REJECT_ICMPX_UNREACH` and `NFT_REJECT_ICMPX_PORT_UNREACH`: ICMP or ICMPv6 port
/// unreachable, whichever the packet's family needs.
const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
const NFT_REJECT_ICMPX_PORT_UNREACH: u8 = 1;
/// `RTN_UNICAST`, as `fib daddr type` loads it (host-endian `u32`).
pub(crate) const RTN_UNICAST: u32 = 1;

/// `NFT_CMP_EQ` and `NFT_CMP_NEQ`.
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
/// `NFT_PAYLOAD_NETWORK_HEADER`.
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;

/// The `meta` keys used here (`enum nft_meta_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum MetaKey {
    Mark = 3,
    IifName = 6,
    NfProto = 15,
    L4Proto = 16,
}

/// The `ct` keys used here (`enum nft_ct_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum CtKey {
    /// A host-endian `u32` with one `NF_CT_STATE_*_BIT` set.
    State = 0,
}

/// A verdict set by `immediate` into the verdict register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accept,
    Return,
    Jump(String),
}

/// One nf_tables expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    /// `meta load <key> => reg <dreg>`
    Meta { key: MetaKey, dreg: u32 },
    /// `cmp eq reg <sreg> <data>`
    CmpEq { sreg: u32, data: Vec<u8> },
    /// `cmp neq reg <sreg> <data>`
    CmpNeq { sreg: u32, data: Vec<u8> },
    /// `ct load <key> => reg <dreg>`. Every `ct` expression holds a reference that keeps
    /// conntrack running in the namespace.
    Ct { key: CtKey, dreg: u32 },
    /// `payload load <len>b @ network header + <offset> => reg <dreg>`
    NetworkPayload { dreg: u32, offset: u32, len: u32 },
    /// `bitwise reg <dreg> = (reg <sreg> & <mask>) ^ 0`, `mask.len()` bytes.
    Mask { sreg: u32, dreg: u32, mask: Vec<u8> },
    /// `immediate reg 0 <verdict>`
    Verdict(Verdict),
    /// `immediate reg <dreg> <data>`
    Immediate { dreg: u32, data: Vec<u8> },
    /// `redir proto_min reg <reg> flags <flags>`
    Redir { reg_proto_min: u32, flags: u32 },
    /// `payload load <len>b @ transport header + <offset> => reg <dreg>`
    TransportPayload { dreg: u32, offset: u32, len: u32 },
    /// `range eq reg <sreg> <from> <to>`
    Range {
        sreg: u32,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    /// `fib daddr type => reg <dreg>`: the `RTN_*` type of the destination address.
    FibDaddrType { dreg: u32 },
    /// `meta set <key> with reg <sreg>`
    MetaSet { key: MetaKey, sreg: u32 },
    /// `tproxy port reg <reg_port>`, either family: the packet goes to the transparent
    /// socket on that port, or (no such socket) the rule stops here.
    Tproxy { reg_port: u32 },
    /// `reject type icmpx code port-unreachable`
    RejectPortUnreachable,
    /// `bitwise reg <dreg> = (reg <sreg> & <mask>) ^ <xor>`: with `mask = !bits` and
    /// `xor = bits`, nft's `<key> | bits`.
    MaskXor {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// `lookup reg <sreg> set <set>`: matches when the register's value is in the set of
    /// the rule's table. `set_id` names a set added earlier in the same batch.
    Lookup { sreg: u32, set: String, set_id: u32 },
}

impl Expr {
    /// The kernel's expression type name (`NFTA_EXPR_NAME`).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::CmpEq { .. } | Expr::CmpNeq { .. } => "cmp",
            Expr::Ct { .. } => "ct",
            Expr::NetworkPayload { .. } => "payload",
            Expr::Mask { .. } => "bitwise",
            Expr::Verdict(_) | Expr::Immediate { .. } => "immediate",
            Expr::Redir { .. } => "redir",
            Expr::TransportPayload { .. } => "payload",
            Expr::Range { .. } => "range",
            Expr::FibDaddrType { .. } => "fib",
            Expr::MetaSet { .. } => "meta",
            Expr::Tproxy { .. } => "tproxy",
            Expr::RejectPortUnreachable => "reject",
            Expr::MaskXor { .. } => "bitwise",
            Expr::Lookup { .. } => "lookup",
        }
    }

    /// Write the expression's `NFTA_EXPR_DATA` children.
    fn encode_data(&self, b: &mut AttrBuf) {
        match self {
            Expr::Meta { key, dreg } => {
                b.put_be32(NFTA_META_KEY, *key as u32);
                b.put_be32(NFTA_META_DREG, *dreg);
            }
            Expr::CmpEq { sreg, data } | Expr::CmpNeq { sreg, data } => {
                let op = if matches!(self, Expr::CmpEq { .. }) {
                    NFT_CMP_EQ
                } else {
                    NFT_CMP_NEQ
                };
                b.put_be32(NFTA_CMP_SREG, *sreg);
                b.put_be32(NFTA_CMP_OP, op);
                b.nested(NFTA_CMP_DATA, |b| b.put(NFTA_DATA_VALUE, data));
            }
            Expr::Ct { key, dreg } => {
                b.put_be32(NFTA_CT_KEY, *key as u32);
                b.put_be32(NFTA_CT_DREG, *dreg);
            }
            Expr::NetworkPayload { dreg, offset, len } => {
                b.put_be32(NFTA_PAYLOAD_DREG, *dreg);
                b.put_be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER);
                b.put_be32(NFTA_PAYLOAD_OFFSET, *offset);
                b.put_be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Mask { sreg, dreg, mask } => {
                // NFTA_BITWISE_OP is left out: its default is the mask-and-xor boolean
                // operation, and kernels before 5.6 do not know the attribute.
                let len = u32::try_from(mask.len()).unwrap_or(u32::MAX);
                b.put_be32(NFTA_BITWISE_SREG, *sreg);
                b.put_be32(NFTA_BITWISE_DREG, *dreg);
                b.put_be32(NFTA_BITWISE_LEN, len);
                b.nested(NFTA_BITWISE_MASK, |b| b.put(NFTA_DATA_VALUE, mask));
                let xor = vec![0u8; mask.len()];
                b.nested(NFTA_BITWISE_XOR, |b| b.put(NFTA_DATA_VALUE, &xor));
            }
            Expr::Verdict(verdict) => {
                b.put_be32(NFTA_IMMEDIATE_DREG, REG_VERDICT);
                b.nested(NFTA_IMMEDIATE_DATA, |b| {
                    b.nested(NFTA_DATA_VERDICT, |b| match verdict {
                        Verdict::Accept => b.put_be32(NFTA_VERDICT_CODE, NF_ACCEPT as u32),
                        Verdict::Return => b.put_be32(NFTA_VERDICT_CODE, NFT_RETURN as u32),
                        Verdict::Jump(chain) => {
                            b.put_be32(NFTA_VERDICT_CODE, NFT_JUMP as u32);
                            b.put_str(NFTA_VERDICT_CHAIN, chain);
                        }
                    })
                });
            }
            Expr::Immediate { dreg, data } => {
                b.put_be32(NFTA_IMMEDIATE_DREG, *dreg);
                b.nested(NFTA_IMMEDIATE_DATA, |b| b.put(NFTA_DATA_VALUE, data));
            }
            Expr::Redir {
                reg_proto_min,
                flags,
            } => {
                b.put_be32(NFTA_REDIR_REG_PROTO_MIN, *reg_proto_min);
                b.put_be32(NFTA_REDIR_FLAGS, *flags);
            }
            Expr::TransportPayload { dreg, offset, len } => {
                b.put_be32(NFTA_PAYLOAD_DREG, *dreg);
                b.put_be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
                b.put_be32(NFTA_PAYLOAD_OFFSET, *offset);
                b.put_be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Range { sreg, from, to } => {
                b.put_be32(NFTA_RANGE_SREG, *sreg);
                b.put_be32(NFTA_RANGE_OP, NFT_RANGE_EQ);
                b.nested(NFTA_RANGE_FROM_DATA, |b| b.put(NFTA_DATA_VALUE, from));
                b.nested(NFTA_RANGE_TO_DATA, |b| b.put(NFTA_DATA_VALUE, to));
            }
            Expr::FibDaddrType { dreg } => {
                b.put_be32(NFTA_FIB_DREG, *dreg);
                b.put_be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
                b.put_be32(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR);
            }
            Expr::MetaSet { key, sreg } => {
                b.put_be32(NFTA_META_KEY, *key as u32);
                b.put_be32(NFTA_META_SREG, *sreg);
            }
            Expr::Tproxy { reg_port } => {
                // NFPROTO_UNSPEC: the packet's own family (allowed without an address).
                b.put_be32(NFTA_TPROXY_FAMILY, 0);
                b.put_be32(NFTA_TPROXY_REG_PORT, *reg_port);
            }
            Expr::RejectPortUnreachable => {
                b.put_be32(NFTA_REJECT_TYPE, NFT_REJECT_ICMPX_UNREACH);
                b.put_u8(NFTA_REJECT_ICMP_CODE, NFT_REJECT_ICMPX_PORT_UNREACH);
            }
            Expr::MaskXor {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                let len = u32::try_from(mask.len()).unwrap_or(u32::MAX);
                b.put_be32(NFTA_BITWISE_SREG, *sreg);
                b.put_be32(NFTA_BITWISE_DREG, *dreg);
                b.put_be32(NFTA_BITWISE_LEN, len);
                b.nested(NFTA_BITWISE_MASK, |b| b.put(NFTA_DATA_VALUE, mask));
                b.nested(NFTA_BITWISE_XOR, |b| b.put(NFTA_DATA_VALUE, xor));
            }
            Expr::Lookup { sreg, set, set_id } => {
                b.put_str(NFTA_LOOKUP_SET, set);
                b.put_be32(NFTA_LOOKUP_SREG, *sreg);
                b.put_be32(NFTA_LOOKUP_SET_ID, *set_id);
            }
        }
    }
}

/// Write the list of expressions as the children of an `NFTA_RULE_EXPRESSIONS` attribute.
pub(crate) fn encode_list(exprs: &[Expr], b: &mut AttrBuf) {
    for expr in exprs {
        b.nested(NFTA_LIST_ELEM, |b| {
            b.put_str(NFTA_EXPR_NAME, expr.name());
            b.nested(NFTA_EXPR_DATA, |b| expr.encode_data(b));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walk attributes as (type without flags, payload) pairs.
    fn attrs(mut data: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while data.len() >= 4 {
            let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
            let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
            out.push((kind, data[4..len].to_vec()));
            data = &data[((len + 3) & !3).min(data.len())..];
        }
        out
    }

    fn encoded(expr: Expr) -> (String, Vec<(u16, Vec<u8>)>) {
        let mut b = AttrBuf::new();
        encode_list(&[expr], &mut b);
        let bytes = b.into_bytes();
        let elems = attrs(&bytes);
        assert_eq!(elems.len(), 1);
        assert_eq!(elems[0].0, NFTA_LIST_ELEM);
        let inner = attrs(&elems[0].1);
        assert_eq!(inner[0].0, NFTA_EXPR_NAME);
        let name = String::from_utf8(inner[0].1.clone()).expect("utf8");
        assert_eq!(inner[1].0, NFTA_EXPR_DATA);
        (name.trim_end_matches('\0').to_owned(), attrs(&inner[1].1))
    }

    #[test]
    fn redir_encodes_register_and_flags_big_endian() {
        let (name, data) = encoded(Expr::Redir {
            reg_proto_min: REG_1,
            flags: 2,
        });
        assert_eq!(name, "redir");
        assert_eq!(data, vec![(1, vec![0, 0, 0, 1]), (3, vec![0, 0, 0, 2])]);
    }

    #[test]
    fn cmp_nests_its_data_value() {
        let (name, data) = encoded(Expr::CmpEq {
            sreg: REG_1,
            data: vec![6],
        });
        assert_eq!(name, "cmp");
        assert_eq!(data[0], (NFTA_CMP_SREG, vec![0, 0, 0, 1]));
        assert_eq!(data[1], (NFTA_CMP_OP, vec![0, 0, 0, 0]));
        assert_eq!(data[2].0, NFTA_CMP_DATA);
        assert_eq!(attrs(&data[2].1), vec![(NFTA_DATA_VALUE, vec![6])]);
    }

    #[test]
    fn ct_and_cmp_neq_encode_key_register_and_op() {
        let (name, data) = encoded(Expr::Ct {
            key: CtKey::State,
            dreg: REG_1,
        });
        assert_eq!(name, "ct");
        assert_eq!(
            data,
            vec![(NFTA_CT_KEY, vec![0; 4]), (NFTA_CT_DREG, vec![0, 0, 0, 1])]
        );
        let (name, data) = encoded(Expr::CmpNeq {
            sreg: REG_1,
            data: vec![0; 4],
        });
        assert_eq!(name, "cmp");
        assert_eq!(data[1], (NFTA_CMP_OP, vec![0, 0, 0, 1]));
    }

    #[test]
    fn jump_carries_code_and_chain() {
        let (name, data) = encoded(Expr::Verdict(Verdict::Jump("x".into())));
        assert_eq!(name, "immediate");
        assert_eq!(data[0], (NFTA_IMMEDIATE_DREG, vec![0, 0, 0, 0]));
        let value = attrs(&data[1].1);
        assert_eq!(value[0].0, NFTA_DATA_VERDICT);
        let verdict = attrs(&value[0].1);
        assert_eq!(
            verdict[0],
            (NFTA_VERDICT_CODE, (-3i32).to_be_bytes().to_vec())
        );
        assert_eq!(verdict[1], (NFTA_VERDICT_CHAIN, b"x\0".to_vec()));
    }

    #[test]
    fn tproxy_is_family_unspec_with_a_port_register() {
        let (name, data) = encoded(Expr::Tproxy { reg_port: REG_1 });
        assert_eq!(name, "tproxy");
        assert_eq!(
            data,
            vec![
                (NFTA_TPROXY_FAMILY, vec![0; 4]),
                (NFTA_TPROXY_REG_PORT, vec![0, 0, 0, 1])
            ]
        );
        let (name, data) = encoded(Expr::RejectPortUnreachable);
        assert_eq!(name, "reject");
        assert_eq!(data, vec![(1, vec![0, 0, 0, 2]), (2, vec![1])]);
        let (name, data) = encoded(Expr::FibDaddrType { dreg: REG_1 });
        assert_eq!(name, "fib");
        assert_eq!(data[1], (NFTA_FIB_RESULT, vec![0, 0, 0, 3]));
        assert_eq!(data[2], (NFTA_FIB_FLAGS, vec![0, 0, 0, 2]));
    }

    #[test]
    fn lookup_names_its_set_and_mask_xor_its_xor() {
        let (name, data) = encoded(Expr::Lookup {
            sreg: REG_1,
            set: "bypass4".into(),
            set_id: 7,
        });
        assert_eq!(name, "lookup");
        assert_eq!(
            data,
            vec![
                (NFTA_LOOKUP_SET, b"bypass4\0".to_vec()),
                (NFTA_LOOKUP_SREG, vec![0, 0, 0, 1]),
                (NFTA_LOOKUP_SET_ID, vec![0, 0, 0, 7]),
            ]
        );
        let (name, data) = encoded(Expr::MaskXor {
            sreg: 1,
            dreg: 1,
            mask: vec![0xef, 0xff],
            xor: vec![0x10, 0],
        });
        assert_eq!(name, "bitwise");
        assert_eq!(attrs(&data[4].1), vec![(NFTA_DATA_VALUE, vec![0x10, 0])]);
    }

    #[test]
    fn bitwise_has_mask_and_zero_xor() {
        let (name, data) = encoded(Expr::Mask {
            sreg: 1,
            dreg: 1,
            mask: vec![255, 0, 0, 0],
        });
        assert_eq!(name, "bitwise");
        assert_eq!(data[2], (NFTA_BITWISE_LEN, vec![0, 0, 0, 4]));
        assert_eq!(
            attrs(&data[3].1),
            vec![(NFTA_DATA_VALUE, vec![255, 0, 0, 0])]
        );
        assert_eq!(attrs(&data[4].1), vec![(NFTA_DATA_VALUE, vec![0; 4])]);
    }
}
