//! Tests of `fec.rs`: the documented bytes, recovery in any order within a few capsules, and proptests of
//! encode → lose → decode against what was sent.

use super::*;
use proptest::prelude::*;

fn t0() -> Instant {
    Instant::now()
}

/// Decode every capsule of `wire` as a leg does.
fn leg_capsules(mut wire: &[u8]) -> Vec<LegCapsule<'_>> {
    let mut out = Vec::new();
    while let Some((capsule, used)) = decode_leg_capsule(wire).expect("valid") {
        out.push(capsule);
        wire = &wire[used..];
    }
    assert!(wire.is_empty(), "a partial capsule is left");
    out
}

/// docs/PROTOCOL.md, "Worked example: an FEC block"; the same bytes are built by
/// `concentrator/tests/independent/udp_client.py` (`fec_block`).
#[test]
fn a_block_of_two_has_the_documented_bytes() {
    let mut encoder = FecEncoder::new(FecParams::fixed(2, Duration::from_millis(100)));
    let (mut sources, mut repair) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        encoder
            .push(b"x", t0(), &mut Vec::new(), &mut Vec::new())
            .unwrap();
    }
    // Seven sources before: blocks 0-1, 2-3, 4-5, and 6 alone, closed by time.
    let _ = encoder.handle_timeout(t0() + Duration::from_secs(1), &mut Vec::new());
    assert!(!encoder
        .push(b"hi", t0(), &mut sources, &mut repair)
        .unwrap());
    assert!(encoder
        .push(b"abc", t0(), &mut sources, &mut repair)
        .unwrap());
    assert_eq!(
        sources,
        [
            0x00, 0x07, 0x02, 0, 0, 0, 7, b'h', b'i', //
            0x00, 0x08, 0x02, 0, 0, 0, 8, b'a', b'b', b'c'
        ]
    );
    assert_eq!(
        repair,
        [0x00, 0x0b, 0x03, 0, 0, 0, 7, 2, 0x00, 0x01, 0x09, 0x0b, 0x63]
    );
    assert_eq!(
        sources.len(),
        fec_source_capsule_len(2) + fec_source_capsule_len(3)
    );
    let expect = Repair {
        first_seq: 7,
        count: 2,
        length_xor: 1,
        parity: &[0x09, 0x0b, 0x63],
    };
    assert_eq!(leg_capsules(&repair), [LegCapsule::FecRepair(expect)]);
    // "hi" lost: recovered from "abc" and the repair.
    let mut decoder = FecDecoder::new();
    assert!(decoder.source(8, b"abc"));
    decoder.repair(&expect);
    assert_eq!(decoder.poll_recovered(), Some((7, b"hi".to_vec())));
    assert_eq!((decoder.lost_before(), decoder.lost_after()), (1, 0));
    assert_eq!(decoder.recovered(), 1);
}

#[test]
fn a_block_closes_after_its_span_and_a_lone_source_is_repaired_by_a_copy() {
    let mut encoder = FecEncoder::new(FecParams::default());
    let now = t0();
    let mut source = Vec::new();
    let mut repair = Vec::new();
    assert_eq!(encoder.poll_timeout(), None);
    assert!(!encoder
        .push(b"ping", now, &mut source, &mut repair)
        .unwrap());
    let due = encoder.poll_timeout().expect("a block is open");
    assert_eq!(due, now + FecParams::default().span);
    assert!(!encoder.handle_timeout(due - Duration::from_millis(1), &mut repair));
    assert!(encoder.handle_timeout(due, &mut repair));
    assert_eq!(encoder.poll_timeout(), None);
    let [LegCapsule::FecRepair(r)] = leg_capsules(&repair)[..] else {
        panic!("one repair");
    };
    assert_eq!(
        (r.first_seq, r.count, r.length_xor, r.parity),
        (0, 1, 4, &b"ping"[..])
    );
    assert_eq!(encoder.repairs(), 1);
    assert_eq!(encoder.repair_bytes(), repair.len() as u64);
}

