//! The socket buffers of new upstream MPTCP connections, sized to the path set's
//! bandwidth-delay product (`[mptcp] buffers = "auto"`).
//!
//! An MPTCP receiver delivers in order at the connection level: while a segment sent on
//! the slowest path is in flight, everything the other paths deliver waits in the
//! receive buffer. To keep every path busy the buffer must hold what all of them carry
//! in the slowest path's round trip, Σ rateᵢ × RTT_max, and once more for a segment that
//! the slowest path loses and the scheduler re-injects on another one (Raiciu et al.,
//! "How Hard Can It Be?", NSDI 2012: buffer ≥ 2 × Σ rateᵢ × RTT_max). The same bound holds
//! for the sender, which keeps every unacknowledged byte of every path. A lost segment
//! that needs a retransmission timeout (a lost retransmission, a tail loss) holds the data
//! behind it longer than that: the receive buffer also covers [`RECOVERY`] of Σ rate, or
//! the window closes, the subflows' windows run past the connection's and the kernel drops
//! what arrives beyond it (`MPTcpExtNoDSSInWindow`), which only MPTCP's own retransmission
//! timer recovers (stalls of 0.5–2 s in case 13 on `three`, docs/PERFORMANCE.md). So:
//!
//! ```text
//! rcvbuf = Σ peak rateᵢ × (RTT_FACTOR (2) × max RTTᵢ + RECOVERY (400 ms))
//! sndbuf = Σ peak rateᵢ ×  RTT_FACTOR (2) × max RTTᵢ
//!          over the WANs that carry traffic, each rounded up to a power of two,
//!          within [MIN_BUFFER, the kernel's tcp_{r,w}mem max]
//! ```
//!
//! * **Rate**: the busiest rate a WAN's device moved in the last [`RATE_MEMORY`] (the
//!   control plane's byte counters every 2 s). What a WAN moved is a lower bound of what
//!   it can move; the factor 2 lets the buffer, and so the rate, grow each tick until the
//!   line is full. A WAN that has not moved half its peak for [`RATE_MEMORY`] starts
//!   over from its current rate; one that carries nothing (a backup one) drops out.
//! * **RTT**: its live subflows' smoothed RTT, else its probes' median.
//! * **Bounds**: never below [`MIN_BUFFER`] (a fixed buffer is not autotuned, so a small
//!   one would cap a connection that starts on an idle bond), never above what the
//!   kernel's autotuning may reach (`net.ipv4.tcp_rmem`/`tcp_wmem` max, read once at start)
//!   nor [`MAX_BUFFER`].
//! * **Nothing measured yet** (a fresh agent, or an idle bond for [`RATE_MEMORY`]): the
//!   receive buffer is [`UNMEASURED_RCVBUF`] within the same bounds, since the first
//!   download's rate is unknown and MPTCP's autotuning grows the window too slowly for
//!   the losses above; the send buffer is left to autotuning.
//! * **Fast Open**: a Fast Open MPTCP socket's receive buffer is at least
//!   [`FASTOPEN_RCVBUF`] whatever the mode and the bounds (docs/DESIGN.md, "Fast Open on
//!   MPTCP": Linux takes the first window from the SYN, and a small one is overrun).
//! * `buffers = "kernel"`: the kernel's autotuning, with the Fast Open receive buffer
//!   alone.
//!
//! Pure: the samples, the time and the kernel's limits are arguments; the core publishes
//! the result with the other [`super::UpstreamChoice`]s only when it changes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use mpbond_relay::connect::{SocketBuffers, FASTOPEN_RCVBUF};

use super::path_quality::PathSample;
use super::peak_rate::PeakRate;

/// Headroom over Σ rate × RTT_max: one round trip in flight, one for a re-injection.
pub const RTT_FACTOR: f64 = 2.0;
/// What the receive buffer holds beyond that, in time at Σ rate: a retransmission timeout
/// and its first backoff (Linux's minimum RTO is 200 ms).
pub const RECOVERY: Duration = Duration::from_millis(400);
/// The receive buffer while nothing is measured (bytes, within the bounds).
pub const UNMEASURED_RCVBUF: u32 = 16 << 20;
/// The smallest buffer set by hand (bytes).
pub const MIN_BUFFER: u32 = 512 << 10;
/// The largest buffer set by hand (bytes), whatever the kernel allows.
pub const MAX_BUFFER: u32 = 64 << 20;
/// A WAN's peak rate counts this long after it was seen.
pub const RATE_MEMORY: Duration = Duration::from_secs(60);
/// A rate at least this share of the peak keeps the peak remembered.
const SUSTAINED_SHARE: f64 = 0.5;

/// `[mptcp] buffers`: who sizes the upstream connections' socket buffers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BufferMode {
    /// From the paths' bandwidth-delay product (this module).
    #[default]
    Auto,
    /// The kernel's autotuning (and the Fast Open receive buffer).
    Kernel,
}

