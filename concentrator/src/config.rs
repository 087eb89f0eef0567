//! Configuration in two layers.
//!
//! [`RawConfig`] is exactly the TOML file (serde, `deny_unknown_fields`). [`Config::parse`]
//! turns it into a validated, typed [`Config`], and every validation error names the field
//! it is about, e.g. `client[2].key: expected 64 hex characters`. Keys print as `***` in
//! `Debug`, so a config can be logged safely.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use mpbond_protocol::auth::{ClientId, Key, ServerBinding, ServerId};
use mpbond_relay::congestion::{CongestionName, CongestionNameError};
use serde::Deserialize;

pub use crate::probe_responder::ProbeConfig;
use crate::source_limit::SourceLimits;

/// The listen addresses used when the file has no `listen`.
pub const DEFAULT_LISTEN: [&str; 2] = ["0.0.0.0:4850", "[::]:4850"];

/// The file as written. Every table and field is optional except the client entries' own
/// fields; defaults are filled in by validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<Vec<String>>,
    pub metrics: Option<String>,
    pub quiet: Option<bool>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub client: Vec<RawClient>,
    // Replay state, server binding and own addresses (see `IdentityConfig`).
    pub state_dir: Option<String>,
    #[serde(default)]
    pub public_address: Vec<String>,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub probe: RawProbe,
    #[serde(default)]
    pub udp: crate::udp::RawUdp,
    #[serde(default)]
    pub relay: RawRelay,
    #[serde(default)]
    pub socks: crate::socks::config::RawSocks,
}

/// `[relay]` as written: options of the accepted MPTCP connections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelay {
    /// `TCP_CONGESTION` of accepted MPTCP connections (they send the downloads), e.g.
    /// `"bbr"`; `""`/`"system"`: the kernel default. Default [`DEFAULT_CONGESTION`].
    pub congestion: Option<String>,
}

/// `[probe]` as written: the UDP responder for WAN probe datagrams.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub enabled: Option<bool>,
    pub port: Option<u16>,
    pub rate_per_source: Option<u32>,
}

/// `[auth]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub server_id: Vec<String>,
    pub accept_unbound: Option<bool>,
}

/// `[limits]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_connections: Option<u64>,
    pub max_connections_per_client: Option<u64>,
    pub handshake_timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub drain_timeout_secs: Option<u64>,
    pub auth_window_secs: Option<u64>,
    pub max_unauthenticated_per_source: Option<u64>,
    pub new_connections_per_source_per_sec: Option<u64>,
    pub new_connections_per_source_burst: Option<u64>,
}

/// `[policy]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    pub deny: Vec<String>,
    #[serde(default)]
    pub allow: Vec<String>,
}

/// One `[[client]]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub id: String,
    /// Required in the default HMAC mode; optional for standard RFC 8803 clients.
    #[serde(default)]
    pub key: String,
    /// `"hmac"` (default), `"static-cookie"` (with `cookie`) or `"source"` (with
    /// `sources`): see [`crate::standard_auth`].
    pub auth: Option<String>,
    pub cookie: Option<String>,
    #[serde(default)]
    pub sources: Vec<String>,
    /// The client's SOCKS5 password (RFC 1929; the username is `id`), if it may use the
    /// SOCKS5 listener.
    pub socks_password: Option<String>,
}

impl fmt::Debug for RawClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawClient")
            .field("id", &self.id)
            .field("key", &format_args!("***"))
            .field(
                "socks_password",
                &self.socks_password.as_ref().map(|_| "***"),
            )
            .field("auth", &self.auth)
            .field("cookie", &self.cookie.as_ref().map(|_| "***"))
            .field("sources", &self.sources)
            .finish()
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses of the MPTCP listeners (at least one, no duplicates).
    pub listen: Vec<SocketAddr>,
    /// Where to serve Prometheus text, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Quiet mode (default on): a request that fails authentication is closed without
    /// an RFC 8803 error, so a scanner cannot fingerprint the service. Authenticated
    /// clients still get their error codes.
    pub quiet: bool,
    pub limits: Limits,
    pub policy: PolicyConfig,
    pub clients: Vec<Client>,
    pub identity: IdentityConfig,
    /// `[probe]`: answering WAN probe datagrams over UDP.
    pub probe: ProbeConfig,
    /// `[udp]`: UDP flows (issue 9).
    pub udp: crate::udp::UdpConfig,
    pub relay: RelayConfig,
    /// `[socks]`: the optional SOCKS5 listener (off unless `listen` names addresses).
    pub socks: crate::socks::config::SocksConfig,
}

