//! ubus messages on the unix socket (pure, sans-IO, never panics).
//!
//! A message is the 8-byte `struct ubus_msghdr` (`version` 0, `type`, `seq` u16 BE,
//! `peer` u32 BE) followed by one blob attribute with id 0 whose payload holds the
//! message attributes (`UBUS_ATTR_*`, plain blob attributes). The total length is 8 +
//! that attribute's length. [`decode`] answers [`Decoded::Incomplete`] until a whole
//! message is buffered, as `mpbond_protocol::decode` does; the buffering is the caller's.
//!
//! Layout as in openwrt/ubus `ubusmsg.h` (types, attributes, status codes), `ubusd.c`
//! (`ubus_msg_writev`: header fields converted with `cpu_to_be16/32`) and
//! `ubusd_proto.c` (which attributes each reply carries). Attributes are typed by the
//! policy both ubusd and libubus parse with; one that fails its type is kept as
//! [`MsgAttr::Other`], which reads as absent, as `blob_parse` leaves it out.

use serde_json::{Map, Value as Json};
use thiserror::Error;

use super::blob::{self, BlobError, Table};

/// Header size.
pub const HEADER_LEN: usize = 8;
/// `UBUS_MAX_MSGLEN` of current ubusd: a longer message is refused.
pub const MAX_MESSAGE_LEN: usize = 1 << 20;
/// `UBUS_SYSTEM_OBJECT_EVENT`: the object that takes `register` and `send`.
pub const EVENT_OBJECT: u32 = 1;

/// `enum ubus_msg_type`.
pub mod msg {
    pub const HELLO: u8 = 0;
    pub const STATUS: u8 = 1;
    pub const DATA: u8 = 2;
    pub const PING: u8 = 3;
    pub const LOOKUP: u8 = 4;
    pub const INVOKE: u8 = 5;
    pub const ADD_OBJECT: u8 = 6;
    pub const REMOVE_OBJECT: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const UNSUBSCRIBE: u8 = 9;
    pub const NOTIFY: u8 = 10;
    pub const MONITOR: u8 = 11;
}

/// `enum ubus_msg_attr`.
pub mod attr {
    pub const STATUS: u8 = 1;
    pub const OBJPATH: u8 = 2;
    pub const OBJID: u8 = 3;
    pub const METHOD: u8 = 4;
    pub const OBJTYPE: u8 = 5;
    pub const SIGNATURE: u8 = 6;
    pub const DATA: u8 = 7;
    pub const TARGET: u8 = 8;
    pub const ACTIVE: u8 = 9;
    pub const NO_REPLY: u8 = 10;
    pub const SUBSCRIBERS: u8 = 11;
    pub const USER: u8 = 12;
    pub const GROUP: u8 = 13;
}

/// `enum ubus_msg_status`.
pub mod status {
    pub const OK: u32 = 0;
    pub const INVALID_COMMAND: u32 = 1;
    pub const INVALID_ARGUMENT: u32 = 2;
    pub const METHOD_NOT_FOUND: u32 = 3;
    pub const NOT_FOUND: u32 = 4;
    pub const NO_DATA: u32 = 5;
    pub const PERMISSION_DENIED: u32 = 6;
    pub const TIMEOUT: u32 = 7;
    pub const NOT_SUPPORTED: u32 = 8;
    pub const UNKNOWN_ERROR: u32 = 9;
    pub const CONNECTION_FAILED: u32 = 10;

    /// `ubus_strerror`'s text.
    pub fn describe(code: u32) -> &'static str {
        match code {
            OK => "success",
            INVALID_COMMAND => "invalid command",
            INVALID_ARGUMENT => "invalid argument",
            METHOD_NOT_FOUND => "method not found",
            NOT_FOUND => "not found",
            NO_DATA => "no response",
            PERMISSION_DENIED => "permission denied",
            TIMEOUT => "request timed out",
            NOT_SUPPORTED => "operation not supported",
            UNKNOWN_ERROR => "unknown error",
            CONNECTION_FAILED => "connection failed",
            _ => "unknown status code",
        }
    }
}

