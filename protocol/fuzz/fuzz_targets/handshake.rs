//! Fuzz `ServerHandshake` with arbitrary bytes fed in arbitrary pieces: it must never
//! panic, never consume more than it was given, never accept an unsealed or forged
//! request, and reach the same decision however the bytes are split.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mpbond_protocol::auth::{Key, Verifier};
use mpbond_protocol::{Decision, ServerHandshake, Step};

const NOW: u64 = 1_700_000_000;

/// Feed `data` in pieces of at most `piece` bytes; the decision and the bytes consumed.
fn run(data: &[u8], piece: usize) -> (Option<String>, usize) {
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
            assert!(
                !matches!(decision, Decision::Connect { .. } | Decision::Info { .. }),
                "accepted bytes that nobody sealed with the key"
            );
            return (Some(format!("{decision:?}")), used);
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
    let whole = run(data, data.len());
    let pieces = run(data, usize::from(split % 16) + 1);
    assert_eq!(
        whole, pieces,
        "the decision depends on how the bytes arrive"
    );
});