/// The congestion control used unless `[relay] congestion` says otherwise: `bbr`, where
/// the kernel offers it (else the kernel default, with a warning at load: `Live::new`).
/// It triples downloads over a lossy line and ties or wins on clean and bad-backup lines
/// in the bench (docs/DESIGN.md, "Congestion control of our MPTCP sockets").
pub const DEFAULT_CONGESTION: &str = "bbr";

/// `[relay]`: options of accepted MPTCP connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// `None`: the kernel default.
    pub congestion: Option<CongestionName>,
}

/// Where replay state lives, which server ids requests must be bound to, and the
/// public addresses that reach this host (refused as destinations like its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityConfig {
    /// `state_dir`: where `replay.journal` is kept. `None` when the file has no
    /// `state_dir` (the server then uses systemd's `$STATE_DIRECTORY`, if set) or says
    /// `state_dir = ""` (no state: replays across restarts are not refused).
    pub state_dir: Option<PathBuf>,
    /// `state_dir = ""`: run without replay state on purpose.
    pub state_disabled: bool,
    /// `public_address`: addresses that reach this host through a 1:1 NAT.
    pub public_address: Vec<IpAddr>,
    /// `[auth] server_id` and `accept_unbound`.
    pub binding: ServerBinding,
}

/// `[limits]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    /// `None` when `idle_timeout_secs = 0`: connections may idle forever.
    pub idle_timeout: Option<Duration>,
    pub drain_timeout: Duration,
    pub auth_window_secs: u64,
    /// Limits per source address (IPv6: per /64) before authentication.
    pub per_source: SourceLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 20_000,
            max_connections_per_client: 4_000,
            handshake_timeout: Duration::from_millis(5_000),
            connect_timeout: Duration::from_millis(10_000),
            idle_timeout: Some(Duration::from_secs(7_200)),
            drain_timeout: Duration::from_secs(10),
            auth_window_secs: 60,
            per_source: SourceLimits::default(),
        }
    }
}

/// `[policy]`, validated. v4-mapped IPv6 prefixes (`::ffff:a.b.c.d/n`, n ≥ 96) are stored
/// as their IPv4 form, matching how destinations are checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    pub deny: Vec<IpNet>,
    pub allow: Vec<IpNet>,
}

/// One client: its id and its 32-byte key.
#[derive(Clone)]
pub struct Client {
    pub id: ClientId,
    pub key: Key,
    /// Its SOCKS5 password, if it may use the SOCKS5 listener.
    pub socks_password: Option<crate::socks::config::SocksPassword>,
    /// How its Convert requests authenticate. For a standard client without a `key`,
    /// `key` is all zeros and never used: only HMAC clients are in the key table.
    pub auth: crate::standard_auth::ClientAuth,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id.as_str())
            .field("key", &format_args!("***"))
            .field("socks_password", &self.socks_password)
            .field("auth", &self.auth)
            .finish()
    }
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source}")]
    Parse {
        #[source]
        source: toml::de::Error,
    },
    #[error("{field}: {source}")]
    Field {
        field: String,
        #[source]
        source: FieldError,
    },
}

