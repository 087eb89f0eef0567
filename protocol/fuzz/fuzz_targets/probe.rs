//! Fuzz the probe datagrams (`protocol::probe`): `verify_request` and `verify_reply` on
//! arbitrary bytes must never panic and never accept a forged tag; a request encoded for
//! the fuzzer's stamp must verify, and its reply must verify against it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mpbond_protocol::auth::{ClientId, Key};
use mpbond_protocol::probe::{
    encode_reply, encode_request, request_tag, verify_reply, verify_request,
};

const NOW_MS: u64 = 1_700_000_000_000;
const WINDOW_MS: u64 = 60_000;

fuzz_target!(|data: &[u8]| {
    let key = Key::from_bytes([0x5a; 32]);
    let forged = verify_request(data, NOW_MS, WINDOW_MS, |_| Some(key.clone()));
    assert!(forged.is_err(), "accepted a forged probe request");
    let tag = [0x11; 16];
    assert!(
        verify_reply(data, &key, NOW_MS, &tag).is_err(),
        "accepted a forged probe reply"
    );
    let Ok(id) = "fuzz".parse::<ClientId>() else {
        return;
    };
    let mut stamp = [0u8; 8];
    for (s, d) in stamp.iter_mut().zip(data) {
        *s = *d;
    }
    let stamp = NOW_MS - WINDOW_MS + u64::from_be_bytes(stamp) % (2 * WINDOW_MS);
    let wire = encode_request(&id, &key, stamp);
    let request = verify_request(&wire, NOW_MS, WINDOW_MS, |_| Some(key.clone()))
        .expect("an encoded request verifies");
    let reply = encode_reply(&key, &request);
    let tag = request_tag(&wire).expect("a request has a tag");
    verify_reply(&reply, &key, stamp, &tag).expect("its reply verifies");
});
