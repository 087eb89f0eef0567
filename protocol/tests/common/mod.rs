//! Helpers shared by the integration tests.

#![allow(dead_code)]

use mpbond_protocol::{decode, Decoded, Message};

/// Bytes from hex text; whitespace and `|` are ignored, so vectors can be
/// written word by word.
pub fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'|')
        .collect();
    assert!(
        digits.len() % 2 == 0,
        "odd number of hex digits in {text:?}"
    );
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(s, 16).expect("hex digit")
        })
        .collect()
}

/// Decode `wire`, which must be exactly one complete message.
pub fn decode_whole(wire: &[u8]) -> Message {
    match decode(wire) {
        Ok(Decoded::Complete { message, len }) => {
            assert_eq!(len, wire.len(), "message length");
            message
        }
        other => panic!("expected a complete message, got {other:?}"),
    }
}
