//! The status model: what the agent knows about itself, and the `mpbond.status/1`
//! document (docs/STATUS.md) it renders to.
//!
//! The serde types ([`StatusDoc`] and its parts) are the wire format, field for field;
//! unknown values are `Option`s that serialize as `null`. [`StatusModel`] is the live
//! state the agent updates as things happen ([`StatusModel::set_wans`],
//! [`StatusModel::set_concentrator`], [`StatusModel::record_counters`], ...) and renders
//! with [`StatusModel::render`]. Time is a parameter: the caller passes `now`, so the
//! uptime and the byte rates are deterministic in tests.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::proxy::{Stats, StatsSnapshot};

/// The `schema` value this module writes.
pub const SCHEMA: &str = "mpbond.status/1";

/// The shortest interval a byte rate is computed over. Device counters move a packet
/// at a time, so one 1500-byte packet inside a few milliseconds reads as megabits per
/// second on an idle link; samples closer than this to the rate's baseline update the
/// totals and leave the rate and its baseline alone.
pub const MIN_RATE_INTERVAL: Duration = Duration::from_secs(1);

/// The whole status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub schema: String,
    pub version: String,
    pub uptime_secs: u64,
    pub kernel: KernelStatus,
    pub concentrator: ConcentratorStatus,
    /// Every configured concentrator with its state, RTT and connections
    /// (`status::concentrators`); the one in use is also `concentrator`.
    #[serde(default)]
    pub concentrators: Vec<super::concentrators::ConcentratorEntry>,
    pub connections: ConnectionCounts,
    pub wans: Vec<WanStatus>,
    /// UDP flows (absent with `[udp] enabled = false`); bytes are totals over all WANs,
    /// each WAN's share is its `udp_rx_bytes`/`udp_tx_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<crate::udp::UdpSnapshot>,
    /// Bypass by name (absent without `[bypass] domains`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass_names: Option<crate::bypass_names::NameBypassStatus>,
    /// Protected UDP flows (absent with `[udp] enabled = false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<crate::udp::ProtectSnapshot>,
    /// The socket buffers of new upstream MPTCP connections (`core/buffers.rs`).
    #[serde(default)]
    pub upstream_buffers: UpstreamBuffersStatus,
    /// The bulk connections' receive-buffer clamp while protected flows run
    /// (`core/latency_guard.rs`; absent until the core first decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_guard: Option<crate::core::latency_guard::GuardView>,
}

/// The socket buffers the agent gives new upstream MPTCP connections (`[mptcp]
/// buffers`, sized by `core/buffers.rs`); `None`: the kernel's autotuning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamBuffersStatus {
    pub rcvbuf_bytes: Option<u32>,
    pub sndbuf_bytes: Option<u32>,
    /// The receive buffer of a connection that uses Fast Open (never below
    /// [`crate::core::buffers::FASTOPEN_RCVBUF`]).
    pub fastopen_rcvbuf_bytes: Option<u32>,
}

impl From<crate::core::SocketBuffers> for UpstreamBuffersStatus {
    fn from(chosen: crate::core::SocketBuffers) -> Self {
        UpstreamBuffersStatus {
            rcvbuf_bytes: chosen.rcvbuf,
            sndbuf_bytes: chosen.sndbuf,
            fastopen_rcvbuf_bytes: crate::core::buffers::for_connection(chosen, true).rcvbuf,
        }
    }
}

/// The kernel features the agent found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelStatus {
    pub release: String,
    pub mptcp: bool,
    pub tfo_mptcp: bool,
    pub tcp_is_mptcp: bool,
    pub mptcp_full_info: bool,
    /// Plain-language list of what is missing and its effect.
    pub missing: Vec<String>,
}

/// The concentrator and the last health verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConcentratorStatus {
    /// As configured.
    pub host: String,
    /// The resolved `ip:port` in use.
    pub address: Option<SocketAddr>,
    pub reachable: bool,
    /// The LAN redirect is installed (false = failing open).
    pub redirect: bool,
    pub rtt_ms: Option<f64>,
    pub last_error: Option<String>,
    /// The congestion control the kernel gives our MPTCP connections to the concentrator
    /// (`mptcp.congestion`, or the kernel default when that is `system` or unavailable).
    #[serde(default)]
    pub congestion: Option<String>,
}

