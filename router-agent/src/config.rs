//! The agent's configuration: loading, format detection and validation.
//!
//! Two layers, as in rathole: [`raw::RawConfig`] is exactly what serde reads (unknown fields
//! are errors), and [`Config`] is the validated, typed result that the rest of the agent
//! uses. Every validation error names its field, e.g.
//! `concentrator.key: expected 64 hex characters`. The key prints as `***` in `Debug`.
//!
//! The format is chosen by extension (`.toml`, `.json`); for any other name TOML is tried,
//! then JSON. Host names are *not* resolved here (see [`crate::resolve_concentrator`]), so
//! `check-config` works offline.

pub mod bypass_names;
pub mod concentrators;
pub mod log;
pub mod path_quality;
pub mod raw;
pub mod sections;
pub mod uci;
pub mod udp;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use mpbond_protocol::auth::{ClientId, Key};
use thiserror::Error;

use raw::RawConfig;

pub use crate::model::wan::WanSettings;
pub use log::DEFAULT_LOG_LEVEL;
pub use sections::{
    MptcpConfig, RoutingConfig, StatusConfig, DEFAULT_STATE_DIR, DEFAULT_STATUS_SOCKET,
};

/// Default transparent listener port.
pub const DEFAULT_LISTEN_PORT: u16 = 4851;
/// Default nft table name (family `inet`).
pub const DEFAULT_NFT_TABLE: &str = "mpbond";

/// The validated agent configuration.
#[derive(Debug)]
pub struct Config {
    /// The preferred concentrator (`concentrators[0]`), for code that needs only one.
    pub concentrator: ConcentratorConfig,
    /// Every concentrator, preferred (lowest priority) first: `[concentrator]` is a list
    /// of one. The decision core picks the one new connections go to
    /// ([`crate::core::concentrators`]).
    pub concentrators: Vec<ConcentratorConfig>,
    pub proxy: ProxyConfig,
    pub bypass: BypassConfig,
    pub health: HealthConfig,
    /// `[routing]`: the owned table, priority and protocol ranges.
    pub routing: RoutingConfig,
    /// `[mptcp]`: path-manager caps and CPE sysctls.
    pub mptcp: MptcpConfig,
    /// `[[wan]]`: the configured WANs (empty: auto-detect).
    pub wan: WanSettings,
    /// `[path_quality]`: when a WAN that hurts the bond becomes a backup endpoint.
    pub path_quality: crate::core::path_quality::QualitySettings,
    /// `[status]`: the control socket.
    pub status: StatusConfig,
    /// `[log] level`: the checked log filter (`info`, `mpbond_agent::control=debug,info`),
    /// applied at start and on every reload unless `RUST_LOG` is set.
    pub log_level: String,
    /// `state_dir`: where the data usage file is kept; None: not kept.
    pub state_dir: Option<PathBuf>,
    /// `[udp]`: the UDP interception, its policy and the relay's limits.
    pub udp: udp::UdpConfig,
}

/// Where a concentrator is and who we are to it.
#[derive(Debug, Clone)]
pub struct ConcentratorConfig {
    /// Its name in the status and the logs (default: the host); unique.
    pub name: String,
    /// Lower is preferred (1..=255).
    pub priority: u8,
    /// IP literal or host name, resolved once at start.
    pub host: String,
    pub port: u16,
    pub client_id: ClientId,
    /// Debug prints `Key(***)`.
    pub key: Key,
}

/// The transparent listener and the redirect table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub listen_port: u16,
    pub lan_interfaces: Vec<String>,
    pub nft_table: String,
    pub max_connections: usize,
    /// Upstream (MPTCP) connect timeout; also used for the direct fail-open connect.
    pub connect_timeout: Duration,
    /// How long to wait for the concentrator's Convert reply.
    pub reply_timeout: Duration,
    /// Relay idle timeout; `None` when configured as 0.
    pub idle_timeout: Option<Duration>,
}

/// Prefixes never redirected, on top of the built-in ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BypassConfig {
    pub destinations: Vec<IpNet>,
    pub sources: Vec<IpNet>,
    /// Bypass by name: `domains` and the dnsmasq integration (`config/bypass_names.rs`).
    pub names: bypass_names::NameBypass,
}

/// The health probe and the fail-open thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub interval: Duration,
    pub timeout: Duration,
    /// Failed probes in a row before the redirect is withdrawn.
    pub down_after: u32,
    /// Successful probes in a row before the redirect comes back.
    pub up_after: u32,
}

/// Why a config could not be loaded. `Display` is a complete one-line message.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: invalid TOML: {source}", path.display())]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{field}: {problem}")]
    Field {
        field: String,
        #[source]
        problem: FieldError,
    },
}

/// What is wrong with one field.
#[derive(Debug, Error)]
pub enum FieldError {
    #[error("expected 64 hex characters")]
    Key(#[source] mpbond_protocol::auth::KeyError),
    #[error("expected 1-32 characters of [A-Za-z0-9._-]")]
    ClientId(#[source] <ClientId as FromStr>::Err),
    #[error("must not be empty")]
    Empty,
    #[error("{value} is out of range {min}..={max}")]
    Range { value: u64, min: u64, max: u64 },
    #[error("{0:?} is not a valid host name or IP address")]
    Host(String),
    #[error("{0:?} is not a valid interface name (1-15 characters of [A-Za-z0-9._-])")]
    Interface(String),
    #[error("{0:?} is not a valid table name (1-64 characters of [A-Za-z0-9_-])")]
    Table(String),
    #[error("{0:?} appears twice")]
    Duplicate(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Congestion(#[from] mpbond_relay::congestion::CongestionNameError),
    #[error(
        "{0:?} is not a log filter: LEVEL or TARGET=LEVEL,..., \
         each LEVEL one of off, error, warn, info, debug, trace"
    )]
    LogFilter(String),
    #[error("{value:?} is not an IP prefix or address")]
    Prefix {
        value: String,
        #[source]
        source: ipnet::AddrParseError,
    },
}

/// The file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
    /// Try TOML, then JSON.
    Guess,
}

impl Format {
    /// The format named by the file's extension.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("toml") => Format::Toml,
            Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Guess,
        }
    }
}

