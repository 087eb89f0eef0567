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
//! ```
//!
//! # Lifecycle ([`run`])
//!
//! Resolve the concentrator → bind the listeners → one probe → create the nft table with
//! the redirect set to the probe's verdict → `READY=1` → serve and probe until
//! `shutdown` → `STOPPING=1` → remove the table → close the listeners → give live relays
//! up to [`DRAIN_TIMEOUT`] to finish.

pub mod config;
pub mod health;
pub mod model;
pub mod net;
pub mod nft;
pub mod proxy;
pub mod status;
pub mod upstream;
pub mod wanprobe;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpbond_relay::notify::notify;
use mpbond_relay::relay::RelayOpts;
use thiserror::Error;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

pub use config::Config;

use crate::health::Monitor;
use crate::model::{Health, Probe};
use crate::nft::{NftError, NftTable};
use crate::proxy::{BindError, ConnContext, Stats};
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
    let host = &config.concentrator.host;
    let addrs = resolve_concentrator(host, config.concentrator.port).await?;
    let Some(&primary) = addrs.first() else {
        return Err(RunError::NoAddress { host: host.clone() });
    };
    info!(%host, addresses = ?addrs, "concentrator resolved");
    let ips: Vec<_> = addrs.iter().map(SocketAddr::ip).collect();
    let mut spec = model::redirect_spec(&config, &ips, false);

    let Config {
        concentrator,
        proxy: proxy_config,
        health: health_config,
        ..
    } = config;
    let upstream = Arc::new(Upstream {
        addr: primary,
        client_id: concentrator.client_id,
        key: concentrator.key,
        connect_timeout: proxy_config.connect_timeout,
        fastopen: AtomicBool::new(true),
    });

    let listeners = proxy::bind(proxy_config.listen_port)?;
    info!(
        port = proxy_config.listen_port,
        ipv6 = listeners.v6.is_some(),
        "listening"
    );

    let first = health::probe(&upstream, health_config.timeout).await;
    if let Err(error) = &first {
        health::log_failure(error, true);
    }
    spec.redirect = first.is_ok();
    debug!(ruleset = %nft::render(&spec), "creating nft table");
    let table = NftTable::create(&spec).map_err(RunError::Nft)?;
    notify("READY=1");
    info!(concentrator = %upstream.addr, redirect = spec.redirect, "mpbond-agent ready");

    let stats = Arc::new(Stats::default());
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
        table,
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
    let ((), table) = tokio::join!(serve, monitor.run(shutdown.clone()));

    notify("STOPPING=1");
    info!("shutting down");
    match table.remove() {
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
