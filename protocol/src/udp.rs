//! The UDP flow's stream after the reply: RFC 9297 capsules carrying RFC 9298
//! datagrams. Sans-IO: bytes in, values out, no buffering here.
//!
//! ```text
//! Capsule {
//!   Capsule Type (varint),      0x00 = DATAGRAM
//!   Capsule Length (varint),    bytes of the value
//!   Capsule Value (..),         DATAGRAM: Context ID (varint) = 0, UDP payload
//! }                                   or: Context ID (varint) = 1, Seq (u32 BE), UDP payload
//! ```
//!
//! Context id 0 is the plain datagram of a UDP flow. Context id 1 is mpbond's
//! *sequenced* datagram, used on the legs of a protected flow ([`Group`], the Group
//! TLV): every datagram goes out on every leg with the same sequence number, and the
//! receiver keeps the first copy ([`Dedup`]). [`encode_sequenced`] writes it and
//! [`decode_capsule`] answers [`Capsule::Sequenced`].
//!
//! Varints are QUIC's (RFC 9000 §16): the two top bits of the first byte give the
//! length (1, 2, 4 or 8 bytes). [`encode_datagram`] writes the shortest form;
//! [`decode_capsule`] takes any form.
//!
//! The receiver's rules (`docs/PROTOCOL.md`): a capsule of an unknown type is
//! skipped ([`Capsule::Unknown`]); a DATAGRAM with a context id other than 0 or 1 is
//! dropped and counted ([`Capsule::OtherContext`]); a capsule whose value is longer
//! than [`MAX_CAPSULE_VALUE`], a DATAGRAM without a whole context id, or a sequenced
//! DATAGRAM without a whole sequence number, is a [`CapsuleError`] and ends the flow
//! (reset). Which context a flow uses is the flow's business: a plain flow drops a
//! sequenced datagram as another context, a leg drops a plain one likewise.
//!
//! Contexts 2 and 3 are the FEC source and repair datagrams of a leg in `fec` mode
//! ([`fec`]); [`decode_capsule`] answers them as [`Capsule::OtherContext`], and a leg
//! reads with [`decode_leg_capsule`].
//!
//! Layout: this file (capsules, varints), [`group`] (the Group TLV's value),
//! [`dedup`] (the receiver's sliding window of sequence numbers), [`fec`] (XOR
//! parity blocks across the legs) and [`late`] (a leg's sources its TCP connection has
//! not had acknowledged in time, to resend on another leg).

mod dedup;
mod fec;
mod group;
mod late;

pub use dedup::{Dedup, DEDUP_WINDOW};
pub use fec::{
    decode_leg_capsule, encode_fec_repair, encode_fec_source, fec_source_capsule_len, FecDecoder,
    FecEncoder, FecParams, LegCapsule, OwnedRepair, Repair, CONTEXT_FEC_REPAIR, CONTEXT_FEC_SOURCE,
    FEC_MAX_SOURCES,
};
pub use group::{Group, GroupError, MAX_LEGS};
pub use late::{late_bound, LateWatch, LATE_KEEP, LATE_MIN, STUCK_RECHECK};

use thiserror::Error;

/// Largest UDP payload: 65,535 minus the 8-byte UDP header.
pub const MAX_UDP_PAYLOAD: usize = 65_527;
/// Largest capsule value a receiver accepts: 65,535 + 16 bytes.
pub const MAX_CAPSULE_VALUE: u64 = 65_535 + 16;
/// Capsule type of DATAGRAM (RFC 9297 §3.5).
pub const CAPSULE_DATAGRAM: u64 = 0x00;
/// Largest encoded DATAGRAM capsule: type (1), length (4), context id (1),
/// payload.
pub const MAX_DATAGRAM_CAPSULE: usize = 1 + 4 + 1 + MAX_UDP_PAYLOAD;
/// Context id of mpbond's sequenced DATAGRAM (a leg of a protected flow).
pub const CONTEXT_SEQUENCED: u64 = 1;
/// Largest encoded sequenced DATAGRAM capsule: type (1), length (4), context id
/// (1), sequence number (4), payload.
pub const MAX_SEQUENCED_CAPSULE: usize = 1 + 4 + 1 + 4 + MAX_UDP_PAYLOAD;
/// Largest value a QUIC varint holds.
pub const MAX_VARINT: u64 = (1 << 62) - 1;