/// Connection counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionCounts {
    pub active: u64,
    pub total: u64,
    pub fallbacks: u64,
    pub direct: u64,
    pub refused: u64,
    /// Connections moved to another WAN while waiting for their Convert reply.
    #[serde(default)]
    pub moved: u64,
}

impl From<StatsSnapshot> for ConnectionCounts {
    fn from(s: StatsSnapshot) -> Self {
        ConnectionCounts {
            active: s.active,
            total: s.total,
            fallbacks: s.mptcp_fallbacks,
            direct: s.direct,
            refused: s.refused,
            moved: s.moved,
        }
    }
}

/// A WAN's mode, as the document spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WanMode {
    On,
    Backup,
    Off,
}

/// A WAN's health state, as the document spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WanState {
    Up,
    Degraded,
    Down,
    Unknown,
}

impl WanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            WanMode::On => "on",
            WanMode::Backup => "backup",
            WanMode::Off => "off",
        }
    }
}

impl WanState {
    pub fn as_str(self) -> &'static str {
        match self {
            WanState::Up => "up",
            WanState::Degraded => "degraded",
            WanState::Down => "down",
            WanState::Unknown => "unknown",
        }
    }
}

/// One WAN in the document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WanStatus {
    pub name: String,
    pub device: String,
    pub addresses: Vec<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub table: Option<u32>,
    pub endpoint_id: Option<u8>,
    pub mode: WanMode,
    pub state: WanState,
    pub rtt_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_bps: u64,
    pub tx_bps: u64,
    pub subflows: u64,
    /// Configured as metered.
    #[serde(default)]
    pub metered: bool,
    /// A metered WAN held back while a better WAN is up (no endpoint, no new connections).
    #[serde(default)]
    pub standby: bool,
    /// Past its monthly allowance: used only when nothing else works.
    #[serde(default)]
    pub over_allowance: bool,
    /// The monthly allowance in bytes (received + sent), if one is set.
    #[serde(default)]
    pub allowance_bytes: Option<u64>,
    /// Bytes this WAN carried today and this billing month (null until counted).
    #[serde(default)]
    pub usage: Option<UsageStatus>,
    /// The last state change: to what, why and how long ago (null: none yet).
    #[serde(default)]
    pub last_change: Option<WanChange>,
    /// What the WAN's probes cost, sent and received, extrapolated to a day.
    #[serde(default)]
    pub probe_bytes_per_day: Option<u64>,
    /// The path-quality verdict: `good`, or `demoted` (a backup endpoint because it hurt
    /// the bond); absent until the WAN was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// Why it was demoted (`rtt 310 ms vs 15 ms, 0.3 vs 48.1 Mbit/s`, `loss 20%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_reason: Option<String>,
    /// Bytes of LAN UDP flows this WAN received and sent since start (bonded: its
    /// subflows' bytes; direct: payload); null with `[udp] enabled = false`.
    #[serde(default)]
    pub udp_rx_bytes: Option<u64>,
    #[serde(default)]
    pub udp_tx_bytes: Option<u64>,
}

/// A WAN's data usage: the bytes its device received and sent, from the kernel's
/// counters, today and this billing month (local dates, `YYYY-MM-DD`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageStatus {
    pub day: String,
    pub today_rx_bytes: u64,
    pub today_tx_bytes: u64,
    /// The first day of the billing month (`reset_day`).
    pub period_start: String,
    pub month_rx_bytes: u64,
    pub month_tx_bytes: u64,
}

/// A WAN's data plan and usage as the status shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterStatus {
    pub metered: bool,
    pub standby: bool,
    pub over_allowance: bool,
    pub allowance_bytes: Option<u64>,
    pub usage: Option<UsageStatus>,
}

/// A WAN's last state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WanChange {
    /// The state it changed to.
    pub state: WanState,
    /// `link` (carrier or address), `passive` (its subflows stalled) or `probe`.
    pub cause: String,
    pub secs_ago: u64,
}

/// What the agent's WAN model says about a WAN: everything but the measurements, which
/// the status model keeps across [`StatusModel::set_wans`] calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WanInfo {
    pub name: String,
    pub device: String,
    pub addresses: Vec<IpAddr>,
    /// IPv4 gateway if there is one, else IPv6; None for point-to-point links.
    pub gateway: Option<IpAddr>,
    pub table: Option<u32>,
    pub endpoint_id: Option<u8>,
    pub mode: WanMode,
    pub state: WanState,
}

