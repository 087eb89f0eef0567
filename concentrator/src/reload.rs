//! Shared server state and configuration reload.
//!
//! The parts of the config that connections read (client table, policy, limits) live in
//! one [`Live`] snapshot behind an `RwLock<Arc<_>>`. A connection takes the `Arc` once, at
//! its start; a reload builds a new snapshot and swaps it in one write, so it is atomic and
//! never touches live connections. Listen addresses, the metrics address and the auth
//! window, the server binding and the state directory are fixed at start (the replay
//! cache must survive reloads); changing them is logged as needing a restart.
//!
//! The own-address part of the policy changes without a reload too: the address watcher
//! ([`crate::address_watch`]) calls [`State::refresh_own`] on every address event. Every
//! rebuild (reload or address change) reads the host's addresses and swaps under one
//! lock, so the last swap always carries the newest read.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use mpbond_protocol::auth::{ClientId, Key, Verifier};
use tokio::sync::{watch, Semaphore};

use crate::admission::Admission;
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::source_limit::SourceTable;

/// What connections read: one consistent snapshot of the reloadable config.
#[derive(Debug)]
pub(crate) struct Live {
    pub config: Config,
    pub clients: HashMap<ClientId, Key>,
    pub policy: Policy,
    /// Standard RFC 8803 clients (static cookie, source prefix).
    pub standard: mpbond_protocol::auth::StandardClients,
}

impl Live {
    /// `host` is the host's own addresses; the config's `public_address` list is added.
    /// A congestion control the kernel does not offer is dropped here, with a warning
    /// (`mpbond_relay::congestion::offered`): connections keep the kernel default.
    fn new(mut config: Config, host: &[IpAddr]) -> Live {
        config.relay.congestion = mpbond_relay::congestion::offered(config.relay.congestion);
        let clients = config
            .clients
            .iter()
            .filter(|c| c.auth.is_hmac())
            .map(|c| (c.id.clone(), c.key.clone()))
            .collect();
        let mut own = host.to_vec();
        own.extend_from_slice(&config.identity.public_address);
        own.sort();
        own.dedup();
        let policy = Policy::new(&config.policy.deny, &config.policy.allow, &own);
        let standard = crate::standard_auth::standard_clients(&config.clients);
        Live {
            config,
            clients,
            policy,
            standard,
        }
    }
}

/// Everything the listeners and connections share.
#[derive(Debug)]
pub(crate) struct State {
    live: RwLock<Arc<Live>>,
    /// Shared by every connection; it locks only its replay cache, and only briefly.
    pub verifier: Verifier,
    pub metrics: Arc<Metrics>,
    pub admission: Arc<Admission>,
    /// Open UDP flows and datagram buckets per client.
    pub udp_clients: Arc<crate::udp::UdpClients>,
    /// Live flow groups (protected UDP flows) by (client, group id).
    pub udp_groups: Arc<crate::udp::FlowGroups>,
    /// Per-source counts before authentication, shared by every listener.
    pub sources: Arc<Mutex<SourceTable>>,
    /// Caps accepted connections (admitted ones plus some headroom for handshakes that
    /// end in a refusal).
    pub slots: Arc<Semaphore>,
    slot_count: Mutex<usize>,
    /// Held while a new snapshot is built and swapped in.
    rebuild: Mutex<()>,
    /// Bumped after every swap that changed the own addresses.
    own_changed: watch::Sender<u64>,
}

/// Accept-loop slots for a given `max_connections`: the limit plus headroom, so that
/// connections over the limit can still be answered with Error 64.
fn slots_for(max_connections: usize) -> usize {
    max_connections
        .saturating_add((max_connections / 8).max(64))
        .min(Semaphore::MAX_PERMITS)
}

impl State {
    /// State for `config`, with the host's addresses `own` and a `verifier` built for
    /// it (binding, journal and restored floors: [`crate::replay_state::verifier`]).
    pub fn new(config: Config, own: &[IpAddr], verifier: Verifier) -> State {
        let slots = slots_for(config.limits.max_connections);
        State {
            live: RwLock::new(Arc::new(Live::new(config, own))),
            verifier,
            metrics: Arc::new(Metrics::default()),
            admission: Arc::new(Admission::default()),
            udp_clients: Arc::default(),
            udp_groups: Arc::default(),
            sources: Arc::default(),
            slots: Arc::new(Semaphore::new(slots)),
            slot_count: Mutex::new(slots),
            rebuild: Mutex::new(()),
            own_changed: watch::Sender::new(0),
        }
    }

