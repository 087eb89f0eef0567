//! mpbond concentrator: the VPS end of mpbond.
//!
//! It accepts MPTCP connections from routers, reads one RFC 8803 Convert message from
//! each (usually carried in the SYN with TCP Fast Open), verifies the client's cookie,
//! checks the destination against its policy and limits, connects there over plain TCP,
//! answers with the Convert reply and relays both ways with `splice` (`recv`/`send` out of
//! the MPTCP socket, whose splice is a copy anyway).
//!
//! # Layout
//!
//! * [`config`]: the TOML file in two layers (raw serde struct → validated [`Config`]).
//! * [`policy`]: which destinations are allowed. Pure.
//! * [`admission`]: total and per-client connection limits, after authentication.
//! * [`source_limit`]: per-source limits before authentication (unauthenticated
//!   connections, new connections a second), asked before a connection takes a slot.
//! * [`session`]: one connection, handshake to relay, logged once at its end. The
//!   request is judged by `mpbond_protocol`'s `ServerHandshake`; the session carries
//!   out its decision, the policy's and the limits'.
//! * [`udp`]: UDP flows (a `Decision::Udp`): the same policy and limits, then per-client
//!   flow and datagram-rate limits, one connected UDP socket per flow and RFC 9297
//!   capsules both ways through a bounded queue; idle flows end. Protected flows' legs
//!   (a Group TLV) share one flow group per (client, group id) that drops duplicates.
//! * [`probe_responder`]: answers WAN probe datagrams over UDP on the listen port
//!   (MAC check, no state per probe, a per-source rate limit).
//! * [`listener`]: MPTCP listeners that take data in a SYN only with a Fast Open cookie,
//!   screened by the per-source limits and served by the shared accept loop
//!   ([`mpbond_relay::accept`]).
//! * [`reload`]: shared state, the reload [`Handle`] and what a reload changed.
//! * [`metrics`], [`metrics_http`]: counters and the `GET /metrics` responder.
//! * [`nofile`]: the soft descriptor limit raised to the hard one at start.
//! * [`host`]: own addresses and the kernel settings check at start.
//! * [`address_watch`]: follows rtnetlink address events so the own-address set stays
//!   current.
//! * [`replay_state`]: the replay journal in `state_dir`, so replays are refused across
//!   restarts and crashes.
//! * [`setup`]: `mpbond-concentrator setup` (sysctls, MPTCP limits over genetlink, the
//!   Fast Open key kept in the state directory by [`fastopen_key`]).
//! * [`add_client`]: `mpbond-concentrator add-client` (new key appended to the config).
//! * [`standard_auth`]: per-client `auth = "static-cookie"` / `"source"` for standard
//!   RFC 8803 clients (weaker than the default HMAC mode; opt-in).
//! * [`socks`]: the optional SOCKS5 listener's sessions (RFC 1928/1929) for devices that
//!   speak MPTCP themselves: the same policy (after name resolution), limits, metrics and
//!   relay.
//!
//! # Running
//!
//! ```no_run
//! # async fn example(config: mpbond_concentrator::Config) -> Result<(), mpbond_concentrator::RunError> {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let server = mpbond_concentrator::Server::bind(config).await?;
//! let handle = server.handle(); // handle.reload(new_config) on SIGHUP
//! server.run(shutdown).await
//! # }
//! ```

pub mod add_client;
pub mod address_watch;
pub mod admission;
pub mod config;
pub mod fastopen_key;
pub mod host;
pub mod listener;
pub mod metrics;
pub mod metrics_http;
pub mod nofile;
pub mod policy;
pub mod probe_responder;
pub mod reload;
pub mod replay_state;
pub mod session;
pub mod setup;
pub mod socks;
pub mod source_limit;
pub mod standard_auth;
pub mod udp;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mpbond_relay::accept::AcceptLoop;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::{Config, ConfigError};
pub use reload::{Handle, ReloadSummary};

use reload::State;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("no listen address configured")]
    NoListenAddress,
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("replay state: {0} (set state_dir = \"\" to run without it, and accept replays across restarts)")]
    State(#[from] replay_state::StateError),
}

/// A concentrator with its sockets bound, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    listeners: Vec<(SocketAddr, TcpListener)>,
    socks: Vec<(SocketAddr, TcpListener)>,
    probes: Vec<(SocketAddr, tokio::net::UdpSocket)>,
    metrics: Option<(SocketAddr, TcpListener)>,
    state: Arc<State>,
    addresses: Option<mpbond_netlink::Subscription>,
}