/// One decoded capsule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capsule<'a> {
    /// A DATAGRAM with context id 0: the UDP payload (possibly empty).
    Datagram(&'a [u8]),
    /// A DATAGRAM with context id 1: a sequenced datagram on a leg of a protected
    /// flow, the UDP payload after its sequence number.
    Sequenced {
        /// The sequence number.
        seq: u32,
        /// The UDP payload (possibly empty).
        payload: &'a [u8],
    },
    /// A DATAGRAM with another context id: drop it and count it.
    OtherContext {
        /// The context id.
        context_id: u64,
    },
    /// A capsule of a type this crate does not know: skip it.
    Unknown {
        /// The capsule type.
        kind: u64,
    },
}

/// Why a capsule cannot be encoded, or why a stream of capsules is broken (the flow
/// ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CapsuleError {
    /// The payload is larger than a UDP datagram can be.
    #[error("UDP payload of {len} bytes is over the {MAX_UDP_PAYLOAD}-byte maximum")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
    },
    /// The capsule's value is longer than [`MAX_CAPSULE_VALUE`].
    #[error("capsule of type {kind:#x} is {len} bytes long, over {MAX_CAPSULE_VALUE}")]
    TooLong {
        /// The capsule type.
        kind: u64,
        /// The announced length.
        len: u64,
    },
    /// A DATAGRAM capsule whose value does not hold a whole context id varint, or a
    /// sequenced one (context id 1) without a whole sequence number.
    #[error("DATAGRAM capsule without a whole context id or sequence number")]
    MalformedDatagram,
}

impl CapsuleError {
    /// A snake_case label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::TooLong { .. } => "capsule_too_long",
            Self::MalformedDatagram => "malformed_datagram",
        }
    }
}

/// Append one DATAGRAM capsule (context id 0) carrying `payload` to `out`.
///
/// At most [`MAX_DATAGRAM_CAPSULE`] bytes are appended; nothing is appended on an
/// error.
pub fn encode_datagram(payload: &[u8], out: &mut Vec<u8>) -> Result<(), CapsuleError> {
    if payload.len() > MAX_UDP_PAYLOAD {
        return Err(CapsuleError::PayloadTooLarge { len: payload.len() });
    }
    // The value: context id 0 (one byte) and the payload.
    let value_len = 1 + payload.len() as u64;
    out.reserve(datagram_capsule_len(payload.len()));
    push_varint(CAPSULE_DATAGRAM, out);
    push_varint(value_len, out);
    out.push(0);
    out.extend_from_slice(payload);
    Ok(())
}

/// Encoded length of the DATAGRAM capsule for a `payload_len`-byte payload.
pub fn datagram_capsule_len(payload_len: usize) -> usize {
    let value_len = 1 + payload_len as u64;
    1 + varint_len(value_len) + 1 + payload_len
}

