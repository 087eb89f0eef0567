//! Keeping the shared [`StatusModel`] current: the WANs after each reconcile, probe
//! figures, subflow counts and device counters. The driver publishes the concentrator's
//! health.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::reconcile::Outcome;
use super::subflows::SubflowCounter;
use crate::core::path_quality::PathQuality;
use crate::model::wan::{Snapshot, Wan};
use crate::model::wan_book::{WanBook, WanEvent};
use crate::status::{StatusModel, WanInfo, WanState};

/// The status model, shared by the control loop, the health monitor and the socket.
pub type SharedStatus = Arc<Mutex<StatusModel>>;

/// Lock the model; a panic elsewhere while holding it does not stop the status.
pub fn lock(status: &SharedStatus) -> MutexGuard<'_, StatusModel> {
    status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Publish a reconcile's WANs: table and endpoint id from the plan, probe figures and
/// subflows. The device counters (the rates) have one recorder, the periodic sampler
/// ([`publish_counters`]).
pub fn publish(status: &SharedStatus, out: &Outcome, book: &WanBook, subflows: &SubflowCounter) {
    let infos = out
        .wans
        .iter()
        .map(|w| {
            let table = out.plan.tables.get(&w.name).copied();
            let id = out
                .plan
                .endpoint_ids
                .get(&w.name)
                .and_then(|ids| ids.first().copied());
            WanInfo::from_wan(w, table, id)
        })
        .collect();
    let mut model = lock(status);
    model.set_wans(infos);
    for wan in &out.wans {
        if let Some(entry) = book.entries().get(&wan.name) {
            model.set_probe_state(&wan.name, &entry.probe);
        }
        // The planned health wins over the probe's (a lost link is down at once).
        model.set_wan_state(&wan.name, wan.health.into());
        model.set_subflows(&wan.name, subflows.count(wan));
    }
    record_changes(&mut model, &out.events, Instant::now());
}

/// Record the state changes `events` happened at `at`, with their causes.
pub fn publish_changes(status: &SharedStatus, events: &[WanEvent], at: Instant) {
    record_changes(&mut lock(status), events, at);
}

fn record_changes(model: &mut StatusModel, events: &[WanEvent], at: Instant) {
    for event in events {
        let state = match event {
            WanEvent::Up { .. } | WanEvent::Recovered { .. } => WanState::Up,
            WanEvent::Down { .. } => WanState::Down,
            WanEvent::LinkRestored { .. } => WanState::Unknown,
            WanEvent::Degraded { .. } => WanState::Degraded,
        };
        model.record_wan_change(event.name(), state, event.cause(), at);
    }
}

/// Publish the device counters of `wans` from `snapshot` (the rates follow from them).
pub fn publish_counters(status: &SharedStatus, wans: &[Wan], snapshot: &Snapshot, now: Instant) {
    record_counters(&mut lock(status), wans, snapshot, now);
}

fn record_counters(model: &mut StatusModel, wans: &[Wan], snapshot: &Snapshot, now: Instant) {
    for wan in wans {
        if let Some(link) = snapshot.links.iter().find(|l| l.name == wan.device) {
            model.record_counters(&wan.name, link.rx_bytes, link.tx_bytes, now);
        }
    }
}

/// Publish one WAN's probe figures and probe cost after a probe report.
pub fn publish_probe(status: &SharedStatus, book: &WanBook, name: &str, now: Instant) {
    if let Some(entry) = book.entries().get(name) {
        let mut model = lock(status);
        model.set_probe_state(name, &entry.probe);
        model.set_probe_cost(name, entry.probe.probe_bytes_per_day(now));
    }
}

/// Publish the subflow counts of `wans`.
pub fn publish_subflows(status: &SharedStatus, wans: &[Wan], subflows: &SubflowCounter) {
    let mut model = lock(status);
    for wan in wans {
        model.set_subflows(&wan.name, subflows.count(wan));
    }
}

/// Publish the path-quality verdicts (the demotions and restorations are logged by the
/// reconciler).
pub fn publish_quality(status: &SharedStatus, quality: &PathQuality) {
    let mut model = lock(status);
    for (name, verdict) in quality.verdicts() {
        model.set_quality(name, verdict.reason);
    }
}