impl Server {
    /// Check the host, read its replay state and its own addresses (after subscribing to
    /// their changes) and bind every listener. Must be called inside a tokio runtime.
    pub async fn bind(config: Config) -> Result<Server, RunError> {
        for issue in host::check() {
            warn!("{issue}; `mpbond-concentrator setup` fixes it");
        }
        let env_dir = std::env::var(replay_state::STATE_DIRECTORY_ENV).ok();
        let state_dir = replay_state::state_dir(&config, env_dir.as_deref());
        let verifier = replay_state::verifier(&config, state_dir.as_deref())?;
        match &state_dir {
            Some(dir) => info!(dir = %dir.display(), "replay state kept across restarts"),
            None => warn!(
                "no state_dir: a request captured before a restart is accepted again after it"
            ),
        }
        let addresses = address_watch::subscribe()
            .map_err(|error| warn!(%error, "cannot watch address changes; SIGHUP re-reads them"))
            .ok();
        let own = host::own_addresses().unwrap_or_else(|error| {
            warn!(%error, "cannot list own addresses; only the built-in policy applies");
            Vec::new()
        });
        let mut listeners = Vec::with_capacity(config.listen.len());
        for &addr in &config.listen {
            let bound = match listener::bind(addr) {
                Ok(bound) => bound,
                // A host without IPv6 cannot bind the default `[::]:4850`: skip it, as
                // long as another listener remains.
                Err(e)
                    if addr.is_ipv6()
                        && addr.ip().is_unspecified()
                        && listener::is_no_family(&e)
                        && config.listen.len() > 1 =>
                {
                    warn!(%addr, error = %e, "IPv6 is not available; not listening on this address");
                    continue;
                }
                Err(source) => return Err(RunError::Listen { addr, source }),
            };
            let local = bound
                .listener
                .local_addr()
                .map_err(|source| RunError::Listen { addr, source })?;
            info!(%local, mptcp = bound.mptcp, "listening");
            listeners.push((local, bound.listener));
        }
        if listeners.is_empty() {
            // Every address was skipped (IPv6 missing), or a config built in code has none.
            let addr = config.listen.first().ok_or(RunError::NoListenAddress)?;
            let source = io::Error::from_raw_os_error(libc::EAFNOSUPPORT);
            return Err(RunError::Listen {
                addr: *addr,
                source,
            });
        }
        let mut socks = Vec::with_capacity(config.socks.listen.len());
        for &addr in &config.socks.listen {
            let bound = listener::bind(addr).map_err(|source| RunError::Listen { addr, source })?;
            let local = bound
                .listener
                .local_addr()
                .map_err(|source| RunError::Listen { addr, source })?;
            info!(%local, mptcp = bound.mptcp, "SOCKS5 listening");
            socks.push((local, bound.listener));
        }
        let metrics = match config.metrics {
            Some(addr) => {
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| RunError::Metrics { addr, source })?;
                let local = l
                    .local_addr()
                    .map_err(|source| RunError::Metrics { addr, source })?;
                info!(%local, "serving metrics at /metrics");
                Some((local, l))
            }
            None => None,
        };
        let bound: Vec<SocketAddr> = listeners.iter().map(|(a, _)| *a).collect();
        let probes = probe_responder::bind(&bound, &config.probe);
        let state = Arc::new(State::new(config, &own, verifier));
        Ok(Server {
            listeners,
            socks,
            probes,
            metrics,
            state,
            addresses,
        })
    }

    /// The bound listen addresses (with real ports when the config said port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(a, _)| *a).collect()
    }

    /// The bound SOCKS5 listen addresses (empty unless `[socks] listen` names some).
    pub fn socks_addrs(&self) -> Vec<SocketAddr> {
        self.socks.iter().map(|(a, _)| *a).collect()
    }

    /// The bound probe (UDP) addresses.
    pub fn probe_addrs(&self) -> Vec<SocketAddr> {
        self.probes.iter().map(|(a, _)| *a).collect()
    }

    /// The bound metrics address, if metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(a, _)| *a)
    }

    /// A handle to reload the config and read metrics while the server runs.
    pub fn handle(&self) -> Handle {
        Handle {
            state: self.state.clone(),
        }
    }

    /// Serve until `shutdown` is cancelled, then stop accepting and let live connections
    /// drain for up to `limits.drain_timeout`. Sends `READY=1` once serving and
    /// `STOPPING=1` when shutdown starts.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let tracker = TaskTracker::new();
        let stop_accepting = shutdown.child_token();
        let mut loops = Vec::new();
        let accept = AcceptLoop {
            name: "convert",
            limit: self.state.slots.clone(),
            tracker: tracker.clone(),
            shutdown: stop_accepting.clone(),
        };
        for (_, l) in self.listeners {
            let task = listener::serve(l, self.state.clone(), accept.clone());
            loops.push(tokio::spawn(task));
        }
        let socks_accept = AcceptLoop {
            name: "socks",
            ..accept.clone()
        };
        for (_, l) in self.socks {
            let task = listener::serve_socks(l, self.state.clone(), socks_accept.clone());
            loops.push(tokio::spawn(task));
        }
        let rate = self.state.live().config.probe.rate_per_source;
        for (_, socket) in self.probes {
            let task =
                probe_responder::serve(socket, self.state.clone(), rate, stop_accepting.clone());
            loops.push(tokio::spawn(task));
        }
        let metrics_tracker = TaskTracker::new();
        if let Some((_, l)) = self.metrics {
            let task = metrics_http::serve(
                l,
                self.state.metrics.clone(),
                stop_accepting.clone(),
                metrics_tracker.clone(),
            );
            loops.push(tokio::spawn(task));
        }
        let watcher = tokio::spawn(address_watch::watch(
            self.addresses,
            self.state.clone(),
            stop_accepting.clone(),
        ));
        mpbond_relay::notify::notify("READY=1");
        info!(
            clients = self.state.live().clients.len(),
            "concentrator ready"
        );

        shutdown.cancelled().await;
        mpbond_relay::notify::notify("STOPPING=1");
        for task in loops {
            let _ = task.await;
        }
        tracker.close();
        metrics_tracker.close();
        let drain = self.state.live().config.limits.drain_timeout;
        let live = self.state.metrics.active();
        info!(
            live,
            drain_secs = drain.as_secs(),
            "stopped accepting; draining connections"
        );
        let _ = watcher.await;
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            warn!(
                left = self.state.metrics.active(),
                "drain timeout; closing remaining connections"
            );
        }
        // Exact high-water marks, so a planned restart refuses nothing new.
        if let Err(error) = self.state.verifier.stop() {
            warn!(%error, "cannot record the clean stop in the replay journal; clients may be refused for a few seconds after the restart");
        }
        Ok(())
    }
}

/// Bind and serve `config` until `shutdown` (see [`Server`] to also reload).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    Server::bind(config).await?.run(shutdown).await
}
