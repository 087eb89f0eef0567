//! Fuzz `ServerHandshake` with arbitrary bytes fed in arbitrary pieces: it must never
//! panic, never consume more than it was given, never accept an unsealed or forged
//! request, and send the same answer however the bytes are split. (How many bytes a
//! refusal consumed, and the detail of its decode error, may differ: a bad header is
//! refused as soon as its first wrong byte is seen, and the connection is closed either
//! way.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use mpbond_protocol::auth::{Key, Verifier};
use mpbond_protocol::{Decision, ServerHandshake, Step};

const NOW: u64 = 1_700_000_000;

/// Feed `data` in pieces of at most `piece` bytes; the refusal's reply bytes (what the
/// client would see) and the bytes consumed.
fn run(data: &[u8], piece: usize) -> (Option<Vec<u8>>, usize) {
    let verifier = Verifier::new(60);
    let key = Key::from_bytes([0x5a; 32]);
    let mut hs = ServerHandshake::new(&verifier, |_| Some(key.clone()), &[2, 3, 4]);
    let mut used = 0;
    while used < data.len() {
        let end = (used + piece.max(1)).min(data.len());
        let got = hs.receive(&data[used..end], NOW);
        assert!(got.consumed <= end - used, "consumed more than given");
        used += got.consumed;
        if let Step::Done(decision) = got.step {
            let Decision::Refuse { reply, .. } = decision else {
                panic!("accepted bytes that nobody sealed with the key: {decision:?}");
            };
            return (Some(reply), used);
        }
        if got.consumed == 0 {
            break;
        }
    }
    (None, used)
}

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else {
        return;
    };
    let (whole, _) = run(data, data.len());
    let (pieces, _) = run(data, usize::from(split % 16) + 1);
    assert_eq!(
        whole, pieces,
        "the decision depends on how the bytes arrive"
    );
});