/// What is wrong with one field.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("expected 64 hex characters")]
    Key(#[source] mpbond_protocol::auth::KeyError),
    #[error("invalid client id {value:?}: expected 1-32 characters of [A-Za-z0-9._-]")]
    ClientId { value: String },
    #[error("invalid socket address {value:?} (expected e.g. \"0.0.0.0:4850\" or \"[::]:4850\")")]
    SocketAddr {
        value: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("invalid prefix {value:?} (expected e.g. \"203.0.113.0/24\" or \"2001:db8::/32\")")]
    Prefix {
        value: String,
        #[source]
        source: ipnet::AddrParseError,
    },
    #[error("duplicate of {other}")]
    Duplicate { other: String },
    #[error("must not be empty")]
    Empty,
    #[error("invalid address {value:?} (expected e.g. \"203.0.113.7\" or \"2001:db8::7\")")]
    Address {
        value: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("invalid server id {value:?}: {source}")]
    ServerId {
        value: String,
        #[source]
        source: mpbond_protocol::auth::ServerIdError,
    },
    #[error("must be between {min} and {max}, got {value}")]
    OutOfRange { value: u64, min: u64, max: u64 },
    #[error(transparent)]
    Congestion(#[from] CongestionNameError),
    #[error("expected 8-255 printable ASCII characters without spaces")]
    SocksPassword,
    #[error("{0}")]
    Auth(&'static str),
}

pub(crate) fn field(name: impl Into<String>, source: FieldError) -> ConfigError {
    ConfigError::Field {
        field: name.into(),
        source,
    }
}

impl Config {
    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parse and validate TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|source| ConfigError::Parse { source })?;
        Config::from_raw(raw)
    }

    /// Validate the raw layer.
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let listen_raw = raw
            .listen
            .unwrap_or_else(|| DEFAULT_LISTEN.iter().map(|s| s.to_string()).collect());
        if listen_raw.is_empty() {
            return Err(field("listen", FieldError::Empty));
        }
        let mut listen = Vec::with_capacity(listen_raw.len());
        for (i, value) in listen_raw.iter().enumerate() {
            let addr = parse_addr(value).map_err(|e| field(format!("listen[{i}]"), e))?;
            if let Some(j) = listen.iter().position(|a| *a == addr) {
                let other = format!("listen[{j}]");
                return Err(field(
                    format!("listen[{i}]"),
                    FieldError::Duplicate { other },
                ));
            }
            listen.push(addr);
        }
        let metrics = match raw.metrics {
            Some(value) => Some(parse_addr(&value).map_err(|e| field("metrics", e))?),
            None => None,
        };
        let limits = validate_limits(&raw.limits)?;
        let policy = PolicyConfig {
            deny: parse_prefixes("policy.deny", &raw.policy.deny)?,
            allow: parse_prefixes("policy.allow", &raw.policy.allow)?,
        };
        let clients = validate_clients(&raw.client)?;
        let identity = validate_identity(raw.state_dir, &raw.public_address, &raw.auth)?;
        let probe = validate_probe(&raw.probe)?;
        let udp = crate::udp::config::validate(&raw.udp)?;
        let relay = RelayConfig {
            congestion: CongestionName::parse(
                raw.relay
                    .congestion
                    .as_deref()
                    .unwrap_or(DEFAULT_CONGESTION),
            )
            .map_err(|source| field("relay.congestion", FieldError::Congestion(source)))?,
        };
        let socks = crate::socks::config::validate(&raw.socks)?;
        Ok(Config {
            listen,
            metrics,
            quiet: raw.quiet.unwrap_or(true),
            limits,
            policy,
            clients,
            identity,
            probe,
            udp,
            relay,
            socks,
        })
    }

    /// The key of a client, if the client is configured.
    pub fn key_for(&self, id: &ClientId) -> Option<Key> {
        self.clients
            .iter()
            .find(|c| c.id.as_str() == id.as_str())
            .map(|c| c.key.clone())
    }
}

pub(crate) fn parse_addr(value: &str) -> Result<SocketAddr, FieldError> {
    value.parse().map_err(|source| FieldError::SocketAddr {
        value: value.to_owned(),
        source,
    })
}

/// Parse prefixes; a bare address means a host prefix.
fn parse_prefixes(name: &str, values: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    let mut out = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let net = match value.parse::<IpNet>() {
            Ok(net) => net,
            Err(source) => match value.parse::<IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    let e = FieldError::Prefix {
                        value: value.clone(),
                        source,
                    };
                    return Err(field(format!("{name}[{i}]"), e));
                }
            },
        };
        out.push(crate::policy::canonical_net(net.trunc()));
    }
    Ok(out)
}

