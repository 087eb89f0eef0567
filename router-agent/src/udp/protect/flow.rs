//! One protected flow's task: the shell around its [`LegBook`] (and, in `fec` mode, its
//! [`FecEncoder`] and [`FecDecoder`]). It turns the LAN client's datagrams into
//! capsules on the legs (`duplicate`: a sequenced capsule on every leg; `fec`: one FEC
//! source on the next leg in turn and, when a block closes, its repair on the next),
//! the legs' events and the core's new WAN ranking into calls on the book, and the
//! book's actions into legs opened and closed; the first downstream copy of each
//! sequence number (or, in `fec` mode, each source received or recovered) goes to the
//! client. When the book gives up protection the flow goes on as a plain bonded one
//! (`udp::relay`), its early datagrams first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use mpbond_protocol::udp::{encode_sequenced, FecDecoder, FecEncoder, FecParams};
use mpbond_protocol::ErrorCode;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::leg::{self, LegEvent, LegHandle, LegSpec};
use super::legs::{LegAction, LegBook};
use super::stats::{ProtectStats, ProtectedFlowStatus, PUBLISH_EVERY};
use crate::config::udp::ProtectMode;
use crate::core::Input;
use crate::proxy::ConnContext;
use crate::udp::book::Route;
use crate::udp::relay::{self, next_lan, send_now, Flow, FlowEvent};
use crate::udp::stats::UdpStats;

/// Leg events the flow may be behind.
const LEG_EVENTS: usize = 256;
/// Most bytes of early datagrams kept for a fallback's replay.
const EARLY_KEEP: usize = 64 * 1024;

/// Everything a protected flow shares with the others.
#[derive(Debug, Clone)]
pub struct Shared {
    pub ctx: Arc<ConnContext>,
    pub stats: Arc<UdpStats>,
    pub protect: Arc<ProtectStats>,
    pub events: mpsc::UnboundedSender<FlowEvent>,
}

/// What the flow's counters say, besides the book.
#[derive(Debug, Default)]
struct Counters {
    datagrams_up: u64,
    protection_bytes_up: u64,
    protection_bytes_down: u64,
}

/// A flow's `fec` mode state: the upstream encoder, the downstream decoder, whose turn.
#[derive(Debug)]
struct Fec {
    encoder: FecEncoder,
    decoder: FecDecoder,
    turn: usize,
    /// Sources sent again on another leg because theirs was late.
    resent: u64,
}

impl Fec {
    /// Hand `capsule` (a source, or a repair) to the next open leg not stuck behind a
    /// late source that takes it (else to what the book carries: every open leg, or
    /// those being opened); whether one did. A source moves the turn on, a repair goes
    /// where the next source would, so the sources alternate strictly.
    ///
    /// The leg's own connection says when it is held up, sooner than the book's stall
    /// bound on the merged stream, and only while it is: the book's bound would also
    /// trip on a leg the concentrator merely steered around while it was stuck its way,
    /// and a leg neither end fed would never be fed again (the concentrator feeds a
    /// leg only while it brings upstream capsules).
    fn send(
        &mut self,
        capsule: Vec<u8>,
        source: bool,
        book: &LegBook,
        legs: &HashMap<u8, LegHandle>,
    ) -> bool {
        let mut carrying: Vec<u8> = book
            .open_legs()
            .filter(|i| legs.get(i).is_some_and(|h| !h.stuck))
            .collect();
        if carrying.is_empty() {
            carrying = book.carrying(StdInstant::now());
        }
        let capsule: Arc<[u8]> = capsule.into();
        let n = carrying.len();
        let start = self.turn;
        if source {
            self.turn = self.turn.wrapping_add(1);
        }
        (0..n)
            .filter_map(|i| legs.get(&carrying[(start + i) % n]))
            .any(|handle| handle.capsules.try_send((capsule.clone(), source)).is_ok())
    }

    /// Sources leg `from` had not had acknowledged in time: each to another open leg
    /// (those not stuck first), not watched there (no second hand-back). The bytes
    /// sent, counted as protection.
    fn resend(
        &mut self,
        from: u8,
        capsules: Vec<Arc<[u8]>>,
        book: &LegBook,
        legs: &HashMap<u8, LegHandle>,
    ) -> u64 {
        let mut order: Vec<u8> = book.open_legs().filter(|&i| i != from).collect();
        order.sort_by_key(|i| !legs.get(i).is_some_and(|h| !h.stuck));
        let mut bytes = 0;
        for capsule in capsules {
            let sent = order
                .iter()
                .filter_map(|i| legs.get(i))
                .any(|handle| handle.capsules.try_send((capsule.clone(), false)).is_ok());
            if sent {
                self.resent += 1;
                bytes += capsule.len() as u64;
            }
        }
        bytes
    }
}

