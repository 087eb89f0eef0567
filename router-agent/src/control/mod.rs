//! The control plane: keeps the kernel's per-WAN tables, rules and MPTCP endpoints in
//! step with the router's WANs and their health, and keeps the status model current.
//!
//! ```text
//! mod.rs        start() (features, sysctls, Kernel::connect, crash cleanup) and the loop
//! reconcile.rs  one reconcile behind the KernelPort seam (snapshot → plan → diff → apply)
//! subflows.rs   live subflow counts from mptcp_pm events
//! status.rs     publishing into the shared StatusModel (WANs, probes, subflows, counters)
//! ```
//!
//! # The loop ([`ControlPlane::run`])
//!
//! A reconcile runs at start, then
//! * [`DEBOUNCE`] after the last of a burst of rtnetlink nudges (`net::monitor`);
//! * every `routing.reconcile`, for drift and missed events;
//! * at once when a probe moves a WAN into or out of `down`.
//!
//! Every [`COUNTERS_EVERY`] a snapshot refreshes the WANs' byte counters (status rates).
//!
//! Link loss needs no probe: the nudge's reconcile sees the link down (or its address
//! gone) and marks the WAN down at once. One `wan_probe::ProbeLoop` runs per WAN with a
//! usable address of the concentrator's family, restarted when its device or source
//! changes and stopped when the WAN goes. A monitor or event stream that ends is
//! re-subscribed.
//!
//! On OpenWrt (a ubus socket, `routing.ubus_socket`) a `ubus::watch` task keeps netifd's
//! view current; the first reconcile waits up to [`NETIFD_FIRST_WAIT`] for it, and every
//! new view triggers a reconcile that resolves the WANs' devices through it. Without a
//! socket nothing of this runs.
//!
//! On shutdown the loops stop, the netifd watcher stops, and `Kernel::cleanup` removes
//! everything owned (`control plane cleaned up removed=N`).

pub mod reconcile;
pub mod status;
pub mod subflows;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::core::Input;
use crate::model::wan::Wan;
use crate::net::backend::NetError;
use crate::net::features::{self, KernelFeatures};
use crate::net::{sysctl, Kernel, Monitor};
use crate::proxy::ConnParams;
use crate::status::KernelStatus;
use crate::ubus::{NetifdView, WatchOpts};
use crate::wan_probe::{ProbeLoop, ProbeReport, ProbeTarget};

pub use crate::model::wan_book::{probe_targets, WanBook, WanEvent};
pub use reconcile::{KernelPort, Outcome, Reconciler};
pub use status::SharedStatus;
pub use subflows::SubflowCounter;

/// Quiet time after the last rtnetlink nudge before the reconcile.
pub const DEBOUNCE: Duration = Duration::from_millis(30);
/// Bound on one reconcile (a kernel that stops answering must not wedge the loop).
pub const RECONCILE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the cleanup at shutdown.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the WANs' device counters are sampled for the status rates.
pub const COUNTERS_EVERY: Duration = Duration::from_secs(2);
/// How long the first reconcile waits for netifd's first dump.
pub const NETIFD_FIRST_WAIT: Duration = Duration::from_secs(3);

/// The running netifd watcher: its views, and a guard that stops it when dropped.
#[derive(Debug)]
struct Netifd {
    views: watch::Receiver<Option<NetifdView>>,
    _stop: DropGuard,
}

impl Netifd {
    /// Start the watcher on `socket` and wait up to [`NETIFD_FIRST_WAIT`] for a view.
    async fn start(socket: std::path::PathBuf) -> Netifd {
        info!(socket = %socket.display(), "asking netifd over ubus for the WAN devices");
        let (tx, mut views) = watch::channel(None);
        let stop = CancellationToken::new();
        tokio::spawn(crate::ubus::watch(WatchOpts::new(socket), tx, stop.clone()));
        if tokio::time::timeout(NETIFD_FIRST_WAIT, views.changed())
            .await
            .is_err()
        {
            warn!(
                "no netifd view after {NETIFD_FIRST_WAIT:?}; \
                 WAN devices as configured until it comes"
            );
        }
        Netifd {
            views,
            _stop: stop.drop_guard(),
        }
    }
}

