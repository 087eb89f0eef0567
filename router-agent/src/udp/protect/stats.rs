//! What `status` shows of protected flows: each live flow's legs, its loss per leg and
//! after the merge, and the bytes protection cost (the copies beyond the first), plus
//! totals over the agent's life.
//!
//! Each flow task writes its own entry (at most once a [`PUBLISH_EVERY`] and when its
//! legs change) and removes it when it ends, adding its bytes to the totals; the status
//! reads a snapshot. A statistics store, not shared state anyone steers by.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::legs::LegStatus;

/// How often a flow task refreshes its entry while datagrams flow.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// One protected flow now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProtectedFlowStatus {
    pub client: String,
    pub destination: String,
    /// `duplicate` or `fec` (the rule's `mode`).
    pub mode: String,
    /// A rule or the classifier (`[udp] auto_protect`) chose to protect it.
    pub origin: crate::udp::stats::ProtectOrigin,
    pub legs: Vec<LegStatus>,
    /// Datagrams LAN → internet (each sent on every open leg).
    pub datagrams_up: u64,
    /// First copies delivered to the LAN client.
    pub datagrams_down: u64,
    /// Sequence numbers no leg delivered (downstream, after the merge).
    pub lost_down: u64,
    /// Downstream loss before protection: `fec`, the sources no leg brought (before
    /// recovery); `duplicate`, what the leg that missed least missed.
    pub lost_before_down: u64,
    /// Downstream datagrams protection saved: `fec`, recovered from repairs;
    /// `duplicate`, `lost_before_down - lost_down`.
    pub recovered_down: u64,
    /// Copies dropped because another leg delivered them first.
    pub duplicates_down: u64,
    /// Bytes protection cost: the extra copies' payloads (`duplicate`) or the repair
    /// capsules and the sources sent again on another leg because theirs was late
    /// (`fec`); upstream sent, downstream received.
    pub protection_bytes_up: u64,
    pub protection_bytes_down: u64,
    /// Legs closed and replaced (their WAN went down or they stalled).
    pub legs_replaced: u64,
}

impl ProtectedFlowStatus {
    /// Downstream loss after the merge, in percent of the sequence numbers seen.
    pub fn loss_pct(&self) -> f64 {
        pct(self.lost_down, self.datagrams_down + self.lost_down)
    }
}

/// Missed over expected in percent, one decimal; 0 with nothing expected.
pub fn pct(missed: u64, expected: u64) -> f64 {
    if expected == 0 {
        return 0.0;
    }
    (missed as f64 * 1000.0 / expected as f64).round() / 10.0
}

/// Protected flows: the `protected` object of `status --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProtectSnapshot {
    /// Protected flows now.
    pub active: u64,
    /// Protected flows since start.
    pub total: u64,
    /// Flows classed `protect` carried as plain bonded flows (one usable WAN, or a
    /// concentrator without the Group TLV).
    pub fallbacks: u64,
    /// Legs replaced, over all flows.
    pub legs_replaced: u64,
    /// Bytes of extra copies over all flows, ended ones included.
    pub protection_bytes: u64,
    /// Downstream first copies and losses after the merge, over all flows.
    pub datagrams_down: u64,
    pub lost_down: u64,
    /// Downstream loss before protection, and datagrams protection saved, over all flows.
    pub lost_before_down: u64,
    pub recovered_down: u64,
    pub flows: Vec<ProtectedFlowStatus>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    flows: BTreeMap<u64, ProtectedFlowStatus>,
    total: u64,
    fallbacks: u64,
    /// Of ended flows.
    ended: ProtectedFlowStatus,
}

/// The store; see the module docs.
#[derive(Debug, Default)]
pub struct ProtectStats {
    registry: Mutex<Registry>,
}

impl ProtectStats {
    fn with<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.registry.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A new protected flow from `client` to `destination`: its entry id.
    pub fn open(&self, client: SocketAddr, destination: SocketAddr) -> u64 {
        self.with(|r| {
            r.next_id += 1;
            r.total += 1;
            let entry = ProtectedFlowStatus {
                client: client.to_string(),
                destination: destination.to_string(),
                ..ProtectedFlowStatus::default()
            };
            r.flows.insert(r.next_id, entry);
            r.next_id
        })
    }

    /// Replace flow `id`'s entry.
    pub fn publish(&self, id: u64, status: ProtectedFlowStatus) {
        self.with(|r| {
            if let Some(entry) = r.flows.get_mut(&id) {
                *entry = status;
            }
        });
    }

    /// Flow `id` ended (`fell_back`: it went on as a plain bonded flow).
    pub fn close(&self, id: u64, fell_back: bool) {
        self.with(|r| {
            let last = r.flows.remove(&id);
            let existed = last.is_some();
            if let Some(last) = last {
                let e = &mut r.ended;
                e.datagrams_down += last.datagrams_down;
                e.lost_down += last.lost_down;
                e.lost_before_down += last.lost_before_down;
                e.recovered_down += last.recovered_down;
                e.protection_bytes_up += last.protection_bytes_up;
                e.protection_bytes_down += last.protection_bytes_down;
                e.legs_replaced += last.legs_replaced;
            }
            if fell_back {
                r.fallbacks += 1;
                if existed {
                    r.total -= 1;
                }
            }
        });
    }

    /// Everything at this moment.
    pub fn snapshot(&self) -> ProtectSnapshot {
        self.with(|r| {
            let flows: Vec<ProtectedFlowStatus> = r.flows.values().cloned().collect();
            let all = flows.iter().chain(std::iter::once(&r.ended));
            let mut s = ProtectSnapshot {
                active: flows.len() as u64,
                total: r.total,
                fallbacks: r.fallbacks,
                ..ProtectSnapshot::default()
            };
            for f in all {
                s.legs_replaced += f.legs_replaced;
                s.protection_bytes += f.protection_bytes_up + f.protection_bytes_down;
                s.datagrams_down += f.datagrams_down;
                s.lost_down += f.lost_down;
                s.lost_before_down += f.lost_before_down;
                s.recovered_down += f.recovered_down;
            }
            s.flows = flows;
            s
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_add_to_the_totals_when_they_end_and_fallbacks_are_not_protected() {
        let stats = ProtectStats::default();
        let a = stats.open(
            "192.168.1.10:5000".parse().unwrap(),
            "198.51.100.1:3478".parse().unwrap(),
        );
        let b = stats.open(
            "192.168.1.11:5000".parse().unwrap(),
            "198.51.100.1:3478".parse().unwrap(),
        );
        let status = ProtectedFlowStatus {
            client: "192.168.1.10:5000".into(),
            datagrams_down: 995,
            lost_down: 5,
            lost_before_down: 40,
            recovered_down: 35,
            protection_bytes_up: 200_000,
            protection_bytes_down: 190_000,
            ..ProtectedFlowStatus::default()
        };
        assert_eq!(status.loss_pct(), 0.5);
        stats.publish(a, status);
        stats.close(b, true);
        stats.close(0, true);
        let s = stats.snapshot();
        assert_eq!((s.active, s.total, s.fallbacks), (1, 1, 2));
        assert_eq!(s.flows[0].client, "192.168.1.10:5000");
        stats.close(a, false);
        let s = stats.snapshot();
        assert_eq!((s.active, s.total), (0, 1));
        assert_eq!(s.protection_bytes, 390_000);
        assert_eq!((s.datagrams_down, s.lost_down), (995, 5));
        assert_eq!((s.lost_before_down, s.recovered_down), (40, 35));
    }
}
