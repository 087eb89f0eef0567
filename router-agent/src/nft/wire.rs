//! The bytes of nf_tables requests and replies, without a socket.
//!
//! * [`AttrBuf`] writes netlink attributes: `u16 len, u16 type, payload`, padded to 4 bytes,
//!   with `NLA_F_NESTED` on nested ones. nf_tables reads its `u32` attributes in network
//!   order, so [`AttrBuf::put_u32`] writes big-endian.
//! * [`Batch`] is a list of [`Msg`]s; [`Batch::encode`] frames them between
//!   `NFNL_MSG_BATCH_BEGIN` and `NFNL_MSG_BATCH_END` (`res_id = NFNL_SUBSYS_NFTABLES`),
//!   with `NLM_F_ACK` on every message, so the kernel applies them as one transaction and
//!   answers each one.
//! * [`parse_replies`] reads the `NLMSG_ERROR` answers (errno 0 is an ACK), with the
//!   extended ACK's message if there is one. It never panics on bad input.
//!
//! Constants are from `linux/netlink.h`, `linux/netfilter/nfnetlink.h` and
//! `linux/netfilter/nf_tables.h`.

use super::NftError;

/// `NFNL_SUBSYS_NFTABLES`: the high byte of every nf_tables message type.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN` (`NLMSG_MIN_TYPE`).
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
/// `NFNL_MSG_BATCH_END`.
const NFNL_MSG_BATCH_END: u16 = 0x11;
/// `NFNETLINK_V0`.
const NFNETLINK_V0: u8 = 0;

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLA_HDRLEN: usize = 4;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
/// In a reply: the original message was cut to its header (`NETLINK_CAP_ACK`).
const NLM_F_CAPPED: u16 = 0x100;
/// In a reply: extended ACK attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// In a request: fail with `EEXIST` if the object exists.
pub(crate) const NLM_F_EXCL: u16 = 0x200;
/// In a request: create the object if it does not exist.
pub(crate) const NLM_F_CREATE: u16 = 0x400;
/// In a request: append the rule at the end of the chain.
pub(crate) const NLM_F_APPEND: u16 = 0x800;

/// `NLMSGERR_ATTR_MSG`: the extended ACK's error string.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The failed "message" when the kernel refused the batch as a whole (e.g. no CAP_NET_ADMIN).
pub(crate) const WHOLE_BATCH: &str = "the batch";

/// The nf_tables message types used here (`enum nf_tables_msg_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum MsgType {
    NewTable = 0,
    DelTable = 2,
    NewChain = 3,
    NewRule = 6,
    DelRule = 8,
}

impl MsgType {
    fn name(self) -> &'static str {
        match self {
            MsgType::NewTable => "NEWTABLE",
            MsgType::DelTable => "DELTABLE",
            MsgType::NewChain => "NEWCHAIN",
            MsgType::NewRule => "NEWRULE",
            MsgType::DelRule => "DELRULE",
        }
    }
}

/// A growing buffer of netlink attributes.
#[derive(Debug, Default)]
pub(crate) struct AttrBuf {
    buf: Vec<u8>,
}

impl AttrBuf {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// One attribute with a raw payload.
    pub(crate) fn put(&mut self, kind: u16, payload: &[u8]) {
        let start = self.begin(kind);
        self.buf.extend_from_slice(payload);
        self.end(start);
    }

