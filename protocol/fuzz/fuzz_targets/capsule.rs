//! Fuzz the UDP flow's capsule decoder (`protocol::udp`): `decode_capsule` on arbitrary
//! bytes must never panic, must consume at least one byte and never more than it was
//! given, must answer "need more" for every strict prefix of a whole capsule, and a
//! DATAGRAM it decodes must re-encode to a capsule that decodes to the same payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mpbond_protocol::{decode_capsule, encode_datagram, Capsule};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((capsule, used))) = decode_capsule(rest) {
        assert!(used >= 2 && used <= rest.len(), "consumed {used} of {}", rest.len());
        assert_eq!(decode_capsule(&rest[..used - 1]), Ok(None), "a prefix decoded");
        if let Capsule::Datagram(payload) = capsule {
            let mut wire = Vec::new();
            encode_datagram(payload, &mut wire).expect("a decoded payload re-encodes");
            let again = decode_capsule(&wire).expect("re-encoded decodes");
            assert_eq!(again, Some((Capsule::Datagram(payload), wire.len())));
        }
        rest = &rest[used..];
    }
});