fn range(
    name: &str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    in_range(&format!("limits.{name}"), value, default, min, max)
}

/// `value` (or `default` when unset) if it lies in `min..=max`, else an out-of-range
/// error naming `key` (`section.option`).
pub(crate) fn in_range(
    key: &str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let value = value.unwrap_or(default);
    if value < min || value > max {
        return Err(field(key, FieldError::OutOfRange { value, min, max }));
    }
    Ok(value)
}

fn validate_probe(raw: &RawProbe) -> Result<ProbeConfig, ConfigError> {
    let d = ProbeConfig::default();
    let rate = raw.rate_per_source.unwrap_or(d.rate_per_source);
    if !(1..=1000).contains(&rate) {
        return Err(field(
            "probe.rate_per_source",
            FieldError::OutOfRange {
                value: u64::from(rate),
                min: 1,
                max: 1000,
            },
        ));
    }
    Ok(ProbeConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        port: raw.port,
        rate_per_source: rate,
    })
}

fn validate_limits(raw: &RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let max_total = range(
        "max_connections",
        raw.max_connections,
        d.max_connections as u64,
        1,
        10_000_000,
    )?;
    let per_client = range(
        "max_connections_per_client",
        raw.max_connections_per_client,
        (d.max_connections_per_client as u64).min(max_total),
        1,
        max_total,
    )?;
    let handshake = range(
        "handshake_timeout_ms",
        raw.handshake_timeout_ms,
        5_000,
        1,
        600_000,
    )?;
    let connect = range(
        "connect_timeout_ms",
        raw.connect_timeout_ms,
        10_000,
        1,
        600_000,
    )?;
    let idle = range(
        "idle_timeout_secs",
        raw.idle_timeout_secs,
        7_200,
        0,
        30 * 86_400,
    )?;
    let drain = range("drain_timeout_secs", raw.drain_timeout_secs, 10, 0, 86_400)?;
    let window = range("auth_window_secs", raw.auth_window_secs, 60, 1, 86_400)?;
    let per_source = validate_per_source(raw, max_total)?;
    Ok(Limits {
        max_connections: usize::try_from(max_total).unwrap_or(usize::MAX),
        max_connections_per_client: usize::try_from(per_client).unwrap_or(usize::MAX),
        handshake_timeout: Duration::from_millis(handshake),
        connect_timeout: Duration::from_millis(connect),
        idle_timeout: (idle > 0).then(|| Duration::from_secs(idle)),
        drain_timeout: Duration::from_secs(drain),
        auth_window_secs: window,
        per_source,
    })
}

fn validate_per_source(raw: &RawLimits, max_total: u64) -> Result<SourceLimits, ConfigError> {
    let d = SourceLimits::default();
    let unauthenticated = range(
        "max_unauthenticated_per_source",
        raw.max_unauthenticated_per_source,
        (d.max_unauthenticated as u64).min(max_total),
        1,
        max_total,
    )?;
    let per_sec = range(
        "new_connections_per_source_per_sec",
        raw.new_connections_per_source_per_sec,
        u64::from(d.per_sec),
        1,
        1_000_000,
    )?;
    let burst = range(
        "new_connections_per_source_burst",
        raw.new_connections_per_source_burst,
        u64::from(d.burst),
        1,
        1_000_000,
    )?;
    Ok(SourceLimits {
        max_unauthenticated: usize::try_from(unauthenticated).unwrap_or(usize::MAX),
        per_sec: u32::try_from(per_sec).unwrap_or(u32::MAX),
        burst: u32::try_from(burst).unwrap_or(u32::MAX),
    })
}

