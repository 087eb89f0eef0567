//! The per-WAN health state machine: mwan3-like verdicts from probes, passive evidence
//! from the WAN's own subflows, and the probe schedule. Pure: time is passed in; probe
//! outcomes and subflow samples are fed in by the I/O side (`crate::wan_probe`,
//! `crate::control::passive`).
//!
//! ```text
//!            `up` successes in a row                 loss > degraded_loss_pct
//!  Unknown ───────────────────────────▶ Up ◀────────────────────────────────▶ Degraded
//!     │                                 ▲ │                                     │
//!     │ `down` failures in a row        │ │ `down` failures in a row,           │
//!     ▼                                 │ ▼ or a passive stall                  │
//!   Down ◀──────────────────────────────┴─┴─────────────────────────────────────┘
//!     ▲          `up` successes in a row (from Down)
//!     └── link_lost(): carrier loss or address removal, at once, from netlink
//! ```
//!
//! [`ProbeState::link_restored`] puts a WAN back to `Unknown` (as at start) with empty
//! counters; the probes then decide. RTT is the median of the successful probes among the
//! last `window` sent, loss the failed fraction of those. When a WAN comes back up, its
//! window keeps only the successes that brought it back, so old failures do not make it
//! `Degraded` at once.
//!
//! # Passive health ([`ProbeState::passive`])
//!
//! While a WAN carries traffic, the kernel already knows whether it works: the agent
//! samples the TCP state of the MPTCP subflows it holds to the concentrator
//! ([`PassiveSample`]). A sample with data moving keeps the WAN *busy* for
//! [`PASSIVE_FRESH`]. A subflow with unacknowledged data, a retransmission timeout fired
//! and no ACK for [`stall_threshold`] (at least [`PASSIVE_STALL_MIN`], or 4 smoothed
//! RTTs) is a blackhole: an `up` WAN goes `down` at once (cause `passive`), without a
//! probe. Half that wait makes the WAN *suspicious*. A stall that began before the WAN
//! last came up is old news and is ignored.
//!
//! # The probe schedule ([`ProbeState::due_at`], [`ProbeState::start_probe`])
//!
//! | state                                   | probes                              |
//! |-----------------------------------------|-------------------------------------|
//! | link lost, or a probe in flight         | none                                |
//! | `up`/`degraded`, busy, not suspicious   | none (passive health covers it)     |
//! | `up`/`degraded`, idle                   | every `idle_interval`               |
//! | suspicious: a missed reply, a passive   | every `interval`, until `up`        |
//! | warning, or traffic that just stopped   | successes in a row                  |
//! | `unknown`; `down` for under [`DOWN_FAST_FOR`] | every `interval`              |
//! | `down` for longer                       | every `idle_interval`               |
//!
//! One probe is one datagram each way; with no reply within [`ProbeState::probe_timeout`]
//! (3 RTTs + 50 ms, at least [`MIN_PROBE_TIMEOUT`], at most `timeout`) it failed,
//! whichever direction lost it. With the defaults (`idle_interval` 3 s, `interval`
//! 400 ms, `down` 3) an idle WAN's blackhole is `down` within 3 s + 3 timeouts, under
//! 4.5 s for RTTs up to 100 ms, and the idle cost is one round trip (about 143 bytes
//! with Ethernet headers) every 3 s: about 4.1 MB a day. A metered WAN
//! ([`ProbeSettings::metered`], `idle_interval` [`METERED_IDLE_INTERVAL`]) costs about
//! 0.6 MB a day. [`ProbeState::probe_bytes_per_day`] measures the real cost.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::wan::Health;

/// Floor of the adaptive probe timeout.
pub const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// A `down` WAN is probed every `interval` this long, then every `idle_interval`.
pub const DOWN_FAST_FOR: Duration = Duration::from_secs(60);
/// A passive sample with data moving keeps a WAN busy (unprobed) this long.
pub const PASSIVE_FRESH: Duration = Duration::from_millis(1000);
/// The shortest wait for an ACK that counts as a passive stall.
pub const PASSIVE_STALL_MIN: Duration = Duration::from_millis(600);
/// The idle interval of a metered WAN: about 0.6 MB a day.
pub const METERED_IDLE_INTERVAL: Duration = Duration::from_secs(20);
/// The probe cost is extrapolated from the bytes of this last stretch.
pub const COST_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What one WAN's probe task (`crate::wan_probe::ProbeLoop`) probes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The WAN's name, copied into every report.
    pub wan: String,
    /// The device to bind to (empty: source address only).
    pub device: String,
    /// The WAN's source address; same family as the concentrator's address.
    pub src: IpAddr,
}