/// Drive `encoder` with `count` 200-byte datagrams `gap` apart (closing blocks by time
/// before each, as the shells do): the sources of each block, in order.
fn block_sizes(encoder: &mut FecEncoder, count: u32, gap: Duration) -> Vec<u8> {
    let start = t0();
    let mut sizes = Vec::new();
    let mut wire = Vec::new();
    let mut take = |wire: &mut Vec<u8>| {
        for capsule in leg_capsules(wire) {
            if let LegCapsule::FecRepair(r) = capsule {
                sizes.push(r.count);
            }
        }
        wire.clear();
    };
    for i in 0..count {
        let now = start + gap * i;
        encoder.handle_timeout(now, &mut wire);
        encoder
            .push(&[7; 200], now, &mut Vec::new(), &mut wire)
            .unwrap();
        take(&mut wire);
    }
    encoder.handle_timeout(start + gap * count + Duration::from_secs(1), &mut wire);
    take(&mut wire);
    sizes
}

/// Issue 18: a 50-a-second call of 200-byte datagrams pays at most 7 % of its payload
/// in repair bytes (a fixed 100 ms bound gave blocks of 5 and 18 %), leaving room under
/// the 13 % target for the sources a late leg hands back (`late.rs`).
#[test]
fn a_fifty_a_second_stream_fills_blocks_of_sixteen_within_seven_percent() {
    let mut encoder = FecEncoder::new(FecParams::default());
    let sizes = block_sizes(&mut encoder, 500, Duration::from_millis(20));
    // The first block closes by the shortest bound (no rate measured yet), the rest by
    // count.
    assert_eq!(sizes[0], 5, "{sizes:?}");
    assert!(
        sizes[1..sizes.len() - 1].iter().all(|&n| n == 16),
        "{sizes:?}"
    );
    assert_eq!(sizes.iter().map(|&n| u32::from(n)).sum::<u32>(), 500);
    let overhead = encoder.repair_bytes() as f64 * 100.0 / (500.0 * 200.0);
    assert!(overhead <= 7.0, "{overhead:.1} %");
    assert_eq!(encoder.block_span(), Duration::from_millis(320));
}

#[test]
fn a_slow_stream_closes_its_blocks_at_the_longest_bound_and_a_fast_one_at_the_shortest() {
    // 10 a second: 100 ms gaps, 16 sources would take 1.6 s; the bound stops at 400.
    let mut slow = FecEncoder::new(FecParams::default());
    let sizes = block_sizes(&mut slow, 61, Duration::from_millis(100));
    assert_eq!(slow.block_span(), Duration::from_millis(400));
    assert!(sizes[1..].iter().all(|&n| n == 4), "{sizes:?}");
    // 200 a second: full blocks of 16 long before 100 ms; the bound stays at 100.
    let mut fast = FecEncoder::new(FecParams::default());
    let sizes = block_sizes(&mut fast, 400, Duration::from_millis(5));
    assert_eq!(fast.block_span(), Duration::from_millis(100));
    assert!(sizes.iter().all(|&n| n == 16), "{sizes:?}");
    // A fixed bound does not follow the rate.
    let mut fixed = FecEncoder::new(FecParams::fixed(8, Duration::from_millis(100)));
    let sizes = block_sizes(&mut fixed, 100, Duration::from_millis(20));
    assert_eq!(fixed.block_span(), Duration::from_millis(100));
    assert!(sizes.iter().all(|&n| n == 5), "{sizes:?}");
}

#[test]
fn a_repair_before_its_sources_waits_and_two_losses_in_a_block_are_not_recovered() {
    let mut decoder = FecDecoder::new();
    let parity = [b'a' ^ b'c', b'b' ^ b'd'];
    let repair = Repair {
        first_seq: 10,
        count: 3,
        // Three 2-byte payloads: 2 ^ 2 ^ 2.
        length_xor: 2,
        parity: &[parity[0] ^ b'e', parity[1] ^ b'f'],
    };
    decoder.repair(&repair);
    assert_eq!(decoder.poll_recovered(), None);
    assert!(decoder.source(10, b"ab"));
    assert_eq!(decoder.poll_recovered(), None, "two still missing");
    assert!(decoder.source(12, b"ef"));
    assert_eq!(decoder.poll_recovered(), Some((11, b"cd".to_vec())));
    // The late copy of the recovered source is a duplicate.
    assert!(!decoder.source(11, b"cd"));
    assert_eq!(decoder.duplicates(), 1);
    // A block with two losses stays lost.
    let mut decoder = FecDecoder::new();
    assert!(decoder.source(0, b"a"));
    decoder.repair(&Repair {
        first_seq: 0,
        count: 3,
        length_xor: 1,
        parity: b"x",
    });
    assert!(decoder.source(3, b"d"));
    assert_eq!(decoder.poll_recovered(), None);
    assert_eq!((decoder.lost_before(), decoder.lost_after()), (2, 2));
}