/// One message attribute, typed as `ubusd_proto.c`'s and `libubus-io.c`'s
/// `ubus_policy` type it: ids, status and object type are `BLOB_ATTR_INT32` (4 bytes,
/// unsigned on the wire), paths, methods, user and group `BLOB_ATTR_STRING`
/// (NUL-terminated), `ACTIVE` and `NO_REPLY` `BLOB_ATTR_INT8`, signature and data nested
/// blobmsg tables.
#[derive(Debug, Clone, PartialEq)]
pub enum MsgAttr {
    Status(u32),
    ObjPath(String),
    ObjId(u32),
    Method(String),
    ObjType(u32),
    /// The object's methods (a blobmsg table of tables).
    Signature(Table),
    /// The arguments or the reply (a blobmsg table).
    Data(Table),
    /// The peer a `NOTIFY`/subscription is about.
    Target(u32),
    Active(bool),
    NoReply(bool),
    User(String),
    Group(String),
    /// Anything else, kept as bytes; also a known attribute whose payload fails its
    /// policy type (`blob_parse` leaves such an attribute out, so it reads as absent).
    Other {
        id: u8,
        payload: Vec<u8>,
    },
}

/// One ubus message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: u8,
    pub seq: u16,
    pub peer: u32,
    /// In wire order.
    pub attrs: Vec<MsgAttr>,
}

/// What [`decode`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// Not a whole message yet: at least `needed` bytes in all.
    Incomplete {
        needed: usize,
    },
    Complete {
        message: Message,
        len: usize,
    },
}

/// A message that cannot be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("unsupported ubus message version {0}")]
    Version(u8),
    #[error("message of {0} bytes is longer than {MAX_MESSAGE_LEN}")]
    TooLong(usize),
    #[error("message blob length {0} is below the 4-byte header")]
    BadLength(usize),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl Message {
    pub fn new(kind: u8, seq: u16, peer: u32, attrs: Vec<MsgAttr>) -> Message {
        Message {
            kind,
            seq,
            peer,
            attrs,
        }
    }

    /// The first `STATUS` attribute.
    pub fn status(&self) -> Option<u32> {
        self.attrs.iter().find_map(|a| match a {
            MsgAttr::Status(s) => Some(*s),
            _ => None,
        })
    }

    /// The first `OBJID` attribute.
    pub fn objid(&self) -> Option<u32> {
        self.attrs.iter().find_map(|a| match a {
            MsgAttr::ObjId(id) => Some(*id),
            _ => None,
        })
    }

    /// The first `METHOD` attribute.
    pub fn method(&self) -> Option<&str> {
        self.attrs.iter().find_map(|a| match a {
            MsgAttr::Method(m) => Some(m.as_str()),
            _ => None,
        })
    }

    /// The first `OBJPATH` attribute.
    pub fn objpath(&self) -> Option<&str> {
        self.attrs.iter().find_map(|a| match a {
            MsgAttr::ObjPath(p) => Some(p.as_str()),
            _ => None,
        })
    }

    /// The first `DATA` attribute, with its blobmsg types.
    pub fn data(&self) -> Option<&Table> {
        self.attrs.iter().find_map(|a| match a {
            MsgAttr::Data(d) => Some(d),
            _ => None,
        })
    }

    /// The first `DATA` attribute as JSON (`blobmsg_format_json`).
    pub fn data_json(&self) -> Option<Map<String, Json>> {
        self.data().map(Table::to_json)
    }

    /// Whether a `NO_REPLY` attribute says no reply is wanted.
    pub fn no_reply(&self) -> bool {
        self.attrs
            .iter()
            .any(|a| matches!(a, MsgAttr::NoReply(true)))
    }

    /// The wire bytes.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut body = Vec::new();
        for a in &self.attrs {
            let (id, payload) = match a {
                MsgAttr::Status(v) => (attr::STATUS, v.to_be_bytes().to_vec()),
                MsgAttr::ObjPath(s) => (attr::OBJPATH, blob::string_payload(s)),
                MsgAttr::ObjId(v) => (attr::OBJID, v.to_be_bytes().to_vec()),
                MsgAttr::Method(s) => (attr::METHOD, blob::string_payload(s)),
                MsgAttr::ObjType(v) => (attr::OBJTYPE, v.to_be_bytes().to_vec()),
                MsgAttr::Signature(t) => (attr::SIGNATURE, t.encode()?),
                MsgAttr::Data(t) => (attr::DATA, t.encode()?),
                MsgAttr::Target(v) => (attr::TARGET, v.to_be_bytes().to_vec()),
                MsgAttr::Active(b) => (attr::ACTIVE, vec![u8::from(*b)]),
                MsgAttr::NoReply(b) => (attr::NO_REPLY, vec![u8::from(*b)]),
                MsgAttr::User(s) => (attr::USER, blob::string_payload(s)),
                MsgAttr::Group(s) => (attr::GROUP, blob::string_payload(s)),
                MsgAttr::Other { id, payload } => (*id, payload.clone()),
            };
            blob::put(&mut body, id, false, &payload)?;
        }
        let total = HEADER_LEN + blob::HDR + body.len();
        if total > MAX_MESSAGE_LEN {
            return Err(WireError::TooLong(total));
        }
        let mut out = Vec::with_capacity(total);
        out.push(0);
        out.push(self.kind);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.peer.to_be_bytes());
        blob::put(&mut out, 0, false, &body)?;
        Ok(out)
    }
}

