//! A flow group in `fec` mode (`docs/PROTOCOL.md`, "Forward error correction"): the
//! agent chose it per class, and the group follows from the first FEC capsule a leg
//! brings. Upstream, [`FecDecoder`] delivers each source once and recovers a lost one
//! from its block's repair; downstream, [`FecEncoder`] numbers the destination's
//! datagrams (going on from the sequence numbers used before) and the group spreads the
//! sources and repairs over its *live* legs in turn.
//!
//! A leg is live while the other legs have brought at most [`STALE_AFTER`] upstream
//! capsules since its last one: the agent spreads its capsules over the legs it still
//! uses, so a leg whose WAN died (its TCP connection lingers here, the agent's FIN never
//! came) stops getting downstream capsules after a few upstream ones, and the surviving
//! leg carries everything. With no upstream at all every leg is live. Pure: no I/O,
//! time passed in.

use std::sync::Arc;
use std::time::Instant;

use mpbond_protocol::udp::{FecDecoder, FecEncoder, FecParams, OwnedRepair, Repair};

/// Upstream capsules the other legs may bring after a leg's last before it is skipped
/// downstream.
pub(crate) const STALE_AFTER: u64 = 4;

/// A downstream datagram's source capsule, and its block's repair if it closed.
pub(crate) type Encoded = (Arc<[u8]>, Option<Arc<[u8]>>);

/// What a group in `fec` mode keeps.
#[derive(Debug)]
pub(crate) struct GroupFec {
    encoder: FecEncoder,
    decoder: FecDecoder,
    turn: usize,
    /// Upstream capsules so far (the clock of [`STALE_AFTER`]).
    ups: u64,
}

/// One leg as the spreading sees it.
pub(crate) trait LegClock {
    /// The value of [`GroupFec::ups`] at this leg's last upstream capsule.
    fn last_up(&self) -> u64;
}

impl GroupFec {
    /// FEC for a group whose next downstream sequence number is `next_seq`.
    pub(crate) fn new(next_seq: u32) -> Self {
        GroupFec {
            encoder: FecEncoder::starting_at(FecParams::default(), next_seq),
            decoder: FecDecoder::new(),
            turn: 0,
            ups: 0,
        }
    }

    /// An upstream capsule arrived: the new value of the leg clock for its leg.
    pub(crate) fn heard(&mut self) -> u64 {
        self.ups += 1;
        self.ups
    }

    /// The leg clock now (a new leg starts live).
    pub(crate) fn ups(&self) -> u64 {
        self.ups
    }

    /// An upstream source: append what to deliver to `out` (the source if it is the
    /// first copy, and anything it let a waiting repair recover).
    pub(crate) fn source(&mut self, seq: u32, payload: Vec<u8>, out: &mut Vec<Vec<u8>>) {
        if self.decoder.source(seq, &payload) {
            out.push(payload);
        }
        self.recovered(out);
    }

    /// An upstream repair: append what it recovers to `out`.
    pub(crate) fn repair(&mut self, repair: &OwnedRepair, out: &mut Vec<Vec<u8>>) {
        self.decoder.repair(&Repair {
            first_seq: repair.first_seq,
            count: repair.count,
            length_xor: repair.length_xor,
            parity: &repair.parity,
        });
        self.recovered(out);
    }

    /// Upstream sources recovered so far.
    pub(crate) fn recovered_up(&self) -> u64 {
        self.decoder.recovered()
    }

    /// A downstream datagram: its source capsule, and the block's repair if it closed.
    pub(crate) fn encode(&mut self, payload: &[u8], now: Instant) -> Option<Encoded> {
        let (mut source, mut repair) = (Vec::new(), Vec::new());
        let closed = self
            .encoder
            .push(payload, now, &mut source, &mut repair)
            .ok()?;
        Some((source.into(), closed.then(|| repair.into())))
    }

