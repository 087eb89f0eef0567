//! The control plane: keeps the kernel's per-WAN tables, rules and MPTCP endpoints in
//! step with the router's WANs and their health, and keeps the status model current.
//!
//! ```text
//! mod.rs        start() (features, sysctls, Kernel::connect, crash cleanup) and the loop
//! reconcile.rs  one reconcile behind the KernelPort seam (snapshot → plan → diff → apply)
//! subflows.rs   live subflow counts from mptcp_pm events
//! passive.rs    subflow tcp_info → per-WAN passive health samples
//! quality.rs    counters, probe RTT/loss, subflow RTT → path-quality samples
//! status.rs     publishing into the shared StatusModel (WANs, probes, subflows, counters)
//! usage.rs      data accounting: the ledger fed by the counter samples, the usage file
//! ```
//!
//! # The loop ([`ControlPlane::run`])
//!
//! A reconcile runs at start, then
//! * [`DEBOUNCE`] after the last of a burst of rtnetlink nudges (`net::monitor`);
//! * every `routing.reconcile`, for drift and missed events;
//! * at once when a probe or a passive sample moves a WAN into or out of `down`.
//!
//! WAN probes follow the state machine's schedule: when [`WanBook::next_probe_at`] is
//! due, [`WanBook::start_due_probes`] names the WANs and their timeouts, and each goes to
//! that WAN's probe task. While some WAN has live subflows, every
//! [`passive::PASSIVE_EVERY`] the `tcp_info` of the relays' subflows
//! ([`passive::subflows`]) feeds [`WanBook::passive`]. A passive sample that vouches for
//! the concentrator ([`passive::vouches`]: live traffic on a healthy WAN, or data received
//! on a WAN the agent does not probe) or an answered probe also tells the decision core
//! that the concentrator is reachable ([`Input::WanReached`]).
//!
//! Every [`COUNTERS_EVERY`] a dump of the links alone (`link_counters`) refreshes the
//! WANs' byte counters (status rates) and feeds the data accounting
//! ([`usage::UsageBook`]) and the path-quality policy ([`quality`],
//! `core::path_quality`: a demotion or restoration triggers a reconcile, which flips
//! the endpoint's backup flag); a WAN crossing its allowance triggers a reconcile, and
//! so does a metered WAN's pending demotion (`Outcome::metered_wake`). The usage file
//! is written every [`crate::accounting::SAVE_EVERY`] and at stop. While a WAN is
//! unjudged (new, no probe answer judged yet), every answered probe also runs the
//! path-quality policy's first look (`Reconciler::first_look`), so a far WAN is a backup
//! within its first RTT.
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

