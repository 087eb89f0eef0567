//! The bytes of nf_tables requests and replies, on `mpbond-netlink`'s codec.
//!
//! * [`AttrBuf`] is the shared attribute writer. nf_tables reads its `u32` attributes in
//!   network order, so this module's callers use [`AttrBuf::put_be32`].
//! * [`Batch`] is a list of [`Msg`]s; [`Batch::encode`] frames them between
//!   `NFNL_MSG_BATCH_BEGIN` and `NFNL_MSG_BATCH_END` (`res_id = NFNL_SUBSYS_NFTABLES`),
//!   with `NLM_F_ACK` on every message, so the kernel applies them as one transaction and
//!   answers each one.
//! * [`parse_replies`] reads the ACKs and errors (with the extended ACK's message if there
//!   is one) of one datagram. It never panics on bad input.
//!
//! Constants are from `linux/netfilter/nfnetlink.h` and `linux/netfilter/nf_tables.h`.

pub(crate) use mpbond_netlink::msg::flags::{
    APPEND as NLM_F_APPEND, CREATE as NLM_F_CREATE, EXCL as NLM_F_EXCL,
};
use mpbond_netlink::msg::{flags, put_message};
pub(crate) use mpbond_netlink::AttrBuf;
use mpbond_netlink::{Message, Messages};

use super::NftError;

/// `NFNL_SUBSYS_NFTABLES`: the high byte of every nf_tables message type.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN` (`NLMSG_MIN_TYPE`).
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
/// `NFNL_MSG_BATCH_END`.
const NFNL_MSG_BATCH_END: u16 = 0x11;
/// `NFNETLINK_V0`.
const NFNETLINK_V0: u8 = 0;

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
    NewSet = 9,
}

impl MsgType {
    fn name(self) -> &'static str {
        match self {
            MsgType::NewTable => "NEWTABLE",
            MsgType::DelTable => "DELTABLE",
            MsgType::NewChain => "NEWCHAIN",
            MsgType::NewRule => "NEWRULE",
            MsgType::DelRule => "DELRULE",
            MsgType::NewSet => "NEWSET",
        }
    }
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
        let subsys = nfgenmsg(0, NFNL_SUBSYS_NFTABLES.to_be_bytes());
        put_message(
            &mut out,
            NFNL_MSG_BATCH_BEGIN,
            flags::REQUEST,
            first_seq,
            &[&subsys],
        );
        let mut seq = first_seq;
        for msg in &self.msgs {
            seq = seq.wrapping_add(1);
            let kind = (NFNL_SUBSYS_NFTABLES << 8) | msg.kind as u16;
            let fl = flags::REQUEST | flags::ACK | msg.flags;
            let header = nfgenmsg(msg.family, [0, 0]);
            put_message(&mut out, kind, fl, seq, &[&header, &msg.attrs]);
        }
        seq = seq.wrapping_add(1);
        put_message(
            &mut out,
            NFNL_MSG_BATCH_END,
            flags::REQUEST,
            seq,
            &[&subsys],
        );
        out
    }
}

/// `struct nfgenmsg { u8 nfgen_family; u8 version; be16 res_id; }`.
fn nfgenmsg(family: u8, res_id: [u8; 2]) -> [u8; 4] {
    [family, NFNETLINK_V0, res_id[0], res_id[1]]
}

/// One answer to a message of the batch: errno 0 is an ACK.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) seq: u32,
    pub(crate) errno: i32,
    /// The extended ACK's message, if the kernel sent one.
    pub(crate) detail: Option<String>,
}

/// The ACKs and errors in one datagram; other messages are skipped.
pub(crate) fn parse_replies(data: &[u8]) -> Result<Vec<Reply>, NftError> {
    let mut replies = Vec::new();
    for msg in Messages::new(data) {
        match msg.map_err(|_| NftError::Malformed("bad netlink message length"))? {
            Message::Ack { seq } => replies.push(Reply {
                seq,
                errno: 0,
                detail: None,
            }),
            Message::Error { seq, errno, detail } => replies.push(Reply { seq, errno, detail }),
            Message::Data { .. } | Message::Done { .. } => {}
        }
    }
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpbond_netlink::msg::NLMSG_ERROR;

    fn read_u16(data: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_ne_bytes(data.get(at..at + 2)?.try_into().ok()?))
    }

    fn read_u32(data: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
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
        assert_eq!(read_u16(&wire, 26), Some(flags::REQUEST | flags::ACK));
        assert_eq!(read_u32(&wire, 28), Some(101));
        assert_eq!(wire[36], 1);
        assert_eq!(read_u16(&wire, 52), Some(NFNL_MSG_BATCH_END));
        assert_eq!(read_u32(&wire, 56), Some(102));
    }

    #[test]
    fn acks_and_errors_are_replies() {
        let mut wire = Vec::new();
        let mut body = 0i32.to_ne_bytes().to_vec();
        body.extend_from_slice(&[0; 16]);
        put_message(&mut wire, NLMSG_ERROR, flags::CAPPED, 7, &[&body]);
        body[..4].copy_from_slice(&(-2i32).to_ne_bytes());
        put_message(&mut wire, NLMSG_ERROR, flags::CAPPED, 8, &[&body]);
        let replies = parse_replies(&wire).expect("well-formed");
        let want = [
            Reply {
                seq: 7,
                errno: 0,
                detail: None,
            },
            Reply {
                seq: 8,
                errno: 2,
                detail: None,
            },
        ];
        assert_eq!(replies, want);
        let mut bad = vec![0u8; 16];
        bad[0] = 200; // longer than the datagram
        assert!(parse_replies(&bad).is_err());
    }
}
