//! Decode and encode failures, and the RFC error code each one maps to.

mod common;

use std::net::SocketAddr;

use common::hex;
use mpbond_protocol::{
    decode, message_len, DecodeError, Decoded, EncodeError, ErrorCode, Message, Request,
    RequestError, Tlv, MAX_MESSAGE_LEN,
};

fn decode_err(wire_hex: &str) -> DecodeError {
    match decode(&hex(wire_hex)) {
        Err(e) => e,
        Ok(d) => panic!("{wire_hex} decoded as {d:?}"),
    }
}

#[test]
fn bad_version() {
    let e = decode_err("02 01 22 63");
    assert_eq!(e, DecodeError::UnsupportedVersion(2));
    assert_eq!(e.error_code(), ErrorCode::UnsupportedVersion);
    // Caught from the first byte, without waiting for the rest.
    assert_eq!(decode_err("00"), DecodeError::UnsupportedVersion(0));
}

#[test]
fn bad_magic() {
    let e = decode_err("01 01 22 64");
    assert_eq!(e, DecodeError::BadMagic(0x2264));
    assert_eq!(e.error_code(), ErrorCode::MalformedMessage);
    // A wrong first magic byte fails before the fourth byte arrives.
    assert!(matches!(decode_err("01 01 47"), DecodeError::BadMagic(_)));
}

#[test]
fn total_length_zero() {
    let e = decode_err("01 00 22 63");
    assert_eq!(e, DecodeError::ZeroLength);
    assert_eq!(e.error_code(), ErrorCode::MalformedMessage);
    assert_eq!(decode_err("01 00"), DecodeError::ZeroLength);
}

#[test]
fn tlv_length_zero() {
    let e = decode_err("01 02 22 63 | 0a 00 00 00");
    assert_eq!(
        e,
        DecodeError::TlvZeroLength {
            kind: 0x0a,
            offset: 4
        }
    );
    assert_eq!(e.error_code(), ErrorCode::MalformedMessage);
}

#[test]
fn tlv_overruns_the_message() {
    // The Connect TLV claims 5 words but the message has only 1 word left.
    let e = decode_err("01 02 22 63 | 0a 05 01 bb");
    assert_eq!(
        e,
        DecodeError::TlvOverrun {
            kind: 0x0a,
            offset: 4,
            len: 20,
            remaining: 4
        }
    );
    assert_eq!(e.error_code(), ErrorCode::MalformedMessage);
    // The second TLV overruns.
    assert!(matches!(
        decode_err("01 03 22 63 | 01 01 00 00 | 16 02 00 00"),
        DecodeError::TlvOverrun { offset: 8, .. }
    ));
}

#[test]
fn tlv_shorter_than_its_fixed_fields() {
    // A Connect TLV of one word has no room for port and address.
    let e = decode_err("01 02 22 63 | 0a 01 01 bb");
    assert_eq!(
        e,
        DecodeError::TlvBadLength {
            kind: 0x0a,
            offset: 4,
            len: 4
        }
    );
    assert_eq!(e.error_code(), ErrorCode::MalformedMessage);
    // An Info TLV must be exactly one word.
    assert!(matches!(
        decode_err("01 03 22 63 | 01 02 00 00 | 00 00 00 00"),
        DecodeError::TlvBadLength { kind: 0x01, .. }
    ));
}

#[test]
fn truncated_message_is_incomplete_not_an_error() {
    // Header says 6 words (24 bytes); 10 are here.
    let wire = hex("01 06 22 63 | 0a 05 01 bb | 00 00");
    assert_eq!(decode(&wire), Ok(Decoded::Incomplete { needed: 14 }));
    assert_eq!(decode(&[]), Ok(Decoded::Incomplete { needed: 4 }));
    assert_eq!(decode(&[1]), Ok(Decoded::Incomplete { needed: 3 }));
}

#[test]
fn trailing_bytes_are_not_part_of_the_message() {
    let mut wire = hex("01 01 22 63");
    wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert_eq!(
        decode(&wire),
        Ok(Decoded::Complete {
            message: Message::ok(),
            len: 4
        })
    );
}

