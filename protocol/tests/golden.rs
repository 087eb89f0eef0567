//! Golden byte vectors, written by hand from the RFC 8803 layouts (not
//! produced by the encoder): each decodes to the expected value and the
//! expected value encodes to exactly these bytes.

mod common;

use std::net::SocketAddr;

use common::{decode_whole, hex};
use mpbond_protocol::{ErrorCode, Message, Tlv};

/// Check both directions for one vector.
fn golden(wire_hex: &str, message: Message) {
    let wire = hex(wire_hex);
    assert_eq!(decode_whole(&wire), message, "decode of {wire_hex}");
    assert_eq!(
        message.encode().expect("encode"),
        wire,
        "encode of {message:?}"
    );
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

#[test]
fn ok_reply_is_the_bare_header() {
    // Version 1, Total Length 1 word, Magic 0x2263.
    golden("01 01 22 63", Message::ok());
}

#[test]
fn info_tlv() {
    // Type 0x01, Length 1, Unassigned 0x0000.
    golden("01 02 22 63 | 01 01 00 00", Message::info());
}

#[test]
fn connect_tlv_ipv4_is_v4_mapped() {
    // Type 0x0a, Length 5, port 443, then ::ffff:203.0.113.10.
    golden(
        "01 06 22 63 | 0a 05 01 bb | 00 00 00 00 | 00 00 00 00 | 00 00 ff ff | cb 00 71 0a",
        Message::connect(addr("203.0.113.10:443")),
    );
}

#[test]
fn connect_tlv_ipv6_with_tcp_options() {
    // Port 8080, 2001:db8:200::10, then the MSS option 02 04 05 b4.
    golden(
        "01 07 22 63 | 0a 06 1f 90 | 20 01 0d b8 | 02 00 00 00 | 00 00 00 00 | 00 00 00 10 \
         | 02 04 05 b4",
        Message {
            tlvs: vec![Tlv::Connect {
                dest: addr("[2001:db8:200::10]:8080"),
                tcp_options: vec![0x02, 0x04, 0x05, 0xb4],
            }],
        },
    );
}

#[test]
fn extended_tcp_header_tlv() {
    // Type 0x14, Length 2, Unassigned 0x0000, then the returned header bytes.
    golden(
        "01 03 22 63 | 14 02 00 00 | 01 bb c3 50",
        Message {
            tlvs: vec![Tlv::ExtendedTcpHeader(vec![0x01, 0xbb, 0xc3, 0x50])],
        },
    );
}

#[test]
fn supported_tcp_extensions_tlv() {
    // Type 0x15, Length 2, Unassigned, kinds MSS(2) MPTCP(30) TFO(34), pad.
    golden(
        "01 03 22 63 | 15 02 00 00 | 02 1e 22 00",
        Message {
            tlvs: vec![Tlv::SupportedTcpExtensions(vec![0x02, 0x1e, 0x22, 0x00])],
        },
    );
}

#[test]
fn cookie_tlv() {
    // Type 0x16, Length 2, Zero 0x0000, then the opaque cookie.
    golden(
        "01 03 22 63 | 16 02 00 00 | de ad be ef",
        Message {
            tlvs: vec![Tlv::Cookie(vec![0xde, 0xad, 0xbe, 0xef])],
        },
    );
}

#[test]
fn error_tlv_with_default_values() {
    // Type 0x1e, Length 1, Error Code, one value byte.
    golden(
        "01 02 22 63 | 1e 01 20 00",
        Message::error(ErrorCode::NotAuthorized),
    );
    golden(
        "01 02 22 63 | 1e 01 03 00",
        Message::error(ErrorCode::MissingCookie),
    );
    // Unsupported Version carries the supported version.
    golden(
        "01 02 22 63 | 1e 01 00 01",
        Message::error(ErrorCode::UnsupportedVersion),
    );
    golden(
        "01 02 22 63 | 1e 01 61 00",
        Message::error(ErrorCode::DestinationUnreachable),
    );
}

#[test]
fn error_tlv_with_a_longer_value() {
    // Unsupported TCP Option listing kinds 0x1e and 0x22, zero padded.
    golden(
        "01 03 22 63 | 1e 02 21 1e | 22 00 00 00",
        Message::error_with(
            ErrorCode::UnsupportedTcpOption,
            vec![0x1e, 0x22, 0x00, 0x00, 0x00],
        ),
    );
}

#[test]
fn unknown_tlv_is_kept() {
    // A private-use type 0xc0, Length 1, two value bytes.
    golden(
        "01 02 22 63 | c0 01 ab cd",
        Message {
            tlvs: vec![Tlv::Unknown {
                kind: 0xc0,
                value: vec![0xab, 0xcd],
            }],
        },
    );
}

#[test]
fn several_tlvs_in_order() {
    golden(
        "01 08 22 63 | 0a 05 00 50 | 00 00 00 00 | 00 00 00 00 | 00 00 ff ff | c0 00 02 01 \
         | 16 02 00 00 | 11 22 33 44",
        Message {
            tlvs: vec![
                Tlv::Connect {
                    dest: addr("192.0.2.1:80"),
                    tcp_options: Vec::new(),
                },
                Tlv::Cookie(vec![0x11, 0x22, 0x33, 0x44]),
            ],
        },
    );
}

#[test]
fn unassigned_fields_are_ignored_on_receipt() {
    // Non-zero Unassigned bytes in an Info TLV still decode as Info.
    let wire = hex("01 02 22 63 | 01 01 ff ff");
    assert_eq!(decode_whole(&wire), Message::info());
}

#[test]
fn padding_is_added_by_the_encoder() {
    // A 1-byte cookie is padded to a whole word.
    let message = Message {
        tlvs: vec![Tlv::Cookie(vec![0xaa])],
    };
    assert_eq!(
        message.encode().expect("encode"),
        hex("01 03 22 63 | 16 02 00 00 | aa 00 00 00")
    );
}

#[test]
fn accessors() {
    let connect = Message::connect(addr("[2001:db8:200::10]:443"));
    assert_eq!(connect.destination(), Some(addr("[2001:db8:200::10]:443")));
    assert!(!connect.is_info());
    assert_eq!(connect.error_code(), None);
    assert!(Message::info().is_info());
    assert_eq!(
        Message::error(ErrorCode::ConnectionReset).error_code(),
        Some(ErrorCode::ConnectionReset)
    );
    assert_eq!(Message::ok().tlvs, Vec::new());
}
