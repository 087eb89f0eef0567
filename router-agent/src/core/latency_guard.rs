//! Latency under load (issue 18 item 2, `[udp] latency_guard`): while a protected
//! real-time flow is active, the receive buffer of every upstream MPTCP connection (the
//! relayed TCP downloads and the bonded UDP flows, QUIC downloads included) is clamped
//! so that together with the WANs' round trips it leaves only about [`QUEUE_TARGET`] of
//! data queued in front of the WANs' download bottlenecks.
//!
//! Why a receive window: the delay a bulk download adds to a call is the standing queue
//! it keeps at the ISP side's shaper (docs/DESIGN.md, "Small flows under load"). The
//! sender may have no more than the receiver's window in flight, so a window of
//! Σ rateᵢ × (base RTT + [`QUEUE_TARGET`]) fills the lines and leaves at most
//! [`QUEUE_TARGET`] of queue on them. The agent is the receiver of every download it
//! relays and owns those sockets, so this needs nothing from the kernel's qdiscs, the
//! concentrator or the ISP. (The kernel refuses `TCP_WINDOW_CLAMP` and
//! `SO_MAX_PACING_RATE` on MPTCP sockets: `SO_RCVBUF` is the lever it offers.)
//!
//! ```text
//! window = Σ peak rateᵢ × (max base RTTᵢ + QUEUE_TARGET), at least MIN_WINDOW,
//!          over the WANs that carried traffic in the last RATE_MEMORY
//! clamp  = window, while a protected flow is active and for HOLD after the last ended,
//!          and only when it is below what the connections get anyway (`release`)
//! ```
//!
//! * **Rate**: the busiest rate each WAN's device moved (the control plane's counter
//!   tick, every 2 s) in the last [`RATE_MEMORY`]. A clamped download can still go
//!   [`QUEUE_TARGET`] ÷ RTT faster than the window's rate (50 % at a 20 ms RTT), so an
//!   estimate that was low grows with every tick until the lines are full.
//! * **Base RTT**: the smallest RTT a WAN's subflows or probes showed in the last
//!   [`RTT_MEMORY`], the round trip without a queue.
//! * **Released**: when the last protected flow has been gone for [`HOLD`] (a call that
//!   ends and restarts does not unclamp in between), every live connection gets back
//!   the buffer a new connection gets (`release`). A socket whose buffer was set by hand
//!   is not autotuned again, so that is a fixed size.
//!
//! * **Fast Open**: a Fast Open MPTCP connection cannot be clamped: the concentrator's
//!   kernel takes its first window edge from the SYN and only moves it forward
//!   (docs/DESIGN.md, "Fast Open on MPTCP"), so it overruns a smaller window and the
//!   download crawls. The shell clamps only connections opened without it, and while the
//!   clamp holds the core opens new connections without it (one more round trip each).
//!   A download that started with Fast Open before the call keeps its queue.
//!
//! * **Downloads already running** (opened wider than the clamp, or with Fast Open)
//!   are paced instead: while the clamp holds, the relays read those connections at
//!   [`PACE_SHARE`] of Σ peak rate together (`GuardView::pace`, a shared read budget,
//!   `mpbond_relay::relay::Pace`). Their receive buffers fill, the window then opens
//!   only as fast as the agent reads, and the queue at the shapers drains. For the
//!   first moments after the guard arms ([`LatencyGuard::fill`]) the budget is
//!   [`FILL_SHARE`], so a wide buffer fills (and the window closes) quickly instead of
//!   keeping the queue for seconds.
//!
//! Pure: the samples, the flows' starts and ends and the time are arguments; the core
//! publishes [`GuardView`] as [`super::Action::BulkWindow`] when it changes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::path_quality::PathSample;
use super::peak_rate::PeakRate;

