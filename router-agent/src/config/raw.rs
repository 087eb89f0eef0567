//! The raw config as written in the file: plain serde types with `deny_unknown_fields`.
//!
//! Nothing here is validated. [`super::Config::from_raw`] turns a [`RawConfig`] into the
//! typed [`super::Config`], naming the field of every problem it finds. The same struct
//! serves TOML and JSON (and, later, UCI).

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[concentrator]`: the single-concentrator form, read as a list of one.
    pub concentrator: Option<RawConcentrator>,
    /// `[[concentrators]]`: several concentrators with priorities (failover).
    #[serde(default)]
    pub concentrators: Vec<RawConcentrator>,
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub bypass: RawBypass,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub mptcp: RawMptcp,
    /// `[[wan]]` entries; none means auto-detection.
    #[serde(default)]
    pub wan: Vec<RawWan>,
    #[serde(default)]
    pub path_quality: super::path_quality::RawPathQuality,
    #[serde(default)]
    pub status: RawStatus,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub udp: RawUdp,
    /// Where the agent keeps its state (the data usage file); default `/etc/mpbond`,
    /// `""` for none.
    pub state_dir: Option<String>,
}

/// `[concentrator]` or one `[[concentrators]]` entry: where the VPS is and how we
/// authenticate to it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConcentrator {
    /// A name for the status and the logs; default: the host.
    pub name: Option<String>,
    /// Lower is preferred (1..=255); default: the entry's position (1, 2, ...).
    pub priority: Option<u64>,
    pub host: String,
    pub port: Option<u64>,
    pub client_id: String,
    pub key: String,
}

impl std::fmt::Debug for RawConcentrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawConcentrator")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("key", &"***")
            .finish()
    }
}

/// `[proxy]`: the transparent listener and the redirect.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub listen_port: Option<u64>,
    pub lan_interfaces: Option<Vec<String>>,
    pub nft_table: Option<String>,
    pub max_connections: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub reply_timeout_ms: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
}

/// `[bypass]`: prefixes and domain names that are never redirected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBypass {
    #[serde(default)]
    pub destinations: Vec<String>,
    #[serde(default)]
    pub sources: Vec<String>,
    /// Domain names whose addresses are never redirected (`config/bypass_names.rs`).
    #[serde(default)]
    pub domains: Vec<String>,
    /// The dnsmasq config file the agent writes its `nftset=` lines to.
    pub dnsmasq_conf: Option<String>,
    /// The command that makes dnsmasq read that file again.
    #[serde(default)]
    pub dnsmasq_restart: Vec<String>,
}

/// `[health]`: the concentrator probe and the fail-open thresholds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub down_after: Option<u64>,
    pub up_after: Option<u64>,
}

/// `[routing]`: the table, rule-priority and route-protocol ranges the agent owns.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub table_base: Option<u64>,
    pub table_count: Option<u64>,
    pub rule_priority_base: Option<u64>,
    pub rule_priority_count: Option<u64>,
    pub route_protocol: Option<u64>,
    pub reconcile_secs: Option<u64>,
    /// The ubus socket netifd is asked through: a path, or `off`; default: the OpenWrt
    /// paths when they exist.
    pub ubus_socket: Option<String>,
}

/// `[mptcp]`: path-manager limits and the optional CPE sysctls (omitted = left alone).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMptcp {
    pub subflows: Option<u64>,
    pub add_addr_accepted: Option<u64>,
    pub blackhole_timeout: Option<u64>,
    pub syn_retrans_before_tcp_fallback: Option<u64>,
    pub stale_loss_cnt: Option<u64>,
    /// `keep`, `backup` or `delete` (see `model::routing::DownReaction`).
    pub down_reaction: Option<String>,
    /// `TCP_CONGESTION` of the upstream MPTCP connections; `""`/`system`: kernel default.
    pub congestion: Option<String>,
    /// `auto` (from the paths' bandwidth-delay product) or `kernel` (autotuning).
    pub buffers: Option<String>,
}

/// One `[[wan]]` entry. The probe fields also accept the `[health]` spellings
/// (`interval_ms`, `timeout_ms`, `down_after`, `up_after`), which UCI uses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWan {
    pub name: String,
    /// Defaults to `name`.
    pub device: Option<String>,
    /// `on`, `backup` or `off`; default `on`.
    pub mode: Option<String>,
    #[serde(alias = "interval_ms")]
    pub probe_interval_ms: Option<u64>,
    #[serde(alias = "idle_interval_ms")]
    pub probe_idle_interval_ms: Option<u64>,
    #[serde(alias = "timeout_ms")]
    pub probe_timeout_ms: Option<u64>,
    #[serde(alias = "down_after")]
    pub down: Option<u64>,
    #[serde(alias = "up_after")]
    pub up: Option<u64>,
    /// A metered (capped or paid-per-byte) line: used only while no unmetered WAN is up.
    pub metered: Option<bool>,
    /// Monthly allowance of a metered WAN, with its unit: `"500MB"`, `"20GB"`.
    pub allowance: Option<String>,
    /// The day of the month (1-28) the billing month starts; default 1.
    pub reset_day: Option<u64>,
}

/// `[status]`: the control socket.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    pub socket: Option<String>,
}

/// `[log]`: the log filter.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// A `Targets` spec: `info`, `debug`, `mpbond_agent::control=debug,info`.
    pub level: Option<String>,
}

/// `[udp]`: the UDP interception and relay (`config/udp.rs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUdp {
    pub enabled: Option<bool>,
    pub listen_port: Option<u64>,
    /// `bond`, `direct` or `block`.
    pub default: Option<String>,
    #[serde(default)]
    pub rule: Vec<RawUdpRule>,
    pub idle_timeout_secs: Option<u64>,
    pub max_flows: Option<u64>,
    pub queue_bytes: Option<u64>,
    /// Protect flows classed real-time (`core::classify`).
    pub auto_protect: Option<bool>,
    /// Clamp bulk receive windows (and pace the reads of wider ones) while a protected
    /// flow is active (`core::latency_guard`).
    pub latency_guard: Option<bool>,
    pub fwmark: Option<u64>,
    pub route_table: Option<u64>,
    pub rule_priority: Option<u64>,
}

/// One `[[udp.rule]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUdpRule {
    /// `443` or `5000-5100`.
    pub ports: Option<String>,
    pub prefix: Option<String>,
    pub action: String,
    /// `duplicate` or `fec`, for `action = "protect"` only.
    pub mode: Option<String>,
}
