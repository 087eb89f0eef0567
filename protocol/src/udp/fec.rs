//! Forward error correction across the legs of a protected flow (`mode = "fec"`):
//! XOR parity over short blocks, sans-IO with time passed in.
//!
//! The sender numbers each datagram and sends it once, as an *FEC source* capsule
//! (DATAGRAM context id [`CONTEXT_FEC_SOURCE`]); the shell spreads the capsules over
//! the legs in turn. A *block* is a run of consecutive source numbers; it closes after
//! [`FecParams::max_sources`] sources or a time bound after its first one, whichever
//! comes first, and then one *repair* capsule (context id
//! [`CONTEXT_FEC_REPAIR`]) carries the XOR of the block's payloads, each padded with
//! zeros to the longest, and the XOR of their lengths. The receiver recovers any one
//! missing source of a block from the repair and the others.
//!
//! The time bound follows the stream's measured rate: it is what
//! [`FecParams::max_sources`] sources take at the mean gap between datagrams (an EWMA),
//! kept between [`FecParams::span`] and [`FecParams::max_span`]. A steady stream thus
//! fills its blocks (a 50-a-second call gets 16 sources a block, 6.6 % of its payload
//! bytes in repairs, where a fixed 100 ms bound gave blocks of 5 or 6 and 18 %), and a
//! stream slower than `max_sources` per `max_span` closes its blocks by time. The legs
//! are TCP, so what delays a source is its leg waiting for a retransmission, which a
//! repair rarely fixes (the leg's next sources wait too): the leg hands such sources
//! back to be sent on another leg ([`super::late`]). Repairs are the second line, so
//! their blocks are long and cheap.
//!
//! ```text
//! FEC source value:  Context ID (varint) = 2, Seq (u32 BE), UDP payload
//! FEC repair value:  Context ID (varint) = 3, First Seq (u32 BE), Count (u8),
//!                    Length XOR (u16 BE), Parity (longest payload's length)
//! ```
//!
//! `Count` is 1..=[`FEC_MAX_SOURCES`]: the block is `First Seq .. First Seq + Count`
//! (wrapping). A repair without a whole header, or with a count out of range, is
//! malformed ([`CapsuleError::MalformedDatagram`], the leg ends).
//!
//! [`FecDecoder`] keeps the recent sources it delivered (received or recovered, at most
//! [`KEEP_SOURCES`] of them and [`KEEP_BYTES`] bytes) and the repairs that still miss
//! more than one source (at most [`KEEP_REPAIRS`]), so a repair that comes before its
//! block's sources (the other leg is faster) recovers once all but one are in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{
    push_varint, read_varint, split_capsule, varint_len, Capsule, CapsuleError, Dedup,
    CAPSULE_DATAGRAM, CONTEXT_SEQUENCED, MAX_UDP_PAYLOAD,
};

/// Context id of an FEC source datagram.
pub const CONTEXT_FEC_SOURCE: u64 = 2;
/// Context id of an FEC repair datagram.
pub const CONTEXT_FEC_REPAIR: u64 = 3;
/// Most sources one repair covers (the wire limit of `Count`).
pub const FEC_MAX_SOURCES: u8 = 16;
/// Delivered sources the decoder keeps for recovery.
pub const KEEP_SOURCES: usize = 64;
/// Bytes of delivered sources the decoder keeps for recovery.
pub const KEEP_BYTES: usize = 256 * 1024;
/// Repairs waiting for more of their block.
pub const KEEP_REPAIRS: usize = 8;
/// Bytes of a repair value before the parity: context id, first seq, count, length XOR.
const REPAIR_HEADER: usize = 1 + 4 + 1 + 2;

/// When a block closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecParams {
    /// Sources per block at most (1..=[`FEC_MAX_SOURCES`]).
    pub max_sources: u8,
    /// The shortest time bound: a block closes this long after its first source at the
    /// earliest (and always, before the encoder has measured the stream's rate).
    pub span: Duration,
    /// The longest time bound: what `max_sources` sources take at the measured rate,
    /// stretched up to this. Not above `span`: the bound is `span`, fixed.
    pub max_span: Duration,
}

