//! The byte layout of mpbond's Cookie TLV value.
//!
//! After the TLV's type, length and the RFC's 16-bit Zero field:
//!
//! ```text
//! offset  size  field
//! 0       1     format version (1 unbound, 2 bound to a server id)
//! 1       1     client id length n (1..=32)
//! 2       n     client id, ASCII [A-Za-z0-9._-]
//! 2+n     8     timestamp, unix seconds, big-endian
//! 10+n    12    nonce
//! 22+n    16    tag: HMAC-SHA256(key, [server id prefix] whole message with these
//!               16 bytes zeroed)[..16]
//! 38+n    0..3  zero padding to a 4-byte boundary
//! ```
//!
//! Format 2 differs only in the tag: the HMAC input starts with the server id the
//! client dialled (one length byte, then the id), so a request sealed for one
//! concentrator fails the tag check on any other (see [`crate::auth::ServerId`]).

use crate::auth::ids::{ClientId, MAX_CLIENT_ID_LEN};
use crate::replay::NONCE_LEN;
use crate::tlv::pad4;

/// The unbound cookie format: the tag covers the message only.
pub const COOKIE_FORMAT: u8 = 1;
/// The bound cookie format: the tag also covers the server id.
pub const COOKIE_FORMAT_BOUND: u8 = 2;
/// Tag length in bytes (HMAC-SHA256 truncated).
pub const TAG_LEN: usize = 16;
/// Bytes before the cookie value in the Cookie TLV: type, length, Zero(16).
pub(crate) const COOKIE_TLV_HEADER: usize = 4;

/// The fields of a parsed cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cookie {
    /// [`COOKIE_FORMAT`] or [`COOKIE_FORMAT_BOUND`].
    pub(crate) format: u8,
    pub(crate) client: ClientId,
    pub(crate) timestamp: u64,
    pub(crate) nonce: [u8; NONCE_LEN],
    pub(crate) tag: [u8; TAG_LEN],
    /// Offset of the tag within the cookie value.
    pub(crate) tag_offset: usize,
}

/// Unpadded cookie value length for a client id of `id_len` bytes.
fn content_len(id_len: usize) -> usize {
    2 + id_len + 8 + NONCE_LEN + TAG_LEN
}

/// The padded cookie value length: the Cookie TLV is a multiple of 4 bytes.
pub(crate) fn value_len(id_len: usize) -> usize {
    pad4(COOKIE_TLV_HEADER + content_len(id_len)) - COOKIE_TLV_HEADER
}

/// Build a cookie value with the tag zeroed. Returns it and the tag's offset
/// within it.
pub(crate) fn build(
    format: u8,
    client: &ClientId,
    timestamp: u64,
    nonce: [u8; NONCE_LEN],
) -> (Vec<u8>, usize) {
    let id = client.as_str().as_bytes();
    let mut value = Vec::with_capacity(value_len(id.len()));
    value.push(format);
    // ClientId guarantees 1..=32 bytes.
    value.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    value.extend_from_slice(id);
    value.extend_from_slice(&timestamp.to_be_bytes());
    value.extend_from_slice(&nonce);
    let tag_offset = value.len();
    value.resize(value_len(id.len()), 0);
    (value, tag_offset)
}

/// Parse a cookie value. `None` if it does not follow the layout exactly
/// (format, id length and characters, total length, zero padding).
pub(crate) fn parse(value: &[u8]) -> Option<Cookie> {
    let (&format, rest) = value.split_first()?;
    if format != COOKIE_FORMAT && format != COOKIE_FORMAT_BOUND {
        return None;
    }
    let (&id_len, rest) = rest.split_first()?;
    let id_len = usize::from(id_len);
    if id_len == 0 || id_len > MAX_CLIENT_ID_LEN || value.len() != value_len(id_len) {
        return None;
    }
    let (id, rest) = rest.split_at_checked(id_len)?;
    let client = ClientId::from_bytes(id).ok()?;
    let (timestamp, rest) = rest.split_first_chunk::<8>()?;
    let (nonce, rest) = rest.split_first_chunk::<NONCE_LEN>()?;
    let (tag, padding) = rest.split_first_chunk::<TAG_LEN>()?;
    if padding.iter().any(|&b| b != 0) {
        return None;
    }
    Some(Cookie {
        format,
        client,
        timestamp: u64::from_be_bytes(*timestamp),
        nonce: *nonce,
        tag: *tag,
        tag_offset: content_len(id_len) - TAG_LEN,
    })
}
