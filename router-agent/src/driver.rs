//! The async shell around the decision core ([`crate::core::Core`]): it turns I/O into
//! [`Input`]s and the core's [`Action`]s into I/O, and decides nothing itself.
//!
//! ```text
//! proxy connections ──Input (UpstreamFailed, Fast Open evidence)──┐
//! control plane ──────Input (WansPlanned, WanReached)─────────────┤
//! main-route probe ───Input::ProbeDone─────────────────────────────┼──▶ Core ──▶ Action
//! SIGHUP (main.rs) ───Config → resolve → Input::Reload─────────────┤
//! core's deadline ────handle_timeout(now)─────────────────────────┘
//!
//! Action::StartProbe       → concentrator_probe::probe on this task (one at a time)
//! Action::ProbeStandby     → concentrator_probe::probe of another concentrator (several
//!                            at once) → Input::ConcentratorProbed
//! Action::ApplyRedirect    → NftTable::apply (or a new table when the name changed)
//! Action::PublishUpstream  → a new ConnParams for new connections and WAN probes
//! Action::Reconfigure      → the control plane, the listener, the control socket
//! Action::BulkWindow       → SO_RCVBUF on the live upstream sockets (LiveUpstreams), status
//! Action::Notice           → log line and status
//! ```
//!
//! A reload is applied in place: what did not change is not touched, and live relayed
//! connections are never closed by it. A config whose concentrator does not resolve, or
//! whose new listener port cannot be bound, is refused whole and changes nothing.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::concentrator_probe::{self, ProbeOutcome};
use crate::config::{ConcentratorConfig, Config};
use crate::control::{self, ControlCommand, SharedStatus};
use crate::core::latency_guard::GuardView;
use crate::core::{Action, Changes, Core, Input, Notice, UpstreamChoice};
use crate::nft::{NftTable, RedirectSpec};
use crate::proxy::{ConnParams, Listeners};
use crate::serve::{ControlSocketTask, ServeTask};
use crate::upstream::Upstream;
use mpbond_relay::relay::RelayOpts;

/// A probe in flight: its outcome and how long it took.
type ProbeFuture = Pin<Box<dyn Future<Output = (ProbeOutcome, Duration)> + Send>>;
/// Standby probes in flight, each ending in its input for the core.
type StandbyProbes = FuturesUnordered<Pin<Box<dyn Future<Output = Input> + Send>>>;

/// Everything the shell does I/O with.
#[derive(Debug)]
pub struct Driver {
    pub core: Core,
    pub table: NftTable,
    pub params: watch::Sender<Arc<ConnParams>>,
    pub control: Option<mpsc::UnboundedSender<ControlCommand>>,
    pub status: SharedStatus,
    pub serve: ServeTask,
    pub control_socket: Option<ControlSocketTask>,
    /// Bypass by name: dnsmasq's config file, rewritten when `[bypass]` changes.
    pub names: crate::bypass_names::ResolverFile,
    /// The relays' upstream sockets, clamped by the latency guard.
    pub upstreams: Arc<crate::proxy::upstreams::LiveUpstreams>,
}

/// The connection parameters for `config` and the core's choices, with the preferred
/// concentrator's credentials.
pub fn conn_params(config: &Config, choice: &UpstreamChoice) -> ConnParams {
    conn_params_via(config, &config.concentrator, choice)
}

/// [`conn_params`] with the credentials of `concentrator` (the one `choice` goes to).
pub fn conn_params_via(
    config: &Config,
    concentrator: &ConcentratorConfig,
    choice: &UpstreamChoice,
) -> ConnParams {
    ConnParams {
        upstream: Upstream {
            addr: choice.concentrator,
            client_id: concentrator.client_id.clone(),
            key: concentrator.key.clone(),
            connect_timeout: config.proxy.connect_timeout,
            fastopen: choice.fastopen,
            source: choice.source,
            hedge: choice.hedge,
            congestion: config.mptcp.congestion.clone(),
            buffers: choice.buffers,
        },
        reply_timeout: config.proxy.reply_timeout,
        direct_timeout: config.proxy.connect_timeout,
        relay: RelayOpts {
            idle_timeout: config.proxy.idle_timeout,
            pace: None,
        },
        legs: choice.legs.clone(),
        abandoned: choice.abandoned.clone(),
        suspects: choice.suspects.clone(),
    }
}