pub mod passive;
pub mod quality;
pub mod reconcile;
pub mod status;
pub mod subflows;
pub mod usage;

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
use crate::model::wan::Health;
use crate::model::wan::{Snapshot, Wan};
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
    usage: usage::UsageBook,
    /// Reconcile at this time (a metered WAN's demotion is due).
    metered_wake: Option<Instant>,
    /// The last subflow RTT of each WAN (from the passive samples).
    subflow_rtts: quality::SubflowRtts,
    /// The relays' upstream sockets, the passive samples' evidence (else a dump).
    upstreams: Option<Arc<crate::proxy::upstreams::LiveUpstreams>>,
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
        let usage = usage::UsageBook::open(config.state_dir.as_deref(), std::time::Instant::now());
        reconciler.set_over_allowance(usage.over_allowance(&config.wan));
        let netifd = start_netifd(&config, &mut reconciler).await;
        // The first reconcile, so the tables exist when the agent says it is ready.
        let first = tokio::time::timeout(RECONCILE_TIMEOUT, reconciler.reconcile(&mut kernel));
        match first.await {
            Ok(Ok(out)) => {
                let book = &reconciler.book;
                status::publish(&status, &out, book, &SubflowCounter::default());
                usage.publish(&mut status::lock(&status), &out.wans, reconciler.settings());
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
            usage,
            metered_wake: None,
            subflow_rtts: quality::SubflowRtts::default(),
            upstreams: None,
        })
    }

    /// Sample the passive health from these sockets instead of a `sock_diag` dump.
    pub fn set_upstreams(&mut self, live: Arc<crate::proxy::upstreams::LiveUpstreams>) {
        self.upstreams = Some(live);
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
        let mut passive_tick = tokio::time::interval(passive::PASSIVE_EVERY);
        passive_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = true;
        loop {
            if pending {
                pending = false;
                if let Some(now_wans) = self.reconcile(&mut probes, &subflows).await {
                    wans = now_wans;
                }
            }
            let probe_due = self
                .reconciler
                .book
                .next_probe_at(std::time::Instant::now(), |name| probes.has(name))
                .map(Instant::from_std);
            let busy = events.is_none() || wans.iter().any(|w| subflows.count(w) > 0);
            tokio::select! {
                _ = sleep_until(probe_due) => {
                    let now = std::time::Instant::now();
                    let book = &mut self.reconciler.book;
                    for (name, timeout) in book.start_due_probes(now, |name| probes.has(name)) {
                        probes.request(&name, timeout);
                    }
                }
                _ = passive_tick.tick(), if busy => pending |= self.sample_passive(&wans),
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
                _ = counters.tick() => pending |= self.sample_counters(&wans).await,
                _ = sleep_until(self.metered_wake) => {
                    self.metered_wake = None;
                    pending = true;
                }
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
                    let book = &mut self.reconciler.book;
                    book.record_cost(&report.wan, report.bytes, report.at);
                    let events = book.record(&report.wan, outcome, report.at);
                    pending |= self.on_events(&events, report.at);
                    if outcome.is_some() && self.reconciler.first_look(&wans, report.at) {
                        status::publish_quality(&self.status, self.reconciler.quality());
                        pending = true;
                    }
                    status::publish_probe(&self.status, &self.reconciler.book, &report.wan, report.at);
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
        self.usage.save(std::time::Instant::now());
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
                let concentrator = self.params.borrow().upstream.addr;
                for stopped in probes.sync(probe_targets(&out.wans, concentrator)) {
                    self.reconciler.book.cancel_probe(&stopped);
                }
                status::publish(&self.status, &out, &self.reconciler.book, subflows);
                let settings = self.reconciler.settings();
                self.usage
                    .publish(&mut status::lock(&self.status), &out.wans, settings);
                self.metered_wake = out.metered_wake.map(Instant::from_std);
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
        self.usage.move_to(new.state_dir.as_deref());
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
            self.reconciler
                .set_over_allowance(self.usage.over_allowance(&new.wan));
            probes.stop_all();
        } else {
            self.reconciler.reconfigure(
                new.wan.clone(),
                new.proxy.lan_interfaces.clone(),
                new.mptcp.limits,
            );
            self.reconciler.set_down_reaction(new.mptcp.down_reaction);
        }
        self.reconciler.set_quality_settings(new.path_quality);
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

    /// Log and publish health changes at `at`; true if the plan changes.
    fn on_events(
        &self,
        events: &[crate::model::wan_book::WanEvent],
        at: std::time::Instant,
    ) -> bool {
        for event in events {
            event.log();
        }
        status::publish_changes(&self.status, events, at);
        events.iter().any(|e| e.changes_plan())
    }

    /// Sample the subflows to the concentrator and feed each WAN's passive sample to
    /// its state machine; true if the plan changes.
    fn sample_passive(&mut self, wans: &[Wan]) -> bool {
        let concentrator = self.params.borrow().upstream.addr;
        let tcp = match passive::subflows(self.upstreams.as_deref(), concentrator) {
            Ok(tcp) => tcp,
            Err(error) => {
                debug!(%error, "cannot sample the subflows");
                return false;
            }
        };
        let now = std::time::Instant::now();
        let mut events = Vec::new();
        let mut reached = false;
        for (name, sample) in passive::samples(&tcp, wans) {
            self.subflow_rtts.record(&name, &sample, now);
            let book = &mut self.reconciler.book;
            events.extend(book.passive(&name, &sample, now));
            let health = book
                .entries()
                .get(&name)
                .map_or(Health::Unknown, |e| e.probe.health());
            if let Some(wan) = wans.iter().find(|w| w.name == name) {
                reached |= passive::vouches(wan, health, &sample, &tcp);
            }
        }
        if reached {
            let _ = self.core.send(Input::WanReached(now));
        }
        self.on_events(&events, now)
    }

    /// Sample the WANs' device counters into the status and the data accounting (writing
    /// the usage file when due). True when the set of WANs past their allowance changed:
    /// reconcile then.
    async fn sample_counters(&mut self, wans: &[Wan]) -> bool {
        match link_counters(&self.kernel).await {
            Ok(snapshot) => {
                let now = std::time::Instant::now();
                status::publish_counters(&self.status, wans, &snapshot, now);
                let settings = self.reconciler.settings();
                let today = crate::accounting::local_date();
                let over = self.usage.sample(wans, settings, &snapshot, today);
                self.usage
                    .publish(&mut status::lock(&self.status), wans, settings);
                self.usage.save_if_due(now);
                let book = &self.reconciler.book;
                let samples = quality::samples(wans, &snapshot, book, &self.subflow_rtts, now);
                let changes = self.reconciler.observe_quality(&samples, wans, now);
                let _ = self.core.send(Input::PathSamples(samples));
                status::publish_quality(&self.status, self.reconciler.quality());
                self.reconciler.set_over_allowance(over) | !changes.is_empty()
            }
            Err(error) => {
                debug!(%error, "cannot sample the WAN counters");
                false
            }
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

/// The links and their byte counters alone, as a [`Snapshot`] without addresses or
/// routes: all the counters tick reads (status rates, the data accounting, the path
/// quality's loads). One link dump instead of the reconcile's three (links, addresses,
/// every table's routes), every [`COUNTERS_EVERY`] of an idle agent's life.
async fn link_counters(kernel: &Kernel) -> Result<Snapshot, NetError> {
    let links = kernel.rtnl().dump_links().await?;
    Ok(Snapshot {
        links: links.iter().map(crate::net::snapshot::parse_link).collect(),
        routes: Vec::new(),
    })
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
    reconciler.set_quality_settings(config.path_quality);
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

/// The running probe loops, by WAN name: their target, their request channel and
/// their stop token.
#[derive(Debug)]
struct Probes {
    loops: HashMap<String, (ProbeTarget, mpsc::Sender<Duration>, CancellationToken)>,
    params: watch::Receiver<Arc<ConnParams>>,
    tx: mpsc::Sender<ProbeReport>,
    shutdown: CancellationToken,
}

impl Probes {
    /// Whether WAN `name` has a probe loop.
    fn has(&self, name: &str) -> bool {
        self.loops.contains_key(name)
    }

    /// Ask WAN `name`'s loop for a probe with `timeout`. Its one probe at a time is the
    /// state machine's rule, so the channel has room.
    fn request(&self, name: &str, timeout: Duration) {
        if let Some((_, requests, _)) = self.loops.get(name) {
            if let Err(error) = requests.try_send(timeout) {
                debug!(wan = %name, %error, "probe request not delivered");
            }
        }
    }

    /// Start, restart (device or source changed) and stop loops to match `targets`.
    /// Returns the WANs whose loop stopped (a probe in flight there will not report).
    fn sync(
        &mut self,
        mut targets: std::collections::BTreeMap<String, ProbeTarget>,
    ) -> Vec<String> {
        let mut stopped = Vec::new();
        self.loops.retain(|name, (running, _, token)| {
            let keep = targets.get(name) == Some(running);
            if !keep {
                debug!(wan = %name, "stopping its probe loop");
                token.cancel();
                stopped.push(name.clone());
            }
            keep
        });
        targets.retain(|name, _| !self.loops.contains_key(name));
        for (name, target) in targets {
            info!(wan = %name, device = %target.device, src = %target.src, "probing the concentrator through the wan");
            let token = self.shutdown.child_token();
            let (requests, rx) = mpsc::channel(2);
            ProbeLoop {
                target: target.clone(),
                params: self.params.clone(),
                requests: rx,
                reports: self.tx.clone(),
            }
            .spawn(token.clone());
            self.loops.insert(name, (target, requests, token));
        }
        stopped
    }

    fn stop_all(&mut self) {
        for (_, (_, _, token)) in self.loops.drain() {
            token.cancel();
        }
    }
}
