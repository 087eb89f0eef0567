//! mpbond router agent: redirects LAN TCP to a transparent listener and carries each
//! connection over one MPTCP connection to the concentrator, failing open when the
//! concentrator is unreachable.
//!
//! # Layout
//!
//! ```text
//! main.rs        CLI, tracing (info on stdout, warnings on stderr), signals, then run()
//! config.rs      raw serde config -> validated Config
//!   raw.rs         the serde types; control.rs: routing/mptcp/wan/status; log.rs: [log]
//!   uci.rs         the UCI file format (OpenWrt /etc/config/mpbond) -> the same raw config
//! core/          THE DECISION CORE, sans-IO: fail open, probe schedule, Fast Open, the
//!                source of new connections, reload diffs (core::reload::Changes),
//!                which metered WANs are held back (core::metered)
//! accounting/    bytes per WAN today and this billing month: the pure Ledger, the
//!                usage file in state_dir
//! model/         pure models the core and the control plane decide with
//!   failopen.rs    the fail-open state machine (Up = redirect on)
//!   plan.rs        the nft RedirectSpec: built-in + concentrator + user bypass lists
//!   wan.rs         WANs discovered from a kernel Snapshot (config list or auto-detect)
//!   routing.rs     plan(wans) -> desired tables, rules, endpoints; diff -> ordered NetOps
//!   netops.rs      NetOp, KernelState, Ownership: the owned objects as plain values
//!   wan_health.rs  the per-WAN health state machine: probe verdicts (mwan3-like
//!                  thresholds), passive samples of its subflows, the probe schedule
//!   wan_book.rs    every WAN's probe state over time; which WAN is probed from where
//! driver.rs      the async shell around core::Core: events in, actions carried out
//! serve.rs       the listener and the control socket as restartable tasks
//! net/           kernel I/O: rtnetlink routes/rules/snapshot/monitor, mptcp_pm genetlink,
//!                sysctls, kernel feature probe, sock_diag (subflows' tcp_info);
//!                backend.rs: the NetBackend seam that `Kernel` and the in-memory
//!                RecordingBackend implement
//! nft/           the nf_tables table (`inet mpbond`, flags owner) over netlink, and the
//!                companion table of the name sets (`inet mpbond_names`)
//! bypass_names/  bypass by name: dnsmasq's `nftset=` config file, written and removed
//! upstream.rs    Upstream (what new connections use, published by value), connect over
//!                MPTCP+TFO, read the Convert reply
//! concentrator_probe.rs  one probe of the concentrator over the main route
//! proxy/         transparent listener, bounded accept loop, per-connection handler,
//!                the live upstream sockets the passive health check samples
//! udp/           LAN UDP: the transparent UDP socket (tproxy), the flow table, one MPTCP
//!                connection per flow carrying DATAGRAM capsules, direct fallback
//! wan_probe.rs    per-WAN probe datagrams to the concentrator, bound to the WAN's device
//! status/        the status model (docs/STATUS.md), control socket, `status` CLI
//! control/       the control plane: reconcile loop, per-WAN probe schedule, passive
//!                samples, status publishing, data accounting (usage.rs)
//! ubus/          netifd over ubus (OpenWrt): a native ubus client, WAN name -> l3_device
//! ```
//!
//! # Lifecycle ([`run`])
//!
//! Resolve the concentrator → bind the listeners and the control socket → one probe →
//! create the nft table with the redirect set to the probe's verdict → kernel features
//! and CPE sysctls → start the control plane (clean up a crash's leftovers, first
//! reconcile; if it cannot start, e.g. no MPTCP path manager, the agent logs it and runs
//! the data path alone) → `READY=1` → the UDP side (`[udp]`: its sockets and policy
//! routing; if it cannot start, UDP keeps going out by NAT) → the driver runs the core, the control plane
//! reconciles, the listener serves, and every reload is applied in place, until
//! `shutdown` → `STOPPING=1` → the control plane removes every owned route, rule and
//! endpoint → remove dnsmasq's bypass-by-name file → remove the nft table → close the listeners, remove the UDP policy routing → give live relays up to
//! [`DRAIN_TIMEOUT`] to finish.

pub mod accounting;
pub mod bypass_names;
pub mod concentrator_probe;
pub mod config;
pub mod control;
pub mod core;
pub mod driver;
pub mod model;
pub mod net;
pub mod nft;
pub mod proxy;
pub mod serve;
pub mod status;
pub mod ubus;
pub mod udp;
pub mod upstream;
pub mod wan_probe;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpbond_relay::notify::notify;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

pub use config::Config;