fn validate_identity(
    state_dir: Option<String>,
    public_address: &[String],
    auth: &RawAuth,
) -> Result<IdentityConfig, ConfigError> {
    let state_disabled = state_dir.as_deref() == Some("");
    let state_dir = state_dir.filter(|d| !d.is_empty()).map(PathBuf::from);
    let mut public = Vec::with_capacity(public_address.len());
    for (i, value) in public_address.iter().enumerate() {
        let ip: IpAddr = value.parse().map_err(|source| {
            let value = value.clone();
            field(
                format!("public_address[{i}]"),
                FieldError::Address { value, source },
            )
        })?;
        public.push(ip.to_canonical());
    }
    let mut ids = Vec::with_capacity(auth.server_id.len());
    for (i, value) in auth.server_id.iter().enumerate() {
        let id: ServerId = value.parse().map_err(|source| {
            let value = value.clone();
            field(
                format!("auth.server_id[{i}]"),
                FieldError::ServerId { value, source },
            )
        })?;
        ids.push(id);
    }
    let accept_unbound = auth.accept_unbound.unwrap_or(true);
    if !accept_unbound && ids.is_empty() {
        // Every request would be refused.
        return Err(field("auth.server_id", FieldError::Empty));
    }
    Ok(IdentityConfig {
        state_dir,
        state_disabled,
        public_address: public,
        binding: ServerBinding {
            ids,
            accept_unbound,
        },
    })
}