/// Probe features (into the status) and apply the CPE sysctls; logs what is missing.
pub fn prepare(config: &Config, status: &SharedStatus) -> KernelFeatures {
    let found = features::probe();
    for missing in found.missing() {
        warn!("kernel feature missing: {missing}");
    }
    status::lock(status).set_kernel(KernelStatus::from(&found));
    let report = sysctl::apply_cpe(&config.mptcp);
    let missing = report.missing();
    if !missing.is_empty() {
        warn!(?missing, "MPTCP sysctls not in this kernel");
    }
    if !report.all_set() {
        warn!("some MPTCP sysctls could not be set (see above)");
    }
    found
}

/// What the driver tells the running control plane.
#[derive(Debug)]
pub enum ControlCommand {
    /// A reload changed the WANs, routing, ubus or MPTCP settings (or the concentrator):
    /// apply the new config in place.
    Reconfigure(Arc<Config>),
}

/// Where the control plane sends what the decision core needs.
pub type CoreEvents = mpsc::UnboundedSender<Input>;

/// The running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    kernel: Kernel,
    reconciler: Reconciler,
    config: Arc<Config>,
    params: watch::Receiver<Arc<ConnParams>>,
    core: CoreEvents,
    status: SharedStatus,
    netifd: Option<Netifd>,
}

impl ControlPlane {
    /// Connect to the kernel and remove leftovers of a previous run. Fails if there is no
    /// rtnetlink socket or no MPTCP path manager.
    pub async fn start(
        config: Arc<Config>,
        params: watch::Receiver<Arc<ConnParams>>,
        core: CoreEvents,
        status: SharedStatus,
    ) -> Result<ControlPlane, NetError> {
        let mut kernel = Kernel::connect(config.routing.ownership.clone()).await?;
        match tokio::time::timeout(CLEANUP_TIMEOUT, kernel.cleanup()).await {
            Err(_) => warn!("removing the leftovers of a previous run timed out"),
            Ok(Ok(0)) => debug!("no leftovers of a previous run"),
            Ok(Ok(n)) => warn!(removed = n, "removed leftovers of a previous run"),
            Ok(Err(error)) => warn!(%error, "cannot remove every leftover of a previous run"),
        }
        let mut reconciler = new_reconciler(&config);
        let netifd = start_netifd(&config, &mut reconciler).await;
        // The first reconcile, so the tables exist when the agent says it is ready.
        let first = tokio::time::timeout(RECONCILE_TIMEOUT, reconciler.reconcile(&mut kernel));
        match first.await {
            Ok(Ok(out)) => {
                let book = &reconciler.book;
                status::publish(&status, &out, book, &SubflowCounter::default());
                let _ = core.send(Input::WansPlanned(out.wans));
            }
            Ok(Err(error)) => error!(%error, "first reconcile failed, retrying"),
            Err(_) => error!("first reconcile timed out, retrying"),
        }
        Ok(ControlPlane {
            kernel,
            reconciler,
            config,
            params,
            core,
            status,
            netifd,
        })
    }