fn field(field: impl Into<String>, problem: FieldError) -> ConfigError {
    ConfigError::Field {
        field: field.into(),
        problem,
    }
}

impl Config {
    /// Read, parse and validate `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, Format::from_path(path), path)
    }

    /// Parse and validate `text`; `path` is only used in messages.
    pub fn parse(text: &str, format: Format, path: &Path) -> Result<Config, ConfigError> {
        let toml_err = |source| ConfigError::Toml {
            path: path.to_owned(),
            source,
        };
        let json_err = |source| ConfigError::Json {
            path: path.to_owned(),
            source,
        };
        let raw: RawConfig = match format {
            Format::Toml => toml::from_str(text).map_err(toml_err)?,
            Format::Json => serde_json::from_str(text).map_err(json_err)?,
            Format::Guess => match toml::from_str(text) {
                Ok(raw) => raw,
                Err(toml_error) => match serde_json::from_str(text) {
                    Ok(raw) => raw,
                    // Report the error of the format the text looks like.
                    Err(json_error) if text.trim_start().starts_with('{') => {
                        return Err(json_err(json_error))
                    }
                    Err(_) => return Err(toml_err(toml_error)),
                },
            },
        };
        Config::from_raw(raw)
    }

    /// Validate the raw config.
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let concentrators = concentrators::concentrators(raw.concentrator, raw.concentrators)?;
        let concentrator = concentrators[0].clone();

        let p = raw.proxy;
        let lan_interfaces = p.lan_interfaces.unwrap_or_else(|| vec!["br-lan".into()]);
        if lan_interfaces.is_empty() {
            return Err(field("proxy.lan_interfaces", FieldError::Empty));
        }
        for (i, name) in lan_interfaces.iter().enumerate() {
            if !valid_interface(name) {
                let problem = FieldError::Interface(name.clone());
                return Err(field(format!("proxy.lan_interfaces[{i}]"), problem));
            }
        }
        let nft_table = p.nft_table.unwrap_or_else(|| DEFAULT_NFT_TABLE.into());
        if !valid_table(&nft_table) {
            return Err(field("proxy.nft_table", FieldError::Table(nft_table)));
        }
        let idle = range(
            "proxy.idle_timeout_secs",
            p.idle_timeout_secs,
            7200,
            0,
            604_800,
        )?;
        let proxy = ProxyConfig {
            listen_port: port("proxy.listen_port", p.listen_port, DEFAULT_LISTEN_PORT)?,
            lan_interfaces,
            nft_table,
            max_connections: range("proxy.max_connections", p.max_connections, 4096, 1, 1 << 20)?
                as usize,
            connect_timeout: ms("proxy.connect_timeout_ms", p.connect_timeout_ms, 5000)?,
            reply_timeout: ms("proxy.reply_timeout_ms", p.reply_timeout_ms, 15_000)?,
            idle_timeout: (idle > 0).then(|| Duration::from_secs(idle)),
        };

        let bypass = BypassConfig {
            destinations: prefixes("bypass.destinations", &raw.bypass.destinations)?,
            sources: prefixes("bypass.sources", &raw.bypass.sources)?,
            names: bypass_names::name_bypass(
                &raw.bypass.domains,
                raw.bypass.dnsmasq_conf,
                raw.bypass.dnsmasq_restart,
            )?,
        };

        let h = raw.health;
        let health = HealthConfig {
            interval: ms("health.interval_ms", h.interval_ms, 1000)?,
            timeout: ms("health.timeout_ms", h.timeout_ms, 1500)?,
            down_after: range("health.down_after", h.down_after, 2, 1, 1000)? as u32,
            up_after: range("health.up_after", h.up_after, 1, 1, 1000)? as u32,
        };
        let wan = sections::wans(raw.wan, &proxy.lan_interfaces)?;
        Ok(Config {
            concentrator,
            concentrators,
            proxy,
            bypass,
            health,
            routing: sections::routing(raw.routing)?,
            mptcp: sections::mptcp(raw.mptcp)?,
            wan,
            path_quality: path_quality::path_quality(raw.path_quality)?,
            status: sections::status(raw.status)?,
            log_level: log::level(raw.log)?,
            state_dir: sections::state_dir(raw.state_dir)?,
            udp: udp::udp(raw.udp)?,
        })
    }
}

fn range(
    name: &str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let value = value.unwrap_or(default);
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(field(name, FieldError::Range { value, min, max }))
    }
}

fn port(name: &str, value: Option<u64>, default: u16) -> Result<u16, ConfigError> {
    // The range check guarantees the value fits.
    range(name, value, default.into(), 1, 65535).map(|p| p as u16)
}

fn ms(name: &str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    range(name, value, default, 100, 3_600_000).map(Duration::from_millis)
}

/// Parse a list of prefixes; a bare address means a host prefix. Host bits are cleared.
fn prefixes(name: &str, values: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let text = value.trim();
            let parsed = match text.parse::<std::net::IpAddr>() {
                Ok(addr) => Ok(IpNet::from(addr)),
                Err(_) => text.parse::<IpNet>().map(|net| net.trunc()),
            };
            parsed.map_err(|source| {
                let value = value.clone();
                field(format!("{name}[{i}]"), FieldError::Prefix { value, source })
            })
        })
        .collect()
}

fn valid_host(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
        || (host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
}

fn valid_interface(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_table(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}