fn validate_clients(raw: &[RawClient]) -> Result<Vec<Client>, ConfigError> {
    let mut clients: Vec<Client> = Vec::with_capacity(raw.len());
    let mut keys: HashSet<String> = HashSet::new();
    for (i, rc) in raw.iter().enumerate() {
        let id: ClientId = rc.id.parse().map_err(|_| {
            field(
                format!("client[{i}].id"),
                FieldError::ClientId {
                    value: rc.id.clone(),
                },
            )
        })?;
        if let Some(j) = clients.iter().position(|c| c.id.as_str() == id.as_str()) {
            let other = format!("client[{j}].id");
            return Err(field(
                format!("client[{i}].id"),
                FieldError::Duplicate { other },
            ));
        }
        let auth = crate::standard_auth::validate(i, rc, &clients)?;
        let keyless = rc.key.trim().is_empty() && !auth.is_hmac();
        let key = match keyless {
            true => Key::from_bytes([0; 32]),
            false => Key::from_hex(rc.key.trim())
                .map_err(|e| field(format!("client[{i}].key"), FieldError::Key(e)))?,
        };
        let hex = key.to_hex();
        if !keyless && !keys.insert(hex.clone()) {
            let j = clients
                .iter()
                .position(|c| c.key.to_hex() == hex)
                .unwrap_or(0);
            let other = format!("client[{j}].key (every client needs its own key)");
            return Err(field(
                format!("client[{i}].key"),
                FieldError::Duplicate { other },
            ));
        }
        let socks_password = match &rc.socks_password {
            Some(p) => Some(crate::socks::config::SocksPassword::new(p).ok_or_else(|| {
                field(
                    format!("client[{i}].socks_password"),
                    FieldError::SocksPassword,
                )
            })?),
            None => None,
        };
        clients.push(Client {
            id,
            key,
            socks_password,
            auth,
        });
    }
    Ok(clients)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn defaults_fill_in() {
        let cfg = Config::parse(&format!("[[client]]\nid = \"home\"\nkey = \"{KEY}\"\n")).unwrap();
        assert_eq!(cfg.listen.len(), 2);
        assert_eq!(cfg.limits, Limits::default());
        assert!(cfg.metrics.is_none());
        assert_eq!(cfg.clients.len(), 1);
    }

    #[test]
    fn per_source_limits_parse_and_are_checked() {
        let cfg = Config::parse(
            "[limits]\nmax_unauthenticated_per_source = 8\nnew_connections_per_source_per_sec = 5\nnew_connections_per_source_burst = 20\n",
        )
        .unwrap();
        let want = SourceLimits {
            max_unauthenticated: 8,
            per_sec: 5,
            burst: 20,
        };
        assert_eq!(cfg.limits.per_source, want);
        for bad in [
            "max_unauthenticated_per_source = 0",
            "max_connections = 10\nmax_unauthenticated_per_source = 11",
            "new_connections_per_source_per_sec = 0",
            "new_connections_per_source_burst = 0",
        ] {
            let err = Config::parse(&format!("[limits]\n{bad}\n")).unwrap_err();
            assert!(err.to_string().contains("per_source"), "{bad}: {err}");
        }
        // A small max_connections lowers the default with it.
        let small = Config::parse("[limits]\nmax_connections = 10\n").unwrap();
        assert_eq!(small.limits.per_source.max_unauthenticated, 10);
    }

    #[test]
    fn debug_hides_keys() {
        let cfg = Config::parse(&format!("[[client]]\nid = \"home\"\nkey = \"{KEY}\"\n")).unwrap();
        let text = format!("{cfg:?}");
        assert!(text.contains("***"), "{text}");
        assert!(!text.contains("aabbcc"), "{text}");
        assert!(!text.to_lowercase().contains("ddeeff"), "{text}");
    }

    #[test]
    fn mapped_prefix_becomes_v4() {
        let cfg =
            Config::parse("[policy]\nallow = [\"::ffff:127.0.0.0/104\", \"10.1.2.3\"]\n").unwrap();
        let want: Vec<IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.1.2.3/32".parse().unwrap(),
        ];
        assert_eq!(cfg.policy.allow, want);
    }

    #[test]
    fn quiet_is_on_unless_turned_off() {
        assert!(Config::parse("").unwrap().quiet);
        assert!(Config::parse("quiet = true\n").unwrap().quiet);
        assert!(!Config::parse("quiet = false\n").unwrap().quiet);
        assert!(Config::parse("quiet = \"no\"\n").is_err());
    }

    #[test]
    fn identity_fields() {
        let cfg = Config::parse(
            "state_dir = \"/tmp/x\"\npublic_address = [\"203.0.113.7\", \"::ffff:198.51.100.1\"]\n[auth]\nserver_id = [\"vps.example.net:4850\"]\naccept_unbound = false\n",
        )
        .unwrap();
        let id = &cfg.identity;
        assert_eq!(id.state_dir, Some(PathBuf::from("/tmp/x")));
        assert!(!id.state_disabled);
        let want: Vec<IpAddr> = vec![
            "203.0.113.7".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
        ];
        assert_eq!(id.public_address, want);
        assert_eq!(id.binding.ids.len(), 1);
        assert!(!id.binding.accept_unbound);

        let none = Config::parse("state_dir = \"\"\n").unwrap();
        assert!(none.identity.state_disabled);
        assert_eq!(none.identity.state_dir, None);
        assert!(none.identity.binding.accept_unbound);

        for (bad, field) in [
            (
                "public_address = [\"vps.example.net\"]\n",
                "public_address[0]",
            ),
            ("[auth]\nserver_id = [\"a b\"]\n", "auth.server_id[0]"),
            ("[auth]\naccept_unbound = false\n", "auth.server_id"),
        ] {
            let e = Config::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn idle_zero_disables() {
        let cfg = Config::parse("[limits]\nidle_timeout_secs = 0\n").unwrap();
        assert_eq!(cfg.limits.idle_timeout, None);
    }

    #[test]
    fn relay_congestion() {
        let default = Config::parse("").unwrap().relay.congestion;
        assert_eq!(default.unwrap().as_str(), "bbr");
        let c = Config::parse("[relay]\ncongestion = \"bbr\"\n").unwrap();
        assert_eq!(c.relay.congestion.unwrap().as_str(), "bbr");
        for system in ["system", ""] {
            let c = Config::parse(&format!("[relay]\ncongestion = {system:?}\n")).unwrap();
            assert_eq!(c.relay.congestion, None);
        }
        let c = Config::parse("[relay]\ncongestion = \"reno\"\n").unwrap();
        assert_eq!(c.relay.congestion.unwrap().as_str(), "reno");
        let e = Config::parse("[relay]\ncongestion = \"BBR!\"\n").unwrap_err();
        assert!(e.to_string().starts_with("relay.congestion: "), "{e}");
        assert!(Config::parse("[relay]\nother = 1\n").is_err());
    }
}
