//! `mpbond_socks_*`: SOCKS5 connections by outcome and bytes relayed through SOCKS5, so
//! SOCKS traffic is visible apart from the Convert path. (SOCKS5 connections are also
//! counted in `mpbond_connections_*` and their bytes in `mpbond_bytes_total` of their
//! client, like every relayed connection.)

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// SOCKS5 counters.
#[derive(Debug, Default)]
pub struct SocksMetrics {
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl SocksMetrics {
    /// A SOCKS5 connection ended its negotiation with `outcome` (`relayed`, `auth_failed`,
    /// a reply code name, ...).
    pub fn outcome(&self, outcome: &'static str) {
        let mut map = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry(outcome).or_insert(0) += 1;
    }

    /// How many connections ended with `outcome`.
    pub fn outcomes(&self, outcome: &str) -> u64 {
        let map = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(outcome).copied().unwrap_or(0)
    }

    /// Bytes of one relayed SOCKS5 connection: `up` is client → destination.
    pub fn add_bytes(&self, up: u64, down: u64) {
        self.bytes_up.fetch_add(up, Ordering::Relaxed);
        self.bytes_down.fetch_add(down, Ordering::Relaxed);
    }

    /// Append the families in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let name = "mpbond_socks_connections_total";
        let _ = writeln!(
            out,
            "# HELP {name} SOCKS5 connections, by outcome (relayed, auth_failed, or the reply code refused with)."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        {
            let map = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
            for (outcome, n) in map.iter() {
                let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {n}");
            }
        }
        let name = "mpbond_socks_bytes_total";
        let _ = writeln!(
            out,
            "# HELP {name} Bytes relayed for SOCKS5 clients; up is client to destination."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        let up = self.bytes_up.load(Ordering::Relaxed);
        let down = self.bytes_down.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}{{direction=\"up\"}} {up}");
        let _ = writeln!(out, "{name}{{direction=\"down\"}} {down}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_outcomes_and_bytes() {
        let m = SocksMetrics::default();
        m.outcome("relayed");
        m.outcome("relayed");
        m.outcome("not_allowed_by_ruleset");
        m.add_bytes(10, 2000);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("mpbond_socks_connections_total{outcome=\"relayed\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("{outcome=\"not_allowed_by_ruleset\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("mpbond_socks_bytes_total{direction=\"down\"} 2000"),
            "{out}"
        );
        assert_eq!(m.outcomes("relayed"), 2);
    }
}