    /// When the open downstream block closes by time.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.encoder.poll_timeout()
    }

    /// The open block's repair if its span is over at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<Arc<[u8]>> {
        let mut repair = Vec::new();
        self.encoder
            .handle_timeout(now, &mut repair)
            .then(|| repair.into())
    }

    /// The order in which to try `legs` for the next downstream capsule: the live ones
    /// from this turn's on, then the others (so a capsule still goes out when every
    /// live leg is full). A source moves the turn on (`source`); a repair takes the
    /// leg whose turn it is without moving it, so the sources alternate strictly.
    pub(crate) fn order<L: LegClock>(&mut self, legs: &[L], source: bool) -> Vec<usize> {
        let n = legs.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.turn % n;
        if source {
            self.turn = self.turn.wrapping_add(1);
        }
        let rotated = (0..n).map(|i| (start + i) % n);
        let live = |i: &usize| self.is_live(&legs[*i]);
        let mut order: Vec<usize> = rotated.clone().filter(live).collect();
        order.extend(rotated.filter(|i| !live(i)));
        order
    }

    /// Whether `leg` is live: the other legs brought at most [`STALE_AFTER`] upstream
    /// capsules since its last.
    pub(crate) fn is_live<L: LegClock>(&self, leg: &L) -> bool {
        self.ups - leg.last_up() <= STALE_AFTER
    }

    fn recovered(&mut self, out: &mut Vec<Vec<u8>>) {
        while let Some((_, payload)) = self.decoder.poll_recovered() {
            out.push(payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Leg(u64);
    impl LegClock for Leg {
        fn last_up(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn capsules_go_round_the_live_legs_and_a_silent_leg_goes_last() {
        let mut fec = GroupFec::new(0);
        let legs = [Leg(0), Leg(0)];
        assert_eq!(fec.order(&legs, true), [0, 1]);
        assert_eq!(fec.order(&legs, false), [1, 0], "a repair keeps the turn");
        assert_eq!(fec.order(&legs, true), [1, 0]);
        assert_eq!(fec.order(&legs, true), [0, 1]);
        // Leg 1 brings every upstream capsule from now on: leg 0 goes stale.
        let mut last = 0;
        for _ in 0..=STALE_AFTER {
            last = fec.heard();
        }
        let legs = [Leg(0), Leg(last)];
        assert_eq!(fec.order(&legs, true), [1, 0]);
        assert_eq!(fec.order(&legs, true), [1, 0]);
        assert!(fec.order(&[] as &[Leg], true).is_empty());
    }

    #[test]
    fn a_lost_upstream_source_is_recovered_and_downstream_numbers_go_on() {
        let now = Instant::now();
        let mut agent = FecEncoder::new(FecParams::fixed(8, Duration::from_millis(100)));
        let mut fec = GroupFec::new(500);
        let mut wires = Vec::new();
        for i in 0..8u8 {
            let (mut s, mut r) = (Vec::new(), Vec::new());
            agent.push(&[i; 3], now, &mut s, &mut r).unwrap();
            wires.push(s);
            if !r.is_empty() {
                wires.push(r);
            }
        }
        let mut out = Vec::new();
        for (i, wire) in wires.iter().enumerate() {
            if i == 2 {
                continue;
            }
            match mpbond_protocol::udp::decode_leg_capsule(wire)
                .unwrap()
                .unwrap()
                .0
            {
                mpbond_protocol::udp::LegCapsule::FecSource { seq, payload } => {
                    fec.source(seq, payload.to_vec(), &mut out)
                }
                mpbond_protocol::udp::LegCapsule::FecRepair(r) => {
                    fec.repair(&r.to_owned_repair(), &mut out)
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(out.len(), 8);
        assert_eq!(out[7], [2u8; 3]);
        assert_eq!(fec.recovered_up(), 1);
        let (source, repair) = fec.encode(b"down", now).unwrap();
        assert_eq!(&source[3..7], &500u32.to_be_bytes());
        assert!(repair.is_none());
        assert_eq!(fec.poll_timeout(), Some(now + FecParams::default().span));
        assert!(fec.handle_timeout(now).is_none());
        assert!(fec
            .handle_timeout(now + FecParams::default().span)
            .is_some());
    }
}
