//! Netlink messages: the `nlmsghdr`, requests, and the messages of a reply datagram.
//!
//! * [`put_message`] appends one `nlmsghdr` + body; [`Request`] is a message whose
//!   sequence number the socket fills in.
//! * [`Messages`] iterates the messages of one datagram as [`Message`]s: data, an ACK
//!   (`NLMSG_ERROR` with errno 0), an error with the extended ACK's text, or the end of a
//!   dump (`NLMSG_DONE`, whose body may carry an error too).
//! * [`Exchange`] is one request's conversation, sans I/O: feed it datagrams until it is
//!   complete, and it answers with the replies or the kernel's error.
//!
//! Constants are from `linux/netlink.h`.

use crate::attr::{align4, Attrs};
use crate::Error;

/// The size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;

/// `NLM_F_*` header flags.
pub mod flags {
    /// It is a request.
    pub const REQUEST: u16 = 0x1;
    /// A part of a multipart reply (a dump).
    pub const MULTI: u16 = 0x2;
    /// Answer with an ACK.
    pub const ACK: u16 = 0x4;
    /// A dump: `NLM_F_ROOT | NLM_F_MATCH`.
    pub const DUMP: u16 = 0x300;
    /// In a new-object request: replace an existing one.
    pub const REPLACE: u16 = 0x100;
    /// In a new-object request: fail with `EEXIST` if it exists.
    pub const EXCL: u16 = 0x200;
    /// In a new-object request: create it if it does not exist.
    pub const CREATE: u16 = 0x400;
    /// In a new-object request: add it at the end of the list.
    pub const APPEND: u16 = 0x800;
    /// In an error reply: the echoed request is cut to its header (`NETLINK_CAP_ACK`).
    pub const CAPPED: u16 = 0x100;
    /// In an error reply: extended ACK attributes follow.
    pub const ACK_TLVS: u16 = 0x200;
}

/// `NLMSGERR_ATTR_MSG`: the extended ACK's error string.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Append `nlmsghdr` (port id 0: to the kernel) and the body made of `parts`.
pub fn put_message(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, parts: &[&[u8]]) {
    let len = NLMSG_HDRLEN + parts.iter().map(|p| p.len()).sum::<usize>();
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
    out.resize(align4(out.len()), 0);
}

/// One request: a message type, its flags and its body (family header + attributes).
/// `NLM_F_REQUEST` is always added; a dump gets `NLM_F_DUMP`, anything else `NLM_F_ACK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: u16,
    pub flags: u16,
    pub body: Vec<u8>,
}

impl Request {
    /// A change (or a get) answered by an ACK; `extra` adds e.g. `CREATE | EXCL`.
    pub fn new(kind: u16, extra: u16, body: Vec<u8>) -> Request {
        Request {
            kind,
            flags: flags::REQUEST | flags::ACK | extra,
            body,
        }
    }

    /// A dump, answered by data messages and `NLMSG_DONE`.
    pub fn dump(kind: u16, body: Vec<u8>) -> Request {
        Request {
            kind,
            flags: flags::REQUEST | flags::DUMP,
            body,
        }
    }

    pub fn is_dump(&self) -> bool {
        self.flags & flags::DUMP == flags::DUMP
    }

    /// The wire bytes with sequence number `seq`.
    pub fn encode(&self, seq: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(NLMSG_HDRLEN + self.body.len());
        put_message(&mut out, self.kind, self.flags, seq, &[&self.body]);
        out
    }
}

/// One message of a reply datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// A data message (a reply, a dump entry or a notification).
    Data {
        kind: u16,
        flags: u16,
        seq: u32,
        payload: &'a [u8],
    },
    /// `NLMSG_ERROR` with errno 0.
    Ack { seq: u32 },
    /// `NLMSG_ERROR` (or `NLMSG_DONE`) with an errno, positive here, and the extended
    /// ACK's message if the kernel sent one.
    Error {
        seq: u32,
        errno: i32,
        detail: Option<String>,
    },
    /// `NLMSG_DONE` without an error: the dump is complete.
    Done { seq: u32 },
}

impl Message<'_> {
    pub fn seq(&self) -> u32 {
        match self {
            Message::Data { seq, .. }
            | Message::Ack { seq }
            | Message::Error { seq, .. }
            | Message::Done { seq } => *seq,
        }
    }
}