    /// Build a snapshot from `config` (or the running one) and the host's addresses read
    /// now (or, if they cannot be read, the previous ones), and swap it in; without a
    /// new config, only if the own addresses changed. Returns the previous snapshot and
    /// the current one.
    fn rebuild(&self, config: Option<Config>) -> (Arc<Live>, Arc<Live>) {
        let _guard = self.rebuild.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.live();
        let host = match crate::host::own_addresses() {
            Ok(host) => host,
            Err(error) => {
                tracing::warn!(%error, "cannot list own addresses; keeping the previous list");
                old.policy
                    .own_addresses()
                    .iter()
                    .copied()
                    .filter(|ip| !old.config.identity.public_address.contains(ip))
                    .collect()
            }
        };
        let reloading = config.is_some();
        let config = config.unwrap_or_else(|| old.config.clone());
        let new = Arc::new(Live::new(config, &host));
        let own_changed = old.policy.own_addresses() != new.policy.own_addresses();
        if !reloading && !own_changed {
            return (old.clone(), old);
        }
        {
            let mut guard = self.live.write().unwrap_or_else(PoisonError::into_inner);
            *guard = new.clone();
        }
        if own_changed {
            self.own_changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        (old, new)
    }

    /// Re-read the host's addresses; if the own-address set changed, swap in a snapshot
    /// with the new set and return it.
    pub fn refresh_own(&self) -> Option<Vec<IpAddr>> {
        let (old, new) = self.rebuild(None);
        let own = new.policy.own_addresses();
        (old.policy.own_addresses() != own).then(|| own.to_vec())
    }

    /// The current snapshot.
    pub fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn resize_slots(&self, max_connections: usize) {
        let want = slots_for(max_connections);
        let mut have = self
            .slot_count
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if want > *have {
            self.slots.add_permits(want - *have);
            *have = want;
        } else if want < *have {
            // Permits held by live connections cannot be taken back; forget what is free
            // now. The admission check enforces the new limit exactly in any case.
            let forgotten = self.slots.forget_permits(*have - want);
            *have -= forgotten;
        }
    }
}

/// A handle on a running server: reload its configuration, read its metrics.
#[derive(Debug, Clone)]
pub struct Handle {
    pub(crate) state: Arc<State>,
}

/// What a reload changed, one human line per change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub changes: Vec<String>,
    /// Changes that were ignored because they need a restart.
    pub needs_restart: Vec<String>,
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            f.write_str("no changes")?;
        } else {
            f.write_str(&self.changes.join("; "))?;
        }
        if !self.needs_restart.is_empty() {
            write!(
                f,
                " (ignored until restart: {})",
                self.needs_restart.join("; ")
            )?;
        }
        Ok(())
    }
}

impl Handle {
    /// Swap in `config` (client table, policy, limits, public addresses) atomically. Own
    /// addresses are re-read; if that fails the previous ones are kept.
    pub fn reload(&self, config: Config) -> ReloadSummary {
        let max_connections = config.limits.max_connections;
        let (old, new) = self.state.rebuild(Some(config));
        let summary = diff(&old, &new);
        self.state.resize_slots(max_connections);
        self.state.metrics.reloaded();
        summary
    }

    /// The addresses the policy refuses as this host's own (interfaces and
    /// `public_address`), sorted.
    pub fn own_addresses(&self) -> Vec<IpAddr> {
        self.state.live().policy.own_addresses().to_vec()
    }

    /// Changes each time the own-address set changes (a reload or an address event).
    pub fn own_addresses_changed(&self) -> watch::Receiver<u64> {
        self.state.own_changed.subscribe()
    }

    /// Re-read `path`; on success swap it in, on error keep the running config.
    pub fn reload_from(&self, path: &Path) -> Result<ReloadSummary, ConfigError> {
        let config = Config::load(path)?;
        Ok(self.reload(config))
    }

    /// The server's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// The number of configured clients right now.
    pub fn client_count(&self) -> usize {
        self.state.live().clients.len()
    }
}