/// Append one sequenced DATAGRAM capsule (context id 1, then `seq` as 4 bytes
/// big-endian) carrying `payload` to `out`.
///
/// At most [`MAX_SEQUENCED_CAPSULE`] bytes are appended; nothing is appended on an
/// error.
pub fn encode_sequenced(seq: u32, payload: &[u8], out: &mut Vec<u8>) -> Result<(), CapsuleError> {
    if payload.len() > MAX_UDP_PAYLOAD {
        return Err(CapsuleError::PayloadTooLarge { len: payload.len() });
    }
    let value_len = 1 + 4 + payload.len() as u64;
    out.reserve(sequenced_capsule_len(payload.len()));
    push_varint(CAPSULE_DATAGRAM, out);
    push_varint(value_len, out);
    push_varint(CONTEXT_SEQUENCED, out);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Encoded length of the sequenced DATAGRAM capsule for a `payload_len`-byte
/// payload.
pub fn sequenced_capsule_len(payload_len: usize) -> usize {
    let value_len = 1 + 4 + payload_len as u64;
    1 + varint_len(value_len) + 1 + 4 + payload_len
}

/// Decode the capsule at the start of `buf`.
///
/// `Ok(None)` while the capsule is not whole (the caller reads more and calls again
/// with the longer buffer); otherwise the capsule and the bytes it took. Never
/// panics, never reads past the capsule.
pub fn decode_capsule(buf: &[u8]) -> Result<Option<(Capsule<'_>, usize)>, CapsuleError> {
    let Some((kind, value, end)) = split_capsule(buf)? else {
        return Ok(None);
    };
    let capsule = if kind == CAPSULE_DATAGRAM {
        let (context_id, id_len) = read_varint(value).ok_or(CapsuleError::MalformedDatagram)?;
        let rest = value.get(id_len..).unwrap_or_default();
        match context_id {
            0 => Capsule::Datagram(rest),
            CONTEXT_SEQUENCED => {
                let (seq, payload) = rest
                    .split_first_chunk::<4>()
                    .ok_or(CapsuleError::MalformedDatagram)?;
                Capsule::Sequenced {
                    seq: u32::from_be_bytes(*seq),
                    payload,
                }
            }
            context_id => Capsule::OtherContext { context_id },
        }
    } else {
        Capsule::Unknown { kind }
    };
    Ok(Some((capsule, end)))
}

/// A whole capsule: its type, its value and the bytes it took.
pub(crate) type SplitCapsule<'a> = (u64, &'a [u8], usize);

/// The capsule at the start of `buf` as its type, its value and the bytes it took;
/// `Ok(None)` while it is not whole.
pub(crate) fn split_capsule(buf: &[u8]) -> Result<Option<SplitCapsule<'_>>, CapsuleError> {
    let Some((kind, kind_len)) = read_varint(buf) else {
        return Ok(None);
    };
    let Some((len, len_len)) = buf.get(kind_len..).and_then(read_varint) else {
        return Ok(None);
    };
    if len > MAX_CAPSULE_VALUE {
        return Err(CapsuleError::TooLong { kind, len });
    }
    let start = kind_len + len_len;
    // len <= MAX_CAPSULE_VALUE, so it fits in usize.
    let end = start + len as usize;
    Ok(buf.get(start..end).map(|value| (kind, value, end)))
}

/// Bytes the shortest varint encoding of `value` takes (`value` ≤ [`MAX_VARINT`]).
pub fn varint_len(value: u64) -> usize {
    match value {
        0..=63 => 1,
        64..=16_383 => 2,
        16_384..=1_073_741_823 => 4,
        _ => 8,
    }
}

/// Append the shortest varint encoding of `value` (≤ [`MAX_VARINT`]; larger values
/// keep their low 62 bits).
pub fn push_varint(value: u64, out: &mut Vec<u8>) {
    let value = value & MAX_VARINT;
    match varint_len(value) {
        1 => out.push(value as u8),
        2 => out.extend_from_slice(&(value as u16 | 0x4000).to_be_bytes()),
        4 => out.extend_from_slice(&(value as u32 | 0x8000_0000).to_be_bytes()),
        _ => out.extend_from_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes()),
    }
}

