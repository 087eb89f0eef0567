//! Fuzz `decode`: it must never panic, and whatever it accepts must
//! re-encode to a message that decodes to the same value and length.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mpbond_protocol::{decode, Decoded, MAX_MESSAGE_LEN};

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(Decoded::Complete { message, len }) => {
            assert!(len <= data.len() && len <= MAX_MESSAGE_LEN && len % 4 == 0);
            let wire = match message.encode() {
                Ok(wire) => wire,
                Err(e) => panic!("decoded message does not re-encode: {e}"),
            };
            assert_eq!(wire.len(), len, "re-encoded length");
            match decode(&wire) {
                Ok(Decoded::Complete {
                    message: again,
                    len: again_len,
                }) => {
                    assert_eq!(again, message, "round trip");
                    assert_eq!(again_len, len);
                }
                other => panic!("re-encoded message does not decode: {other:?}"),
            }
            // Exercise the request classifier and accessors too.
            let _ = message.request();
            let _ = (
                message.destination(),
                message.error_code(),
                message.is_info(),
            );
        }
        Ok(Decoded::Incomplete { needed }) => {
            assert!(needed > 0 && data.len() + needed <= MAX_MESSAGE_LEN);
        }
        Err(e) => {
            assert!(e.error_code().code() <= 1, "decode errors are codes 0 or 1");
        }
    }
});