/// Relay `flow` over two legs in `duplicate` mode until it ends: [`run_with_mode`].
pub async fn run(flow: Flow, shared: Shared, shutdown: CancellationToken) {
    run_with_mode(flow, shared, ProtectMode::Duplicate, shutdown).await;
}

/// Relay `flow` over two legs in `mode` until it ends; always reports
/// [`FlowEvent::Ended`] (the bonded fallback reports it itself). The entry point of a
/// protected flow, whatever classed it.
pub async fn run_with_mode(
    mut flow: Flow,
    shared: Shared,
    mode: ProtectMode,
    shutdown: CancellationToken,
) {
    let params = shared.ctx.params();
    let mut book = LegBook::new(params.legs.clone(), StdInstant::now());
    if book.fell_back() {
        debug!(client = %flow.client, dst = %flow.dst, "fewer than two WANs: the flow is bonded");
        shared.protect.close(0, true);
        return bonded(flow, Vec::new(), shared, shutdown).await;
    }
    let id = shared.protect.open(flow.client, flow.dst);
    let announced = Announced::new(&shared.ctx.events);
    let mut guard = shared.stats.open();
    guard.bonded();
    let group = random_group();
    let (leg_tx, mut leg_rx) = mpsc::channel(LEG_EVENTS);
    let mut legs: HashMap<u8, LegHandle> = HashMap::new();
    let mut params_rx = shared.ctx.params.clone();
    params_rx.mark_unchanged();
    let mut early: Option<Vec<Vec<u8>>> = Some(Vec::new());
    let mut kept = 0usize;
    let mut unsupported = false;
    let mut counters = Counters::default();
    let mut seq_up: u32 = 0;
    let mut fec = (mode == ProtectMode::Fec).then(|| Fec {
        encoder: FecEncoder::new(FecParams::default()),
        decoder: FecDecoder::new(),
        turn: 0,
        resent: 0,
    });
    let mut deadline = Instant::now() + flow.idle;
    let mut publish_at = Instant::now();
    let end = loop {
        while let Some(action) = book.poll_action() {
            match action {
                LegAction::Open { leg, source } => {
                    info!(client = %flow.client, dst = %flow.dst, leg, wan = %source.wan, "protected flow: opening a leg");
                    let spec = LegSpec {
                        leg,
                        source,
                        dst: flow.dst,
                        group,
                    };
                    let params = shared.ctx.params();
                    legs.insert(leg, leg::spawn(spec, params, leg_tx.clone()));
                }
                LegAction::Close { leg, why } => {
                    info!(client = %flow.client, dst = %flow.dst, leg, ?why, "protected flow: closing a leg");
                    legs.remove(&leg);
                }
                LegAction::Fallback => {}
            }
        }
        if book.fell_back() {
            break None;
        }
        let now = Instant::now();
        if now >= publish_at {
            shared
                .protect
                .publish(id, flow_status(&flow, &book, fec.as_ref(), &counters));
            publish_at = now + PUBLISH_EVERY;
        }
        let timer = book.poll_timeout().map(Instant::from_std);
        let repair_due = fec
            .as_ref()
            .and_then(|f| f.encoder.poll_timeout())
            .map(Instant::from_std);
        tokio::select! {
            _ = shutdown.cancelled() => break Some("shutdown"),
            _ = sleep_until(deadline) => break Some("idle"),
            _ = sleep_until(timer.unwrap_or(now)), if timer.is_some() => {
                book.handle_timeout(StdInstant::now());
            }
            _ = sleep_until(publish_at) => {}
            _ = sleep_until(repair_due.unwrap_or(now)), if repair_due.is_some() => {
                if let Some(fec) = fec.as_mut() {
                    let mut repair = Vec::new();
                    if fec.encoder.handle_timeout(StdInstant::now(), &mut repair) {
                        counters.protection_bytes_up += repair.len() as u64;
                        fec.send(repair, false, &book, &legs);
                    }
                }
            }
            changed = params_rx.changed() => {
                if changed.is_err() {
                    break Some("shutdown");
                }
                let sources = params_rx.borrow_and_update().legs.clone();
                book.set_sources(sources, StdInstant::now());
            }
            Some(event) = leg_rx.recv() => match event {
                LegEvent::Opened { leg } => {
                    // Anything a replaced leg of this index said came before.
                    if let Some(handle) = legs.get_mut(&leg) {
                        handle.stuck = false;
                    }
                    book.opened(leg);
                    early = None;
                }
                LegEvent::Refused { leg, code } => {
                    info!(client = %flow.client, dst = %flow.dst, leg, code = code.code(), "protected flow: leg refused");
                    unsupported |= code == ErrorCode::UnsupportedMessage;
                    legs.remove(&leg);
                    book.refused(leg, StdInstant::now());
                }
                LegEvent::Failed { leg, why } => {
                    debug!(client = %flow.client, dst = %flow.dst, leg, %why, "protected flow: leg failed");
                    legs.remove(&leg);
                    book.failed(leg, StdInstant::now());
                }
                LegEvent::Datagram { leg, seq, payload } | LegEvent::FecSource { leg, seq, payload }
                    if fec.is_some() =>
                {
                    let fec = fec.as_mut().expect("fec mode");
                    book.datagram(leg, seq, StdInstant::now());
                    let first = fec.decoder.source(seq, &payload);
                    if !first {
                        // A second copy: the concentrator resent it from a late leg.
                        counters.protection_bytes_down += payload.len() as u64;
                    }
                    let first = first.then_some(payload);
                    let recovered = std::iter::from_fn(|| fec.decoder.poll_recovered());
                    for payload in first.into_iter().chain(recovered.map(|(_, p)| p)) {
                        deadline = Instant::now() + flow.idle;
                        shared.stats.down(payload.len());
                        if send_now(&flow.lan, &payload).is_err() {
                            shared.stats.drops_lan_busy();
                        }
                    }
                }
                LegEvent::Stuck { leg, stuck } => {
                    if let Some(handle) = legs.get_mut(&leg) {
                        handle.stuck = stuck;
                    }
                }
                LegEvent::Late { leg, capsules } => {
                    if let Some(fec) = fec.as_mut() {
                        counters.protection_bytes_up += fec.resend(leg, capsules, &book, &legs);
                    }
                }
                LegEvent::FecRepair { repair, .. } => {
                    counters.protection_bytes_down += (repair.parity.len() + REPAIR_OVERHEAD) as u64;
                    if let Some(fec) = fec.as_mut() {
                        fec.decoder.repair(&mpbond_protocol::udp::Repair {
                            first_seq: repair.first_seq,
                            count: repair.count,
                            length_xor: repair.length_xor,
                            parity: &repair.parity,
                        });
                        while let Some((_, payload)) = fec.decoder.poll_recovered() {
                            deadline = Instant::now() + flow.idle;
                            shared.stats.down(payload.len());
                            if send_now(&flow.lan, &payload).is_err() {
                                shared.stats.drops_lan_busy();
                            }
                        }
                    }
                }
                LegEvent::Datagram { leg, seq, payload } | LegEvent::FecSource { leg, seq, payload } => {
                    if book.datagram(leg, seq, StdInstant::now()) {
                        deadline = Instant::now() + flow.idle;
                        shared.stats.down(payload.len());
                        if send_now(&flow.lan, &payload).is_err() {
                            shared.stats.drops_lan_busy();
                        }
                    } else {
                        counters.protection_bytes_down += payload.len() as u64;
                    }
                }
            },
            got = next_lan(&mut flow) => match got {
                Ok(datagram) => {
                    deadline = Instant::now() + flow.idle;
                    shared.stats.up(datagram.len());
                    counters.datagrams_up += 1;
                    if let Some(fec) = fec.as_mut() {
                        let (mut source, mut repair) = (Vec::new(), Vec::new());
                        match fec.encoder.push(&datagram, StdInstant::now(), &mut source, &mut repair) {
                            Ok(closed) => {
                                if !fec.send(source, true, &book, &legs) {
                                    shared.stats.drops_queue_full();
                                }
                                if closed {
                                    counters.protection_bytes_up += repair.len() as u64;
                                    fec.send(repair, false, &book, &legs);
                                }
                            }
                            Err(_) => shared.stats.drops_lan_busy(),
                        }
                        keep_early(&mut early, &mut kept, datagram);
                        continue;
                    }
                    let mut capsule = Vec::with_capacity(datagram.len() + 8);
                    if encode_sequenced(seq_up, &datagram, &mut capsule).is_err() {
                        shared.stats.drops_lan_busy();
                        continue;
                    }
                    seq_up = seq_up.wrapping_add(1);
                    let capsule: Arc<[u8]> = capsule.into();
                    let mut sent = 0u64;
                    for handle in legs.values() {
                        if handle.capsules.try_send((capsule.clone(), false)).is_ok() {
                            sent += 1;
                        }
                    }
                    if sent == 0 {
                        shared.stats.drops_queue_full();
                    }
                    counters.protection_bytes_up += sent.saturating_sub(1) * datagram.len() as u64;
                    keep_early(&mut early, &mut kept, datagram);
                }
                Err(_) => break Some("lan_error"),
            },
        }
    };
    drop(legs);
    match end {
        Some(end) => {
            shared
                .protect
                .publish(id, flow_status(&flow, &book, fec.as_ref(), &counters));
            shared.protect.close(id, false);
            debug!(client = %flow.client, dst = %flow.dst, end, "protected flow ended");
            let (client, dst) = (flow.client, flow.dst);
            let _ = shared.events.send(FlowEvent::Ended { client, dst });
        }
        None => {
            info!(client = %flow.client, dst = %flow.dst, unsupported, "protected flow: no protection, the flow is bonded");
            shared.protect.close(id, true);
            if unsupported {
                let _ = shared.events.send(FlowEvent::Unprotected);
            }
            drop(guard);
            drop(announced);
            bonded(flow, early.unwrap_or_default(), shared, shutdown).await;
        }
    }
}