#[test]
fn malformed_repairs_end_the_leg_and_other_contexts_are_passed_on() {
    // Count 0 and count 17.
    for count in [0u8, FEC_MAX_SOURCES + 1] {
        let wire = [0x00, 0x08, 0x03, 0, 0, 0, 1, count, 0, 0];
        assert_eq!(
            decode_leg_capsule(&wire),
            Err(CapsuleError::MalformedDatagram)
        );
    }
    // A header cut short.
    assert_eq!(
        decode_leg_capsule(&[0x00, 0x04, 0x03, 0, 0, 0]),
        Err(CapsuleError::MalformedDatagram)
    );
    assert_eq!(
        decode_leg_capsule(&[0x00, 0x03, 0x02, 0, 0]),
        Err(CapsuleError::MalformedDatagram)
    );
    let wire = [0x00, 0x07, 0x01, 0, 0, 0, 9, b'h', b'i'];
    assert_eq!(
        decode_leg_capsule(&wire),
        Ok(Some((
            LegCapsule::Sequenced {
                seq: 9,
                payload: b"hi"
            },
            9
        )))
    );
    assert_eq!(
        decode_leg_capsule(&[0x00, 0x02, 0x00, b'x']),
        Ok(Some((LegCapsule::Other(Capsule::Datagram(b"x")), 4)))
    );
    assert_eq!(
        decode_leg_capsule(&[0x00, 0x02, 0x04, b'x']),
        Ok(Some((
            LegCapsule::Other(Capsule::OtherContext { context_id: 4 }),
            4
        )))
    );
    assert_eq!(
        decode_leg_capsule(&[0x2d, 0x00]),
        Ok(Some((
            LegCapsule::Other(Capsule::Unknown { kind: 0x2d }),
            2
        )))
    );
    assert_eq!(decode_leg_capsule(&[0x00, 0x09, 0x03]), Ok(None));
    // A plain flow's decoder sees the FEC contexts as other contexts.
    assert_eq!(
        super::super::decode_capsule(&[0x00, 0x05, 0x02, 0, 0, 0, 1]),
        Ok(Some((Capsule::OtherContext { context_id: 2 }, 7)))
    );
}

#[test]
fn a_repair_whose_sources_are_no_longer_kept_is_dropped() {
    let mut decoder = FecDecoder::new();
    for seq in 1..=(KEEP_SOURCES as u32 + 1) {
        assert!(decoder.source(seq, &[seq as u8]));
    }
    // Source 0 is missing, source 1 has left the kept window.
    decoder.repair(&Repair {
        first_seq: 0,
        count: 2,
        length_xor: 0,
        parity: &[1],
    });
    assert_eq!(decoder.poll_recovered(), None);
}

