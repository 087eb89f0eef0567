//! Fuzz the UDP flow's capsule decoder (`protocol::udp`): `decode_capsule` on arbitrary
//! bytes must never panic, must consume at least one byte and never more than it was
//! given, must answer "need more" for every strict prefix of a whole capsule, and a
//! DATAGRAM it decodes (plain or sequenced) must re-encode to a capsule that decodes to
//! the same payload (and sequence number). `decode_leg_capsule` (the legs' decoder, FEC
//! contexts included) obeys the same rules, its FEC sources and repairs re-encode to
//! themselves and feed an `FecDecoder`, which must never panic on any of them. The
//! bytes also drive a `Dedup`, which must never accept one sequence number twice.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mpbond_protocol::udp::{
    decode_leg_capsule, encode_fec_repair, encode_fec_source, FecDecoder, LegCapsule,
};
use mpbond_protocol::{decode_capsule, encode_datagram, encode_sequenced, Capsule, Dedup};

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
        if let Capsule::Sequenced { seq, payload } = capsule {
            let mut wire = Vec::new();
            encode_sequenced(seq, payload, &mut wire).expect("a decoded payload re-encodes");
            let again = decode_capsule(&wire).expect("re-encoded decodes");
            assert_eq!(again, Some((Capsule::Sequenced { seq, payload }, wire.len())));
        }
        rest = &rest[used..];
    }
    let mut rest = data;
    let mut decoder = FecDecoder::new();
    while let Ok(Some((capsule, used))) = decode_leg_capsule(rest) {
        assert!(used >= 2 && used <= rest.len(), "consumed {used} of {}", rest.len());
        assert_eq!(decode_leg_capsule(&rest[..used - 1]), Ok(None), "a prefix decoded");
        let mut wire = Vec::new();
        match capsule {
            LegCapsule::FecSource { seq, payload } => {
                encode_fec_source(seq, payload, &mut wire).expect("re-encodes");
                decoder.source(seq, payload);
            }
            LegCapsule::FecRepair(repair) => {
                encode_fec_repair(&repair, &mut wire).expect("re-encodes");
                decoder.repair(&repair);
            }
            LegCapsule::Sequenced { .. } | LegCapsule::Other(_) => {}
        }
        if !wire.is_empty() {
            let again = decode_leg_capsule(&wire).expect("re-encoded decodes");
            assert_eq!(again, Some((capsule, wire.len())));
        }
        while let Some((_, payload)) = decoder.poll_recovered() {
            assert!(payload.len() <= 65_535, "a recovered datagram fits UDP");
        }
        rest = &rest[used..];
    }
    // Every 2 bytes are a sequence number offset (small, so the window matters).
    let mut dedup = Dedup::new();
    let mut accepted = std::collections::HashSet::new();
    for pair in data.chunks_exact(2) {
        let seq = u32::from(u16::from_be_bytes([pair[0], pair[1]]) % 4096);
        // The numbers never wrap here, so the highest only grows and a number once
        // accepted is a duplicate or too old for ever after.
        if dedup.accept(seq) {
            assert!(accepted.insert(seq), "{seq} accepted twice");
        }
    }
});
