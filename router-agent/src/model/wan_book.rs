//! Per-WAN health bookkeeping: one [`ProbeState`] per known WAN, fed by link changes (from
//! each reconcile's snapshot) and by probe reports, and the probe targets the WANs need.
//!
//! * [`WanBook::observe`] runs on every reconcile. It adds WANs that appeared, forgets
//!   those that are gone, and turns a link that lost carrier, its last usable address or
//!   its device into `ProbeState::link_lost` at once (`wan down ... reason=link_down`),
//!   and a link that came back into `link_restored` (health `unknown` until the probes
//!   decide). It then writes each WAN's health into the [`Wan`]s about to be planned.
//! * [`WanBook::record`] feeds one probe outcome to the WAN's state machine, and
//!   [`WanBook::passive`] one sample of its subflows (a stall is `down`, cause `passive`).
//! * [`WanBook::start_due_probes`] says which WANs to probe now (and with which
//!   timeout), [`WanBook::next_probe_at`] when to ask again: the schedule is the state
//!   machine's (`model::wan_health`).
//! * A WAN that comes back `up` from `down`, or from `unknown` after a restored link, is
//!   queued for an endpoint refresh ([`WanBook::take_refresh`]): the kernel never
//!   re-creates a subflow that died on its own, so the endpoint is deleted and re-added.
//! * [`probe_targets`]: which WAN is probed from which source address.
//!
//! Pure: no I/O and no clock. The caller logs the returned [`WanEvent`]s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::model::wan::{Health, Mode, Wan, WanSettings};
use crate::model::wan_health::ProbeTarget;
use crate::model::wan_health::{PassiveSample, ProbeState, Transition};

/// A health change of one WAN, to log and act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WanEvent {
    /// The probes brought it up (from `down` or `unknown`).
    Up { name: String, device: String },
    /// It went down: `reason` is `link_down`, `no_address`, `no_device`, `probe` or
    /// `passive` (a stalled subflow).
    Down {
        name: String,
        device: String,
        reason: &'static str,
    },
    /// Its link came back: `unknown` until the probes decide.
    LinkRestored { name: String, device: String },
    /// Up, but losing more probes than the threshold.
    Degraded { name: String },
    /// Back from `degraded` to `up`.
    Recovered { name: String },
}

impl WanEvent {
    /// Log it: `wan up name=.. device=..`, `wan down name=.. reason=..`, and so on.
    pub fn log(&self) {
        match self {
            WanEvent::Up { name, device } => info!(%name, %device, "wan up"),
            WanEvent::Down {
                name,
                device,
                reason,
            } => warn!(%name, %reason, %device, "wan down"),
            WanEvent::LinkRestored { name, device } => {
                info!(%name, %device, "wan link restored, probing")
            }
            WanEvent::Degraded { name } => warn!(%name, "wan degraded"),
            WanEvent::Recovered { name } => info!(%name, "wan no longer degraded"),
        }
    }

    /// What caused it, for the status: `link`, `passive` or `probe`.
    pub fn cause(&self) -> &'static str {
        match self {
            WanEvent::Down {
                reason: "probe", ..
            } => "probe",
            WanEvent::Down {
                reason: "passive", ..
            } => "passive",
            WanEvent::Down { .. } | WanEvent::LinkRestored { .. } => "link",
            WanEvent::Up { .. } | WanEvent::Degraded { .. } | WanEvent::Recovered { .. } => "probe",
        }
    }

    /// The WAN it is about.
    pub fn name(&self) -> &str {
        match self {
            WanEvent::Up { name, .. }
            | WanEvent::Down { name, .. }
            | WanEvent::LinkRestored { name, .. }
            | WanEvent::Degraded { name }
            | WanEvent::Recovered { name } => name,
        }
    }

    /// Whether the plan changes: a WAN entered or left `down`.
    pub fn changes_plan(&self) -> bool {
        matches!(
            self,
            WanEvent::Up { .. } | WanEvent::Down { .. } | WanEvent::LinkRestored { .. }
        )
    }
}

/// What the book knows of one WAN.
#[derive(Clone, Debug)]
pub struct WanEntry {
    pub device: String,
    pub probe: ProbeState,
    /// `link_restored` happened and the probes have not said `up` since.
    restored: bool,
}

/// Every known WAN's health, by name.
#[derive(Debug)]
pub struct WanBook {
    settings: WanSettings,
    entries: BTreeMap<String, WanEntry>,
    refresh: BTreeSet<String>,
}

impl WanBook {
    pub fn new(settings: WanSettings) -> WanBook {
        WanBook {
            settings,
            entries: BTreeMap::new(),
            refresh: BTreeSet::new(),
        }
    }

    /// New settings (a reload). A WAN whose probe settings changed starts its probe
    /// state afresh; the others keep their health.
    pub fn set_settings(&mut self, settings: WanSettings) {
        self.entries
            .retain(|name, entry| entry.probe.settings() == settings.probe_for(name));
        self.refresh.retain(|name| self.entries.contains_key(name));
        self.settings = settings;
    }

    /// The entries, by WAN name.
    pub fn entries(&self) -> &BTreeMap<String, WanEntry> {
        &self.entries
    }

    /// The probe verdicts, for `model::wan::discover`.
    pub fn health_map(&self) -> HashMap<String, Health> {
        self.entries
            .iter()
            .map(|(name, e)| (name.clone(), e.probe.health()))
            .collect()
    }