/// Read a varint from the start of `buf`: its value and length, or `None` if `buf`
/// ends inside it.
pub fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len)?;
    let value = bytes
        .iter()
        .skip(1)
        .fold(u64::from(first & 0x3f), |acc, &b| (acc << 8) | u64::from(b));
    Some((value, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(buf: &[u8]) -> (Capsule<'_>, usize) {
        decode_capsule(buf).unwrap().expect("a whole capsule")
    }

    #[test]
    fn the_udp_tlv_is_one_word_and_only_one_word() {
        use crate::{decode, DecodeError, Decoded, Message, Tlv};
        let wire = Message::udp_request("192.0.2.1:53".parse().unwrap())
            .encode()
            .unwrap();
        assert_eq!(&wire[24..], &[0xd0, 1, 0, 0]);
        let Decoded::Complete { message, .. } = decode(&wire).unwrap() else {
            panic!("incomplete");
        };
        assert_eq!(message.tlvs[1], Tlv::Udp);
        // A two-word UDP TLV is malformed (code 1).
        let mut long = wire.clone();
        long[1] += 1;
        long[25] = 2;
        long.extend_from_slice(&[0; 4]);
        assert!(matches!(
            decode(&long),
            Err(DecodeError::TlvBadLength { kind: 0xd0, .. })
        ));
    }

    #[test]
    fn varints_match_rfc9000_examples() {
        // RFC 9000 §A.1.
        let cases: [(&[u8], u64); 4] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (wire, value) in cases {
            assert_eq!(read_varint(wire), Some((value, wire.len())));
            let mut out = Vec::new();
            push_varint(value, &mut out);
            assert_eq!(out, wire);
            assert_eq!(varint_len(value), wire.len());
        }
        // Non-shortest forms decode too.
        assert_eq!(read_varint(&[0x40, 0x25]), Some((37, 2)));
        assert_eq!(read_varint(&[0x80, 0, 0]), None);
    }

    #[test]
    fn datagram_round_trips_for_every_size_class() {
        for len in [
            0,
            1,
            61,
            62,
            63,
            1400,
            16_381,
            16_382,
            16_383,
            MAX_UDP_PAYLOAD,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut wire = vec![0xee];
            encode_datagram(&payload, &mut wire).unwrap();
            let wire = &wire[1..];
            assert_eq!(wire.len(), datagram_capsule_len(len), "{len}");
            assert!(wire.len() <= MAX_DATAGRAM_CAPSULE);
            assert_eq!(
                one(wire),
                (Capsule::Datagram(&payload), wire.len()),
                "{len}"
            );
            // Every strict prefix asks for more.
            for cut in [0, 1, wire.len() / 2, wire.len() - 1] {
                assert_eq!(decode_capsule(&wire[..cut]), Ok(None), "{len} cut {cut}");
            }
        }
    }

    #[test]
    fn small_datagram_has_the_documented_bytes() {
        let mut wire = Vec::new();
        encode_datagram(b"hi", &mut wire).unwrap();
        assert_eq!(wire, [0x00, 0x03, 0x00, b'h', b'i']);
    }

    #[test]
    fn oversized_payload_is_refused_and_nothing_is_written() {
        let mut out = vec![1, 2];
        let big = vec![0; MAX_UDP_PAYLOAD + 1];
        assert_eq!(
            encode_datagram(&big, &mut out),
            Err(CapsuleError::PayloadTooLarge {
                len: MAX_UDP_PAYLOAD + 1
            })
        );
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn capsules_follow_each_other_and_unknown_types_are_skipped() {
        let mut wire = Vec::new();
        // Unknown type 0x2d (one-byte varint) with a 3-byte value.
        wire.extend_from_slice(&[0x2d, 0x03, 9, 9, 9]);
        encode_datagram(b"abc", &mut wire).unwrap();
        // Unknown type 0x1234 as a two-byte varint, empty value.
        wire.extend_from_slice(&[0x52, 0x34, 0x00]);
        let (first, n1) = one(&wire);
        assert_eq!((first, n1), (Capsule::Unknown { kind: 0x2d }, 5));
        let (second, n2) = one(&wire[n1..]);
        assert_eq!(second, Capsule::Datagram(b"abc"));
        let (third, n3) = one(&wire[n1 + n2..]);
        assert_eq!(third, Capsule::Unknown { kind: 0x1234 });
        assert_eq!(n1 + n2 + n3, wire.len());
    }

    #[test]
    fn sequenced_datagram_has_the_documented_bytes() {
        let mut wire = Vec::new();
        encode_sequenced(0x0102_0304, b"hi", &mut wire).unwrap();
        assert_eq!(wire, [0x00, 0x07, 0x01, 1, 2, 3, 4, b'h', b'i']);
        assert_eq!(wire.len(), sequenced_capsule_len(2));
        assert_eq!(
            one(&wire),
            (
                Capsule::Sequenced {
                    seq: 0x0102_0304,
                    payload: b"hi"
                },
                wire.len()
            )
        );
    }

    #[test]
    fn sequenced_round_trips_for_every_size_class() {
        for len in [0, 1, 58, 59, 60, 1400, 16_378, 16_379, MAX_UDP_PAYLOAD] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut wire = vec![0xee];
            encode_sequenced(u32::MAX - 1, &payload, &mut wire).unwrap();
            let wire = &wire[1..];
            assert_eq!(wire.len(), sequenced_capsule_len(len), "{len}");
            assert!(wire.len() <= MAX_SEQUENCED_CAPSULE);
            let want = Capsule::Sequenced {
                seq: u32::MAX - 1,
                payload: &payload,
            };
            assert_eq!(one(wire), (want, wire.len()), "{len}");
            for cut in [0, 1, wire.len() / 2, wire.len() - 1] {
                assert_eq!(decode_capsule(&wire[..cut]), Ok(None), "{len} cut {cut}");
            }
        }
        let mut out = vec![9];
        let big = vec![0; MAX_UDP_PAYLOAD + 1];
        assert!(encode_sequenced(1, &big, &mut out).is_err());
        assert_eq!(out, [9]);
    }

    #[test]
    fn sequenced_datagram_without_a_whole_seq_is_malformed() {
        for value in [&[0x01][..], &[0x01, 0], &[0x01, 0, 0, 0]] {
            let mut wire = vec![0x00, value.len() as u8];
            wire.extend_from_slice(value);
            assert_eq!(
                decode_capsule(&wire),
                Err(CapsuleError::MalformedDatagram),
                "{value:?}"
            );
        }
    }

    #[test]
    fn other_context_ids_are_reported_not_delivered() {
        // Context id 2 (one byte), then payload "x".
        assert_eq!(
            one(&[0x00, 0x02, 0x02, b'x']),
            (Capsule::OtherContext { context_id: 2 }, 4)
        );
        // Context id 0 written as a two-byte varint is still context 0.
        assert_eq!(
            one(&[0x00, 0x03, 0x40, 0x00, b'y']),
            (Capsule::Datagram(b"y"), 5)
        );
    }

    #[test]
    fn broken_streams_are_errors() {
        // Empty DATAGRAM value: no context id.
        assert_eq!(
            decode_capsule(&[0x00, 0x00]),
            Err(CapsuleError::MalformedDatagram)
        );
        // The context id varint runs past the value.
        assert_eq!(
            decode_capsule(&[0x00, 0x01, 0x40, 0x00]),
            Err(CapsuleError::MalformedDatagram)
        );
        // A length over the limit fails as soon as the length is in, for any type.
        let mut wire = vec![0x00];
        push_varint(MAX_CAPSULE_VALUE + 1, &mut wire);
        assert_eq!(
            decode_capsule(&wire),
            Err(CapsuleError::TooLong {
                kind: 0,
                len: MAX_CAPSULE_VALUE + 1
            })
        );
        let mut wire = vec![0x3f];
        push_varint(MAX_VARINT, &mut wire);
        assert!(matches!(
            decode_capsule(&wire),
            Err(CapsuleError::TooLong { kind: 0x3f, .. })
        ));
        // The limit itself is fine (an unknown capsule waits for its value).
        let mut wire = vec![0x3f];
        push_varint(MAX_CAPSULE_VALUE, &mut wire);
        assert_eq!(decode_capsule(&wire), Ok(None));
    }
}
