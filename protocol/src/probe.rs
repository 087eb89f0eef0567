//! Probe datagrams: one small authenticated UDP datagram each way, so the agent can ask
//! "does the concentrator hear me, and do I hear it, through this WAN?" without a TCP
//! handshake and without per-probe state on the concentrator.
//!
//! ```text
//! request (agent → concentrator), 26 + n bytes
//! offset  size  field
//! 0       1     type 0xb1 (probe request, version 1)
//! 1       1     client id length n (1..=32)
//! 2       n     client id, ASCII [A-Za-z0-9._-]
//! 2+n     8     stamp: unix milliseconds, big-endian (the request's nonce)
//! 10+n    16    tag: HMAC-SHA256(key, bytes 0..10+n)[..16]
//!
//! reply (concentrator → agent), 25 bytes
//! 0       1     type 0xb2 (probe reply, version 1)
//! 1       8     the request's stamp, echoed
//! 9       16    tag: HMAC-SHA256(key, 0xb2 ‖ stamp ‖ request tag)[..16]
//! ```
//!
//! The key is the client's Convert key; the first byte keeps the MAC inputs apart from
//! the Cookie's (a Convert message starts with version 1). The reply's MAC covers the
//! request's tag, so a reply answers exactly one request. The concentrator keeps no
//! state per probe: [`verify_request`] checks the layout, the client, the tag (in
//! constant time) and that the stamp is within ±`window` of its clock. A request
//! replayed within the window is answered again; the answer goes to the sender, is never
//! larger than the request ([`REPLY_LEN`] < [`request_len`]) and is rate-limited per
//! source by the concentrator, so a replay gains nothing.
//!
//! Over IPv4 a round trip costs 20 + 8 + 26 + n + 20 + 8 + 25 bytes: 115 bytes for an
//! 8-character client id.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::auth::{ClientId, Key, TAG_LEN};

type HmacSha256 = Hmac<Sha256>;

/// First byte of a probe request.
pub const PROBE_REQUEST: u8 = 0xb1;
/// First byte of a probe reply.
pub const PROBE_REPLY: u8 = 0xb2;
/// Length of a reply.
pub const REPLY_LEN: usize = 1 + 8 + TAG_LEN;
/// IPv4 + UDP header bytes, for cost accounting.
pub const IPV4_UDP_HEADER: usize = 28;
/// IPv6 + UDP header bytes, for cost accounting.
pub const IPV6_UDP_HEADER: usize = 48;

/// Length of a request from a client id of `id_len` bytes.
pub const fn request_len(id_len: usize) -> usize {
    2 + id_len + 8 + TAG_LEN
}

/// A verified request: who sent it and its stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    pub client: ClientId,
    /// Unix milliseconds, as the agent stamped it.
    pub stamp: u64,
    /// The request's tag, which the reply's MAC covers.
    pub tag: [u8; TAG_LEN],
}

/// Why a datagram is not a valid probe request or reply. The concentrator answers none of
/// these (silence); the names are for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProbeError {
    #[error("not a probe datagram (wrong type byte or length)")]
    Malformed,
    #[error("unknown client")]
    UnknownClient,
    #[error("bad tag")]
    BadTag,
    #[error("stamp outside the clock window")]
    Skew,
    #[error("the reply answers another request")]
    WrongStamp,
}

impl ProbeError {
    /// A short snake_case label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::Malformed => "malformed",
            ProbeError::UnknownClient => "unknown_client",
            ProbeError::BadTag => "bad_tag",
            ProbeError::Skew => "skew",
            ProbeError::WrongStamp => "wrong_stamp",
        }
    }
}

fn mac(key: &Key) -> HmacSha256 {
    // HMAC takes keys of any length; a 32-byte key never fails.
    match HmacSha256::new_from_slice(key.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts any key length"),
    }
}

fn truncated(mac: HmacSha256) -> [u8; TAG_LEN] {
    let full = mac.finalize().into_bytes();
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&full[..TAG_LEN]);
    tag
}

/// Encode a request from `client` stamped `stamp_ms` (unix milliseconds; the agent makes
/// them strictly increasing so each reply names one request).
pub fn encode_request(client: &ClientId, key: &Key, stamp_ms: u64) -> Vec<u8> {
    let id = client.as_str().as_bytes();
    let mut out = Vec::with_capacity(request_len(id.len()));
    out.push(PROBE_REQUEST);
    // ClientId guarantees 1..=32 bytes.
    out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(id);
    out.extend_from_slice(&stamp_ms.to_be_bytes());
    let mut m = mac(key);
    m.update(&out);
    out.extend_from_slice(&truncated(m));
    out
}

/// The client a request names, without checking anything else (to look up its key).
pub fn request_client(wire: &[u8]) -> Result<ClientId, ProbeError> {
    let (&kind, rest) = wire.split_first().ok_or(ProbeError::Malformed)?;
    let (&n, rest) = rest.split_first().ok_or(ProbeError::Malformed)?;
    let n = usize::from(n);
    if kind != PROBE_REQUEST || wire.len() != request_len(n) {
        return Err(ProbeError::Malformed);
    }
    ClientId::from_bytes(&rest[..n]).map_err(|_| ProbeError::Malformed)
}