/// Probe timing and thresholds for one WAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// Time between probes while the WAN is suspicious, unknown or newly down.
    pub interval: Duration,
    /// Time between probes while the WAN is healthy and idle (and long down).
    pub idle_interval: Duration,
    /// The most one probe may take before it counts as failed (see
    /// [`ProbeState::probe_timeout`]).
    pub timeout: Duration,
    /// Failed probes in a row that mark the WAN down.
    pub down: u32,
    /// Successful probes in a row that mark it up.
    pub up: u32,
    /// How many recent probes RTT and loss are computed over.
    pub window: usize,
    /// Loss (percent) above which an up WAN is `Degraded`.
    pub degraded_loss_pct: u32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            interval: Duration::from_millis(400),
            idle_interval: Duration::from_secs(3),
            timeout: Duration::from_millis(1000),
            down: 3,
            up: 2,
            window: 10,
            degraded_loss_pct: 20,
        }
    }
}

impl ProbeSettings {
    /// The same settings for a metered WAN: idle probes every
    /// [`METERED_IDLE_INTERVAL`] (at least), so that it costs under 1 MB a day.
    pub fn metered(mut self) -> Self {
        self.idle_interval = self.idle_interval.max(METERED_IDLE_INTERVAL);
        self
    }
}

/// A health change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Health,
    pub to: Health,
}

/// What the kernel says about one WAN's subflows to the concentrator, sampled by the
/// I/O side while the WAN carries traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassiveSample {
    /// Established subflows from the WAN's address to the concentrator.
    pub subflows: u32,
    /// Data moved on one of them (sent or received) since the last sample.
    pub active: bool,
    /// The longest wait for an ACK among subflows with unacknowledged data.
    pub ack_wait: Option<Duration>,
    /// That subflow is retransmitting (an RTO fired: retransmits or backoff > 0).
    pub retransmitting: bool,
    /// The smallest smoothed RTT among the subflows.
    pub srtt: Option<Duration>,
}

/// How long a subflow may wait for an ACK before it counts as stalled.
pub fn stall_threshold(srtt: Option<Duration>) -> Duration {
    srtt.map_or(PASSIVE_STALL_MIN, |rtt| (rtt * 4).max(PASSIVE_STALL_MIN))
}

/// The bytes the probes sent and received over the last [`COST_WINDOW`].
#[derive(Clone, Debug, Default)]
struct ProbeCost {
    since: Option<Instant>,
    bytes: VecDeque<(Instant, u64)>,
}

impl ProbeCost {
    fn add(&mut self, bytes: u64, now: Instant) {
        self.since.get_or_insert(now);
        self.bytes.push_back((now, bytes));
        self.prune(now);
    }

    fn prune(&mut self, now: Instant) {
        while self
            .bytes
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > COST_WINDOW)
        {
            self.bytes.pop_front();
        }
    }

    fn per_day(&self, now: Instant) -> Option<u64> {
        let since = self.since?;
        let start = now.checked_sub(COST_WINDOW).map_or(since, |s| s.max(since));
        let elapsed = now.saturating_duration_since(start).as_secs_f64().max(1.0);
        let bytes: u64 = self
            .bytes
            .iter()
            .filter(|(at, _)| *at >= start)
            .map(|(_, b)| b)
            .sum();
        Some((bytes as f64 * 86_400.0 / elapsed).round() as u64)
    }
}

/// The probe state of one WAN.
#[derive(Clone, Debug)]
pub struct ProbeState {
    settings: ProbeSettings,
    health: Health,
    fails_in_row: u32,
    oks_in_row: u32,
    /// Outcomes of the last `window` probes, oldest first: `Some(rtt)` or `None` (failed).
    history: VecDeque<Option<Duration>>,
    carrier: bool,
    /// When the probe in flight was sent.
    in_flight: Option<Instant>,
    /// When the last probe was sent.
    last_sent: Option<Instant>,
    /// Probe at the short interval until `up` successes in a row.
    suspicious: bool,
    /// Passive samples showed traffic; unprobed until then.
    busy_until: Option<Instant>,
    up_since: Option<Instant>,
    down_since: Option<Instant>,
    cost: ProbeCost,
}