/// Measurements of one WAN, kept by name.
#[derive(Debug, Clone, Default)]
struct Measured {
    rtt_ms: Option<f64>,
    loss_pct: Option<f64>,
    rx_bytes: u64,
    tx_bytes: u64,
    rx_bps: u64,
    tx_bps: u64,
    subflows: u64,
    /// The last state change: when, to what, and its cause.
    change: Option<(Instant, WanState, &'static str)>,
    probe_bytes_per_day: Option<u64>,
    /// The path-quality verdict: None (not measured), Some(None) good, Some(Some(why)).
    quality: Option<Option<String>>,
    /// The counter sample the next rate is computed from: the last one that gave a rate.
    baseline: Option<(Instant, u64, u64)>,
}

/// The live status model. Not thread-safe by itself: share it as `Mutex<StatusModel>`.
#[derive(Debug)]
pub struct StatusModel {
    version: String,
    started: Instant,
    kernel: KernelStatus,
    concentrator: ConcentratorStatus,
    concentrators: Vec<super::concentrators::ConcentratorEntry>,
    connections: ConnectionCounts,
    stats: Option<Arc<Stats>>,
    udp: Option<Arc<crate::udp::UdpStats>>,
    /// Bypass by name and the owner table whose companion holds the sets.
    names: Option<(crate::bypass_names::NameBypassStatus, String)>,
    protect: Option<Arc<crate::udp::ProtectStats>>,
    wans: Vec<WanInfo>,
    measured: HashMap<String, Measured>,
    /// Data plan and usage by WAN name (kept across `set_wans`, like `measured`).
    meters: HashMap<String, MeterStatus>,
    /// The socket buffers of new upstream connections, as last published.
    upstream_buffers: UpstreamBuffersStatus,
    /// The latency guard, as last published.
    latency_guard: Option<crate::core::latency_guard::GuardView>,
}

/// Milliseconds with one decimal, as the document shows RTTs.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

impl StatusModel {
    /// A model for an agent of `version` started at `started`, with the concentrator
    /// `host` as configured and nothing else known yet.
    pub fn new(version: &str, started: Instant, host: &str) -> StatusModel {
        StatusModel {
            version: version.to_owned(),
            started,
            kernel: KernelStatus::default(),
            concentrator: ConcentratorStatus {
                host: host.to_owned(),
                ..ConcentratorStatus::default()
            },
            concentrators: Vec::new(),
            connections: ConnectionCounts::default(),
            stats: None,
            udp: None,
            names: None,
            protect: None,
            wans: Vec::new(),
            measured: HashMap::new(),
            meters: HashMap::new(),
            upstream_buffers: crate::core::SocketBuffers::default().into(),
            latency_guard: None,
        }
    }

    pub fn set_kernel(&mut self, kernel: KernelStatus) {
        self.kernel = kernel;
    }

    pub fn set_concentrator(&mut self, concentrator: ConcentratorStatus) {
        self.concentrator = concentrator;
    }

    /// The socket buffers the core chose for new upstream connections.
    pub fn set_upstream_buffers(&mut self, chosen: crate::core::SocketBuffers) {
        self.upstream_buffers = chosen.into();
    }

    /// The latency guard's clamp (`core::latency_guard`).
    pub fn set_latency_guard(&mut self, view: crate::core::latency_guard::GuardView) {
        self.latency_guard = Some(view);
    }

    /// The latency guard as last published.
    pub fn latency_guard(&self) -> Option<crate::core::latency_guard::GuardView> {
        self.latency_guard
    }

    /// Every concentrator's state and RTT (the counts are read at render time).
    pub fn set_concentrators(&mut self, entries: Vec<super::concentrators::ConcentratorEntry>) {
        self.concentrators = entries;
    }

    /// The concentrator part, to update a field or two.
    pub fn concentrator_mut(&mut self) -> &mut ConcentratorStatus {
        &mut self.concentrator
    }

    /// Record a concentrator probe: reachable with its RTT, or not with the reason.
    pub fn record_concentrator_probe(&mut self, result: Result<Duration, String>) {
        let c = &mut self.concentrator;
        match result {
            Ok(rtt) => {
                c.reachable = true;
                c.rtt_ms = Some(millis(rtt));
                c.last_error = None;
            }
            Err(reason) => {
                c.reachable = false;
                c.last_error = Some(reason);
            }
        }
    }

