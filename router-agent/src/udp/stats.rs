//! UDP flow counters, shared by the dispatcher and every flow task. Relaxed atomics:
//! statistics, not synchronisation. Bytes are UDP payload bytes (not capsule framing).
//!
//! Bytes per WAN come from a ledger of the live flows, keyed by the router's local
//! address (`wan_bytes.rs` says how a flow's bytes are counted and mapped to WANs): a
//! bonded flow registers its MPTCP socket ([`UdpStats::track_bonded`]) and its subflows
//! are read when `status` asks ([`UdpStats::bytes_by_address`]), every
//! [`SAMPLE_EVERY_BYTES`] the flow carries, and when it ends; a direct flow registers the
//! source address of its socket ([`UdpStats::track_direct`]) and counts its payload. An
//! ended flow's bytes stay in the ledger's totals. An idle flow costs no reading.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use portable_atomic::{AtomicU64, Ordering::Relaxed};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use super::wan_bytes::{Bytes, SubflowTally};

/// A bonded flow's subflows are read again after this many payload bytes, so a subflow
/// that closes later (its WAN died) loses at most this much from its WAN's count.
pub const SAMPLE_EVERY_BYTES: u64 = 1 << 20;

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
    auto_protected: AtomicU64,
    drops_other_context: AtomicU64,
    drops_lan_busy: AtomicU64,
    resets: AtomicU64,
    ledger: Mutex<Ledger>,
}

/// The flows' bytes by local address: the live flows and the totals of the ended ones.
#[derive(Debug, Default)]
struct Ledger {
    next: u64,
    live: HashMap<u64, LiveFlow>,
    ended: HashMap<IpAddr, Bytes>,
}

#[derive(Debug)]
enum LiveFlow {
    Bonded {
        stream: Arc<TcpStream>,
        tally: SubflowTally,
    },
    Direct {
        local: IpAddr,
        bytes: Arc<DirectBytes>,
    },
}

impl LiveFlow {
    /// Read a bonded flow's subflows now (a failed read keeps the last one).
    fn read(&mut self) {
        if let LiveFlow::Bonded { stream, tally } = self {
            if let Ok(samples) = super::subflows::read(stream.as_ref()) {
                tally.update(&samples);
            }
        }
    }

    fn add_to(&self, by_address: &mut HashMap<IpAddr, Bytes>) {
        match self {
            LiveFlow::Bonded { tally, .. } => tally.add_to(by_address),
            LiveFlow::Direct { local, bytes } => by_address.entry(*local).or_default().add(Bytes {
                rx: bytes.rx.load(Relaxed),
                tx: bytes.tx.load(Relaxed),
            }),
        }
    }
}

/// A direct flow's payload bytes.
#[derive(Debug, Default)]
struct DirectBytes {
    rx: AtomicU64,
    tx: AtomicU64,
}

/// A flow's place in the per-WAN ledger; dropping it reads the flow one last time and
/// moves its bytes to the ended totals.
#[derive(Debug)]
pub struct WanTicket<'a> {
    stats: &'a UdpStats,
    id: u64,
    direct: Option<Arc<DirectBytes>>,
    unread: u64,
}

impl WanTicket<'_> {
    /// A bonded flow carried `len` payload bytes: read its subflows every
    /// [`SAMPLE_EVERY_BYTES`].
    pub fn carried(&mut self, len: usize) {
        self.unread += len as u64;
        if self.unread >= SAMPLE_EVERY_BYTES {
            self.unread = 0;
            if let Some(flow) = self.stats.ledger().live.get_mut(&self.id) {
                flow.read();
            }
        }
    }

    /// A direct flow sent `len` payload bytes.
    pub fn sent(&self, len: usize) {
        if let Some(d) = &self.direct {
            d.tx.fetch_add(len as u64, Relaxed);
        }
    }

    /// A direct flow received `len` payload bytes.
    pub fn received(&self, len: usize) {
        if let Some(d) = &self.direct {
            d.rx.fetch_add(len as u64, Relaxed);
        }
    }
}

impl Drop for WanTicket<'_> {
    fn drop(&mut self) {
        let mut ledger = self.stats.ledger();
        if let Some(mut flow) = ledger.live.remove(&self.id) {
            flow.read();
            flow.add_to(&mut ledger.ended);
        }
    }
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
    /// Bonded flows classed real-time and moved to two legs (`[udp] auto_protect`).
    pub auto_protected: u64,
    /// DATAGRAM capsules with a context id other than 0.
    pub drops_other_context: u64,
    /// Datagrams dropped because a flow task was behind or the LAN socket was full.
    pub drops_lan_busy: u64,
    /// Flows ended by a broken capsule stream.
    pub resets: u64,
    /// Bytes of UDP flows on a local address no WAN holds now (a WAN gone since), from
    /// the internet and to it; the rest are the WANs' `udp_rx_bytes`/`udp_tx_bytes`.
    pub unattributed_rx_bytes: u64,
    pub unattributed_tx_bytes: u64,
}

/// Who chose to protect a flow (`status`: `protected.flows[].origin`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtectOrigin {
    /// A `[[udp.rule]] action = "protect"` (or `[udp] default`).
    #[default]
    Rule,
    /// `core::classify` classed the flow real-time (`[udp] auto_protect`).
    Auto,
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

    /// A bonded flow was classed real-time and goes on protected: counted once in
    /// `auto_protected`, and still once in `total` (the protected flow counts itself).
    pub fn promoted(&self) {
        self.auto_protected.fetch_add(1, Relaxed);
        self.total.fetch_sub(1, Relaxed);
    }

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

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // Counters only: a panic elsewhere while holding the lock leaves them usable.
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn track(&self, flow: LiveFlow, direct: Option<Arc<DirectBytes>>) -> WanTicket<'_> {
        let mut ledger = self.ledger();
        ledger.next += 1;
        let id = ledger.next;
        ledger.live.insert(id, flow);
        WanTicket {
            stats: self,
            id,
            direct,
            unread: 0,
        }
    }

    /// Count a bonded flow's bytes per WAN from its MPTCP socket's subflows until the
    /// ticket drops.
    pub fn track_bonded(&self, stream: Arc<TcpStream>) -> WanTicket<'_> {
        self.track(
            LiveFlow::Bonded {
                stream,
                tally: SubflowTally::default(),
            },
            None,
        )
    }

    /// Count a direct flow's payload bytes on the WAN that holds `local`, the source
    /// address of its socket, until the ticket drops.
    pub fn track_direct(&self, local: IpAddr) -> WanTicket<'_> {
        let bytes = Arc::new(DirectBytes::default());
        self.track(
            LiveFlow::Direct {
                local,
                bytes: bytes.clone(),
            },
            Some(bytes),
        )
    }

    /// Every flow's bytes since start by the router's local address, the live bonded
    /// flows' subflows read now.
    pub fn bytes_by_address(&self) -> HashMap<IpAddr, Bytes> {
        let mut ledger = self.ledger();
        let mut out = ledger.ended.clone();
        for flow in ledger.live.values_mut() {
            flow.read();
            flow.add_to(&mut out);
        }
        out
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
            auto_protected: self.auto_protected.load(Relaxed),
            drops_other_context: self.drops_other_context.load(Relaxed),
            drops_lan_busy: self.drops_lan_busy.load(Relaxed),
            resets: self.resets.load(Relaxed),
            // Filled in by the status model, which knows the WANs.
            unattributed_rx_bytes: 0,
            unattributed_tx_bytes: 0,
        }
    }
}
