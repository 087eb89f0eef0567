//! mpbond router agent: redirects LAN TCP to a transparent listener and carries each
//! connection over one MPTCP connection to the concentrator, failing open when the
//! concentrator is unreachable.
//!
//! # Layout
//!
//! ```text
//! main.rs        CLI, tracing, signals, then run(config, shutdown)
//! config.rs      raw serde config -> validated Config
//!   raw.rs         the serde types; control.rs: routing/mptcp/wan/status sections
//!   uci.rs         the UCI file format (OpenWrt /etc/config/mpbond) -> the same raw config
//! model/         PURE decisions, unit-tested without root
//!   plan.rs        the nft RedirectSpec: built-in + concentrator + user bypass lists
//!   health.rs      the fail-open state machine (Up = redirect on)
//!   wan.rs         WANs discovered from a kernel Snapshot (config list or auto-detect)
//!   routing.rs     plan(wans) -> desired tables, rules, endpoints; diff -> ordered NetOps
//!   netops.rs      NetOp, KernelState, the NetBackend seam and its RecordingBackend
//!   probe.rs       the per-WAN probe state machine (mwan3-like up/down thresholds)
//! net/           kernel I/O: rtnetlink routes/rules/snapshot/monitor, mptcp_pm genetlink,
//!                sysctls, kernel feature probe; `Kernel` implements NetBackend
//! nft/           the nf_tables table (`inet mpbond`, flags owner) over netlink
//! upstream.rs    seal a Convert request, connect over MPTCP+TFO, read the Convert reply
//! proxy/         transparent listener, bounded accept loop, per-connection handler
//! health.rs      the probe loop around model::Health; applies the verdict to nft
//! wanprobe.rs    per-WAN probes toward the concentrator, bound to the WAN's device
//! status/        the status model (docs/STATUS.md), control socket, `status` CLI
//! control/       the control plane: reconcile loop, per-WAN health, status publishing
//! ubus/          netifd over ubus (OpenWrt): a native ubus client, WAN name -> l3_device
//! ```
//!
//! # Lifecycle ([`run`])
//!
//! Resolve the concentrator → bind the listeners and the control socket → one probe →
//! create the nft table with the redirect set to the probe's verdict → kernel features
//! and CPE sysctls → start the control plane (clean up a crash's leftovers, first
//! reconcile; if it cannot start, e.g. no MPTCP path manager, the agent logs it and runs
//! the data path alone) → `READY=1` → serve, probe and reconcile until `shutdown` →
//! `STOPPING=1` → the control plane removes every owned route, rule and endpoint →
//! remove the nft table → close the listeners → give live relays up to
//! [`DRAIN_TIMEOUT`] to finish.

pub mod config;
pub mod control;
pub mod health;
pub mod model;
pub mod net;
pub mod nft;
pub mod proxy;
pub mod status;
pub mod ubus;
pub mod upstream;
pub mod wanprobe;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpbond_relay::notify::notify;
use mpbond_relay::relay::RelayOpts;
use thiserror::Error;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

pub use config::Config;

use crate::control::{ControlPlane, SharedStatus, StatusTable};
use crate::health::Monitor;
use crate::model::{Health, Probe};
use crate::nft::{NftError, NftTable};
use crate::proxy::{BindError, ConnContext, Stats};
use crate::status::{ControlSocket, StatusModel};
use crate::upstream::Upstream;

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