/// The messages of one datagram. `NLMSG_NOOP` and `NLMSG_OVERRUN` are skipped; a
/// malformed header yields one `Err` and ends the iteration.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    pub fn new(datagram: &'a [u8]) -> Messages<'a> {
        Messages { rest: datagram }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.len() < NLMSG_HDRLEN {
                return None;
            }
            let data = self.rest;
            let len = read_u32(data, 0).unwrap_or(0) as usize;
            if len < NLMSG_HDRLEN || len > data.len() {
                self.rest = &[];
                return Some(Err(Error::Malformed("bad netlink message length")));
            }
            let kind = read_u16(data, 4).unwrap_or(0);
            let flags = read_u16(data, 6).unwrap_or(0);
            let seq = read_u32(data, 8).unwrap_or(0);
            let body = &data[NLMSG_HDRLEN..len];
            self.rest = data.get(align4(len)..).unwrap_or_default();
            let msg = match kind {
                NLMSG_NOOP | NLMSG_OVERRUN => continue,
                NLMSG_ERROR => parse_error(body, flags, seq),
                NLMSG_DONE => match read_u32(body, 0).map(|e| e as i32) {
                    Some(error) if error < 0 => Ok(Message::Error {
                        seq,
                        errno: error.wrapping_neg(),
                        detail: None,
                    }),
                    _ => Ok(Message::Done { seq }),
                },
                _ => Ok(Message::Data {
                    kind,
                    flags,
                    seq,
                    payload: body,
                }),
            };
            return Some(msg);
        }
    }
}