    /// Run until `shutdown`, then clean up everything owned. `commands` brings reloads.
    pub async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<ControlCommand>,
        shutdown: CancellationToken,
    ) {
        let (tx, mut reports) = mpsc::channel::<ProbeReport>(64);
        let mut probes = Probes {
            loops: HashMap::new(),
            params: self.params.clone(),
            tx,
            shutdown: shutdown.child_token(),
        };
        let mut nudges = subscribe_monitor();
        let mut events = self.subscribe_events().await;
        let mut subflows = SubflowCounter::default();
        let mut wans: Vec<Wan> = Vec::new();
        let mut debounce: Option<Instant> = None;
        let mut periodic = periodic_timer(self.config.routing.reconcile);
        let mut counters = tokio::time::interval(COUNTERS_EVERY);
        counters.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        counters.reset();
        let mut views = self.netifd.as_ref().map(|n| n.views.clone());
        let mut pending = true;
        loop {
            if pending {
                pending = false;
                if let Some(now_wans) = self.reconcile(&mut probes, &subflows).await {
                    wans = now_wans;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(command) = commands.recv() => match command {
                    ControlCommand::Reconfigure(config) => {
                        if self.reconfigure(config, &mut probes).await {
                            periodic = periodic_timer(self.config.routing.reconcile);
                            views = self.netifd.as_ref().map(|n| n.views.clone());
                        }
                        pending = true;
                    }
                },
                nudge = next(&mut nudges) => match nudge {
                    Some(()) => debounce = Some(Instant::now() + DEBOUNCE),
                    None => {
                        warn!("rtnetlink monitor ended, re-subscribing");
                        nudges = subscribe_monitor();
                        pending = true;
                    }
                },
                _ = sleep_until(debounce) => {
                    debounce = None;
                    pending = true;
                }
                _ = periodic.tick() => {
                    if nudges.is_none() {
                        nudges = subscribe_monitor();
                    }
                    if events.is_none() {
                        events = self.subscribe_events().await;
                    }
                    pending = true;
                }
                _ = counters.tick() => self.sample_counters(&wans).await,
                view = next_view(&mut views) => {
                    self.reconciler.set_netifd(view);
                    pending = true;
                }
                Some(report) = reports.recv() => {
                    let outcome = report.outcome();
                    if let Some(rtt) = outcome {
                        let _ = self.core.send(Input::WanReached(report.at));
                        let wan = report.wan.clone();
                        let _ = self.core.send(Input::WanRtt { wan, rtt });
                    }
                    if let Err(error) = &report.result {
                        debug!(wan = %report.wan, %error, "wan probe failed");
                    }
                    for event in self.reconciler.book.record(&report.wan, outcome) {
                        event.log();
                        pending |= event.changes_plan();
                    }
                    status::publish_probe(&self.status, &self.reconciler.book, &report.wan);
                }
                ev = next(&mut events) => match ev {
                    Some(ev) => {
                        if subflows.on_event(&ev) {
                            status::publish_subflows(&self.status, &wans, &subflows);
                        }
                    }
                    None => {
                        warn!("mptcp_pm event stream ended, re-subscribing");
                        subflows.clear();
                        events = self.subscribe_events().await;
                    }
                },
            }
        }
        probes.stop_all();
        self.netifd = None;
        match tokio::time::timeout(CLEANUP_TIMEOUT, self.kernel.cleanup()).await {
            Ok(Ok(removed)) => info!(removed, "control plane cleaned up"),
            Ok(Err(error)) => error!(%error, "control plane cleanup incomplete"),
            Err(_) => error!("control plane cleanup timed out after {CLEANUP_TIMEOUT:?}"),
        }
    }

    /// One reconcile, then the probes and the status follow its WANs.
    async fn reconcile(
        &mut self,
        probes: &mut Probes,
        subflows: &SubflowCounter,
    ) -> Option<Vec<Wan>> {
        let reconcile = self.reconciler.reconcile(&mut self.kernel);
        match tokio::time::timeout(RECONCILE_TIMEOUT, reconcile).await {
            Ok(Ok(out)) => {
                let settings = self.reconciler.settings();
                let concentrator = self.params.borrow().upstream.addr;
                probes.sync(probe_targets(&out.wans, concentrator, settings));
                status::publish(&self.status, &out, &self.reconciler.book, subflows);
                let _ = self.core.send(Input::WansPlanned(out.wans.clone()));
                Some(out.wans)
            }
            Ok(Err(error)) => {
                error!(%error, "reconcile failed, retrying at the next trigger");
                None
            }
            Err(_) => {
                error!(
                    "reconcile timed out after {RECONCILE_TIMEOUT:?}, retrying at the next trigger"
                );
                None
            }
        }
    }

    /// Apply a reloaded config in place. Returns true when the loop's own timers and
    /// watchers changed (reconcile interval, netifd watcher). The reconcile that follows
    /// diffs against the kernel, so unchanged WANs are not touched.
    async fn reconfigure(&mut self, config: Arc<Config>, probes: &mut Probes) -> bool {
        let old = std::mem::replace(&mut self.config, config);
        let new = self.config.clone();
        if old.mptcp != new.mptcp {
            let report = sysctl::apply_cpe(&new.mptcp);
            if !report.all_set() {
                warn!("some MPTCP sysctls could not be set");
            }
        }
        if old.routing.ownership != new.routing.ownership {
            // New ranges: what the old ones own goes, and the new reconciler builds anew.
            info!("routing ranges changed: removing what the old ranges own");
            match tokio::time::timeout(CLEANUP_TIMEOUT, self.kernel.cleanup()).await {
                Ok(Ok(removed)) => info!(removed, "old routing ranges cleaned up"),
                Ok(Err(error)) => error!(%error, "old routing ranges not fully cleaned up"),
                Err(_) => error!("cleaning up the old routing ranges timed out"),
            }
            match Kernel::connect(new.routing.ownership.clone()).await {
                Ok(kernel) => self.kernel = kernel,
                Err(error) => error!(%error, "cannot reconnect to the kernel with the new ranges"),
            }
            self.reconciler = new_reconciler(&new);
            probes.stop_all();
        } else {
            self.reconciler.reconfigure(
                new.wan.clone(),
                new.proxy.lan_interfaces.clone(),
                new.mptcp.limits,
            );
            self.reconciler.set_down_reaction(new.mptcp.down_reaction);
        }
        let mut loop_changed = old.routing.reconcile != new.routing.reconcile;
        if old.routing.ubus != new.routing.ubus || old.routing.ownership != new.routing.ownership {
            self.netifd = None;
            self.netifd = start_netifd(&new, &mut self.reconciler).await;
            loop_changed = true;
        } else if let Some(netifd) = &self.netifd {
            self.reconciler.set_netifd(netifd.views.borrow().clone());
        }
        loop_changed
    }

    /// Sample the WANs' device counters into the status.
    async fn sample_counters(&self, wans: &[Wan]) {
        match self.kernel.snapshot().await {
            Ok(snapshot) => {
                let now = std::time::Instant::now();
                status::publish_counters(&self.status, wans, &snapshot, now);
            }
            Err(error) => debug!(%error, "cannot sample the WAN counters"),
        }
    }

    async fn subscribe_events(&self) -> Option<crate::net::mptcp_pm::PmEvents> {
        match self.kernel.pm().events().await {
            Ok(events) => Some(events),
            Err(error) => {
                warn!(%error, "no mptcp_pm events: subflow counts unavailable");
                None
            }
        }
    }
}