#[test]
fn message_len_from_header() {
    assert_eq!(message_len([1, 1, 0x22, 0x63]), Ok(4));
    assert_eq!(message_len([1, 255, 0x22, 0x63]), Ok(MAX_MESSAGE_LEN));
    assert_eq!(
        message_len([2, 1, 0x22, 0x63]),
        Err(DecodeError::UnsupportedVersion(2))
    );
    assert_eq!(
        message_len([1, 0, 0x22, 0x63]),
        Err(DecodeError::ZeroLength)
    );
    assert_eq!(
        message_len([1, 1, 0x63, 0x22]),
        Err(DecodeError::BadMagic(0x6322))
    );
}

#[test]
fn largest_message_decodes() {
    // 255 words: header plus one Cookie TLV of 254 words.
    let mut wire = hex("01 ff 22 63 | 16 fe 00 00");
    wire.resize(MAX_MESSAGE_LEN, 0xab);
    let message = common::decode_whole(&wire);
    assert!(matches!(&message.tlvs[..], [Tlv::Cookie(v)] if v.len() == MAX_MESSAGE_LEN - 8));
    assert_eq!(message.encode().expect("encode"), wire);
}

#[test]
fn oversized_tlv_is_refused_by_the_encoder() {
    let message = Message {
        tlvs: vec![Tlv::Cookie(vec![0; 1017])],
    };
    assert_eq!(
        message.encode(),
        Err(EncodeError::TlvTooLong {
            kind: 0x16,
            len: 1024
        })
    );
}

#[test]
fn oversized_message_is_refused_by_the_encoder() {
    let message = Message {
        tlvs: vec![Tlv::Info; 255],
    };
    assert_eq!(
        message.encode(),
        Err(EncodeError::MessageTooLong {
            len: 1024,
            max: MAX_MESSAGE_LEN
        })
    );
    let fits = Message {
        tlvs: vec![Tlv::Info; 254],
    };
    assert_eq!(fits.encode().map(|w| w.len()), Ok(MAX_MESSAGE_LEN));
}

#[test]
fn unknown_with_a_known_kind_is_refused() {
    let message = Message {
        tlvs: vec![Tlv::Unknown {
            kind: 0x0a,
            value: vec![0, 0],
        }],
    };
    assert_eq!(message.encode(), Err(EncodeError::KnownKindAsUnknown(0x0a)));
}

#[test]
fn error_codes_round_trip() {
    for code in 0..=u8::MAX {
        assert_eq!(ErrorCode::from_code(code).code(), code);
    }
    let named = [
        (ErrorCode::UnsupportedVersion, 0),
        (ErrorCode::MalformedMessage, 1),
        (ErrorCode::UnsupportedMessage, 2),
        (ErrorCode::MissingCookie, 3),
        (ErrorCode::NotAuthorized, 32),
        (ErrorCode::UnsupportedTcpOption, 33),
        (ErrorCode::ResourceExceeded, 64),
        (ErrorCode::NetworkFailure, 65),
        (ErrorCode::ConnectionReset, 96),
        (ErrorCode::DestinationUnreachable, 97),
    ];
    for (code, value) in named {
        assert_eq!(code.code(), value);
        assert_eq!(ErrorCode::from_code(value), code);
    }
    assert_eq!(ErrorCode::from_code(200), ErrorCode::Other(200));
}

#[test]
fn request_classification() {
    let dest: SocketAddr = "203.0.113.10:443".parse().expect("addr");
    let mut connect = Message::connect(dest);
    connect.tlvs.push(Tlv::Cookie(vec![0; 4]));
    assert_eq!(
        connect.request(),
        Ok(Request::Connect {
            dest,
            tcp_options: &[]
        })
    );
    assert_eq!(Message::info().request(), Ok(Request::Info));

    let unsupported = |m: Message, want: RequestError| {
        let got = m.request().expect_err("must be refused");
        assert_eq!(got, want);
        assert_eq!(got.error_code(), ErrorCode::UnsupportedMessage);
    };
    unsupported(Message::ok(), RequestError::NoAction);
    let mut unknown = Message::connect(dest);
    unknown.tlvs.push(Tlv::Unknown {
        kind: 0xc0,
        value: vec![0, 0],
    });
    unsupported(unknown, RequestError::UnknownTlv(0xc0));
    unsupported(
        Message::error(ErrorCode::NotAuthorized),
        RequestError::UnexpectedTlv(0x1e),
    );
    let mut both = Message::connect(dest);
    both.tlvs.push(Tlv::Info);
    unsupported(both, RequestError::TooManyActions);
}