/// Check the congestion control of new upstream connections with the kernel and show it
/// in the status. One the kernel refuses (warned once by `mpbond_relay::congestion`) is
/// dropped from `params`, so connections keep the kernel default, which the status shows.
pub fn check_congestion(status: &SharedStatus, params: &mut ConnParams) {
    let upstream = &mut params.upstream;
    let in_use = mpbond_relay::congestion::effective(upstream.congestion.as_ref()).ok();
    if let Some(name) = &upstream.congestion {
        if in_use.as_deref() != Some(name.as_str()) {
            upstream.congestion = None;
        }
    }
    control::status::lock(status).concentrator_mut().congestion = in_use;
}

/// What a reload needs prepared before the core sees it, so that a failure refuses it
/// whole: the resolved concentrator and, for a new port, the bound listeners.
struct Prepared {
    config: Arc<Config>,
    concentrators: Vec<Vec<SocketAddr>>,
    listeners: Option<Listeners>,
}

impl Driver {
    /// Run until `shutdown`; return the nft table (still installed) for removal.
    pub async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut reloads: mpsc::UnboundedReceiver<Config>,
        shutdown: CancellationToken,
    ) -> Driver {
        let mut probe: Option<ProbeFuture> = None;
        let mut failing = !self.core.redirecting();
        let mut staged: Option<Listeners> = None;
        let mut standby = StandbyProbes::new();
        let mut shown = Vec::new();
        loop {
            while let Some(action) = self.core.poll_action() {
                if let Action::ProbeStandby(target) = action {
                    standby.push(self.standby_probe(target));
                    continue;
                }
                self.perform(action, &mut probe, &mut staged);
            }
            self.show_concentrators(&mut shown);
            let deadline = self.core.poll_timeout().map(Instant::from_std);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                (outcome, rtt) = running(&mut probe) => {
                    probe = None;
                    match &outcome.result {
                        Ok(()) => failing = false,
                        Err(err) => {
                            concentrator_probe::log_failure(err, !failing);
                            failing = true;
                        }
                    }
                    let input = Input::ProbeDone {
                        result: outcome.result.map(|()| rtt).map_err(|e| e.to_string()),
                        fastopen: outcome.fastopen,
                    };
                    self.core.handle(input, now());
                }
                Some(input) = inputs.recv() => self.core.handle(input, now()),
                Some(input) = standby.next(), if !standby.is_empty() => {
                    self.core.handle(input, now());
                }
                Some(config) = reloads.recv() => {
                    if let Some(prepared) = self.prepare_reload(config).await {
                        staged = prepared.listeners;
                        let input = Input::ReloadAll {
                            config: prepared.config,
                            concentrators: prepared.concentrators,
                        };
                        self.core.handle(input, now());
                    }
                }
                _ = sleep_until(deadline) => self.core.handle_timeout(now()),
            }
        }
        self
    }

    /// Resolve the new config's concentrator and bind a new listener port, or refuse
    /// the reload with the reason.
    async fn prepare_reload(&mut self, config: Config) -> Option<Prepared> {
        let concentrators = match crate::resolve_concentrators(&config).await {
            Ok(addrs) => addrs,
            Err(err) => {
                error!("reload refused: {err}; keeping the running config");
                return None;
            }
        };
        let old = self.core.config();
        let listeners = if config.proxy.listen_port != old.proxy.listen_port {
            match crate::proxy::bind(config.proxy.listen_port) {
                Ok(listeners) => Some(listeners),
                Err(err) => {
                    error!("reload refused: {err}; keeping the running config");
                    return None;
                }
            }
        } else {
            None
        };
        let config = Arc::new(config);
        let new_addrs: Vec<SocketAddr> = concentrators.iter().flatten().copied().collect();
        let old_addrs = self.core.concentrator_addrs();
        let changes = Changes::between(old, &config, &old_addrs, &new_addrs);
        if changes.is_empty() {
            info!("reload: nothing changed");
        }
        Some(Prepared {
            config,
            concentrators,
            listeners,
        })
    }

    fn perform(
        &mut self,
        action: Action,
        probe: &mut Option<ProbeFuture>,
        staged: &mut Option<Listeners>,
    ) {
        match action {
            Action::StartProbe { fastopen } => {
                let upstream = self.params.borrow().upstream.clone();
                let timeout = self.core.config().health.timeout;
                *probe = Some(Box::pin(async move {
                    let started = Instant::now();
                    let outcome = concentrator_probe::probe(&upstream, timeout, fastopen).await;
                    (outcome, started.elapsed())
                }));
            }
            Action::ApplyRedirect(spec) => {
                let ok = self.apply_table(&spec);
                self.core.handle(Input::RedirectApplied { spec, ok }, now());
            }
            Action::ProbeStandby(_) => {} // Run by `run`, which keeps the futures.
            Action::PublishUpstream(choice) => {
                let config = self.core.config();
                let name = self.core.concentrator_name(choice.concentrator);
                let via = config
                    .concentrators
                    .iter()
                    .find(|c| Some(c.name.as_str()) == name)
                    .unwrap_or(&config.concentrator);
                let mut params = conn_params_via(config, via, &choice);
                check_congestion(&self.status, &mut params);
                control::status::lock(&self.status).set_upstream_buffers(choice.buffers);
                self.params.send_replace(Arc::new(params));
            }
            Action::Reconfigure(changes) => self.reconfigure(changes, staged),
            Action::BulkWindow(view) => {
                let view = GuardView {
                    paced_bytes: self.upstreams.paced_bytes(),
                    ..view
                };
                let sockets = self.upstreams.clamp_receive(view.clamp, view.release);
                self.upstreams.set_pace(view.pace);
                let mut model = control::status::lock(&self.status);
                let was = model.latency_guard().and_then(|g| g.clamp);
                match (was, view.clamp) {
                    (None, Some(bytes)) => info!(
                        bytes,
                        sockets,
                        protected_flows = view.protected_flows,
                        "latency guard: bulk receive buffers clamped"
                    ),
                    (Some(_), None) => info!(
                        bytes = view.release,
                        sockets, "latency guard: bulk receive buffers released"
                    ),
                    _ => debug!(clamp = ?view.clamp, pace = ?view.pace, sockets, "latency guard"),
                }
                model.set_latency_guard(view);
            }
            Action::Notice(notice) => self.notice(notice),
        }
    }

    /// Bring the kernel's table to `spec`; a new name creates the new table and then
    /// removes the old one, so LAN TCP is never left without a table.
    fn apply_table(&mut self, spec: &RedirectSpec) -> bool {
        if spec.table != self.table.table() {
            return match NftTable::create(spec) {
                Ok(table) => {
                    let old = std::mem::replace(&mut self.table, table);
                    if let Err(err) = old.remove() {
                        warn!(%err, "cannot remove the old nft table");
                    }
                    info!(table = %spec.table, redirect = spec.redirect, "nft table replaced");
                    true
                }
                Err(err) => {
                    error!(%err, table = %spec.table, "cannot create the nft table, will retry");
                    false
                }
            };
        }
        match self.table.apply(spec) {
            Ok(()) => {
                info!(redirect = spec.redirect, table = %spec.table, "nft table updated");
                true
            }
            Err(err) => {
                error!(%err, redirect = spec.redirect, "cannot update the nft table, will retry");
                false
            }
        }
    }

    fn reconfigure(&mut self, changes: Changes, staged: &mut Option<Listeners>) {
        info!(changed = ?changes.names(), "config reloaded in place");
        let config = self.core.config().clone();
        if changes.control || changes.concentrator {
            if let Some(control) = &self.control {
                let _ = control.send(ControlCommand::Reconfigure(config.clone()));
            }
        }
        if changes.table {
            let names = self.names.sync(&config.bypass.names, self.table.table());
            control::status::lock(&self.status).set_name_bypass(names, self.table.table());
        }
        if changes.listener {
            self.serve
                .restart(staged.take(), config.proxy.max_connections);
        }
        if changes.status_socket {
            if let Some(socket) = self.control_socket.take() {
                socket.stop();
            }
            self.control_socket = ControlSocketTask::start(&config.status.socket, &self.status);
        }
    }

    fn notice(&mut self, notice: Notice) {
        match &notice {
            Notice::FailOpen { up_for } => warn!(
                ?up_for,
                "concentrator unreachable, redirect withdrawn (fail open)"
            ),
            Notice::Redirecting { down_for } => {
                info!(?down_for, "concentrator reachable, redirect restored")
            }
            Notice::ReachableViaWan => {
                debug!("main-route probe failed, but a WAN probe reached the concentrator")
            }
            Notice::FastOpen { on: true } => {
                info!("TCP Fast Open with MPTCP works again: requests ride in the SYN")
            }
            Notice::FastOpen { on: false } => warn!(
                "the concentrator ignored the request in the SYN and MPTCP fell back to TCP; \
                 sending requests after the handshake instead (one more round trip). \
                 Enable TCP Fast Open on the concentrator (net.ipv4.tcp_fastopen=3)"
            ),
            Notice::Source(Some(ip)) => {
                info!(source = %ip, "new upstream connections start from a live WAN")
            }
            Notice::Source(None) => info!("new upstream connections follow the main route"),
            Notice::HedgedAway { from, to } => info!(
                slow = %from, hedge = %to,
                "no SYN-ACK from a WAN within the hedge bound: new connections start from \
                 another WAN for a while"
            ),
            Notice::ConcentratorChosen { name, addr } => {
                warn!(concentrator = %name, address = %addr, "new connections go to this concentrator");
                let host = self
                    .core
                    .config()
                    .concentrators
                    .iter()
                    .find(|c| &c.name == name)
                    .map(|c| c.host.clone());
                {
                    let mut model = control::status::lock(&self.status);
                    let concentrator = model.concentrator_mut();
                    concentrator.address = Some(*addr);
                    if let Some(host) = host {
                        concentrator.host = host;
                    }
                }
                // The WANs' probes and subflow samples follow the new concentrator at
                // once (the control plane reads its address from the published params).
                if let Some(control) = &self.control {
                    let config = self.core.config().clone();
                    let _ = control.send(ControlCommand::Reconfigure(config));
                }
            }
            Notice::Probed { result, redirect } => {
                let mut model = control::status::lock(&self.status);
                model.record_concentrator_probe(result.clone());
                let concentrator = model.concentrator_mut();
                concentrator.redirect = *redirect;
                concentrator.address = Some(self.core.concentrator());
            }
        }
    }
}