/// Run the agent until `shutdown` is cancelled. See the crate docs for the lifecycle.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let started = Instant::now();
    let host = &config.concentrator.host;
    let addrs = resolve_concentrator(host, config.concentrator.port).await?;
    let Some(&primary) = addrs.first() else {
        return Err(RunError::NoAddress { host: host.clone() });
    };
    info!(%host, addresses = ?addrs, "concentrator resolved");
    let ips: Vec<_> = addrs.iter().map(SocketAddr::ip).collect();
    let mut spec = model::redirect_spec(&config, &ips, false);
    let status: SharedStatus = Arc::new(Mutex::new(StatusModel::new(
        env!("CARGO_PKG_VERSION"),
        started,
        host,
    )));
    control::status::lock(&status).concentrator_mut().address = Some(primary);

    let upstream = Arc::new(Upstream {
        addr: primary,
        client_id: config.concentrator.client_id.clone(),
        key: config.concentrator.key.clone(),
        connect_timeout: config.proxy.connect_timeout,
        fastopen: AtomicBool::new(true),
        wan_reach: Default::default(),
        source: Default::default(),
    });
    let listeners = proxy::bind(config.proxy.listen_port)?;
    info!(
        port = config.proxy.listen_port,
        ipv6 = listeners.v6.is_some(),
        "listening"
    );
    let socket = match ControlSocket::bind(&config.status.socket) {
        Ok(socket) => Some(socket),
        Err(error) => {
            error!(%error, "no control socket: `mpbond-agent status` will not answer");
            None
        }
    };

    let probe_started = Instant::now();
    let first = health::probe(&upstream, config.health.timeout).await;
    let first_rtt = probe_started.elapsed();
    if let Err(error) = &first {
        health::log_failure(error, true);
    }
    spec.redirect = first.is_ok();
    {
        let mut model = control::status::lock(&status);
        model.record_concentrator_probe(
            first
                .as_ref()
                .map(|()| first_rtt)
                .map_err(|e| e.to_string()),
        );
        model.concentrator_mut().redirect = spec.redirect;
    }
    debug!(ruleset = %nft::render(&spec), "creating nft table");
    let table = NftTable::create(&spec).map_err(RunError::Nft)?;
    // Nothing below returns early: once started, the control plane always cleans up.
    control::prepare(&config, &status);
    let control = match ControlPlane::start(&config, upstream.clone(), status.clone()).await {
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
    let Config {
        proxy: proxy_config,
        health: health_config,
        ..
    } = config;
    notify("READY=1");
    info!(concentrator = %upstream.addr, redirect = spec.redirect, "mpbond-agent ready");

    let stats = Arc::new(Stats::default());
    control::status::lock(&status).set_stats(stats.clone());
    let probe_now = Arc::new(Notify::new());
    let ctx = Arc::new(ConnContext {
        upstream: upstream.clone(),
        stats: stats.clone(),
        probe_now: probe_now.clone(),
        reply_timeout: proxy_config.reply_timeout,
        direct_timeout: proxy_config.connect_timeout,
        relay: RelayOpts {
            idle_timeout: proxy_config.idle_timeout,
        },
    });
    let monitor = Monitor {
        health: Health::new(
            Probe::from(first.is_ok()),
            health_config.down_after,
            health_config.up_after,
            Instant::now(),
        ),
        upstream,
        config: health_config,
        spec,
        table: StatusTable {
            inner: table,
            status: status.clone(),
        },
        probe_now,
    };
    let tracker = TaskTracker::new();
    let serve = proxy::serve(
        &listeners,
        ctx,
        proxy_config.max_connections,
        tracker.clone(),
        shutdown.clone(),
    );
    let control_plane = async {
        if let Some(control) = control {
            control.run(shutdown.clone()).await;
        }
    };
    let status_socket = async {
        if let Some(socket) = socket {
            info!(path = %socket.path().display(), "control socket ready");
            let status = status.clone();
            let source = move || control::status::lock(&status).render(std::time::Instant::now());
            socket.serve(source, shutdown.clone()).await;
        }
    };
    let ((), table, (), ()) = tokio::join!(
        serve,
        monitor.run(shutdown.clone()),
        control_plane,
        status_socket
    );

    notify("STOPPING=1");
    info!("shutting down");
    match table.inner.remove() {
        Ok(()) => info!("nft table removed"),
        Err(error) => error!(%error, "cannot remove the nft table"),
    }
    drop(listeners);
    drain(tracker, &stats).await;
    Ok(())
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
