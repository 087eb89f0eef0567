//! One protected flow's task: the shell around its [`LegBook`]. It turns the LAN
//! client's datagrams into sequenced capsules sent on every leg, the legs' events and
//! the core's new WAN ranking into calls on the book, and the book's actions into legs
//! opened and closed; the first downstream copy of each sequence number goes to the
//! client. When the book gives up protection the flow goes on as a plain bonded one
//! (`udp::relay`), its early datagrams first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use mpbond_protocol::udp::encode_sequenced;
use mpbond_protocol::ErrorCode;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::leg::{self, LegEvent, LegHandle, LegSpec};
use super::legs::{LegAction, LegBook};
use super::stats::{ProtectStats, ProtectedFlowStatus, PUBLISH_EVERY};
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

/// Relay `flow` over two legs until it ends; always reports [`FlowEvent::Ended`] (the
/// bonded fallback reports it itself).
pub async fn run(mut flow: Flow, shared: Shared, shutdown: CancellationToken) {
    let params = shared.ctx.params();
    let mut book = LegBook::new(params.legs.clone(), StdInstant::now());
    if book.fell_back() {
        debug!(client = %flow.client, dst = %flow.dst, "fewer than two WANs: the flow is bonded");
        shared.protect.close(0, true);
        return bonded(flow, Vec::new(), shared, shutdown).await;
    }
    let id = shared.protect.open(flow.client, flow.dst);
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
                .publish(id, flow_status(&flow, &book, &counters));
            publish_at = now + PUBLISH_EVERY;
        }
        let timer = book.poll_timeout().map(Instant::from_std);
        tokio::select! {
            _ = shutdown.cancelled() => break Some("shutdown"),
            _ = sleep_until(deadline) => break Some("idle"),
            _ = sleep_until(timer.unwrap_or(now)), if timer.is_some() => {
                book.handle_timeout(StdInstant::now());
            }
            _ = sleep_until(publish_at) => {}
            changed = params_rx.changed() => {
                if changed.is_err() {
                    break Some("shutdown");
                }
                let sources = params_rx.borrow_and_update().legs.clone();
                book.set_sources(sources, StdInstant::now());
            }
            Some(event) = leg_rx.recv() => match event {
                LegEvent::Opened { leg } => {
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
                LegEvent::Datagram { leg, seq, payload } => {
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
                    let mut capsule = Vec::with_capacity(datagram.len() + 8);
                    if encode_sequenced(seq_up, &datagram, &mut capsule).is_err() {
                        shared.stats.drops_lan_busy();
                        continue;
                    }
                    seq_up = seq_up.wrapping_add(1);
                    let capsule: Arc<[u8]> = capsule.into();
                    let mut sent = 0u64;
                    for handle in legs.values() {
                        if handle.capsules.try_send(capsule.clone()).is_ok() {
                            sent += 1;
                        }
                    }
                    if sent == 0 {
                        shared.stats.drops_queue_full();
                    }
                    counters.protection_bytes_up += sent.saturating_sub(1) * datagram.len() as u64;
                    if let Some(early) = early.as_mut() {
                        if kept + datagram.len() <= EARLY_KEEP {
                            kept += datagram.len();
                            early.push(datagram);
                        }
                    }
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
                .publish(id, flow_status(&flow, &book, &counters));
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
            bonded(flow, early.unwrap_or_default(), shared, shutdown).await;
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

fn flow_status(flow: &Flow, book: &LegBook, c: &Counters) -> ProtectedFlowStatus {
    ProtectedFlowStatus {
        client: flow.client.to_string(),
        destination: flow.dst.to_string(),
        origin: flow.origin,
        legs: book.status(StdInstant::now()),
        datagrams_up: c.datagrams_up,
        datagrams_down: book.delivered(),
        lost_down: book.lost(),
        duplicates_down: book.duplicates(),
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