    /// A `u32` attribute in network byte order, as nf_tables expects.
    pub(crate) fn put_u32(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_be_bytes());
    }

    /// A NUL-terminated string attribute.
    pub(crate) fn put_str(&mut self, kind: u16, value: &str) {
        let start = self.begin(kind);
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self.end(start);
    }

    /// A nested attribute whose children `fill` writes.
    pub(crate) fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut AttrBuf)) {
        let start = self.begin(kind | NLA_F_NESTED);
        fill(self);
        self.end(start);
    }

    fn begin(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; NLA_HDRLEN]);
        self.buf[start + 2..start + 4].copy_from_slice(&kind.to_ne_bytes());
        start
    }

    /// Write the length (header + payload, unpadded) and pad to 4 bytes.
    fn end(&mut self, start: usize) {
        // Our attributes are tiny; a length past u16 would be a bug in this module.
        let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.buf.resize(align4(self.buf.len()), 0);
    }
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// One nf_tables request inside a batch.
#[derive(Debug)]
pub(crate) struct Msg {
    kind: MsgType,
    flags: u16,
    family: u8,
    attrs: Vec<u8>,
    /// What this message does, for error reports, e.g. `NEWRULE redirect_lan "... return"`.
    what: String,
}

impl Msg {
    /// A request of `kind` for `family` with extra `flags` (`NLM_F_CREATE`, ...).
    pub(crate) fn new(kind: MsgType, flags: u16, family: u8, attrs: AttrBuf, what: &str) -> Msg {
        Msg {
            kind,
            flags,
            family,
            attrs: attrs.into_bytes(),
            what: format!("{} {what}", kind.name()),
        }
    }

    pub(crate) fn what(&self) -> &str {
        &self.what
    }
}

/// A list of messages the kernel applies as one transaction.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    msgs: Vec<Msg>,
}

impl Batch {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, msg: Msg) {
        self.msgs.push(msg);
    }

    pub(crate) fn len(&self) -> usize {
        self.msgs.len()
    }

    pub(crate) fn messages(&self) -> &[Msg] {
        &self.msgs
    }

    #[cfg(test)]
    pub(crate) fn into_messages(self) -> Vec<Msg> {
        self.msgs
    }

    /// The wire bytes: BATCH_BEGIN with `first_seq`, the messages, BATCH_END.
    pub(crate) fn encode(&self, first_seq: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let subsys = NFNL_SUBSYS_NFTABLES.to_be_bytes();
        put_msg(
            &mut out,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            first_seq,
            0,
            subsys,
            &[],
        );
        let mut seq = first_seq;
        for msg in &self.msgs {
            seq = seq.wrapping_add(1);
            let kind = (NFNL_SUBSYS_NFTABLES << 8) | msg.kind as u16;
            let flags = NLM_F_REQUEST | NLM_F_ACK | msg.flags;
            put_msg(&mut out, kind, flags, seq, msg.family, [0, 0], &msg.attrs);
        }
        seq = seq.wrapping_add(1);
        put_msg(
            &mut out,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq,
            0,
            subsys,
            &[],
        );
        out
    }
}

/// Append `nlmsghdr + nfgenmsg + attrs`.
fn put_msg(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: [u8; 2],
    attrs: &[u8],
) {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: to the kernel
    out.extend_from_slice(&[family, NFNETLINK_V0]);
    out.extend_from_slice(&res_id);
    out.extend_from_slice(attrs);
}

/// One `NLMSG_ERROR` reply: errno 0 is an ACK.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) seq: u32,
    pub(crate) errno: i32,
    /// The extended ACK's message, if the kernel sent one.
    pub(crate) detail: Option<String>,
}

/// Parse the `NLMSG_ERROR` messages in one datagram; other message types are skipped.
pub(crate) fn parse_replies(mut data: &[u8]) -> Result<Vec<Reply>, NftError> {
    let mut replies = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let len = read_u32(data, 0).ok_or(NftError::Malformed("short netlink header"))? as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            return Err(NftError::Malformed("bad netlink message length"));
        }
        let kind = read_u16(data, 4).unwrap_or(0);
        let flags = read_u16(data, 6).unwrap_or(0);
        let seq = read_u32(data, 8).unwrap_or(0);
        if kind == NLMSG_ERROR {
            replies.push(parse_error(&data[NLMSG_HDRLEN..len], flags, seq)?);
        }
        data = data.get(align4(len)..).unwrap_or_default();
    }
    Ok(replies)
}