    /// Read the connection counters from the proxy's live [`Stats`] at render time.
    pub fn set_stats(&mut self, stats: Arc<Stats>) {
        self.stats = Some(stats);
    }

    /// Read the UDP flow counters from the UDP service's live counters at render time.
    pub fn set_udp_stats(&mut self, stats: Arc<crate::udp::UdpStats>) {
        self.udp = Some(stats);
    }

    /// Bypass by name as the agent set it up (`None`: no domains); the set counts are
    /// read from the companion of `table` at render time.
    pub fn set_name_bypass(
        &mut self,
        names: Option<crate::bypass_names::NameBypassStatus>,
        table: &str,
    ) {
        self.names = names.map(|n| (n, table.to_owned()));
    }

    /// Read the protected UDP flows from the UDP service at render time.
    pub fn set_protect_stats(&mut self, stats: Arc<crate::udp::ProtectStats>) {
        self.protect = Some(stats);
    }

    /// Set the connection counters directly (used when no [`Stats`] is attached).
    pub fn set_connections(&mut self, counts: ConnectionCounts) {
        self.connections = counts;
    }

    /// Replace the WAN list, in the order given. Measurements of WANs that stay (by
    /// name) are kept; those of WANs that are gone are dropped.
    pub fn set_wans(&mut self, wans: Vec<WanInfo>) {
        self.measured
            .retain(|name, _| wans.iter().any(|w| &w.name == name));
        self.meters
            .retain(|name, _| wans.iter().any(|w| &w.name == name));
        self.wans = wans;
    }

    /// Set one WAN's state; false if there is no such WAN.
    pub fn set_wan_state(&mut self, name: &str, state: WanState) -> bool {
        match self.wans.iter_mut().find(|w| w.name == name) {
            Some(wan) => {
                wan.state = state;
                true
            }
            None => false,
        }
    }

    /// Set a WAN's probe figures (median RTT, loss over the window; None = unknown).
    pub fn set_probe_stats(
        &mut self,
        name: &str,
        rtt: Option<Duration>,
        loss_pct: Option<f64>,
    ) -> bool {
        self.measure(name, |m| {
            m.rtt_ms = rtt.map(millis);
            m.loss_pct = loss_pct;
        })
    }

    /// Record a WAN's state change at `at`, to `state`, caused by `cause` (`link`,
    /// `passive` or `probe`).
    pub fn record_wan_change(
        &mut self,
        name: &str,
        state: WanState,
        cause: &'static str,
        at: Instant,
    ) -> bool {
        self.measure(name, |m| m.change = Some((at, state, cause)))
    }

    /// Set what a WAN's probes cost a day (None: not measured yet).
    pub fn set_probe_cost(&mut self, name: &str, bytes_per_day: Option<u64>) -> bool {
        self.measure(name, |m| m.probe_bytes_per_day = bytes_per_day)
    }

    /// Set a WAN's path-quality verdict: `None` good, `Some(why)` demoted.
    pub fn set_quality(&mut self, name: &str, demoted: Option<String>) -> bool {
        self.measure(name, |m| m.quality = Some(demoted))
    }

    /// Set a WAN's live subflow count.
    pub fn set_subflows(&mut self, name: &str, subflows: u64) -> bool {
        self.measure(name, |m| m.subflows = subflows)
    }

    /// Record a WAN's device counters at `now` (the periodic sampler's job). The totals
    /// follow every sample; the rates are computed against the baseline only once at
    /// least [`MIN_RATE_INTERVAL`] has passed, and that sample becomes the new baseline.
    /// A counter that went backwards (a re-created device) gives rate 0 and a new
    /// baseline at once; a sample older than the baseline is ignored for the rates.
    pub fn record_counters(
        &mut self,
        name: &str,
        rx_bytes: u64,
        tx_bytes: u64,
        now: Instant,
    ) -> bool {
        self.measure(name, |m| {
            m.rx_bytes = rx_bytes;
            m.tx_bytes = tx_bytes;
            let Some((then, rx0, tx0)) = m.baseline else {
                m.baseline = Some((now, rx_bytes, tx_bytes));
                return;
            };
            if rx_bytes < rx0 || tx_bytes < tx0 {
                m.rx_bps = 0;
                m.tx_bps = 0;
                m.baseline = Some((now, rx_bytes, tx_bytes));
                return;
            }
            let Some(elapsed) = now.checked_duration_since(then) else {
                return;
            };
            if elapsed < MIN_RATE_INTERVAL {
                return;
            }
            let secs = elapsed.as_secs_f64();
            let bps = |new: u64, old: u64| ((new - old) as f64 * 8.0 / secs).round() as u64;
            m.rx_bps = bps(rx_bytes, rx0);
            m.tx_bps = bps(tx_bytes, tx0);
            m.baseline = Some((now, rx_bytes, tx_bytes));
        })
    }