/// The queue a clamped download may keep in front of the WANs.
pub const QUEUE_TARGET: Duration = Duration::from_millis(10);
/// The smallest window clamped to (bytes). Smaller clamps stall: with 128 KiB a new
/// download's MPTCP connection stopped for good after about 390 kB, 161 kB waiting in its
/// subflow and the MPTCP receive queue full but never read (bench case 18, 3 runs out of
/// 3, one with the relay reading until `EAGAIN`; kernel 6.18); the ~400 kB windows of
/// case 21 never did. It costs precision on slow lines: on 20 + 30 Mbit/s at 20 ms the
/// window would be 190 kB and the floor leaves about 40 ms queued.
pub const MIN_WINDOW: u32 = 384 << 10;
/// A WAN's peak rate counts this long.
pub const RATE_MEMORY: Duration = Duration::from_secs(600);
/// A WAN's smallest RTT counts this long.
pub const RTT_MEMORY: Duration = Duration::from_secs(300);
/// The clamp stays this long after the last protected flow ended.
pub const HOLD: Duration = Duration::from_secs(10);

/// The share of Σ peak rate the wide connections are read at together while paced.
pub const PACE_SHARE: f64 = 0.85;
/// The share while their buffers fill, just after the guard armed.
pub const FILL_SHARE: f64 = 0.25;
/// The longest fill phase.
pub const MAX_FILL: Duration = Duration::from_secs(3);

/// What the guard wants now, for the shell and the status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuardView {
    /// `[udp] latency_guard`.
    pub enabled: bool,
    /// Protected flows now.
    pub protected_flows: u32,
    /// The receive buffer (`SO_RCVBUF`) new upstream connections open with, and the live
    /// ones that opened no wider; `None`: not clamped.
    pub clamp: Option<u32>,
    /// The buffer a released connection gets back.
    pub release: u32,
    /// The window the paths call for (bytes), whether clamped or not.
    pub window: Option<u32>,
    /// The read rate (bytes/s) shared by the live connections that opened wider than
    /// the clamp (or with Fast Open); `None`: not paced.
    pub pace: Option<u64>,
    /// Bytes the relays have read within the pace's budget since the agent started, as
    /// of this view (a counter the shell fills in from the relays' shared budget; the
    /// core leaves it 0).
    pub paced_bytes: u64,
}

/// One WAN as the guard remembers it.
#[derive(Debug, Clone, Copy)]
struct Path {
    rate: PeakRate,
    /// The smallest RTT and when it was seen.
    base: Option<(Duration, Instant)>,
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct LatencyGuard {
    protected: u32,
    /// When the last protected flow ended (the hold runs from then).
    ended_at: Option<Instant>,
    wans: BTreeMap<String, Path>,
    /// The buffer a wide connection opens with, as last told ([`LatencyGuard::note_release`]).
    release: u32,
    /// The end of the fill phase, set when the guard arms.
    fill_until: Option<Instant>,
    /// The read pacing is off (`MPBOND_GUARD_PACE=0`, for A/B measurements): the view
    /// says `pace: None`, so the status shows what is applied.
    pace_off: bool,
}

impl LatencyGuard {
    /// Turn the read pacing on (the default) or off; the clamp is not affected.
    pub fn set_pacing(&mut self, on: bool) {
        self.pace_off = !on;
    }

    /// A protected flow started (`true`) or ended.
    pub fn flow(&mut self, started: bool, now: Instant) {
        if started {
            if !self.armed(now) {
                self.fill_until = self.fill(now).map(|fill| now + fill);
            }
            self.protected += 1;
        } else {
            self.protected = self.protected.saturating_sub(1);
            if self.protected == 0 {
                self.ended_at = Some(now);
            }
        }
    }

    /// Take one sample per WAN (WANs missing from `samples` are forgotten).
    pub fn observe(&mut self, samples: &[(String, PathSample)], now: Instant) {
        self.wans
            .retain(|name, _| samples.iter().any(|(n, _)| n == name));
        for (name, sample) in samples {
            let path = self.wans.entry(name.clone()).or_insert(Path {
                rate: PeakRate::new(sample.bytes, now),
                base: None,
            });
            path.rate.update(sample.bytes, now, RATE_MEMORY, None);
            for rtt in [sample.subflow_rtt, sample.probe_rtt].into_iter().flatten() {
                let keep = path.base.is_some_and(|(min, at)| {
                    min < rtt && now.saturating_duration_since(at) <= RTT_MEMORY
                });
                if !keep {
                    path.base = Some((rtt, now));
                }
            }
        }
    }