/// Tells the decision core that a protected flow runs, until dropped (the latency guard,
/// `core::latency_guard`, clamps the bulk downloads' windows meanwhile). An event, not
/// a shared counter: the core owns the count.
struct Announced(mpsc::UnboundedSender<Input>);

impl Announced {
    fn new(events: &mpsc::UnboundedSender<Input>) -> Announced {
        let _ = events.send(Input::ProtectedFlow { started: true });
        Announced(events.clone())
    }
}

impl Drop for Announced {
    fn drop(&mut self) {
        let _ = self.0.send(Input::ProtectedFlow { started: false });
    }
}

/// Bytes of an FEC repair capsule besides its parity: type, length (2), context id,
/// first seq, count, length XOR.
const REPAIR_OVERHEAD: usize = 1 + 2 + 1 + 4 + 1 + 2;

/// Keep `datagram` for a fallback's replay while legs have not opened yet.
fn keep_early(early: &mut Option<Vec<Vec<u8>>>, kept: &mut usize, datagram: Vec<u8>) {
    if let Some(early) = early.as_mut() {
        if *kept + datagram.len() <= EARLY_KEEP {
            *kept += datagram.len();
            early.push(datagram);
        }
    }
}

/// Go on as a plain bonded flow, `early` datagrams first.
async fn bonded(mut flow: Flow, early: Vec<Vec<u8>>, shared: Shared, shutdown: CancellationToken) {
    if !early.is_empty() {
        let (tx, rx) = mpsc::channel(early.len() + 64);
        for datagram in early {
            let _ = tx.try_send(datagram);
        }
        let mut old = std::mem::replace(&mut flow.early, rx);
        tokio::spawn(async move {
            while let Some(datagram) = old.recv().await {
                if tx.send(datagram).await.is_err() {
                    break;
                }
            }
        });
    }
    flow.route = Route::Bond;
    relay::run(flow, shared.ctx, shared.stats, shared.events, shutdown).await;
}