impl Default for FecParams {
    /// 16 sources, closed by time after what 16 take at the stream's rate, between
    /// 100 ms and 400 ms: a stream of 40 datagrams a second or more fills its blocks
    /// (6.25 % of its payload plus 11 bytes a repair), and a lost datagram is recovered
    /// at most one block (up to 400 ms) late; a source held up on its leg is sent again
    /// on another much sooner ([`super::late`]).
    fn default() -> Self {
        FecParams {
            max_sources: 16,
            span: Duration::from_millis(100),
            max_span: Duration::from_millis(400),
        }
    }
}

impl FecParams {
    /// A fixed time bound: `max_sources` sources or `span`, whichever comes first.
    pub fn fixed(max_sources: u8, span: Duration) -> Self {
        FecParams {
            max_sources,
            span,
            max_span: span,
        }
    }
}

/// A decoded repair, borrowing its parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repair<'a> {
    /// The block's first source number.
    pub first_seq: u32,
    /// Sources in the block, 1..=[`FEC_MAX_SOURCES`].
    pub count: u8,
    /// XOR of the block's payload lengths.
    pub length_xor: u16,
    /// XOR of the block's payloads, each padded with zeros to the longest.
    pub parity: &'a [u8],
}

/// A repair that owns its parity (kept by the decoder, passed between tasks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRepair {
    pub first_seq: u32,
    pub count: u8,
    pub length_xor: u16,
    pub parity: Vec<u8>,
}

impl Repair<'_> {
    /// A copy that owns its parity.
    pub fn to_owned_repair(&self) -> OwnedRepair {
        OwnedRepair {
            first_seq: self.first_seq,
            count: self.count,
            length_xor: self.length_xor,
            parity: self.parity.to_vec(),
        }
    }
}