proptest! {
    /// Any stream, any block shape, each capsule lost or not, reordered a
    /// little: every source delivered is what was sent, nothing twice, and every block
    /// that lost at most one source (its repair arriving) is delivered whole.
    #[test]
    fn what_is_delivered_was_sent_and_single_losses_are_recovered(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..60),
        max_sources in 1u8..=FEC_MAX_SOURCES,
        lost in proptest::collection::vec(any::<bool>(), 80),
        order_seed in any::<u64>(),
    ) {
        let now = t0();
        let mut encoder = FecEncoder::new(FecParams::fixed(max_sources, Duration::from_millis(50)));
        // (wire, is_repair)
        let mut wires: Vec<Vec<u8>> = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            let (mut source, mut repair) = (Vec::new(), Vec::new());
            // Every seventh datagram comes late enough to close the block by time.
            let at = now + Duration::from_millis(60 * (i as u64 / 7));
            if encoder.handle_timeout(at, &mut repair) {
                wires.push(std::mem::take(&mut repair));
            }
            encoder.push(payload, at, &mut source, &mut repair).unwrap();
            wires.push(source);
            if !repair.is_empty() {
                wires.push(repair);
            }
        }
        let mut tail = Vec::new();
        if encoder.handle_timeout(now + Duration::from_secs(3600), &mut tail) {
            wires.push(tail);
        }
        // Lose sources only (repairs always come).
        let mut kept: Vec<(usize, &Vec<u8>)> = Vec::new();
        let mut lost_seqs = Vec::new();
        let mut blocks: Vec<(u32, u8)> = Vec::new();
        for wire in &wires {
            match leg_capsules(wire)[..] {
                [LegCapsule::FecSource { seq, .. }] => {
                    if lost[seq as usize % lost.len()] {
                        lost_seqs.push(seq);
                        continue;
                    }
                }
                [LegCapsule::FecRepair(r)] => blocks.push((r.first_seq, r.count)),
                _ => prop_assert!(false, "one capsule per wire"),
            }
            kept.push((kept.len(), wire));
        }
        // Reordered within runs of six capsules (two legs, a little apart).
        let mut state = order_seed | 1;
        for chunk in kept.chunks_mut(6) {
            for i in (1..chunk.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let j = (state % (i as u64 + 1)) as usize;
                chunk.swap(i, j);
            }
        }
        let mut decoder = FecDecoder::new();
        let mut got: Vec<Option<Vec<u8>>> = vec![None; payloads.len()];
        for (_, wire) in kept {
            match leg_capsules(wire)[..] {
                [LegCapsule::FecSource { seq, payload }] => {
                    if decoder.source(seq, payload) {
                        prop_assert!(got[seq as usize].is_none());
                        got[seq as usize] = Some(payload.to_vec());
                    }
                }
                [LegCapsule::FecRepair(r)] => decoder.repair(&r),
                _ => unreachable!(),
            }
            while let Some((seq, payload)) = decoder.poll_recovered() {
                prop_assert!(got[seq as usize].is_none(), "{} twice", seq);
                got[seq as usize] = Some(payload);
            }
        }
        for (seq, payload) in got.iter().enumerate() {
            if let Some(payload) = payload {
                prop_assert_eq!(payload, &payloads[seq], "seq {}", seq);
            }
        }
        let mut covered = 0usize;
        for (first, count) in blocks {
            let range = first..first + u32::from(count);
            covered += usize::from(count);
            let losses = lost_seqs.iter().filter(|s| range.contains(s)).count();
            if losses <= 1 {
                for seq in range {
                    prop_assert!(got[seq as usize].is_some(), "seq {} of a block with {} loss", seq, losses);
                }
            }
        }
        prop_assert_eq!(covered, payloads.len(), "the repairs cover every source once");
        let delivered = got.iter().filter(|g| g.is_some()).count() as u64;
        prop_assert_eq!(decoder.delivered(), delivered);
        // Lost after recovery: the holes between the first and the last delivered.
        let first = got.iter().position(Option::is_some);
        let last = got.iter().rposition(Option::is_some);
        if let (Some(first), Some(last)) = (first, last) {
            let holes = got[first..=last].iter().filter(|g| g.is_none()).count() as u64;
            prop_assert_eq!(decoder.lost_after(), holes);
        }
    }

    /// Whatever the gaps between datagrams (pauses included), a block's time bound stays
    /// between the shortest and the longest.
    #[test]
    fn the_time_bound_stays_between_its_limits(
        gaps in proptest::collection::vec(0u64..2_000, 1..100),
        max_sources in 1u8..=FEC_MAX_SOURCES,
    ) {
        let params = FecParams { max_sources, ..FecParams::default() };
        let mut encoder = FecEncoder::new(params);
        let mut now = t0();
        for gap in gaps {
            now += Duration::from_millis(gap);
            encoder.handle_timeout(now, &mut Vec::new());
            encoder.push(b"x", now, &mut Vec::new(), &mut Vec::new()).unwrap();
            let span = encoder.block_span();
            prop_assert!(span >= params.span && span <= params.max_span, "{span:?}");
            prop_assert!(encoder.poll_timeout().is_none_or(|t| t <= now + params.max_span));
        }
    }
}