use crate::control::{ControlPlane, SharedStatus};
use crate::core::{Core, Input, UpstreamChoice};
use crate::driver::Driver;
use crate::nft::{NftError, NftTable};
use crate::proxy::{BindError, ConnContext, Stats};
use crate::status::StatusModel;

/// How long live relays may run on after shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the agent could not start.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot resolve concentrator host {host:?}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("concentrator host {host:?} resolved to no address")]
    NoAddress { host: String },
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot create the nft table: {0}")]
    Nft(#[source] NftError),
}

/// Resolve the concentrator (std resolver, on the blocking pool). Duplicates removed,
/// resolver order kept: the first address is the one the agent connects to.
pub async fn resolve_concentrator(host: &str, port: u16) -> Result<Vec<SocketAddr>, RunError> {
    let name = host.to_owned();
    let resolved = tokio::task::spawn_blocking(move || {
        (name.as_str(), port)
            .to_socket_addrs()
            .map(|addrs| addrs.collect::<Vec<_>>())
    })
    .await
    .unwrap_or_else(|join| Err(io::Error::other(join)));
    let mut addrs = resolved.map_err(|source| RunError::Resolve {
        host: host.to_owned(),
        source,
    })?;
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|addr| seen.insert(*addr));
    if addrs.is_empty() {
        return Err(RunError::NoAddress {
            host: host.to_owned(),
        });
    }
    Ok(addrs)
}

/// Resolve every configured concentrator, in the config's order (preferred first).
pub async fn resolve_concentrators(config: &Config) -> Result<Vec<Vec<SocketAddr>>, RunError> {
    let mut all = Vec::with_capacity(config.concentrators.len());
    for c in &config.concentrators {
        all.push(resolve_concentrator(&c.host, c.port).await?);
    }
    Ok(all)
}

/// Run the agent until `shutdown` is cancelled; every config on `reloads` is applied in
/// place (see [`driver`]). See the crate docs for the lifecycle.
pub async fn run(
    config: Config,
    reloads: mpsc::UnboundedReceiver<Config>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let started = Instant::now();
    let config = Arc::new(config);
    let host = &config.concentrator.host;
    let resolved = resolve_concentrators(&config).await?;
    let Some(&primary) = resolved.first().and_then(|a| a.first()) else {
        return Err(RunError::NoAddress { host: host.clone() });
    };
    for (c, addrs) in config.concentrators.iter().zip(&resolved) {
        info!(name = %c.name, host = %c.host, addresses = ?addrs, "concentrator resolved");
    }
    let addrs: Vec<SocketAddr> = resolved.iter().flatten().copied().collect();
    let status: SharedStatus = Arc::new(Mutex::new(StatusModel::new(
        env!("CARGO_PKG_VERSION"),
        started,
        host,
    )));
    control::status::lock(&status).concentrator_mut().address = Some(primary);

    // Kernel features first (logged once): a kernel without Fast Open on MPTCP
    // (Linux < 6.2) never tries it, not even on the first probe.
    let kernel = control::prepare(&config, &status);
    let choice = UpstreamChoice {
        concentrator: primary,
        fastopen: kernel.tfo_mptcp,
        source: None,
        hedge: None,
        abandoned: Vec::new(),
        suspects: Vec::new(),
        buffers: Default::default(),
        legs: Vec::new(),
    };
    let mut initial = driver::conn_params(&config, &choice);
    driver::check_congestion(&status, &mut initial);
    let (params, params_rx) = watch::channel(Arc::new(initial));
    let listeners = proxy::bind(config.proxy.listen_port)?;
    info!(
        port = config.proxy.listen_port,
        ipv6 = listeners.v6.is_some(),
        "listening"
    );
    let control_socket = serve::ControlSocketTask::start(&config.status.socket, &status);

    let probe_started = Instant::now();
    let upstream = params_rx.borrow().upstream.clone();
    let first = concentrator_probe::probe(&upstream, config.health.timeout, kernel.tfo_mptcp).await;
    let first_rtt = probe_started.elapsed();
    if let Err(error) = &first.result {
        concentrator_probe::log_failure(error, true);
    }
    let first_ok = first.result.is_ok();
    let mut core = Core::with_concentrators(config.clone(), resolved, first_ok, Instant::now());
    core.set_kernel_fastopen(kernel.tfo_mptcp);
    core.set_kernel_buffer_limits(net::sysctl::buffer_limits());
    core.set_guard_pacing(guard_pace_enabled(), Instant::now());
    if let Some(evidence) = first.fastopen {
        core.handle(Input::UpstreamConnected(evidence), Instant::now());
    }
    {
        let mut model = control::status::lock(&status);
        model.record_concentrator_probe(
            first
                .result
                .as_ref()
                .map(|()| first_rtt)
                .map_err(|e| e.to_string()),
        );
        model.concentrator_mut().redirect = first_ok;
        model.set_latency_guard(core.latency_guard());
    }
    let spec = Core::initial_spec(&config, &addrs, first_ok);
    debug!(ruleset = %nft::render(&spec), "creating nft table");
    let table = NftTable::create(&spec).map_err(RunError::Nft)?;
    let mut names = bypass_names::ResolverFile::default();
    let names_status = names.sync(&config.bypass.names, table.table());
    control::status::lock(&status).set_name_bypass(names_status, table.table());
    // Nothing below returns early: once started, the control plane always cleans up.
    let (events, inputs) = mpsc::unbounded_channel();
    let control = match ControlPlane::start(
        config.clone(),
        params_rx.clone(),
        events.clone(),
        status.clone(),
    )
    .await
    {
        Ok(control) => Some(control),
        Err(error) => {
            error!(
                %error,
                "CONTROL PLANE NOT RUNNING: no per-WAN routing, endpoints or WAN health; \
                 carrying on with the data path only"
            );
            None
        }
    };
    notify("READY=1");
    info!(concentrator = %primary, redirect = first_ok, "mpbond-agent ready");

    let stats = Arc::new(Stats::default());
    control::status::lock(&status).set_stats(stats.clone());
    let ctx = Arc::new(ConnContext {
        params: params_rx,
        stats: stats.clone(),
        events,
    });
    let tracker = TaskTracker::new();
    let udp = start_udp(&config, &ctx, &tracker, &shutdown, &status);
    let serve = serve::ServeTask::start(
        listeners,
        ctx,
        config.proxy.max_connections,
        tracker.clone(),
        shutdown.clone(),
    );
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let control_plane = async {
        if let Some(mut control) = control {
            control.set_upstreams(stats.upstreams.clone());
            control.run(control_rx, shutdown.clone()).await;
        }
    };
    let driver = Driver {
        core,
        table,
        params,
        control: Some(control_tx),
        status: status.clone(),
        serve,
        control_socket,
        names,
        upstreams: stats.upstreams.clone(),
    };
    let (driver, ()) = tokio::join!(driver.run(inputs, reloads, shutdown.clone()), control_plane);

    notify("STOPPING=1");
    info!("shutting down");
    let Driver {
        table,
        serve,
        control_socket,
        mut names,
        ..
    } = driver;
    names.remove();
    match table.remove() {
        Ok(()) => info!("nft table removed"),
        Err(error) => error!(%error, "cannot remove the nft table"),
    }
    drop(serve.join().await);
    if let Some(udp) = udp {
        udp.stop().await;
    }
    if let Some(socket) = control_socket {
        socket.shutdown().await;
    }
    drain(tracker, &stats).await;
    Ok(())
}