/// One capsule on a leg of a protected flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegCapsule<'a> {
    /// Context id 1 (`mode = "duplicate"`): a copy of a sequenced datagram.
    Sequenced { seq: u32, payload: &'a [u8] },
    /// Context id 2: an FEC source datagram.
    FecSource { seq: u32, payload: &'a [u8] },
    /// Context id 3: an FEC repair.
    FecRepair(Repair<'a>),
    /// Anything else (a plain datagram, another context, an unknown type): dropped.
    Other(Capsule<'a>),
}

/// Decode the capsule at the start of `buf` as a leg reads it: like
/// [`super::decode_capsule`], with the FEC contexts decoded too.
pub fn decode_leg_capsule(buf: &[u8]) -> Result<Option<(LegCapsule<'_>, usize)>, CapsuleError> {
    let Some((kind, value, end)) = split_capsule(buf)? else {
        return Ok(None);
    };
    if kind != CAPSULE_DATAGRAM {
        return Ok(Some((LegCapsule::Other(Capsule::Unknown { kind }), end)));
    }
    let (context_id, id_len) = read_varint(value).ok_or(CapsuleError::MalformedDatagram)?;
    let rest = value.get(id_len..).unwrap_or_default();
    let capsule = match context_id {
        0 => LegCapsule::Other(Capsule::Datagram(rest)),
        CONTEXT_SEQUENCED | CONTEXT_FEC_SOURCE => {
            let (seq, payload) = rest
                .split_first_chunk::<4>()
                .ok_or(CapsuleError::MalformedDatagram)?;
            let seq = u32::from_be_bytes(*seq);
            if context_id == CONTEXT_SEQUENCED {
                LegCapsule::Sequenced { seq, payload }
            } else {
                LegCapsule::FecSource { seq, payload }
            }
        }
        CONTEXT_FEC_REPAIR => {
            let (header, parity) = rest
                .split_first_chunk::<7>()
                .ok_or(CapsuleError::MalformedDatagram)?;
            let count = header[4];
            if count == 0 || count > FEC_MAX_SOURCES {
                return Err(CapsuleError::MalformedDatagram);
            }
            LegCapsule::FecRepair(Repair {
                first_seq: u32::from_be_bytes([header[0], header[1], header[2], header[3]]),
                count,
                length_xor: u16::from_be_bytes([header[5], header[6]]),
                parity,
            })
        }
        context_id => LegCapsule::Other(Capsule::OtherContext { context_id }),
    };
    Ok(Some((capsule, end)))
}

/// Append one FEC source capsule (context id 2, `seq`, `payload`) to `out`; nothing on
/// an error.
pub fn encode_fec_source(seq: u32, payload: &[u8], out: &mut Vec<u8>) -> Result<(), CapsuleError> {
    if payload.len() > MAX_UDP_PAYLOAD {
        return Err(CapsuleError::PayloadTooLarge { len: payload.len() });
    }
    out.reserve(fec_source_capsule_len(payload.len()));
    push_varint(CAPSULE_DATAGRAM, out);
    push_varint(1 + 4 + payload.len() as u64, out);
    push_varint(CONTEXT_FEC_SOURCE, out);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Encoded length of an FEC source capsule for a `payload_len`-byte payload.
pub fn fec_source_capsule_len(payload_len: usize) -> usize {
    let value_len = 1 + 4 + payload_len as u64;
    1 + varint_len(value_len) + 1 + 4 + payload_len
}

/// Append one FEC repair capsule (context id 3) to `out`; nothing on an error.
pub fn encode_fec_repair(repair: &Repair<'_>, out: &mut Vec<u8>) -> Result<(), CapsuleError> {
    if repair.parity.len() > MAX_UDP_PAYLOAD {
        return Err(CapsuleError::PayloadTooLarge {
            len: repair.parity.len(),
        });
    }
    let value_len = (REPAIR_HEADER + repair.parity.len()) as u64;
    push_varint(CAPSULE_DATAGRAM, out);
    push_varint(value_len, out);
    push_varint(CONTEXT_FEC_REPAIR, out);
    out.extend_from_slice(&repair.first_seq.to_be_bytes());
    out.push(repair.count);
    out.extend_from_slice(&repair.length_xor.to_be_bytes());
    out.extend_from_slice(repair.parity);
    Ok(())
}

/// XOR `payload` into `parity`, growing it with zeros to `payload`'s length.
fn xor_into(parity: &mut Vec<u8>, payload: &[u8]) {
    if parity.len() < payload.len() {
        parity.resize(payload.len(), 0);
    }
    for (p, b) in parity.iter_mut().zip(payload) {
        *p ^= b;
    }
}

/// The block being filled.
#[derive(Debug)]
struct OpenBlock {
    first_seq: u32,
    count: u8,
    length_xor: u16,
    parity: Vec<u8>,
    closes_at: Instant,
}

/// The sending side of one direction of an FEC flow.
#[derive(Debug)]
pub struct FecEncoder {
    params: FecParams,
    next_seq: u32,
    block: Option<OpenBlock>,
    rate: RateMeter,
    repairs: u64,
    repair_bytes: u64,
}

/// The mean gap between a stream's datagrams, an EWMA of 1/8 over gaps capped at the
/// longest time bound (a pause does not stretch it beyond that).
#[derive(Debug, Default)]
struct RateMeter {
    last: Option<Instant>,
    mean_gap: Option<Duration>,
}

impl RateMeter {
    fn push(&mut self, now: Instant, cap: Duration) {
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last).min(cap);
            self.mean_gap = Some(match self.mean_gap {
                None => gap,
                Some(mean) if gap >= mean => mean + (gap - mean) / 8,
                Some(mean) => mean - (mean - gap) / 8,
            });
        }
        self.last = Some(now);
    }
}

impl FecEncoder {
    /// An encoder whose first source is number 0.
    pub fn new(params: FecParams) -> Self {
        Self::starting_at(params, 0)
    }

    /// An encoder whose first source is number `seq` (a flow that numbered datagrams
    /// before goes on in the same space).
    pub fn starting_at(params: FecParams, seq: u32) -> Self {
        let max_sources = params.max_sources.clamp(1, FEC_MAX_SOURCES);
        FecEncoder {
            params: FecParams {
                max_sources,
                max_span: params.max_span.max(params.span),
                ..params
            },
            next_seq: seq,
            block: None,
            rate: RateMeter::default(),
            repairs: 0,
            repair_bytes: 0,
        }
    }

    /// Number `payload` and append its source capsule to `source`. When that fills the
    /// block, its repair capsule is appended to `repair` (and `true` returned).
    pub fn push(
        &mut self,
        payload: &[u8],
        now: Instant,
        source: &mut Vec<u8>,
        repair: &mut Vec<u8>,
    ) -> Result<bool, CapsuleError> {
        let seq = self.next_seq;
        encode_fec_source(seq, payload, source)?;
        self.next_seq = seq.wrapping_add(1);
        self.rate.push(now, self.params.max_span);
        let span = self.block_span();
        let block = self.block.get_or_insert_with(|| OpenBlock {
            first_seq: seq,
            count: 0,
            length_xor: 0,
            parity: Vec::new(),
            closes_at: now + span,
        });
        block.count += 1;
        // payload.len() <= MAX_UDP_PAYLOAD < 2^16.
        block.length_xor ^= payload.len() as u16;
        xor_into(&mut block.parity, payload);
        if block.count >= self.params.max_sources {
            return Ok(self.close(repair));
        }
        Ok(false)
    }

    /// How long a block opened now stays open at most: what `max_sources` sources take
    /// at the measured rate, between the params' `span` and `max_span`.
    pub fn block_span(&self) -> Duration {
        let FecParams {
            max_sources,
            span,
            max_span,
        } = self.params;
        match self.rate.mean_gap {
            Some(gap) => (gap * u32::from(max_sources)).clamp(span, max_span),
            None => span,
        }
    }

    /// When the open block closes by time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.block.as_ref().map(|b| b.closes_at)
    }

    /// Time has passed: if the open block's span is over, append its repair capsule to
    /// `repair` (and return `true`).
    pub fn handle_timeout(&mut self, now: Instant, repair: &mut Vec<u8>) -> bool {
        match &self.block {
            Some(block) if block.closes_at <= now => self.close(repair),
            _ => false,
        }
    }

    /// Repair capsules sent.
    pub fn repairs(&self) -> u64 {
        self.repairs
    }

    /// Bytes of the repair capsules sent (what protection costs on the wire).
    pub fn repair_bytes(&self) -> u64 {
        self.repair_bytes
    }

    fn close(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(block) = self.block.take() else {
            return false;
        };
        let repair = Repair {
            first_seq: block.first_seq,
            count: block.count,
            length_xor: block.length_xor,
            parity: &block.parity,
        };
        let before = out.len();
        if encode_fec_repair(&repair, out).is_err() {
            return false;
        }
        self.repairs += 1;
        self.repair_bytes += (out.len() - before) as u64;
        true
    }
}

/// The receiving side of one direction of an FEC flow: delivers each source once,
/// recovers one missing source per block, counts loss before and after recovery.
#[derive(Debug, Default)]
pub struct FecDecoder {
    dedup: Dedup,
    first_seq: Option<u32>,
    /// Delivered sources, oldest first.
    kept: VecDeque<(u32, Vec<u8>)>,
    kept_bytes: usize,
    /// Repairs still missing more than one source, oldest first.
    waiting: VecDeque<OwnedRepair>,
    recovered: VecDeque<(u32, Vec<u8>)>,
    received: u64,
    recovered_total: u64,
    useless_repairs: u64,
}

impl FecDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A source arrived: whether to deliver it (its first copy). It may complete a
    /// waiting repair: see [`FecDecoder::poll_recovered`].
    pub fn source(&mut self, seq: u32, payload: &[u8]) -> bool {
        if !self.dedup.accept(seq) {
            return false;
        }
        self.note_first(seq);
        self.received += 1;
        self.keep(seq, payload.to_vec());
        self.retry_waiting();
        true
    }

    /// A repair arrived: recover its block's missing source if it is the only one
    /// missing (see [`FecDecoder::poll_recovered`]), else keep it for later.
    pub fn repair(&mut self, repair: &Repair<'_>) {
        let owned = repair.to_owned_repair();
        if !self.try_recover(&owned) {
            return;
        }
        if self.waiting.len() == KEEP_REPAIRS {
            self.waiting.pop_front();
            self.useless_repairs += 1;
        }
        self.waiting.push_back(owned);
    }

    /// The next recovered source to deliver: its number and payload.
    pub fn poll_recovered(&mut self) -> Option<(u32, Vec<u8>)> {
        self.recovered.pop_front()
    }

    /// Sources delivered (received or recovered).
    pub fn delivered(&self) -> u64 {
        self.dedup.accepted()
    }

    /// Sources delivered from a repair: lost, or still on their way when the repair
    /// came.
    pub fn recovered(&self) -> u64 {
        self.recovered_total
    }

    /// Source numbers between the first and the highest seen that no leg brought (loss
    /// before recovery).
    pub fn lost_before(&self) -> u64 {
        self.span().saturating_sub(self.received)
    }

    /// Source numbers between the first and the highest seen that were neither brought
    /// nor recovered (loss after recovery).
    pub fn lost_after(&self) -> u64 {
        self.span().saturating_sub(self.dedup.accepted())
    }

    /// Copies dropped because their source was delivered already (or too old).
    pub fn duplicates(&self) -> u64 {
        self.dedup.duplicates() + self.dedup.too_old()
    }

    fn span(&self) -> u64 {
        match (self.first_seq, self.dedup.highest()) {
            (Some(first), Some(highest)) => u64::from(highest.wrapping_sub(first)) + 1,
            _ => 0,
        }
    }

    /// Make `seq` the first source number if it comes before the first so far.
    fn note_first(&mut self, seq: u32) {
        match self.first_seq {
            Some(first) if (seq.wrapping_sub(first) as i32) >= 0 => {}
            _ => self.first_seq = Some(seq),
        }
    }

    fn keep(&mut self, seq: u32, payload: Vec<u8>) {
        self.kept_bytes += payload.len();
        self.kept.push_back((seq, payload));
        while self.kept.len() > KEEP_SOURCES || self.kept_bytes > KEEP_BYTES {
            let Some((_, old)) = self.kept.pop_front() else {
                break;
            };
            self.kept_bytes -= old.len();
        }
    }

    /// Try the waiting repairs again until none recovers anything.
    fn retry_waiting(&mut self) {
        let mut at = 0;
        while at < self.waiting.len() {
            let repair = self.waiting[at].clone();
            if self.try_recover(&repair) {
                at += 1;
            } else {
                self.waiting.remove(at);
                at = 0;
            }
        }
    }

    /// Recover `repair`'s missing source if it is the only one. Whether the repair is
    /// still worth keeping (more than one source missing, all still recoverable).
    fn try_recover(&mut self, repair: &OwnedRepair) -> bool {
        let mut missing = None;
        for i in 0..repair.count {
            let seq = repair.first_seq.wrapping_add(u32::from(i));
            if self.dedup.has(seq) {
                continue;
            }
            if missing.is_some() {
                return true;
            }
            missing = Some(seq);
        }
        let Some(missing) = missing else {
            return false;
        };
        let mut payload = repair.parity.clone();
        let mut length = repair.length_xor;
        for i in 0..repair.count {
            let seq = repair.first_seq.wrapping_add(u32::from(i));
            if seq == missing {
                continue;
            }
            let Some((_, other)) = self.kept.iter().find(|(s, _)| *s == seq) else {
                // Delivered but no longer kept: this block cannot be recovered.
                self.useless_repairs += 1;
                return false;
            };
            if other.len() > payload.len() {
                self.useless_repairs += 1;
                return false;
            }
            for (p, b) in payload.iter_mut().zip(other) {
                *p ^= b;
            }
            length ^= other.len() as u16;
        }
        let length = usize::from(length);
        if length > payload.len() || !self.dedup.accept(missing) {
            self.useless_repairs += 1;
            return false;
        }
        payload.truncate(length);
        self.note_first(missing);
        self.recovered_total += 1;
        self.keep(missing, payload.clone());
        self.recovered.push_back((missing, payload));
        false
    }
}

#[cfg(test)]
#[path = "fec_tests.rs"]
mod tests;
