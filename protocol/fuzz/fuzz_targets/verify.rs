//! Fuzz `Verifier::verify` on whatever decodes: it must never panic and never
//! accept a forged cookie. Each cookie-less message is also sealed, and the
//! sealed form must verify.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mpbond_protocol::auth::{seal, ClientId, Key, Verifier};
use mpbond_protocol::{decode, Decoded};

const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(Decoded::Complete { message, len }) = decode(data) else {
        return;
    };
    let key = Key::from_bytes([0x5a; 32]);
    let Ok(id) = "fuzz".parse::<ClientId>() else {
        return;
    };
    let verifier = Verifier::new(60);
    let wire = data.get(..len).unwrap_or(data);
    assert!(
        verifier
            .verify(wire, &message, NOW, |_| Some(key.clone()))
            .is_err(),
        "accepted a forged cookie"
    );
    if message.cookie().is_none() {
        if let Ok(sealed) = seal(&message, &id, &key, NOW, [7; 12]) {
            let Ok(Decoded::Complete { message: m, .. }) = decode(&sealed) else {
                panic!("sealed message does not decode");
            };
            let got = verifier.verify(&sealed, &m, NOW, |_| Some(key.clone()));
            assert_eq!(got.as_ref(), Ok(&id), "sealed message must verify");
        }
    }
});