/// Check a request: layout, client (`key_for`), tag in constant time, and the stamp within
/// ±`window_ms` of `now_ms`.
pub fn verify_request(
    wire: &[u8],
    now_ms: u64,
    window_ms: u64,
    key_for: impl FnOnce(&ClientId) -> Option<Key>,
) -> Result<ProbeRequest, ProbeError> {
    let client = request_client(wire)?;
    let key = key_for(&client).ok_or(ProbeError::UnknownClient)?;
    let body = wire.len() - TAG_LEN;
    let mut m = mac(&key);
    m.update(&wire[..body]);
    m.verify_truncated_left(&wire[body..])
        .map_err(|_| ProbeError::BadTag)?;
    let mut stamp = [0u8; 8];
    stamp.copy_from_slice(&wire[body - 8..body]);
    let stamp = u64::from_be_bytes(stamp);
    if stamp.abs_diff(now_ms) > window_ms {
        return Err(ProbeError::Skew);
    }
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&wire[body..]);
    Ok(ProbeRequest { client, stamp, tag })
}

fn reply_tag(key: &Key, stamp: u64, request_tag: &[u8; TAG_LEN]) -> HmacSha256 {
    let mut m = mac(key);
    m.update(&[PROBE_REPLY]);
    m.update(&stamp.to_be_bytes());
    m.update(request_tag);
    m
}

/// The reply to a verified request ([`REPLY_LEN`] bytes).
pub fn encode_reply(key: &Key, request: &ProbeRequest) -> [u8; REPLY_LEN] {
    let mut out = [0u8; REPLY_LEN];
    out[0] = PROBE_REPLY;
    out[1..9].copy_from_slice(&request.stamp.to_be_bytes());
    out[9..].copy_from_slice(&truncated(reply_tag(key, request.stamp, &request.tag)));
    out
}

/// The request tag of an encoded request (for [`verify_reply`]).
pub fn request_tag(request: &[u8]) -> Option<[u8; TAG_LEN]> {
    let start = request.len().checked_sub(TAG_LEN)?;
    request[start..].try_into().ok()
}

/// Check a reply against the request it should answer (`stamp`, `request_tag`).
pub fn verify_reply(
    wire: &[u8],
    key: &Key,
    stamp: u64,
    request_tag: &[u8; TAG_LEN],
) -> Result<(), ProbeError> {
    if wire.len() != REPLY_LEN || wire[0] != PROBE_REPLY {
        return Err(ProbeError::Malformed);
    }
    if wire[1..9] != stamp.to_be_bytes() {
        return Err(ProbeError::WrongStamp);
    }
    reply_tag(key, stamp, request_tag)
        .verify_truncated_left(&wire[9..])
        .map_err(|_| ProbeError::BadTag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientId {
        ClientId::from_bytes(b"router-1").unwrap()
    }

    fn key(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_request_verifies_and_its_reply_verifies_against_it() {
        let wire = encode_request(&client(), &key(7), NOW);
        assert_eq!(wire.len(), request_len(8));
        assert_eq!(wire.len(), 34);
        let req = verify_request(&wire, NOW + 500, 30_000, |_| Some(key(7))).unwrap();
        assert_eq!(req.client, client());
        assert_eq!(req.stamp, NOW);
        let reply = encode_reply(&key(7), &req);
        assert!(reply.len() < wire.len(), "the reply is never larger");
        let tag = request_tag(&wire).unwrap();
        verify_reply(&reply, &key(7), NOW, &tag).unwrap();
        assert_eq!(
            verify_reply(&reply, &key(7), NOW + 1, &tag),
            Err(ProbeError::WrongStamp)
        );
        assert_eq!(
            verify_reply(&reply, &key(8), NOW, &tag),
            Err(ProbeError::BadTag)
        );
        let other = request_tag(&encode_request(&client(), &key(7), NOW + 1)).unwrap();
        assert_eq!(
            verify_reply(&reply, &key(7), NOW, &other),
            Err(ProbeError::BadTag),
            "a reply answers one request"
        );
    }

    #[test]
    fn forged_stale_and_garbage_requests_are_refused() {
        let wire = encode_request(&client(), &key(7), NOW);
        assert_eq!(
            verify_request(&wire, NOW, 30_000, |_| Some(key(8))),
            Err(ProbeError::BadTag)
        );
        assert_eq!(
            verify_request(&wire, NOW, 30_000, |_| None),
            Err(ProbeError::UnknownClient)
        );
        assert_eq!(
            verify_request(&wire, NOW + 30_001, 30_000, |_| Some(key(7))),
            Err(ProbeError::Skew)
        );
        for i in 0..wire.len() {
            let mut bad = wire.clone();
            bad[i] ^= 0x01;
            assert!(
                verify_request(&bad, NOW, 30_000, |_| Some(key(7))).is_err(),
                "flipped byte {i}"
            );
        }
        for len in 0..wire.len() + 2 {
            let mut cut = wire.clone();
            cut.resize(len, 0);
            if len != wire.len() {
                assert_eq!(
                    verify_request(&cut, NOW, 30_000, |_| Some(key(7))),
                    Err(ProbeError::Malformed)
                );
            }
        }
        let convert = crate::Message::info().encode().unwrap();
        assert_eq!(
            verify_request(&convert, NOW, 30_000, |_| Some(key(7))),
            Err(ProbeError::Malformed)
        );
    }

    /// The worked example in docs/PROTOCOL.md.
    #[test]
    fn worked_example() {
        let c = ClientId::from_bytes(b"home").unwrap();
        let k = Key::from_bytes(core::array::from_fn(|i| i as u8));
        let wire = encode_request(&c, &k, 1_700_000_000_000);
        assert_eq!(
            hex(&wire),
            "b104686f6d650000018bcfe568007b0c218c4f5bc58cf8d68959202c05e7"
        );
        let req = verify_request(&wire, 1_700_000_000_000, 1000, |_| Some(k.clone())).unwrap();
        assert_eq!(
            hex(&encode_reply(&k, &req)),
            "b20000018bcfe56800f999dbf213fc81fe6c3f93d4e2f3fe56"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