    /// The buffer a connection opened wide has (the core tells it before each view).
    pub fn note_release(&mut self, release: u32) {
        self.release = release;
    }

    /// Σ peak rate (bytes/s) over the WANs that carry traffic.
    fn sum_rate(&self, now: Instant) -> f64 {
        self.wans
            .values()
            .filter_map(|p| p.rate.busy(now, RATE_MEMORY))
            .sum()
    }

    /// How long the wide connections' buffers take to fill when read at [`FILL_SHARE`]
    /// while the lines deliver Σ peak rate, at most [`MAX_FILL`]; `None` when no WAN
    /// is busy.
    pub fn fill(&self, now: Instant) -> Option<Duration> {
        let sum = self.sum_rate(now);
        (sum > 0.0)
            .then(|| {
                let secs = f64::from(self.release) / (sum * (1.0 - FILL_SHARE));
                Duration::from_secs_f64(secs.min(MAX_FILL.as_secs_f64()))
            })
            .filter(|fill| !fill.is_zero())
    }

    /// Σ peak rate × (max base RTT + [`QUEUE_TARGET`]) over the WANs that carry
    /// traffic, at least [`MIN_WINDOW`]; `None` while no busy WAN has an RTT.
    pub fn window(&self, now: Instant) -> Option<u32> {
        let busy = self
            .wans
            .values()
            .filter_map(|p| Some((p.rate.busy(now, RATE_MEMORY)?, p.base.map(|(rtt, _)| rtt))));
        let (sum, rtt) = busy.fold((0.0, None::<Duration>), |(sum, max), (peak, rtt)| {
            (sum + peak, max.max(rtt))
        });
        let window = sum * (rtt? + QUEUE_TARGET).as_secs_f64();
        Some((window.round().min(f64::from(u32::MAX)) as u32).max(MIN_WINDOW))
    }

    /// Whether the clamp applies now: a protected flow is active, or the last ended
    /// less than [`HOLD`] ago.
    fn armed(&self, now: Instant) -> bool {
        self.protected > 0
            || self
                .ended_at
                .is_some_and(|at| now.saturating_duration_since(at) < HOLD)
    }

    /// What the guard wants at `now`, for connections that get `release` unclamped.
    pub fn view(&self, enabled: bool, release: u32, now: Instant) -> GuardView {
        let window = self.window(now);
        let clamp = window.filter(|&w| enabled && self.armed(now) && w < release);
        let filling = self.fill_until.is_some_and(|end| now < end);
        let share = if filling { FILL_SHARE } else { PACE_SHARE };
        let pace = clamp
            .filter(|_| !self.pace_off)
            .map(|_| (self.sum_rate(now) * share).round() as u64);
        GuardView {
            enabled,
            protected_flows: self.protected,
            clamp,
            release,
            window,
            pace,
            paced_bytes: 0,
        }
    }

    /// When the fill phase or the hold ends: the core calls [`LatencyGuard::expire`]
    /// then.
    pub fn next_deadline(&self) -> Option<Instant> {
        let hold = self
            .ended_at
            .map(|at| at + HOLD)
            .filter(|_| self.protected == 0);
        [hold, self.fill_until].into_iter().flatten().min()
    }

    /// Forget a fill phase or a hold that is over.
    pub fn expire(&mut self, now: Instant) {
        if self.ended_at.is_some_and(|at| at + HOLD <= now) {
            self.ended_at = None;
        }
        if self.fill_until.is_some_and(|end| end <= now) {
            self.fill_until = None;
        }
    }
}

#[cfg(test)]
#[path = "latency_guard_tests.rs"]
mod tests;