/// `struct nlmsgerr { int error; struct nlmsghdr msg; }`, then the echoed request (unless
/// capped) and, with `NLM_F_ACK_TLVS`, the extended ACK attributes.
fn parse_error(body: &[u8], flags: u16, seq: u32) -> Result<Message<'_>, Error> {
    let short = Error::Malformed("short NLMSG_ERROR");
    let error = read_u32(body, 0).ok_or(short)? as i32;
    if error == 0 {
        return Ok(Message::Ack { seq });
    }
    let mut detail = None;
    if flags & flags::ACK_TLVS != 0 {
        let echoed_len = read_u32(body, 4).unwrap_or(0) as usize;
        let echoed = if flags & flags::CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            echoed_len
        };
        let tlvs = body.get(4 + align4(echoed)..).unwrap_or_default();
        detail = Attrs::new(tlvs)
            .find(|a| a.id() == NLMSGERR_ATTR_MSG)
            .and_then(|a| a.str())
            .map(str::to_owned);
    }
    Ok(Message::Error {
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

/// A data message of a reply, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: u16,
    pub payload: Vec<u8>,
}

/// One request's conversation, without a socket: feed it every datagram that arrives
/// after the request was sent until [`Exchange::feed`] says it is complete.
///
/// A request completes with its ACK, a dump with `NLMSG_DONE`; an error for its sequence
/// number ends either. Messages with other sequence numbers (stray replies to an earlier
/// request) are ignored.
#[derive(Debug)]
pub struct Exchange {
    seq: u32,
    dump: bool,
    replies: Vec<Reply>,
}

impl Exchange {
    pub fn new(seq: u32, request: &Request) -> Exchange {
        Exchange {
            seq,
            dump: request.is_dump(),
            replies: Vec::new(),
        }
    }

    /// Read one datagram. `Ok(true)`: complete, take the replies.
    pub fn feed(&mut self, datagram: &[u8]) -> Result<bool, Error> {
        for msg in Messages::new(datagram) {
            let msg = msg?;
            if msg.seq() != self.seq {
                continue;
            }
            match msg {
                Message::Data { kind, payload, .. } => self.replies.push(Reply {
                    kind,
                    payload: payload.to_vec(),
                }),
                Message::Error { errno, detail, .. } => {
                    return Err(Error::Kernel { errno, detail });
                }
                // A dump with NLM_F_ACK would also send an ACK after NLMSG_DONE; ours
                // carry no NLM_F_ACK, so DONE ends them.
                Message::Ack { .. } if !self.dump => return Ok(true),
                Message::Done { .. } if self.dump => return Ok(true),
                Message::Ack { .. } | Message::Done { .. } => {}
            }
        }
        Ok(false)
    }

    pub fn into_replies(self) -> Vec<Reply> {
        self.replies
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttrBuf;

    fn error_msg(seq: u32, errno: i32, text: Option<&str>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&(-errno).to_ne_bytes());
        body.extend_from_slice(&[0; NLMSG_HDRLEN]); // capped original header
        let mut fl = flags::CAPPED;
        if let Some(text) = text {
            let mut tlv = AttrBuf::new();
            tlv.put_str(NLMSGERR_ATTR_MSG, text);
            body.extend_from_slice(tlv.as_bytes());
            fl |= flags::ACK_TLVS;
        }
        let mut out = Vec::new();
        put_message(&mut out, NLMSG_ERROR, fl, seq, &[&body]);
        out
    }

    #[test]
    fn request_header_is_filled_in() {
        let req = Request::new(0x1234, flags::CREATE, vec![1, 2, 3, 4, 5]);
        let wire = req.encode(7);
        assert_eq!(wire.len(), 24, "padded");
        assert_eq!(read_u32(&wire, 0), Some(21), "unpadded length");
        assert_eq!(read_u16(&wire, 4), Some(0x1234));
        let want = flags::REQUEST | flags::ACK | flags::CREATE;
        assert_eq!(read_u16(&wire, 6), Some(want));
        assert_eq!(read_u32(&wire, 8), Some(7));
        assert!(Request::dump(18, vec![]).is_dump());
        assert!(!req.is_dump());
    }

    #[test]
    fn errors_parse_with_extack_message() {
        let wire = error_msg(7, 2, Some("no such table"));
        let got: Vec<_> = Messages::new(&wire).filter_map(Result::ok).collect();
        let want = Message::Error {
            seq: 7,
            errno: 2,
            detail: Some("no such table".into()),
        };
        assert_eq!(got, vec![want]);
        let ack = error_msg(8, 0, None);
        let got: Vec<_> = Messages::new(&ack).filter_map(Result::ok).collect();
        assert_eq!(got, vec![Message::Ack { seq: 8 }]);
    }

    #[test]
    fn a_dump_ends_with_done_and_skips_strays() {
        let req = Request::dump(18, vec![]);
        let mut ex = Exchange::new(5, &req);
        let mut wire = Vec::new();
        put_message(&mut wire, 16, flags::MULTI, 5, &[b"one!"]);
        put_message(&mut wire, 16, flags::MULTI, 4, &[b"old!"]);
        assert!(matches!(ex.feed(&wire), Ok(false)));
        let mut done = Vec::new();
        put_message(
            &mut done,
            NLMSG_DONE,
            flags::MULTI,
            5,
            &[&0i32.to_ne_bytes()],
        );
        assert!(matches!(ex.feed(&done), Ok(true)));
        let replies = ex.into_replies();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].payload, b"one!");
    }

    #[test]
    fn a_request_ends_with_its_ack_or_error() {
        let req = Request::new(16, 0, vec![]);
        let mut ex = Exchange::new(9, &req);
        assert!(
            matches!(ex.feed(&error_msg(8, 1, None)), Ok(false)),
            "stray"
        );
        assert!(matches!(ex.feed(&error_msg(9, 0, None)), Ok(true)));
        let mut ex = Exchange::new(9, &req);
        let err = ex
            .feed(&error_msg(9, 17, Some("exists")))
            .expect_err("EEXIST");
        assert_eq!(err.errno(), Some(17));
        let mut done = Vec::new();
        put_message(&mut done, NLMSG_DONE, 0, 3, &[&(-97i32).to_ne_bytes()]);
        let mut ex = Exchange::new(3, &Request::dump(34, vec![]));
        assert_eq!(ex.feed(&done).expect_err("dump error").errno(), Some(97));
    }

    #[test]
    fn garbage_does_not_panic() {
        for len in 0..64u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let _ = Messages::new(&data).count();
            let _ = Exchange::new(0, &Request::dump(1, vec![])).feed(&data);
        }
        let mut bad = vec![0u8; 16];
        bad[0] = 200; // longer than the datagram
        assert!(matches!(
            Messages::new(&bad).next(),
            Some(Err(Error::Malformed(_)))
        ));
    }
}