fn flow_status(
    flow: &Flow,
    book: &LegBook,
    fec: Option<&Fec>,
    c: &Counters,
) -> ProtectedFlowStatus {
    let (mode, delivered, lost, lost_before, recovered, duplicates) = match fec {
        Some(fec) => {
            let d = &fec.decoder;
            let (lost, before) = (d.lost_after(), d.lost_before());
            (
                ProtectMode::Fec,
                d.delivered(),
                lost,
                before,
                d.recovered(),
                d.duplicates(),
            )
        }
        None => {
            let (lost, before) = (book.lost(), book.least_missed().max(book.lost()));
            let recovered = before - lost;
            let duplicates = book.duplicates();
            (
                ProtectMode::Duplicate,
                book.delivered(),
                lost,
                before,
                recovered,
                duplicates,
            )
        }
    };
    ProtectedFlowStatus {
        client: flow.client.to_string(),
        destination: flow.dst.to_string(),
        mode: mode.as_str().to_owned(),
        origin: flow.origin,
        legs: book.status(StdInstant::now()),
        datagrams_up: c.datagrams_up,
        datagrams_down: delivered,
        lost_down: lost,
        lost_before_down: lost_before,
        recovered_down: recovered,
        duplicates_down: duplicates,
        protection_bytes_up: c.protection_bytes_up,
        protection_bytes_down: c.protection_bytes_down,
        legs_replaced: book.replaced(),
    }
}

/// A random group id (a clock-derived one if the system has no randomness).
fn random_group() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return nanos as u64;
    }
    u64::from_be_bytes(bytes)
}