impl std::str::FromStr for BufferMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(BufferMode::Auto),
            "kernel" => Ok(BufferMode::Kernel),
            other => Err(format!("{other:?} is neither \"auto\" nor \"kernel\"")),
        }
    }
}

/// The kernel's autotuning maxima (the third field of `net.ipv4.tcp_rmem`/`tcp_wmem`);
/// `None`: unknown, [`MAX_BUFFER`] bounds alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelBufferLimits {
    pub rmem_max: Option<u32>,
    pub wmem_max: Option<u32>,
}

/// One WAN as the sizing remembers it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    rate: PeakRate,
    rtt: Option<Duration>,
}

/// Per-WAN rates and RTTs, and the buffers they call for. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct BufferSizing {
    wans: BTreeMap<String, Seen>,
}

impl BufferSizing {
    /// Take one sample per WAN (WANs missing from `samples` are forgotten).
    pub fn observe(&mut self, samples: &[(String, PathSample)], now: Instant) {
        self.wans
            .retain(|name, _| samples.iter().any(|(n, _)| n == name));
        for (name, sample) in samples {
            let rtt = sample.subflow_rtt.or(sample.probe_rtt);
            let seen = self.wans.entry(name.clone()).or_insert(Seen {
                rate: PeakRate::new(sample.bytes, now),
                rtt,
            });
            seen.rate
                .update(sample.bytes, now, RATE_MEMORY, Some(SUSTAINED_SHARE));
            seen.rtt = rtt.or(seen.rtt);
        }
    }

    /// Σ peak rate × max RTT (bytes) over the WANs that carry traffic and have an RTT;
    /// `None` while none does.
    pub fn bdp(&self, now: Instant) -> Option<f64> {
        self.rates(now)
            .map(|(sum, max_rtt)| sum * max_rtt.as_secs_f64())
    }

    /// Σ peak rate (bytes/s) and max RTT over the WANs that carry traffic; `None` while
    /// none does or none has an RTT.
    fn rates(&self, now: Instant) -> Option<(f64, Duration)> {
        let busy = self
            .wans
            .values()
            .filter_map(|s| Some((s.rate.busy(now, RATE_MEMORY)?, s.rtt)));
        let (sum, max_rtt) = busy.fold((0.0, None::<Duration>), |(sum, max), (peak, rtt)| {
            (sum + peak, max.max(rtt))
        });
        let max_rtt = max_rtt?;
        (sum * max_rtt.as_secs_f64() > 0.0).then_some((sum, max_rtt))
    }

    /// The buffers of new connections in `mode` (before [`for_connection`]).
    pub fn choose(
        &self,
        mode: BufferMode,
        limits: KernelBufferLimits,
        now: Instant,
    ) -> SocketBuffers {
        if mode == BufferMode::Kernel {
            return SocketBuffers::default();
        }
        let Some((sum, max_rtt)) = self.rates(now) else {
            return unmeasured(mode, limits);
        };
        let in_flight = RTT_FACTOR * sum * max_rtt.as_secs_f64();
        let recovering = in_flight + sum * RECOVERY.as_secs_f64();
        SocketBuffers {
            rcvbuf: Some(bounded(recovering, limits.rmem_max)),
            sndbuf: Some(bounded(in_flight, limits.wmem_max)),
        }
    }
}

/// The buffers while nothing is measured: [`UNMEASURED_RCVBUF`] within the bounds in
/// `Auto` mode (the send buffer autotuned), autotuning alone in `Kernel` mode.
pub fn unmeasured(mode: BufferMode, limits: KernelBufferLimits) -> SocketBuffers {
    match mode {
        BufferMode::Auto => SocketBuffers {
            rcvbuf: Some(bounded(f64::from(UNMEASURED_RCVBUF), limits.rmem_max)),
            sndbuf: None,
        },
        BufferMode::Kernel => SocketBuffers::default(),
    }
}

/// `bytes` rounded up to a power of two, within [`MIN_BUFFER`] and the kernel's maximum
/// (and [`MAX_BUFFER`]).
fn bounded(bytes: f64, kernel_max: Option<u32>) -> u32 {
    let want = bytes.min(f64::from(MAX_BUFFER)) as u32;
    let cap = kernel_max
        .unwrap_or(MAX_BUFFER)
        .clamp(MIN_BUFFER, MAX_BUFFER);
    want.max(1).next_power_of_two().clamp(MIN_BUFFER, cap)
}

/// The buffers of one connection: `chosen` ([`BufferSizing::choose`], published by the
/// core), with the receive buffer raised to [`FASTOPEN_RCVBUF`] when it uses Fast Open.
pub fn for_connection(chosen: SocketBuffers, fastopen: bool) -> SocketBuffers {
    if !fastopen {
        return chosen;
    }
    SocketBuffers {
        rcvbuf: Some(
            chosen
                .rcvbuf
                .map_or(FASTOPEN_RCVBUF, |b| b.max(FASTOPEN_RCVBUF)),
        ),
        sndbuf: chosen.sndbuf,
    }
}

#[cfg(test)]
#[path = "buffers_tests.rs"]
mod tests;