/// `struct nlmsgerr { int error; struct nlmsghdr msg; }`, then maybe the request and TLVs.
fn parse_error(body: &[u8], flags: u16, seq: u32) -> Result<Reply, NftError> {
    let error = read_u32(body, 0).ok_or(NftError::Malformed("short NLMSG_ERROR"))? as i32;
    let orig_len = read_u32(body, 4).ok_or(NftError::Malformed("short NLMSG_ERROR"))? as usize;
    let mut detail = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        let echoed = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            orig_len
        };
        let mut tlvs = body.get(4 + align4(echoed)..).unwrap_or_default();
        while tlvs.len() >= NLA_HDRLEN {
            let len = read_u16(tlvs, 0).unwrap_or(0) as usize;
            let kind = read_u16(tlvs, 2).unwrap_or(0) & NLA_TYPE_MASK;
            if len < NLA_HDRLEN || len > tlvs.len() {
                break;
            }
            if kind == NLMSGERR_ATTR_MSG {
                let text = &tlvs[NLA_HDRLEN..len];
                let text = text.split(|b| *b == 0).next().unwrap_or_default();
                detail = Some(String::from_utf8_lossy(text).into_owned());
            }
            tlvs = tlvs.get(align4(len)..).unwrap_or_default();
        }
    }
    Ok(Reply {
        seq,
        errno: error.wrapping_neg(),
        detail,
    })
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nested() {
        let mut b = AttrBuf::new();
        b.put_str(1, "ab");
        b.nested(2, |b| b.put_u32(1, 0x0102_0304));
        let bytes = b.into_bytes();
        let mut want = Vec::new();
        want.extend_from_slice(&7u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(b"ab\0\0");
        want.extend_from_slice(&12u16.to_ne_bytes());
        want.extend_from_slice(&(2u16 | NLA_F_NESTED).to_ne_bytes());
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn batch_is_framed_with_begin_and_end() {
        let mut batch = Batch::new();
        let mut attrs = AttrBuf::new();
        attrs.put_str(1, "t");
        batch.push(Msg::new(MsgType::DelTable, 0, 1, attrs, "table t"));
        let wire = batch.encode(100);
        // begin (20) + deltable (20 + 8) + end (20)
        assert_eq!(wire.len(), 68);
        assert_eq!(read_u16(&wire, 4), Some(NFNL_MSG_BATCH_BEGIN));
        assert_eq!(&wire[18..20], &NFNL_SUBSYS_NFTABLES.to_be_bytes());
        assert_eq!(read_u16(&wire, 24), Some((10 << 8) | 2));
        assert_eq!(read_u16(&wire, 26), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(read_u32(&wire, 28), Some(101));
        assert_eq!(wire[36], 1);
        assert_eq!(read_u16(&wire, 52), Some(NFNL_MSG_BATCH_END));
        assert_eq!(read_u32(&wire, 56), Some(102));
    }

    #[test]
    fn error_replies_parse_with_extack_message() {
        let mut body = Vec::new();
        body.extend_from_slice(&(-2i32).to_ne_bytes());
        body.extend_from_slice(&[0; NLMSG_HDRLEN]); // capped original header
        let mut tlv = AttrBuf::new();
        tlv.put_str(NLMSGERR_ATTR_MSG, "no such table");
        body.extend_from_slice(&tlv.into_bytes());
        let mut msg = Vec::new();
        let len = (NLMSG_HDRLEN + body.len()) as u32;
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_CAPPED | NLM_F_ACK_TLVS).to_ne_bytes());
        msg.extend_from_slice(&7u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&body);
        let replies = parse_replies(&msg).expect("well-formed");
        let want = Reply {
            seq: 7,
            errno: 2,
            detail: Some("no such table".into()),
        };
        assert_eq!(replies, vec![want]);
    }

    #[test]
    fn garbage_replies_do_not_panic() {
        for len in 0..64u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let _ = parse_replies(&data);
        }
        let mut bad = vec![0u8; 16];
        bad[0] = 200; // longer than the datagram
        assert!(parse_replies(&bad).is_err());
    }
}