    /// Follow the WANs of a fresh snapshot (see the module docs) and set their health.
    pub fn observe(&mut self, wans: &mut [Wan]) -> Vec<WanEvent> {
        self.entries
            .retain(|name, _| wans.iter().any(|w| &w.name == name));
        self.refresh.retain(|name| self.entries.contains_key(name));
        let mut events = Vec::new();
        for wan in wans.iter_mut() {
            let settings = self.settings.probe_for(&wan.name).clone();
            let entry = self
                .entries
                .entry(wan.name.clone())
                .or_insert_with(|| WanEntry {
                    device: wan.device.clone(),
                    probe: ProbeState::new(settings),
                    restored: false,
                });
            entry.device.clone_from(&wan.device);
            if wan.mode == Mode::Off {
                wan.health = Health::Unknown;
                continue;
            }
            if wan.link_up {
                if let Some(t) = entry.probe.link_restored() {
                    entry.restored = true;
                    debug_assert_eq!(t.to, Health::Unknown);
                    events.push(WanEvent::LinkRestored {
                        name: wan.name.clone(),
                        device: wan.device.clone(),
                    });
                }
                wan.health = entry.probe.health();
            } else {
                if entry.probe.link_lost().is_some() {
                    events.push(WanEvent::Down {
                        name: wan.name.clone(),
                        device: wan.device.clone(),
                        reason: link_reason(wan),
                    });
                }
                entry.restored = false;
                wan.health = Health::Down;
            }
        }
        events
    }

    /// Feed one probe outcome (`Some(rtt)` or `None`) of WAN `name`, ended at `now`.
    pub fn record(&mut self, name: &str, outcome: Option<Duration>, now: Instant) -> Vec<WanEvent> {
        let Some(entry) = self.entries.get_mut(name) else {
            return Vec::new();
        };
        let transition = entry.probe.record(outcome, now);
        self.event(name, transition, "probe")
    }

    /// Feed one passive sample of WAN `name`'s subflows.
    pub fn passive(&mut self, name: &str, sample: &PassiveSample, now: Instant) -> Vec<WanEvent> {
        let Some(entry) = self.entries.get_mut(name) else {
            return Vec::new();
        };
        let transition = entry.probe.passive(sample, now);
        self.event(name, transition, "passive")
    }

    /// Count `bytes` of probe traffic of WAN `name`.
    pub fn record_cost(&mut self, name: &str, bytes: u64, now: Instant) {
        if let Some(entry) = self.entries.get_mut(name) {
            entry.probe.record_cost(bytes, now);
        }
    }

    /// The WANs to probe now, each with its probe's timeout; they are in flight until
    /// their [`record`](Self::record).
    /// Only WANs that `can_probe` (they have a probe task) are considered.
    pub fn start_due_probes(
        &mut self,
        now: Instant,
        can_probe: impl Fn(&str) -> bool,
    ) -> Vec<(String, Duration)> {
        self.entries
            .iter_mut()
            .filter(|(name, _)| can_probe(name))
            .filter_map(|(name, e)| Some((name.clone(), e.probe.start_probe(now)?)))
            .collect()
    }

    /// When a probe is next due among the WANs that `can_probe` (`None`: none is).
    pub fn next_probe_at(&self, now: Instant, can_probe: impl Fn(&str) -> bool) -> Option<Instant> {
        self.entries
            .iter()
            .filter(|(name, _)| can_probe(name))
            .filter_map(|(_, e)| e.probe.due_at(now))
            .min()
    }

    /// WAN `name`'s probe in flight will not report (its task stopped).
    pub fn cancel_probe(&mut self, name: &str) {
        if let Some(entry) = self.entries.get_mut(name) {
            entry.probe.cancel_probe();
        }
    }

    fn event(
        &mut self,
        name: &str,
        transition: Option<Transition>,
        reason: &'static str,
    ) -> Vec<WanEvent> {
        let Some(Transition { from, to }) = transition else {
            return Vec::new();
        };
        let Some(entry) = self.entries.get_mut(name) else {
            return Vec::new();
        };
        let name = name.to_owned();
        let device = entry.device.clone();
        let event = match (from, to) {
            (_, Health::Down) => WanEvent::Down {
                name,
                device,
                reason,
            },
            (Health::Up, Health::Degraded) => WanEvent::Degraded { name },
            (Health::Degraded, Health::Up) => WanEvent::Recovered { name },
            (from, Health::Up | Health::Degraded) => {
                if from == Health::Down || entry.restored {
                    self.refresh.insert(name.clone());
                }
                entry.restored = false;
                WanEvent::Up { name, device }
            }
            (_, Health::Unknown) => return Vec::new(),
        };
        vec![event]
    }

    /// The WANs whose endpoints should be deleted and re-added (and forget them).
    pub fn take_refresh(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.refresh)
    }
}

/// Why a WAN's link does not count as up.
fn link_reason(wan: &Wan) -> &'static str {
    if wan.ifindex == 0 {
        "no_device"
    } else if wan.addresses.is_empty() {
        "no_address"
    } else {
        "link_down"
    }
}

/// The probe each WAN needs: every WAN that is not `off`, whose link is up and that has
/// an address of the concentrator's family (the first such address is the source).
pub fn probe_targets(wans: &[Wan], concentrator: SocketAddr) -> BTreeMap<String, ProbeTarget> {
    wans.iter()
        .filter(|w| w.mode != Mode::Off && w.link_up)
        .filter_map(|w| {
            let src: IpAddr = w
                .addresses
                .iter()
                .map(|a| a.addr())
                .find(|a| a.is_ipv4() == concentrator.is_ipv4())?;
            let target = ProbeTarget {
                wan: w.name.clone(),
                device: w.device.clone(),
                src,
            };
            Some((w.name.clone(), target))
        })
        .collect()
}