    /// Set a WAN's data plan and usage; false if there is no such WAN.
    pub fn set_meter(&mut self, name: &str, meter: MeterStatus) -> bool {
        if !self.wans.iter().any(|w| w.name == name) {
            return false;
        }
        self.meters.insert(name.to_owned(), meter);
        true
    }

    fn measure(&mut self, name: &str, f: impl FnOnce(&mut Measured)) -> bool {
        if !self.wans.iter().any(|w| w.name == name) {
            return false;
        }
        f(self.measured.entry(name.to_owned()).or_default());
        true
    }

    /// The document as of `now`.
    pub fn render(&self, now: Instant) -> StatusDoc {
        let connections = match &self.stats {
            Some(stats) => stats.snapshot().into(),
            None => self.connections,
        };
        let mut udp = self.udp.as_ref().map(|u| u.snapshot());
        let udp_wans = self.udp.as_ref().map(|u| {
            let addrs: Vec<(&str, &[IpAddr])> = self
                .wans
                .iter()
                .map(|w| (w.name.as_str(), w.addresses.as_slice()))
                .collect();
            crate::udp::wan_bytes::attribute(&u.bytes_by_address(), &addrs)
        });
        if let (Some(snapshot), Some((_, unattributed))) = (udp.as_mut(), &udp_wans) {
            snapshot.unattributed_rx_bytes = unattributed.rx;
            snapshot.unattributed_tx_bytes = unattributed.tx;
        }
        let wans = self
            .wans
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let udp_bytes = udp_wans.as_ref().map(|(per_wan, _)| &per_wan[i]);
                let m = self.measured.get(&w.name).cloned().unwrap_or_default();
                let meter = self.meters.get(&w.name).cloned().unwrap_or_default();
                WanStatus {
                    name: w.name.clone(),
                    device: w.device.clone(),
                    addresses: w.addresses.clone(),
                    gateway: w.gateway,
                    table: w.table,
                    endpoint_id: w.endpoint_id,
                    mode: w.mode,
                    state: w.state,
                    rtt_ms: m.rtt_ms,
                    loss_pct: m.loss_pct,
                    rx_bytes: m.rx_bytes,
                    tx_bytes: m.tx_bytes,
                    rx_bps: m.rx_bps,
                    tx_bps: m.tx_bps,
                    subflows: m.subflows,
                    metered: meter.metered,
                    standby: meter.standby,
                    over_allowance: meter.over_allowance,
                    allowance_bytes: meter.allowance_bytes,
                    usage: meter.usage,
                    last_change: m.change.map(|(at, state, cause)| WanChange {
                        state,
                        cause: cause.to_owned(),
                        secs_ago: now.saturating_duration_since(at).as_secs(),
                    }),
                    probe_bytes_per_day: m.probe_bytes_per_day,
                    quality: m
                        .quality
                        .as_ref()
                        .map(|q| if q.is_some() { "demoted" } else { "good" }.to_owned()),
                    quality_reason: m.quality.clone().flatten(),
                    udp_rx_bytes: udp_bytes.map(|b| b.rx_bytes),
                    udp_tx_bytes: udp_bytes.map(|b| b.tx_bytes),
                }
            })
            .collect();
        StatusDoc {
            schema: SCHEMA.to_owned(),
            version: self.version.clone(),
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            kernel: self.kernel.clone(),
            concentrator: self.concentrator.clone(),
            concentrators: super::concentrators::with_counts(
                &self.concentrators,
                self.stats.as_deref(),
            ),
            connections,
            wans,
            udp,
            bypass_names: self.names.as_ref().map(|(n, _)| n.clone()),
            protected: self.protect.as_ref().map(|p| p.snapshot()),
            upstream_buffers: self.upstream_buffers,
            latency_guard: self.latency_guard,
        }
    }

    /// The owner table whose companion holds the name sets, when bypass by name is on.
    pub fn name_sets_table(&self) -> Option<String> {
        self.names.as_ref().map(|(_, table)| table.clone())
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
pub(crate) mod tests;
