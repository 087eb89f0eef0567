//! One reconcile: snapshot → WANs → plan → dump → diff → apply, behind the [`KernelPort`]
//! seam so it runs without root on a [`RecordingBackend`](crate::net::backend::RecordingBackend).
//!
//! With a netifd view (OpenWrt, [`Reconciler::set_netifd`]) the configured WANs' devices
//! come from netifd first (`ubus::Resolver`), and netifd's up/down and gateways adjust
//! the discovered WANs; without one the settings are used as configured.
//!
//! A failed op is logged with its error and the rest still run; the next reconcile
//! retries, since it diffs against a fresh dump. Plan warnings are logged once each, while
//! they last. `rp_filter` is set to loose once per WAN device, when it first appears.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Instant;

use tracing::{debug, info, warn};

use crate::core::metered::MeteredPolicy;
use crate::core::path_quality::{PathQuality, PathSample, QualityChange, QualitySettings};
use crate::model::netops::{Limits, NetOp, Ownership};
use crate::model::routing::{self, Plan, Slots};
use crate::model::wan::{self, Snapshot, Wan, WanSettings};
use crate::model::wan_book::{WanBook, WanEvent};
use crate::net::backend::{NetBackend, NetError};
use crate::net::Kernel;
use crate::ubus::{NetifdView, Resolver};

/// The kernel as the control loop uses it: the [`NetBackend`] plus what it reads and sets
/// besides owned objects.
pub trait KernelPort: NetBackend {
    /// Links, addresses and main-table routes.
    fn snapshot(&mut self) -> impl Future<Output = Result<Snapshot, NetError>>;
    /// `rp_filter` = loose (2) on `device`.
    fn loosen_rp_filter(&mut self, device: &str) -> Result<(), NetError>;
}

impl KernelPort for Kernel {
    async fn snapshot(&mut self) -> Result<Snapshot, NetError> {
        Kernel::snapshot(self).await
    }

    fn loosen_rp_filter(&mut self, device: &str) -> Result<(), NetError> {
        crate::net::sysctl::set_rp_filter_loose(device)
    }
}

/// What a reconcile found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub snapshot: Snapshot,
    /// The WANs, with their health as planned.
    pub wans: Vec<Wan>,
    pub plan: Plan,
    /// Health changes seen in the snapshot (already logged).
    pub events: Vec<WanEvent>,
    /// Ops applied successfully (diff and endpoint refreshes).
    pub applied: Vec<NetOp>,
    /// Ops the kernel refused.
    pub failed: usize,
    /// Reconcile again at this time: a metered WAN's demotion is due.
    pub metered_wake: Option<Instant>,
}

/// The reconcile state kept between runs.
#[derive(Debug)]
pub struct Reconciler {
    settings: WanSettings,
    lan: Vec<String>,
    own: Ownership,
    limits: Limits,
    down_reaction: routing::DownReaction,
    slots: Slots,
    warned: BTreeSet<String>,
    rp_done: BTreeSet<String>,
    runs: u64,
    netifd: Resolver,
    pub book: WanBook,
    /// Which metered WANs are held back (`core::metered`).
    metered: MeteredPolicy,
    /// The WANs past their monthly allowance (from the control plane's usage book).
    over_allowance: BTreeSet<String>,
    /// Which WANs hurt the bond and are demoted to backup (`core::path_quality`).
    quality: PathQuality,
    quality_settings: QualitySettings,
}

impl Reconciler {
    pub fn new(settings: WanSettings, lan: Vec<String>, own: Ownership, limits: Limits) -> Self {
        Reconciler {
            book: WanBook::new(settings.clone()),
            settings,
            lan,
            own,
            limits,
            down_reaction: routing::DownReaction::default(),
            slots: Slots::default(),
            warned: BTreeSet::new(),
            rp_done: BTreeSet::new(),
            runs: 0,
            netifd: Resolver::default(),
            metered: MeteredPolicy::default(),
            over_allowance: BTreeSet::new(),
            quality: PathQuality::default(),
            quality_settings: QualitySettings::default(),
        }
    }

    /// The path-quality knobs from now on (start and reload).
    pub fn set_quality_settings(&mut self, settings: QualitySettings) {
        self.quality_settings = settings;
    }

    /// Feed the path-quality policy one sample per WAN; the demotions and restorations
    /// are logged here, one line each, and returned (reconcile when there are any).
    pub fn observe_quality(
        &mut self,
        samples: &[(String, PathSample)],
        wans: &[Wan],
        now: Instant,
    ) -> Vec<QualityChange> {
        let changes = self
            .quality
            .observe(samples, wans, &self.quality_settings, now);
        log_quality(&changes);
        changes
    }

    /// Judge the unjudged WANs on their probes' RTT so far (a probe answered); true if
    /// any was judged (reconcile then).
    pub fn first_look(&mut self, wans: &[Wan], now: Instant) -> bool {
        if !self.quality.any_unjudged(wans) {
            return false;
        }
        let rtts: Vec<(String, std::time::Duration)> = wans
            .iter()
            .filter_map(|w| {
                Some((
                    w.name.clone(),
                    self.book.entries().get(&w.name)?.probe.rtt()?,
                ))
            })
            .collect();
        let changes = self
            .quality
            .first_look(&rtts, wans, &self.quality_settings, now);
        log_quality(&changes);
        !changes.is_empty()
    }

    /// The path-quality verdicts, for the status.
    pub fn quality(&self) -> &PathQuality {
        &self.quality
    }