/// Decode the first message of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded, WireError> {
    let need_head = HEADER_LEN + blob::HDR;
    let Some(head) = buf.get(..need_head) else {
        return Ok(Decoded::Incomplete { needed: need_head });
    };
    if head[0] != 0 {
        return Err(WireError::Version(head[0]));
    }
    let word = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    let blob_len = (word & 0x00ff_ffff) as usize;
    if blob_len < blob::HDR {
        return Err(WireError::BadLength(blob_len));
    }
    let len = HEADER_LEN + blob_len;
    if len > MAX_MESSAGE_LEN {
        return Err(WireError::TooLong(len));
    }
    let Some(body) = buf.get(need_head..len) else {
        return Ok(Decoded::Incomplete { needed: len });
    };
    let mut attrs = Vec::new();
    for a in blob::attrs(body)? {
        attrs.push(typed(a)?);
    }
    let message = Message {
        kind: head[1],
        seq: u16::from_be_bytes([head[2], head[3]]),
        peer: u32::from_be_bytes([head[4], head[5], head[6], head[7]]),
        attrs,
    };
    Ok(Decoded::Complete { message, len })
}

/// `blob_check_type` of libubox for the policy type of `id`: an INT32 is exactly 4
/// bytes, an INT8 exactly 1, a string at least 1 byte ending in NUL; nested and unknown
/// attributes take any length.
fn fits_policy(id: u8, payload: &[u8]) -> bool {
    match id {
        attr::STATUS | attr::OBJID | attr::OBJTYPE | attr::TARGET => payload.len() == 4,
        attr::ACTIVE | attr::NO_REPLY => payload.len() == 1,
        attr::OBJPATH | attr::METHOD | attr::USER | attr::GROUP => payload.last() == Some(&0),
        _ => true,
    }
}

fn typed(a: blob::BlobAttr<'_>) -> Result<MsgAttr, WireError> {
    let other = || MsgAttr::Other {
        id: a.id,
        payload: a.payload.to_vec(),
    };
    if !fits_policy(a.id, a.payload) {
        return Ok(other());
    }
    let u32_of = || blob::payload_u32(a.payload).unwrap_or_default();
    let str_of = || blob::payload_str(a.payload);
    let flag = || a.payload.first().is_some_and(|b| *b != 0);
    Ok(match a.id {
        attr::STATUS => MsgAttr::Status(u32_of()),
        attr::OBJID => MsgAttr::ObjId(u32_of()),
        attr::OBJTYPE => MsgAttr::ObjType(u32_of()),
        attr::TARGET => MsgAttr::Target(u32_of()),
        attr::OBJPATH => MsgAttr::ObjPath(str_of()),
        attr::METHOD => MsgAttr::Method(str_of()),
        attr::USER => MsgAttr::User(str_of()),
        attr::GROUP => MsgAttr::Group(str_of()),
        attr::SIGNATURE => MsgAttr::Signature(Table::decode(a.payload)?),
        attr::DATA => MsgAttr::Data(Table::decode(a.payload)?),
        attr::ACTIVE => MsgAttr::Active(flag()),
        attr::NO_REPLY => MsgAttr::NoReply(flag()),
        _ => other(),
    })
}
