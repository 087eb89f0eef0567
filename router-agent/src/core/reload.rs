//! What a reload changes: the running config and the new one compared part by part, so
//! the shell rebuilds only what differs and leaves the rest (live connections, unchanged
//! WANs, their tables, rules and endpoints, the nft table) untouched.

use std::net::SocketAddr;

use crate::config::Config;

/// The parts of the config that differ. All `false`: nothing to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// The concentrator's host, port or resolved addresses: new connections and probes
    /// go to the new one; live relays stay on the old.
    pub concentrator: bool,
    /// The client id or key.
    pub credentials: bool,
    /// Per-connection timeouts (connect, reply, idle): new connections use them.
    pub connections: bool,
    /// The probe interval, timeout and fail-open thresholds.
    pub health: bool,
    /// The listener: its port or its connection cap.
    pub listener: bool,
    /// The nft table: its name, the LAN interfaces, the bypass lists or `[udp]` (whose
    /// rules follow a reload; its sockets, limits and routing take a restart).
    pub table: bool,
    /// The control plane: WANs (their data plans included), LAN interfaces, routing
    /// ranges, ubus, MPTCP limits and sysctls, and the state directory (the usage file).
    pub control: bool,
    /// The control socket's path.
    pub status_socket: bool,
    /// The log filter.
    pub log: bool,
}

impl Changes {
    /// Compare `old` with `new` (and the concentrator's addresses as resolved).
    pub fn between(
        old: &Config,
        new: &Config,
        old_addrs: &[SocketAddr],
        new_addrs: &[SocketAddr],
    ) -> Changes {
        let (oc, nc) = (&old.concentrator, &new.concentrator);
        let (op, np) = (&old.proxy, &new.proxy);
        Changes {
            concentrator: oc.host != nc.host
                || oc.port != nc.port
                || old_addrs != new_addrs
                || !crate::config::concentrators::same_endpoints(
                    &old.concentrators,
                    &new.concentrators,
                ),
            credentials: oc.client_id != nc.client_id
                || oc.key.to_hex() != nc.key.to_hex()
                || !crate::config::concentrators::same_credentials(
                    &old.concentrators,
                    &new.concentrators,
                ),
            connections: op.connect_timeout != np.connect_timeout
                || op.reply_timeout != np.reply_timeout
                || op.idle_timeout != np.idle_timeout,
            health: old.health != new.health,
            listener: op.listen_port != np.listen_port || op.max_connections != np.max_connections,
            table: op.nft_table != np.nft_table
                || op.lan_interfaces != np.lan_interfaces
                || op.listen_port != np.listen_port
                || old.bypass != new.bypass
                || old.udp != new.udp,
            control: old.wan != new.wan
                || old.routing != new.routing
                || old.mptcp != new.mptcp
                || old.path_quality != new.path_quality
                || op.lan_interfaces != np.lan_interfaces
                || old.state_dir != new.state_dir,
            status_socket: old.status != new.status,
            log: old.log_level != new.log_level,
        }
    }

    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }

    /// New upstream connections need new settings.
    pub fn upstream(&self) -> bool {
        self.concentrator || self.credentials || self.connections
    }

    /// The names of the parts that changed, for the log.
    pub fn names(&self) -> Vec<&'static str> {
        let parts = [
            (self.concentrator, "concentrator"),
            (self.credentials, "credentials"),
            (self.connections, "connection timeouts"),
            (self.health, "health"),
            (self.listener, "listener"),
            (self.table, "nft table"),
            (self.control, "wans and routing"),
            (self.status_socket, "status socket"),
            (self.log, "log level"),
        ];
        parts
            .into_iter()
            .filter_map(|(changed, name)| changed.then_some(name))
            .collect()
    }
}