    /// New WAN settings, LAN interfaces and MPTCP limits (a reload). The next reconcile
    /// diffs against the kernel as usual, so only what changed is touched: a removed
    /// WAN's table, rule and endpoint go, an added one's are built.
    pub fn reconfigure(&mut self, settings: WanSettings, lan: Vec<String>, limits: Limits) {
        self.book.set_settings(settings.clone());
        self.settings = settings;
        self.lan = lan;
        self.limits = limits;
    }

    /// What becomes of a down WAN's endpoints from the next reconcile on.
    pub fn set_down_reaction(&mut self, reaction: routing::DownReaction) {
        self.down_reaction = reaction;
    }

    /// Resolve the configured WANs through this netifd view from the next reconcile on
    /// (`None`: as configured).
    pub fn set_netifd(&mut self, view: Option<NetifdView>) {
        self.netifd.set_view(view);
    }

    /// The WANs past their allowance from now on; true if that changed (reconcile then).
    pub fn set_over_allowance(&mut self, over: BTreeSet<String>) -> bool {
        let changed = over != self.over_allowance;
        if changed {
            info!(wans = ?over, "WANs past their monthly allowance");
        }
        self.over_allowance = over;
        changed
    }

    /// The WAN settings (probe thresholds and the configured list).
    pub fn settings(&self) -> &WanSettings {
        &self.settings
    }

    /// Bring the kernel in line with the WANs once. Errs only if the snapshot or the dump
    /// fails (nothing was applied then).
    pub async fn reconcile<K: KernelPort>(&mut self, kernel: &mut K) -> Result<Outcome, NetError> {
        let snapshot = kernel.snapshot().await?;
        let health = self.book.health_map();
        let (settings, notes) = self.netifd.settings(&self.settings);
        for note in notes {
            warn!(%note, "netifd");
        }
        let mut wans = wan::discover(&snapshot, &settings, &self.lan, &health);
        self.netifd.adjust(&mut wans);
        let events = self.book.observe(&mut wans);
        for event in &events {
            event.log();
        }
        let metered = self
            .metered
            .decide(&mut wans, &self.over_allowance, Instant::now());
        for change in &metered.changes {
            let what = if change.standby {
                "holding back a metered WAN: a better WAN is up"
            } else {
                "using a metered WAN: no better WAN is up"
            };
            info!(wan = %change.wan, tier = ?change.tier, "{what}");
        }
        self.quality.apply(&mut wans, &self.quality_settings);
        self.loosen_rp_filters(kernel, &wans);
        let plan = routing::plan_reacting(
            &wans,
            &self.own,
            self.limits,
            &mut self.slots,
            self.down_reaction,
        );
        self.log_warnings(&plan.warnings);

        let current = kernel.dump().await?;
        let ops = routing::diff(&current, &plan.desired);
        let mut out = Outcome {
            snapshot,
            events,
            metered_wake: metered.wake,
            ..Outcome::default()
        };
        for op in &ops {
            apply(kernel, op, &mut out).await;
        }
        for name in self.book.take_refresh() {
            let Some(wan) = wans.iter().find(|w| w.name == name) else {
                continue;
            };
            let just_added = out.applied.iter().any(
                |op| matches!(op, NetOp::AddEndpoint(e) if wan.addresses.iter().any(|a| a.addr() == e.addr)),
            );
            if just_added {
                continue;
            }
            let refresh = routing::refresh_endpoints(&plan.desired, wan);
            if !refresh.is_empty() {
                info!(wan = %name, "re-adding the endpoints of a recovered WAN");
            }
            for op in &refresh {
                apply(kernel, op, &mut out).await;
            }
        }

        let n = out.applied.len();
        if n > 0 || out.failed > 0 || self.runs == 0 {
            info!(
                ops = n,
                failed = out.failed,
                wans = wans.len(),
                "reconciled"
            );
        } else {
            debug!(ops = n, wans = wans.len(), "reconciled");
        }
        self.runs += 1;
        out.wans = wans;
        out.plan = plan;
        Ok(out)
    }

    fn loosen_rp_filters<K: KernelPort>(&mut self, kernel: &mut K, wans: &[Wan]) {
        for wan in wans.iter().filter(|w| w.ifindex != 0) {
            if self.rp_done.contains(&wan.device) {
                continue;
            }
            match kernel.loosen_rp_filter(&wan.device) {
                Ok(()) => {
                    info!(device = %wan.device, "rp_filter set to loose (2) for asymmetric paths")
                }
                Err(error) => warn!(device = %wan.device, %error, "cannot set rp_filter loose"),
            }
            self.rp_done.insert(wan.device.clone());
        }
        // A device that disappears gets rp_filter again when it comes back.
        self.rp_done
            .retain(|d| wans.iter().any(|w| &w.device == d && w.ifindex != 0));
    }

    fn log_warnings(&mut self, warnings: &[String]) {
        for w in warnings {
            if !self.warned.contains(w) {
                warn!(warning = %w, "plan");
            }
        }
        self.warned = warnings.iter().cloned().collect();
    }
}

async fn apply<K: KernelPort>(kernel: &mut K, op: &NetOp, out: &mut Outcome) {
    match kernel.apply(op).await {
        Ok(()) => {
            info!(?op, "applied");
            out.applied.push(op.clone());
        }
        Err(error) => {
            warn!(?op, %error, "op failed, retrying at the next reconcile");
            out.failed += 1;
        }
    }
}

/// One log line per path-quality change.
fn log_quality(changes: &[QualityChange]) {
    for change in changes {
        let (wan, reason) = (&change.wan, &change.reason);
        match (change.demoted, change.first_look) {
            (true, _) => warn!(%wan, %reason, "WAN demoted to backup: it hurts the bond"),
            (false, true) => info!(%wan, %reason, "WAN judged fit: it joins the bond"),
            (false, false) => info!(%wan, %reason, "WAN restored from backup"),
        }
    }
}
