//! The Group TLV (type 0xd1, mpbond's): one *leg* of a protected UDP flow.
//!
//! A protected flow is carried by up to [`MAX_LEGS`] legs, each its own UDP flow
//! request (Connect TLV + UDP TLV + Cookie) on its own connection, pinned to one
//! WAN. The Group TLV names the flow group the leg belongs to, so the converter
//! joins the legs into one flow toward the destination. Both ends send every
//! datagram on every leg as a sequenced capsule ([`super::encode_sequenced`]) and
//! keep the first copy of each sequence number ([`super::Dedup`]).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Type = 0xd1  |  Length = 3   |      Leg      |     Legs      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Group ID (64 bits)                       |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! `leg` is the leg's index (0 ≤ leg < legs) and `legs` how many legs the sender
//! means to open (1 ≤ legs ≤ [`MAX_LEGS`]); the group id is random, chosen by
//! the agent. The decoder keeps any values; [`Group::validate`] (called when a
//! request is classified) refuses out-of-range ones as an Unsupported Message.

use thiserror::Error;

/// Most legs one group may have.
pub const MAX_LEGS: u8 = 4;

/// One leg's Group TLV: which group, which leg, how many legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Group {
    /// The group id: random, chosen by the agent, unique among its live groups.
    /// Big-endian on the wire.
    pub id: u64,
    /// This leg's index, `0..legs`.
    pub leg: u8,
    /// How many legs the sender means to open, `1..=MAX_LEGS`.
    pub legs: u8,
}

/// Why a Group TLV's values are out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum GroupError {
    /// `legs` is 0 or over [`MAX_LEGS`].
    #[error("group of {0} legs (1..={MAX_LEGS})")]
    BadLegs(u8),
    /// `leg` is not below `legs`.
    #[error("leg {leg} of a {legs}-leg group")]
    BadLeg {
        /// The leg index.
        leg: u8,
        /// The group's leg count.
        legs: u8,
    },
}

impl Group {
    /// Length of the TLV in bytes (three 32-bit words).
    pub const TLV_LEN: usize = 12;

    /// Check the leg index and count.
    pub fn validate(&self) -> Result<(), GroupError> {
        if self.legs == 0 || self.legs > MAX_LEGS {
            return Err(GroupError::BadLegs(self.legs));
        }
        if self.leg >= self.legs {
            return Err(GroupError::BadLeg {
                leg: self.leg,
                legs: self.legs,
            });
        }
        Ok(())
    }

    /// The 10 bytes after the type and length bytes.
    pub(crate) fn body(&self) -> [u8; 10] {
        let mut body = [0; 10];
        body[0] = self.leg;
        body[1] = self.legs;
        body[2..].copy_from_slice(&self.id.to_be_bytes());
        body
    }

    /// Parse the bytes after the type and length bytes (exactly 10).
    pub(crate) fn from_body(body: &[u8]) -> Option<Self> {
        let (&[leg, legs], id) = body.split_first_chunk::<2>()?;
        let id: [u8; 8] = id.try_into().ok()?;
        Some(Self {
            id: u64::from_be_bytes(id),
            leg,
            legs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, DecodeError, Decoded, Message, Tlv};

    #[test]
    fn group_tlv_has_the_documented_bytes_and_round_trips() {
        let group = Group {
            id: 0x0102_0304_0506_0708,
            leg: 1,
            legs: 2,
        };
        let tlv = Tlv::Group(group);
        let mut wire = Vec::new();
        tlv.encode_into(&mut wire).unwrap();
        assert_eq!(wire, [0xd1, 3, 1, 2, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(tlv.encoded_len(), Group::TLV_LEN);
        let message = Message {
            tlvs: vec![tlv.clone()],
        };
        let bytes = message.encode().unwrap();
        let Decoded::Complete { message: back, .. } = decode(&bytes).unwrap() else {
            panic!("incomplete");
        };
        assert_eq!(back.tlvs, vec![tlv]);
    }

    #[test]
    fn group_tlv_of_another_length_is_malformed() {
        for words in [1u8, 2, 4] {
            let mut bytes = vec![1, 1 + words, 0x22, 0x63, 0xd1, words];
            bytes.resize(4 + usize::from(words) * 4, 0);
            assert!(
                matches!(
                    decode(&bytes),
                    Err(DecodeError::TlvBadLength { kind: 0xd1, .. })
                ),
                "{words} words"
            );
        }
    }

    #[test]
    fn leg_values_are_checked() {
        let ok = |leg, legs| Group { id: 7, leg, legs }.validate();
        assert_eq!(ok(0, 1), Ok(()));
        assert_eq!(ok(3, 4), Ok(()));
        assert_eq!(ok(0, 0), Err(GroupError::BadLegs(0)));
        assert_eq!(ok(0, 5), Err(GroupError::BadLegs(5)));
        assert_eq!(ok(2, 2), Err(GroupError::BadLeg { leg: 2, legs: 2 }));
    }
}