impl ProbeState {
    /// A WAN not probed yet (`Unknown`).
    pub fn new(settings: ProbeSettings) -> Self {
        ProbeState {
            settings,
            health: Health::Unknown,
            fails_in_row: 0,
            oks_in_row: 0,
            history: VecDeque::new(),
            carrier: true,
            in_flight: None,
            last_sent: None,
            suspicious: false,
            busy_until: None,
            up_since: None,
            down_since: None,
            cost: ProbeCost::default(),
        }
    }

    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Probing at the short interval (a miss, a passive warning, traffic that stopped).
    pub fn suspicious(&self, now: Instant) -> bool {
        self.suspicious || self.busy_until.is_some_and(|until| until <= now)
    }

    /// Carrying traffic by the last passive sample, so not probed while healthy.
    pub fn busy(&self, now: Instant) -> bool {
        self.busy_until.is_some_and(|until| until > now)
    }

    fn healthy(&self) -> bool {
        matches!(self.health, Health::Up | Health::Degraded)
    }

    /// When the next probe is due (at or before `now`: now); `None` while the link is
    /// lost or a probe is in flight. A busy healthy WAN is due when its traffic stops.
    pub fn due_at(&self, now: Instant) -> Option<Instant> {
        if !self.carrier || self.in_flight.is_some() {
            return None;
        }
        let suspicious = self.suspicious(now);
        if let Some(until) = self.busy_until {
            if until > now && self.healthy() && !suspicious {
                return Some(until);
            }
        }
        let Some(last) = self.last_sent else {
            return Some(now);
        };
        let fast = match self.health {
            Health::Unknown => true,
            Health::Down => self.down_since.map_or(true, |since| {
                now.saturating_duration_since(since) < DOWN_FAST_FOR
            }),
            Health::Up | Health::Degraded => suspicious,
        };
        let gap = if fast {
            self.settings.interval
        } else {
            self.settings.idle_interval
        };
        Some(last + gap.max(Duration::from_millis(1)))
    }

    /// If a probe is due at `now`, mark it in flight and return its timeout.
    pub fn start_probe(&mut self, now: Instant) -> Option<Duration> {
        if self.due_at(now)? > now {
            return None;
        }
        self.in_flight = Some(now);
        self.last_sent = Some(now);
        Some(self.probe_timeout())
    }

    /// The probe in flight will not report (its task stopped): forget it.
    pub fn cancel_probe(&mut self) {
        self.in_flight = None;
    }

    /// The timeout of the next probe: 3 RTTs + 50 ms, at least [`MIN_PROBE_TIMEOUT`], at
    /// most `timeout` (which it is until an RTT is known).
    pub fn probe_timeout(&self) -> Duration {
        match self.rtt() {
            Some(rtt) => (rtt * 3 + Duration::from_millis(50))
                .max(MIN_PROBE_TIMEOUT)
                .min(self.settings.timeout),
            None => self.settings.timeout,
        }
    }

    /// Count `bytes` of probe traffic (sent and received, with IP and UDP headers).
    pub fn record_cost(&mut self, bytes: u64, now: Instant) {
        self.cost.add(bytes, now);
    }

    /// The probes' cost in bytes a day, extrapolated from the last [`COST_WINDOW`].
    pub fn probe_bytes_per_day(&self, now: Instant) -> Option<u64> {
        self.cost.per_day(now)
    }

    /// Feed one probe outcome at `now`: `Some(rtt)` for a success, `None` for a failure
    /// or timeout. Ignored while the link is lost. Returns the health change, if any.
    pub fn record(&mut self, outcome: Option<Duration>, now: Instant) -> Option<Transition> {
        self.in_flight = None;
        if !self.carrier {
            return None;
        }
        if self.busy_until.is_some_and(|until| until <= now) {
            // The passive samples stopped coming: the traffic stopped.
            self.busy_until = None;
            self.suspect();
        }
        let window = self.settings.window.max(1);
        self.history.push_back(outcome);
        while self.history.len() > window {
            self.history.pop_front();
        }
        let before = self.health;
        match outcome {
            Some(_) => {
                self.oks_in_row = self.oks_in_row.saturating_add(1);
                self.fails_in_row = 0;
            }
            None => {
                self.fails_in_row = self.fails_in_row.saturating_add(1);
                self.suspect();
            }
        }
        let up = self.settings.up.max(1);
        let down = self.settings.down.max(1);
        if self.oks_in_row >= up {
            self.suspicious = false;
        }
        self.health = match before {
            _ if self.fails_in_row >= down => Health::Down,
            Health::Unknown | Health::Down if self.oks_in_row >= up => {
                // Forget the failures that led here: keep the successes that brought it back.
                let keep = self.oks_in_row as usize;
                while self.history.len() > keep {
                    self.history.pop_front();
                }
                self.up_or_degraded()
            }
            Health::Up | Health::Degraded => self.up_or_degraded(),
            other => other,
        };
        self.stamp(before, now);
        self.transition(before)
    }

