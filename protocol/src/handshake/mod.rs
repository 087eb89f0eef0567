//! The Convert handshake as two sans-IO state machines: bytes in, decisions out.
//!
//! * [`MessageReader`] collects one Convert message from pieces and never takes a
//!   byte past its end: the stream that follows belongs to the relay. Both machines
//!   are built on it, and so is the async reader in `mpbond-relay`.
//! * [`ServerHandshake`] (the concentrator) answers "need more" or a [`Decision`]:
//!   connect (with the reply to send once connected), answer an Info probe, or
//!   refuse with an RFC 8803 Error TLV. It decodes, classifies
//!   ([`Message::request`](crate::Message::request)) and authenticates
//!   ([`Verifier`](crate::auth::Verifier)), in that order; see `docs/PROTOCOL.md`.
//! * [`ClientHandshake`] (the agent) seals a request and reads the reply to it.
//!
//! Every `receive` returns a [`Received`]: how many of the given bytes it took, and
//! a [`Step`]. Reading exactly [`Step::NeedMore::needed`] bytes at a time never
//! reads past the message; a caller holding more bytes (a test, a buffered
//! stream) passes them all and keeps the bytes after `consumed`.
//!
//! Time is a parameter (`now_unix_secs`), so the machines are deterministic.

mod client;
mod reader;
mod server;

pub use client::{Accepted, Asked, ClientHandshake, ReplyError, SealError};
pub use reader::MessageReader;
pub use server::{Decision, HandshakeError, ServerHandshake};

use crate::error::ErrorCode;
use crate::tlv::{pad4, TLV_ERROR, TLV_SUPPORTED_TCP_EXTENSIONS};
use crate::{FIXED_HEADER_LEN, MAGIC, MAX_MESSAGE_LEN, VERSION};

/// Most TCP option kinds an Info reply lists: what fits in one message.
pub const MAX_SUPPORTED_KINDS: usize = MAX_MESSAGE_LEN - FIXED_HEADER_LEN - 4;

/// What a machine needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    /// The message is not whole: at least `needed` more bytes, and exactly that many
    /// once the fixed header is in. Reading at most this many never takes a byte
    /// past the message.
    NeedMore {
        /// Bytes still missing (always at least 1).
        needed: usize,
    },
    /// The message is whole (or hopeless) and this is the outcome.
    Done(T),
}

/// The answer to one `receive` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<T> {
    /// How many of the given bytes belong to the message. Bytes after them are the
    /// stream that follows it.
    pub consumed: usize,
    /// What comes next.
    pub step: Step<T>,
}

/// The success reply: the bare fixed header (`01 01 22 63`).
pub fn ok_reply() -> Vec<u8> {
    let [magic_hi, magic_lo] = MAGIC.to_be_bytes();
    vec![VERSION, 1, magic_hi, magic_lo]
}

/// The error reply for `code`: one Error TLV with the RFC's default value (the
/// supported version for Unsupported Version, else zero), as
/// [`Message::error`](crate::Message::error) encodes it. Two words, so it cannot
/// fail to encode.
pub fn error_reply(code: ErrorCode) -> Vec<u8> {
    let [magic_hi, magic_lo] = MAGIC.to_be_bytes();
    let value = match code {
        ErrorCode::UnsupportedVersion => VERSION,
        _ => 0,
    };
    vec![
        VERSION,
        2,
        magic_hi,
        magic_lo,
        TLV_ERROR,
        1,
        code.code(),
        value,
    ]
}

/// The reply to an Info probe: one Supported TCP Extensions TLV listing `kinds` (the
/// first [`MAX_SUPPORTED_KINDS`] of them), zero padded.
pub fn info_reply(kinds: &[u8]) -> Vec<u8> {
    let kinds = kinds.get(..MAX_SUPPORTED_KINDS).unwrap_or(kinds);
    let tlv_len = pad4(4 + kinds.len());
    let total = FIXED_HEADER_LEN + tlv_len;
    let [magic_hi, magic_lo] = MAGIC.to_be_bytes();
    let mut out = Vec::with_capacity(total);
    // total <= MAX_MESSAGE_LEN = 1020, so both word counts fit in a byte.
    out.extend_from_slice(&[VERSION, (total / 4) as u8, magic_hi, magic_lo]);
    out.extend_from_slice(&[TLV_SUPPORTED_TCP_EXTENSIONS, (tlv_len / 4) as u8, 0, 0]);
    out.extend_from_slice(kinds);
    out.resize(total, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, Tlv};

    #[test]
    fn fixed_replies_match_the_encoder() {
        assert_eq!(ok_reply(), Message::ok().encode().unwrap());
        for code in 0..=u8::MAX {
            let code = ErrorCode::from_code(code);
            assert_eq!(error_reply(code), Message::error(code).encode().unwrap());
        }
        for n in [0, 1, 3, 4, 5, 255, MAX_SUPPORTED_KINDS] {
            let kinds: Vec<u8> = (0..n).map(|i| (i % 251) as u8 + 1).collect();
            let message = Message {
                tlvs: vec![Tlv::SupportedTcpExtensions(kinds.clone())],
            };
            assert_eq!(info_reply(&kinds), message.encode().unwrap(), "{n} kinds");
        }
        let too_many = vec![2; MAX_SUPPORTED_KINDS + 10];
        assert_eq!(info_reply(&too_many).len(), MAX_MESSAGE_LEN);
    }
}
