//! UDP flow counters, shared by the dispatcher and every flow task. Relaxed atomics:
//! statistics, not synchronisation. Bytes are UDP payload bytes (not capsule framing);
//! per-WAN bytes are not split out here (the subflow counters of `status` carry every
//! MPTCP connection's bytes per WAN, UDP flows' included).

use portable_atomic::{AtomicU64, Ordering::Relaxed};
use serde::{Deserialize, Serialize};

/// Live counters.
#[derive(Debug, Default)]
pub struct UdpStats {
    active: AtomicU64,
    bonded_active: AtomicU64,
    total: AtomicU64,
    direct: AtomicU64,
    refused: AtomicU64,
    upstream_failed: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    datagrams_up: AtomicU64,
    datagrams_down: AtomicU64,
    drops_queue_full: AtomicU64,
    drops_flow_limit: AtomicU64,
    drops_other_context: AtomicU64,
    drops_lan_busy: AtomicU64,
    resets: AtomicU64,
}

/// A copy of the counters at one moment (the `udp` object of `status --json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UdpSnapshot {
    /// Flows being relayed now (bonded and direct).
    pub active: u64,
    /// Of those, flows through the concentrator.
    pub bonded_active: u64,
    /// Flows since start.
    pub total: u64,
    /// Flows sent direct (the concentrator has no UDP relay, refused the destination, or
    /// could not be reached).
    pub direct: u64,
    /// Flows the concentrator refused (then sent direct).
    pub refused: u64,
    /// Flows whose MPTCP connection to the concentrator failed (then sent direct).
    pub upstream_failed: u64,
    /// UDP payload bytes LAN → internet.
    pub bytes_up: u64,
    /// UDP payload bytes internet → LAN.
    pub bytes_down: u64,
    pub datagrams_up: u64,
    pub datagrams_down: u64,
    /// Datagrams dropped because the flow's capsule queue was full.
    pub drops_queue_full: u64,
    /// Datagrams of new flows dropped at `max_flows`.
    pub drops_flow_limit: u64,
    /// DATAGRAM capsules with a context id other than 0.
    pub drops_other_context: u64,
    /// Datagrams dropped because a flow task was behind or the LAN socket was full.
    pub drops_lan_busy: u64,
    /// Flows ended by a broken capsule stream.
    pub resets: u64,
}

/// Decrements the active counters when dropped.
#[derive(Debug)]
pub struct FlowGuard<'a> {
    stats: &'a UdpStats,
    bonded: bool,
}

impl FlowGuard<'_> {
    /// The flow now goes through the concentrator.
    pub fn bonded(&mut self) {
        if !self.bonded {
            self.bonded = true;
            self.stats.bonded_active.fetch_add(1, Relaxed);
        }
    }

    /// The flow left the concentrator (it goes direct).
    pub fn unbonded(&mut self) {
        if self.bonded {
            self.bonded = false;
            self.stats.bonded_active.fetch_sub(1, Relaxed);
        }
    }
}

impl Drop for FlowGuard<'_> {
    fn drop(&mut self) {
        self.unbonded();
        self.stats.active.fetch_sub(1, Relaxed);
    }
}

macro_rules! bump {
    ($($name:ident),*) => {
        $(pub fn $name(&self) {
            self.$name.fetch_add(1, Relaxed);
        })*
    };
}

impl UdpStats {
    /// Count a new flow; it stays active until the guard drops.
    pub fn open(&self) -> FlowGuard<'_> {
        self.total.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
        FlowGuard {
            stats: self,
            bonded: false,
        }
    }

    bump!(
        direct,
        refused,
        upstream_failed,
        drops_queue_full,
        drops_flow_limit,
        drops_other_context,
        drops_lan_busy,
        resets
    );

    /// One datagram of `len` bytes LAN → internet.
    pub fn up(&self, len: usize) {
        self.datagrams_up.fetch_add(1, Relaxed);
        self.bytes_up.fetch_add(len as u64, Relaxed);
    }

    /// One datagram of `len` bytes internet → LAN.
    pub fn down(&self, len: usize) {
        self.datagrams_down.fetch_add(1, Relaxed);
        self.bytes_down.fetch_add(len as u64, Relaxed);
    }

    pub fn snapshot(&self) -> UdpSnapshot {
        UdpSnapshot {
            active: self.active.load(Relaxed),
            bonded_active: self.bonded_active.load(Relaxed),
            total: self.total.load(Relaxed),
            direct: self.direct.load(Relaxed),
            refused: self.refused.load(Relaxed),
            upstream_failed: self.upstream_failed.load(Relaxed),
            bytes_up: self.bytes_up.load(Relaxed),
            bytes_down: self.bytes_down.load(Relaxed),
            datagrams_up: self.datagrams_up.load(Relaxed),
            datagrams_down: self.datagrams_down.load(Relaxed),
            drops_queue_full: self.drops_queue_full.load(Relaxed),
            drops_flow_limit: self.drops_flow_limit.load(Relaxed),
            drops_other_context: self.drops_other_context.load(Relaxed),
            drops_lan_busy: self.drops_lan_busy.load(Relaxed),
            resets: self.resets.load(Relaxed),
        }
    }
}
