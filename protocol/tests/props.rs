//! Property tests: round trips, arbitrary input never panics, and every
//! prefix of a valid message is `Incomplete`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use mpbond_protocol::{decode, Decoded, ErrorCode, Message, Tlv, MAX_MESSAGE_LEN};
use proptest::collection::vec;
use proptest::prelude::*;

/// A byte vector whose length `n` satisfies `(n + fixed) % 4 == 0`, so the
/// TLV needs no padding and the value decodes back unchanged.
fn aligned_bytes(fixed: usize, max_words: usize) -> impl Strategy<Value = Vec<u8>> {
    (0..=max_words).prop_flat_map(move |words| {
        let len = (words * 4 + 4 - fixed % 4) % 4 + words * 4;
        vec(any::<u8>(), len..=len)
    })
}

fn arb_dest() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_filter("v4-mapped decodes as v4", |(ip, _)| {
                Ipv6Addr::from(*ip).to_ipv4_mapped().is_none()
            })
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

/// TLVs in canonical form: they decode back to exactly themselves.
fn arb_tlv() -> impl Strategy<Value = Tlv> {
    prop_oneof![
        Just(Tlv::Info),
        (arb_dest(), aligned_bytes(20, 4))
            .prop_map(|(dest, tcp_options)| Tlv::Connect { dest, tcp_options }),
        aligned_bytes(4, 8).prop_map(Tlv::ExtendedTcpHeader),
        aligned_bytes(4, 8).prop_map(Tlv::SupportedTcpExtensions),
        aligned_bytes(4, 16).prop_map(Tlv::Cookie),
        (any::<u8>(), aligned_bytes(3, 4)).prop_map(|(code, value)| Tlv::Error {
            code: ErrorCode::from_code(code),
            value,
        }),
        (
            any::<u8>().prop_filter("unknown kinds only", |k| !Tlv::is_known_kind(*k)),
            aligned_bytes(2, 4)
        )
            .prop_map(|(kind, value)| Tlv::Unknown { kind, value }),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    vec(arb_tlv(), 0..12)
        .prop_map(|tlvs| Message { tlvs })
        .prop_filter("fits in one message", |m| {
            m.encoded_len() <= MAX_MESSAGE_LEN
        })
}

/// TLVs with any value lengths (padding will be added).
fn arb_loose_tlv() -> impl Strategy<Value = Tlv> {
    prop_oneof![
        (arb_dest(), vec(any::<u8>(), 0..12))
            .prop_map(|(dest, tcp_options)| Tlv::Connect { dest, tcp_options }),
        vec(any::<u8>(), 0..40).prop_map(Tlv::Cookie),
        (any::<u8>(), vec(any::<u8>(), 0..9)).prop_map(|(code, value)| Tlv::Error {
            code: ErrorCode::from_code(code),
            value,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonical_messages_round_trip(message in arb_message()) {
        let wire = message.encode().expect("fits, so it encodes");
        prop_assert_eq!(wire.len(), message.encoded_len());
        prop_assert_eq!(
            decode(&wire),
            Ok(Decoded::Complete { message: message.clone(), len: wire.len() })
        );
    }

    #[test]
    fn re_encoding_is_stable(tlvs in vec(arb_loose_tlv(), 0..8)) {
        let message = Message { tlvs };
        let wire = message.encode().expect("small, so it encodes");
        let Ok(Decoded::Complete { message: back, len }) = decode(&wire) else {
            return Err(TestCaseError::fail("did not decode"));
        };
        prop_assert_eq!(len, wire.len());
        prop_assert_eq!(back.encode().expect("re-encode"), wire);
    }

    #[test]
    fn every_prefix_is_incomplete(message in arb_message(), trailing in vec(any::<u8>(), 0..8)) {
        let wire = message.encode().expect("encode");
        for cut in 0..wire.len() {
            let needed = if cut < 4 { 4 - cut } else { wire.len() - cut };
            prop_assert_eq!(
                decode(&wire[..cut]),
                Ok(Decoded::Incomplete { needed }),
                "prefix of {} bytes", cut
            );
        }
        let mut longer = wire.clone();
        longer.extend_from_slice(&trailing);
        prop_assert_eq!(
            decode(&longer),
            Ok(Decoded::Complete { message, len: wire.len() })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..1100)) {
        check_arbitrary(&bytes)?;
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header(words in 1u8..=255, body in vec(any::<u8>(), 0..1100)) {
        // Most random bytes die at the header; this reaches the TLV parser.
        let mut bytes = vec![1, words, 0x22, 0x63];
        bytes.extend_from_slice(&body);
        check_arbitrary(&bytes)?;
    }
}

/// Whatever `decode` says about `bytes` must be self-consistent.
fn check_arbitrary(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes) {
        Ok(Decoded::Complete { message, len }) => {
            prop_assert!(len <= bytes.len() && len % 4 == 0 && len <= MAX_MESSAGE_LEN);
            let wire = message.encode().expect("a decoded message re-encodes");
            prop_assert_eq!(wire.len(), len);
            prop_assert_eq!(decode(&wire), Ok(Decoded::Complete { message, len }));
        }
        Ok(Decoded::Incomplete { needed }) => {
            prop_assert!(needed >= 1 && bytes.len() + needed <= MAX_MESSAGE_LEN);
        }
        Err(e) => {
            // Every error maps to a reply code in the validation range.
            prop_assert!(e.error_code().code() <= 1);
        }
    }
    Ok(())
}