fn diff(old: &Live, new: &Live) -> ReloadSummary {
    let mut s = ReloadSummary::default();
    let mut ids: Vec<&ClientId> = old.clients.keys().chain(new.clients.keys()).collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        match (old.clients.get(id), new.clients.get(id)) {
            (None, Some(_)) => s.changes.push(format!("client {id} added")),
            (Some(_), None) => s.changes.push(format!("client {id} removed")),
            (Some(a), Some(b)) if a != b => s.changes.push(format!("client {id} key changed")),
            _ => {}
        }
    }
    let (ol, nl) = (&old.config.limits, &new.config.limits);
    let mut limit = |name: &str, a: String, b: String| {
        if a != b {
            s.changes.push(format!("limits.{name} {a} -> {b}"));
        }
    };
    limit(
        "max_connections",
        ol.max_connections.to_string(),
        nl.max_connections.to_string(),
    );
    limit(
        "max_connections_per_client",
        ol.max_connections_per_client.to_string(),
        nl.max_connections_per_client.to_string(),
    );
    limit(
        "handshake_timeout",
        format!("{:?}", ol.handshake_timeout),
        format!("{:?}", nl.handshake_timeout),
    );
    limit(
        "connect_timeout",
        format!("{:?}", ol.connect_timeout),
        format!("{:?}", nl.connect_timeout),
    );
    limit(
        "idle_timeout",
        format!("{:?}", ol.idle_timeout),
        format!("{:?}", nl.idle_timeout),
    );
    limit(
        "drain_timeout",
        format!("{:?}", ol.drain_timeout),
        format!("{:?}", nl.drain_timeout),
    );
    if old.config.policy != new.config.policy {
        s.changes.push(format!(
            "policy deny {:?} allow {:?}",
            fmt_nets(&new.config.policy.deny),
            fmt_nets(&new.config.policy.allow)
        ));
    }
    if old.config.udp != new.config.udp {
        // Read by each new flow; flows already open keep the limits they started with.
        s.changes
            .push(format!("udp {:?} (new flows)", new.config.udp));
    }
    if old.policy.own_addresses() != new.policy.own_addresses() {
        s.changes.push(format!(
            "own addresses now {:?}",
            new.policy.own_addresses()
        ));
    }
    if old.config.listen != new.config.listen {
        s.needs_restart
            .push(format!("listen {:?}", new.config.listen));
    }
    if old.config.socks.listen != new.config.socks.listen {
        s.needs_restart
            .push(format!("socks.listen {:?}", new.config.socks.listen));
    }
    if old.config.metrics != new.config.metrics {
        s.needs_restart
            .push(format!("metrics {:?}", new.config.metrics));
    }
    if ol.auth_window_secs != nl.auth_window_secs {
        s.needs_restart
            .push(format!("limits.auth_window_secs {}", nl.auth_window_secs));
    }
    if old.config.probe != new.config.probe {
        s.needs_restart
            .push(format!("probe {:?}", new.config.probe));
    }
    let (oi, ni) = (&old.config.identity, &new.config.identity);
    if oi.state_dir != ni.state_dir || oi.state_disabled != ni.state_disabled {
        s.needs_restart
            .push(format!("state_dir {:?}", ni.state_dir));
    }
    if oi.binding != ni.binding {
        let ids: Vec<&str> = ni.binding.ids.iter().map(|id| id.as_str()).collect();
        s.needs_restart.push(format!(
            "auth server_id {ids:?} accept_unbound {}",
            ni.binding.accept_unbound
        ));
    }
    s
}

fn fmt_nets(nets: &[ipnet::IpNet]) -> Vec<String> {
    nets.iter().map(|n| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(text: &str) -> Live {
        Live::new(Config::parse(text).unwrap(), &[])
    }

    const A: &str = "[[client]]\nid = \"home\"\nkey = \"0101010101010101010101010101010101010101010101010101010101010101\"\n";
    const B: &str = "[[client]]\nid = \"work\"\nkey = \"0202020202020202020202020202020202020202020202020202020202020202\"\n";

    #[test]
    fn diff_names_each_change() {
        let old = live(A);
        let new = live(&format!("listen = [\"127.0.0.1:1\"]\n[limits]\nmax_connections = 10\nmax_connections_per_client = 5\n[policy]\ndeny = [\"198.51.100.0/24\"]\n{B}"));
        let s = diff(&old, &new);
        assert_eq!(
            s.changes,
            vec![
                "client home removed".to_owned(),
                "client work added".to_owned(),
                "limits.max_connections 20000 -> 10".to_owned(),
                "limits.max_connections_per_client 4000 -> 5".to_owned(),
                "policy deny [\"198.51.100.0/24\"] allow []".to_owned(),
            ]
        );
        assert_eq!(s.needs_restart.len(), 1, "{s}");
        assert_eq!(diff(&old, &live(A)), ReloadSummary::default());
    }

    #[test]
    fn slots_have_headroom() {
        assert_eq!(slots_for(10), 74);
        assert_eq!(slots_for(8000), 9000);
    }
}