fn subscribe_monitor() -> Option<Monitor> {
    match crate::net::monitor() {
        Ok(m) => Some(m),
        Err(error) => {
            error!(%error, "cannot subscribe to rtnetlink events; periodic reconcile only");
            None
        }
    }
}

/// The next item of an optional stream; pending forever without one.
async fn next<S: Stream + Unpin>(stream: &mut Option<S>) -> Option<S::Item> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// The next netifd view; pending forever without a watcher (or once it has ended).
async fn next_view(views: &mut Option<watch::Receiver<Option<NetifdView>>>) -> Option<NetifdView> {
    match views {
        Some(rx) => match rx.changed().await {
            Ok(()) => rx.borrow_and_update().clone(),
            Err(_) => {
                *views = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A reconciler for `config`.
fn new_reconciler(config: &Config) -> Reconciler {
    let mut reconciler = Reconciler::new(
        config.wan.clone(),
        config.proxy.lan_interfaces.clone(),
        config.routing.ownership.clone(),
        config.mptcp.limits,
    );
    reconciler.set_down_reaction(config.mptcp.down_reaction);
    reconciler
}

/// The netifd watcher, if `config` names a ubus socket; its first view goes to the
/// reconciler.
async fn start_netifd(config: &Config, reconciler: &mut Reconciler) -> Option<Netifd> {
    match config.routing.ubus.resolve() {
        Some(socket) => {
            let netifd = Netifd::start(socket).await;
            reconciler.set_netifd(netifd.views.borrow().clone());
            Some(netifd)
        }
        None => {
            debug!("no ubus socket: WANs from rtnetlink alone");
            reconciler.set_netifd(None);
            None
        }
    }
}

/// The periodic reconcile timer (first tick after one period).
fn periodic_timer(every: Duration) -> tokio::time::Interval {
    let mut periodic = tokio::time::interval(every);
    periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    periodic.reset();
    periodic
}

/// The running probe loops, by WAN name.
#[derive(Debug)]
struct Probes {
    loops: HashMap<String, (ProbeTarget, CancellationToken)>,
    params: watch::Receiver<Arc<ConnParams>>,
    tx: mpsc::Sender<ProbeReport>,
    shutdown: CancellationToken,
}

impl Probes {
    /// Start, restart (device or source changed) and stop loops to match `targets`.
    fn sync(&mut self, mut targets: std::collections::BTreeMap<String, ProbeTarget>) {
        self.loops.retain(|name, (running, token)| {
            let keep = targets.get(name) == Some(running);
            if !keep {
                debug!(wan = %name, "stopping its probe loop");
                token.cancel();
            }
            keep
        });
        targets.retain(|name, _| !self.loops.contains_key(name));
        for (name, target) in targets {
            info!(wan = %name, device = %target.device, src = %target.src, "probing the concentrator through the wan");
            let token = self.shutdown.child_token();
            ProbeLoop {
                target: target.clone(),
                params: self.params.clone(),
                reports: self.tx.clone(),
            }
            .spawn(token.clone());
            self.loops.insert(name, (target, token));
        }
    }

    fn stop_all(&mut self) {
        for (_, (_, token)) in self.loops.drain() {
            token.cancel();
        }
    }
}
