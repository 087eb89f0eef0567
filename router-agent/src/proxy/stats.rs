//! Connection counters, shared by every connection task. Relaxed atomics: they are
//! statistics, not synchronisation. The live upstream sockets ([`LiveUpstreams`]) ride
//! along, for the passive health check.

use std::sync::Arc;

// 64-bit atomics that also build on 32-bit MIPS.
use portable_atomic::{AtomicU64, Ordering::Relaxed};

use super::upstreams::LiveUpstreams;

/// Live counters.
#[derive(Debug, Default)]
pub struct Stats {
    active: AtomicU64,
    total: AtomicU64,
    mptcp_fallbacks: AtomicU64,
    direct: AtomicU64,
    refused: AtomicU64,
    moved: AtomicU64,
    /// The relays' upstream sockets (`control::passive` samples them).
    pub upstreams: Arc<LiveUpstreams>,
    /// Live connections relayed through each concentrator address.
    via: std::sync::Mutex<std::collections::HashMap<std::net::SocketAddr, u64>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections being handled now.
    pub active: u64,
    /// Connections accepted since start.
    pub total: u64,
    /// Upstream connections that fell back from MPTCP to plain TCP.
    pub mptcp_fallbacks: u64,
    /// Connections relayed directly (fail open) because the concentrator was unreachable.
    pub direct: u64,
    /// Connections the concentrator refused with an Error TLV (LAN side reset).
    pub refused: u64,
    /// Connections moved to another WAN while waiting for their Convert reply, because
    /// the WAN they waited on went down (`proxy::conn`).
    pub moved: u64,
}

/// Decrements `active` when dropped, so every exit path counts.
#[derive(Debug)]
pub struct ActiveGuard<'a>(&'a Stats);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

impl Stats {
    /// Count a new connection; it stays active until the guard drops.
    pub fn open(&self) -> ActiveGuard<'_> {
        self.total.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
        ActiveGuard(self)
    }

    /// Count an MPTCP → TCP fallback; `true` for the first one since start.
    pub fn mptcp_fallback(&self) -> bool {
        self.mptcp_fallbacks.fetch_add(1, Relaxed) == 0
    }

    pub fn direct(&self) {
        self.direct.fetch_add(1, Relaxed);
    }

    pub fn refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    pub fn moved(&self) {
        self.moved.fetch_add(1, Relaxed);
    }

    /// Count a connection relayed through the concentrator at `addr` until the guard
    /// drops.
    pub fn via(&self, addr: std::net::SocketAddr) -> ViaGuard<'_> {
        let mut via = self.via.lock().unwrap_or_else(|p| p.into_inner());
        *via.entry(addr).or_default() += 1;
        ViaGuard(self, addr)
    }

    /// Live connections relayed through the concentrator at `addr`.
    pub fn live_via(&self, addr: std::net::SocketAddr) -> u64 {
        let via = self.via.lock().unwrap_or_else(|p| p.into_inner());
        via.get(&addr).copied().unwrap_or(0)
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            active: self.active.load(Relaxed),
            total: self.total.load(Relaxed),
            mptcp_fallbacks: self.mptcp_fallbacks.load(Relaxed),
            direct: self.direct.load(Relaxed),
            refused: self.refused.load(Relaxed),
            moved: self.moved.load(Relaxed),
        }
    }
}

/// Uncounts a connection through one concentrator when dropped ([`Stats::via`]).
#[derive(Debug)]
pub struct ViaGuard<'a>(&'a Stats, std::net::SocketAddr);

impl Drop for ViaGuard<'_> {
    fn drop(&mut self) {
        let mut via = self.0.via.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = via.get_mut(&self.1) {
            *n = n.saturating_sub(1);
        }
    }
}