/// Start the UDP interception unless `[udp] enabled = false`. A failure is logged and
/// the agent runs on without it: nft's tproxy finds no socket, so LAN UDP keeps going out
/// by NAT.
fn start_udp(
    config: &Config,
    ctx: &Arc<ConnContext>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    status: &SharedStatus,
) -> Option<udp::UdpService> {
    if !config.udp.enabled {
        return None;
    }
    match udp::UdpService::start(&config.udp, ctx.clone(), tracker.clone(), shutdown.clone()) {
        Ok(service) => {
            let mut model = control::status::lock(status);
            model.set_udp_stats(service.stats());
            model.set_protect_stats(service.protect_stats());
            drop(model);
            Some(service)
        }
        Err(error) => {
            error!(%error, "UDP NOT BONDED: LAN UDP goes out by NAT");
            None
        }
    }
}

/// Wait up to [`DRAIN_TIMEOUT`] for the connection tasks, then log the totals. Tasks
/// still running are dropped with the runtime.
async fn drain(tracker: TaskTracker, stats: &Stats) {
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        let active = stats.snapshot().active;
        warn!(
            active,
            "connections still open after {DRAIN_TIMEOUT:?}, closing them"
        );
    }
    let s = stats.snapshot();
    info!(
        total = s.total,
        direct = s.direct,
        refused = s.refused,
        mptcp_fallbacks = s.mptcp_fallbacks,
        "stopped"
    );
}

/// `MPBOND_GUARD_PACE=0` in the agent's environment turns the latency guard's read pacing
/// off (the clamp stays), for A/B measurements (bench case 21). Read once, at start; the
/// core then owns the switch.
fn guard_pace_enabled() -> bool {
    std::env::var("MPBOND_GUARD_PACE").map_or(true, |v| v.trim() != "0")
}
