//! mpbond wire format: RFC 8803 (0-RTT TCP Convert Protocol) messages and
//! mpbond's per-client authentication. Sans-IO: bytes in, values out; the
//! clock is a parameter.
//!
//! # Layout
//!
//! * [`error`]: [`ErrorCode`] (RFC 8803 §5.2.8), [`DecodeError`] (each maps
//!   to the code to reply with) and [`EncodeError`].
//! * [`tlv`]: the [`Tlv`] enum and each TLV's byte layout.
//! * [`message`]: the fixed header, [`Message`], and the incremental
//!   [`decode`] that answers [`Decoded::Incomplete`] until a whole message is in.
//! * [`request`]: [`Message::request`] classifies a decoded request
//!   (Connect or Info) or names the Unsupported Message reason.
//! * [`auth`]: client ids, keys, server ids, [`auth::seal`] / [`auth::seal_bound`]
//!   and [`auth::Verifier`] (cookie tag, clock window, replay cache, replay floors
//!   that survive restarts through an [`auth::ReplayJournal`]).
//! * [`handshake`]: the two sides as sans-IO machines: [`MessageReader`] (one
//!   message from pieces, never past its end), [`ServerHandshake`] (request in,
//!   connect / Info answer / refusal out) and [`ClientHandshake`] (seal a request,
//!   read its reply).
//! * [`probe`]: the probe datagrams (UDP, one each way, MAC'd with the client's key)
//!   that test a WAN without a TCP connection.
//! * [`udp`]: UDP flows (mpbond's UDP TLV, [`Message::udp_request`]): the RFC 9297
//!   DATAGRAM capsules that follow the reply, [`encode_datagram`] and
//!   [`decode_capsule`]; protected flows' legs (the Group TLV, [`udp::Group`]),
//!   their sequenced capsules ([`encode_sequenced`]) and the receiver's
//!   [`udp::Dedup`]; forward error correction across the legs ([`udp::FecEncoder`],
//!   [`udp::FecDecoder`], [`udp::decode_leg_capsule`]).
//! * [`replay`]: the memory-bounded replay cache and per-client floors used by the
//!   verifier.
//!
//! `docs/PROTOCOL.md` documents the bytes with worked examples.
//!
//! # Example
//!
//! ```
//! use mpbond_protocol::{decode, Decoded, Message};
//!
//! let dest = "203.0.113.10:443".parse().unwrap();
//! let wire = Message::connect(dest).encode().unwrap();
//! match decode(&wire).unwrap() {
//!     Decoded::Complete { message, len } => {
//!         assert_eq!(len, wire.len());
//!         assert_eq!(message.destination(), Some(dest));
//!     }
//!     Decoded::Incomplete { .. } => unreachable!(),
//! }
//! ```

pub mod auth;
pub mod error;
pub mod handshake;
pub mod message;
pub mod probe;
pub mod replay;
pub mod request;
pub mod tlv;
pub mod udp;

pub use error::{DecodeError, EncodeError, ErrorCode};
pub use handshake::{
    error_reply, info_reply, ok_reply, Accepted, Asked, ClientHandshake, Decision, HandshakeError,
    MessageReader, Received, ReplyError, SealError, ServerHandshake, Step,
};
pub use message::{decode, message_len, Decoded, Message};
pub use request::{Request, RequestError};
pub use tlv::{Tlv, TLV_GROUP, TLV_UDP};
pub use udp::{
    decode_capsule, encode_datagram, encode_sequenced, Capsule, CapsuleError, Dedup, Group,
    MAX_CAPSULE_VALUE, MAX_UDP_PAYLOAD,
};

/// The Convert protocol version we speak.
pub const VERSION: u8 = 1;
/// The magic number in every fixed header.
pub const MAGIC: u16 = 0x2263;
/// The concentrator's default TCP port.
pub const DEFAULT_PORT: u16 = 4850;
/// Length of the fixed header in bytes.
pub const FIXED_HEADER_LEN: usize = 4;
/// Largest message: Total Length is 8 bits of 32-bit words.
pub const MAX_MESSAGE_LEN: usize = 1020;