    /// Feed one passive sample of the WAN's subflows (see the module docs). Returns the
    /// health change, if any (`down` on a stall).
    pub fn passive(&mut self, sample: &PassiveSample, now: Instant) -> Option<Transition> {
        if !self.carrier {
            return None;
        }
        if sample.active {
            self.busy_until = Some(now + PASSIVE_FRESH);
        } else if self.busy_until.take().is_some() {
            // Traffic stopped: make sure it was not the WAN that stopped it.
            self.suspect();
        }
        let wait = sample.ack_wait.filter(|_| sample.retransmitting)?;
        let stalled_since = now.checked_sub(wait);
        let news = match (stalled_since, self.up_since) {
            (Some(since), Some(up)) => since >= up,
            _ => true,
        };
        if !self.healthy() || !news {
            return None;
        }
        let threshold = stall_threshold(sample.srtt);
        if wait * 2 >= threshold && !self.suspicious {
            self.suspect();
        }
        if wait < threshold {
            return None;
        }
        let before = self.health;
        self.health = Health::Down;
        self.oks_in_row = 0;
        self.busy_until = None;
        self.stamp(before, now);
        self.transition(before)
    }

    /// Carrier loss or address removal: `Down` at once, counters reset, no probing until
    /// [`link_restored`](Self::link_restored).
    pub fn link_lost(&mut self) -> Option<Transition> {
        let before = self.health;
        self.carrier = false;
        self.health = Health::Down;
        self.fails_in_row = 0;
        self.oks_in_row = 0;
        self.in_flight = None;
        self.busy_until = None;
        self.transition(before)
    }

    /// The link (carrier and a usable address) is back: `Unknown`, probe at once.
    pub fn link_restored(&mut self) -> Option<Transition> {
        if self.carrier {
            return None;
        }
        let before = self.health;
        self.carrier = true;
        self.health = Health::Unknown;
        self.fails_in_row = 0;
        self.oks_in_row = 0;
        self.history.clear();
        self.last_sent = None;
        self.suspicious = false;
        self.up_since = None;
        self.down_since = None;
        self.transition(before)
    }

    /// Median RTT of the successful probes in the window.
    pub fn rtt(&self) -> Option<Duration> {
        let mut rtts: Vec<Duration> = self.history.iter().flatten().copied().collect();
        if rtts.is_empty() {
            return None;
        }
        rtts.sort_unstable();
        let mid = rtts.len() / 2;
        Some(if rtts.len() % 2 == 1 {
            rtts[mid]
        } else {
            (rtts[mid - 1] + rtts[mid]) / 2
        })
    }

    /// Failed / sent over the window, 0.0..=1.0 (0.0 when nothing was sent).
    pub fn loss(&self) -> f64 {
        if self.history.is_empty() {
            return 0.0;
        }
        let failed = self.history.iter().filter(|o| o.is_none()).count();
        failed as f64 / self.history.len() as f64
    }

    /// Probes in the window (sent and answered or failed).
    pub fn sent(&self) -> usize {
        self.history.len()
    }

    fn up_or_degraded(&self) -> Health {
        if self.loss() * 100.0 > f64::from(self.settings.degraded_loss_pct) {
            Health::Degraded
        } else {
            Health::Up
        }
    }

    /// Probe at the short interval until `up` successes in a row from now.
    fn suspect(&mut self) {
        self.suspicious = true;
        self.oks_in_row = 0;
    }

    /// Remember when the WAN entered `up`/`degraded` or `down`.
    fn stamp(&mut self, before: Health, now: Instant) {
        let was_healthy = matches!(before, Health::Up | Health::Degraded);
        match self.health {
            Health::Up | Health::Degraded if !was_healthy => self.up_since = Some(now),
            Health::Down if before != Health::Down => self.down_since = Some(now),
            _ => {}
        }
    }

    fn transition(&self, from: Health) -> Option<Transition> {
        (from != self.health).then_some(Transition {
            from,
            to: self.health,
        })
    }
}

#[cfg(test)]
mod tests;
