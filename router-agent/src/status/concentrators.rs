//! The `concentrators` list of the status document: every configured concentrator with
//! its state (`active`, `standby`, `down`), its last probe's RTT and the connections
//! relayed through it now. The decision core decides the states
//! ([`crate::core::concentrators`]); the driver copies them here after every event, and
//! the connection counts are read from the proxy's live counters at render time.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::core::concentrators::ConcentratorView;
use crate::proxy::Stats;

use super::state::millis;

/// One concentrator in the status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcentratorEntry {
    /// As configured (default: the host).
    pub name: String,
    /// The resolved `ip:port` connections go to.
    pub address: SocketAddr,
    /// Lower is preferred.
    pub priority: u8,
    /// `active` (new connections go here), `standby` (up, next in line) or `down`.
    pub state: String,
    /// The last successful probe's round trip.
    pub rtt_ms: Option<f64>,
    /// Connections relayed through it now.
    pub connections: u64,
}

/// The entries for the core's views, with the configured priorities.
pub fn entries(
    views: &[ConcentratorView],
    priority: impl Fn(&str) -> u8,
) -> Vec<ConcentratorEntry> {
    views
        .iter()
        .map(|v| ConcentratorEntry {
            name: v.name.clone(),
            address: v.address,
            priority: priority(&v.name),
            state: v.state.as_str().to_owned(),
            rtt_ms: v.rtt.map(millis),
            connections: 0,
        })
        .collect()
}

/// `entries` with the live connection counts from `stats` (without: as they are).
pub fn with_counts(entries: &[ConcentratorEntry], stats: Option<&Stats>) -> Vec<ConcentratorEntry> {
    entries
        .iter()
        .map(|e| ConcentratorEntry {
            connections: stats.map_or(e.connections, |s| s.live_via(e.address)),
            ..e.clone()
        })
        .collect()
}

/// The text table: one row per concentrator, when there are several (one is the
/// header's `concentrator` line already).
pub fn table(entries: &[ConcentratorEntry]) -> String {
    if entries.len() < 2 {
        return String::new();
    }
    let mut out = String::from("concentrators:\n");
    for e in entries {
        let rtt = e
            .rtt_ms
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.1} ms"));
        out.push_str(&format!(
            "  {:<2} {:<16} {:<22} {:<8} rtt {:<9} {} connections\n",
            e.priority, e.name, e.address, e.state, rtt, e.connections
        ));
    }
    out
}