impl Driver {
    /// A probe of a concentrator other than the active one, with its own credentials,
    /// from where new connections start; without Fast Open (its evidence is the active
    /// one's business).
    fn standby_probe(
        &self,
        target: crate::core::concentrators::StandbyProbe,
    ) -> Pin<Box<dyn Future<Output = Input> + Send>> {
        let mut upstream = self.params.borrow().upstream.clone();
        upstream.addr = target.addr;
        upstream.fastopen = false;
        if let Some(c) = self
            .core
            .config()
            .concentrators
            .iter()
            .find(|c| c.name == target.name)
        {
            upstream.client_id = c.client_id.clone();
            upstream.key = c.key.clone();
        }
        let timeout = self.core.config().health.timeout;
        Box::pin(async move {
            let started = Instant::now();
            let outcome = concentrator_probe::probe(&upstream, timeout, false).await;
            let result = match outcome.result {
                Ok(()) => Ok(started.elapsed()),
                Err(err) => {
                    debug!(concentrator = %target.name, %err, "standby probe failed");
                    Err(err.to_string())
                }
            };
            Input::ConcentratorProbed {
                name: target.name,
                result,
            }
        })
    }

    /// Copy the concentrators' states to the status when they changed.
    fn show_concentrators(&self, shown: &mut Vec<crate::core::concentrators::ConcentratorView>) {
        let views = self.core.concentrator_views();
        if &views == shown {
            return;
        }
        let config = self.core.config();
        let priority = |name: &str| {
            config
                .concentrators
                .iter()
                .find(|c| c.name == name)
                .map_or(0, |c| c.priority)
        };
        let entries = crate::status::concentrators::entries(&views, priority);
        control::status::lock(&self.status).set_concentrators(entries);
        *shown = views;
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// The probe in flight; pending forever without one.
async fn running(probe: &mut Option<ProbeFuture>) -> (ProbeOutcome, Duration) {
    match probe {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
