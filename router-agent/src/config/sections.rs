//! Validation of the control-plane sections: `[routing]`, `[mptcp]`, `[[wan]]` and
//! `[status]`. Kept apart from the data-path sections in `config.rs`; the same rules apply
//! (defaults here, every error names its field).

use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawMptcp, RawRouting, RawStatus, RawWan};
use super::{field, ms, range, valid_interface, ConfigError, FieldError};
use crate::model::netops::{Limits, Ownership, MPTCP_MAX};
use crate::model::routing::DownReaction;
use crate::model::wan::{Mode, WanSettings, WanSpec};
use crate::model::wan_health::ProbeSettings;

/// Default control socket.
pub const DEFAULT_STATUS_SOCKET: &str = "/var/run/mpbond/agent.sock";

/// The tables, rule priorities and route protocol the agent owns, and how often it
/// re-dumps the kernel to catch drift and missed events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    pub ownership: Ownership,
    pub reconcile: Duration,
    /// Where to ask netifd for the WANs' devices (`routing.ubus_socket`).
    pub ubus: UbusSocket,
}

/// `routing.ubus_socket`: whether and where the agent asks netifd over ubus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UbusSocket {
    /// Unset: the first of `ubus::DEFAULT_SOCKETS` that exists at start, else rtnetlink
    /// alone.
    #[default]
    Auto,
    /// `off`: rtnetlink alone.
    Off,
    /// This socket, retried until it appears.
    Path(PathBuf),
}

impl UbusSocket {
    /// The socket to use now, if any.
    pub fn resolve(&self) -> Option<PathBuf> {
        match self {
            UbusSocket::Auto => crate::ubus::find_socket(),
            UbusSocket::Off => None,
            UbusSocket::Path(p) => Some(p.clone()),
        }
    }
}

/// The MPTCP path-manager caps and the optional CPE sysctls (`None`: left alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MptcpConfig {
    /// Caps: the plan uses `min(subflows, max(2, endpoints))` subflows.
    pub limits: Limits,
    /// `net.mptcp.blackhole_timeout`, seconds.
    pub blackhole_timeout: Option<u32>,
    /// `net.mptcp.syn_retrans_before_tcp_fallback`.
    pub syn_retrans_before_tcp_fallback: Option<u32>,
    /// `net.mptcp.stale_loss_cnt`.
    pub stale_loss_cnt: Option<u32>,
    /// What becomes of a WAN's endpoints when its probes say down.
    pub down_reaction: DownReaction,
}

/// The control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusConfig {
    pub socket: PathBuf,
}

/// Reserved kernel tables: unspec, default, main, local.
const RESERVED_TABLES: [u32; 4] = [0, 253, 254, 255];
/// Rule priorities the agent may use: above `local` (0), below `main` (32766).
const MAX_RULE_PRIORITY: u64 = 32765;

pub(super) fn routing(r: RawRouting) -> Result<RoutingConfig, ConfigError> {
    let table_count = range("routing.table_count", r.table_count, 32, 1, 1024)? as u32;
    let table_base = range("routing.table_base", r.table_base, 2000, 1, 0xFFFF_0000)? as u32;
    let last = table_base + (table_count - 1);
    if let Some(t) = RESERVED_TABLES
        .iter()
        .find(|t| (table_base..=last).contains(t))
    {
        let why = format!("tables {table_base}..={last} include the reserved table {t}");
        return Err(field("routing.table_base", FieldError::Invalid(why)));
    }
    let rule_priority_count = range(
        "routing.rule_priority_count",
        r.rule_priority_count,
        64,
        1,
        1024,
    )?;
    let rule_priority_base = range(
        "routing.rule_priority_base",
        r.rule_priority_base,
        2000,
        1,
        MAX_RULE_PRIORITY + 1 - rule_priority_count,
    )?;
    let route_protocol = range("routing.route_protocol", r.route_protocol, 93, 5, 255)? as u8;
    let reconcile = range("routing.reconcile_secs", r.reconcile_secs, 30, 1, 3600)?;
    let ubus = match r.ubus_socket.as_deref() {
        None => UbusSocket::Auto,
        Some("off") => UbusSocket::Off,
        Some(p) if p.starts_with('/') => UbusSocket::Path(PathBuf::from(p)),
        Some(p) => {
            let why = format!("{p:?} is neither an absolute path nor \"off\"");
            return Err(field("routing.ubus_socket", FieldError::Invalid(why)));
        }
    };
    Ok(RoutingConfig {
        ownership: Ownership {
            table_base,
            table_count,
            rule_priority_base: rule_priority_base as u32,
            rule_priority_count: rule_priority_count as u32,
            route_protocol,
            ..Ownership::default()
        },
        reconcile: Duration::from_secs(reconcile),
        ubus,
    })
}

pub(super) fn mptcp(m: RawMptcp) -> Result<MptcpConfig, ConfigError> {
    let max = u64::from(MPTCP_MAX);
    let opt = |name: &str, value: Option<u64>, max: u64| match value {
        None => Ok(None),
        Some(v) => range(name, Some(v), v, 0, max).map(|v| Some(v as u32)),
    };
    Ok(MptcpConfig {
        limits: Limits {
            subflows: range("mptcp.subflows", m.subflows, max, 0, max)? as u32,
            add_addr_accepted: range("mptcp.add_addr_accepted", m.add_addr_accepted, max, 0, max)?
                as u32,
        },
        blackhole_timeout: opt("mptcp.blackhole_timeout", m.blackhole_timeout, 86_400)?,
        syn_retrans_before_tcp_fallback: opt(
            "mptcp.syn_retrans_before_tcp_fallback",
            m.syn_retrans_before_tcp_fallback,
            255,
        )?,
        stale_loss_cnt: opt("mptcp.stale_loss_cnt", m.stale_loss_cnt, 1000)?,
        down_reaction: match m.down_reaction.as_deref() {
            None => DownReaction::default(),
            Some(text) => text
                .parse()
                .map_err(|reason| field("mptcp.down_reaction", FieldError::Invalid(reason)))?,
        },
    })
}

pub(super) fn wans(raw: Vec<RawWan>, lan: &[String]) -> Result<WanSettings, ConfigError> {
    let defaults = ProbeSettings::default();
    let mut wans: Vec<WanSpec> = Vec::with_capacity(raw.len());
    for (i, w) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("wan[{i}].{f}");
        if !valid_interface(&w.name) {
            return Err(field(at("name"), FieldError::Interface(w.name)));
        }
        if wans.iter().any(|o| o.name == w.name) {
            return Err(field(at("name"), FieldError::Duplicate(w.name)));
        }
        let device = w.device.unwrap_or_else(|| w.name.clone());
        if !valid_interface(&device) {
            return Err(field(at("device"), FieldError::Interface(device)));
        }
        if wans.iter().any(|o| o.device == device) {
            return Err(field(at("device"), FieldError::Duplicate(device)));
        }
        if lan.contains(&device) {
            let why = format!("{device:?} is a LAN interface (proxy.lan_interfaces)");
            return Err(field(at("device"), FieldError::Invalid(why)));
        }
        let mode = match w.mode.as_deref() {
            None => Mode::On,
            Some(text) => text
                .parse()
                .map_err(|why| field(at("mode"), FieldError::Invalid(why)))?,
        };
        let default_ms = |d: Duration| d.as_millis() as u64;
        let probe = ProbeSettings {
            interval: ms(
                &at("probe_interval_ms"),
                w.probe_interval_ms,
                default_ms(defaults.interval),
            )?,
            timeout: ms(
                &at("probe_timeout_ms"),
                w.probe_timeout_ms,
                default_ms(defaults.timeout),
            )?,
            down: range(&at("down"), w.down, defaults.down.into(), 1, 1000)? as u32,
            up: range(&at("up"), w.up, defaults.up.into(), 1, 1000)? as u32,
            ..defaults.clone()
        };
        wans.push(WanSpec {
            name: w.name,
            device,
            mode,
            probe,
        });
    }
    Ok(WanSettings {
        wans,
        default_probe: defaults,
    })
}

pub(super) fn status(s: RawStatus) -> Result<StatusConfig, ConfigError> {
    let socket = s.socket.unwrap_or_else(|| DEFAULT_STATUS_SOCKET.into());
    if socket.trim().is_empty() {
        return Err(field("status.socket", FieldError::Empty));
    }
    if !socket.starts_with('/') {
        let why = format!("{socket:?} is not an absolute path");
        return Err(field("status.socket", FieldError::Invalid(why)));
    }
    Ok(StatusConfig {
        socket: PathBuf::from(socket),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, Format};

    const HEAD: &str = r#"[concentrator]
host = "192.0.2.1"
client_id = "home"
key = "abababababababababababababababababababababababababababababababab"
"#;

    fn parse(extra: &str) -> Config {
        let text = format!("{HEAD}{extra}");
        Config::parse(&text, Format::Toml, Path::new("test.toml")).expect("valid config")
    }

    #[test]
    fn defaults_own_the_documented_ranges_and_auto_detect() {
        let c = parse("");
        assert_eq!(c.routing.ownership, Ownership::default());
        assert_eq!(c.routing.ownership.route_protocol, 93);
        assert_eq!(c.routing.reconcile, Duration::from_secs(30));
        assert_eq!(c.routing.ubus, UbusSocket::Auto);
        let limits = Limits {
            subflows: 8,
            add_addr_accepted: 8,
        };
        assert_eq!(c.mptcp.limits, limits);
        assert_eq!(c.mptcp.blackhole_timeout, None);
        assert_eq!(c.mptcp.syn_retrans_before_tcp_fallback, None);
        assert_eq!(c.mptcp.stale_loss_cnt, None);
        assert!(c.wan.wans.is_empty(), "no [[wan]] means auto-detect");
        assert_eq!(c.status.socket, Path::new(DEFAULT_STATUS_SOCKET));
    }

    #[test]
    fn ubus_socket_is_a_path_or_off() {
        let c = parse("[routing]\nubus_socket = \"/tmp/u.sock\"\n");
        assert_eq!(c.routing.ubus, UbusSocket::Path("/tmp/u.sock".into()));
        assert_eq!(
            parse("[routing]\nubus_socket = \"off\"\n").routing.ubus,
            UbusSocket::Off
        );
        assert_eq!(UbusSocket::Off.resolve(), None);
        let text = format!("{HEAD}[routing]\nubus_socket = \"u.sock\"\n");
        let err = Config::parse(&text, Format::Toml, Path::new("t.toml")).unwrap_err();
        assert!(err.to_string().contains("routing.ubus_socket"), "{err}");
    }

    #[test]
    fn wans_sysctls_and_both_probe_spellings_are_read() {
        let c = parse(
            r#"
[mptcp]
subflows = 4
stale_loss_cnt = 2
blackhole_timeout = 0
[[wan]]
name = "wan"
device = "eth1"
probe_interval_ms = 500
down = 4
[[wan]]
name = "lte"
mode = "backup"
interval_ms = 2000
up_after = 3
"#,
        );
        assert_eq!(c.mptcp.limits.subflows, 4);
        assert_eq!(c.mptcp.stale_loss_cnt, Some(2));
        assert_eq!(c.mptcp.blackhole_timeout, Some(0));
        let [wan, lte] = &c.wan.wans[..] else {
            panic!("two WANs expected: {:?}", c.wan.wans);
        };
        assert_eq!((wan.device.as_str(), wan.mode), ("eth1", Mode::On));
        assert_eq!(wan.probe.interval, Duration::from_millis(500));
        assert_eq!(wan.probe.down, 4);
        assert_eq!((lte.device.as_str(), lte.mode), ("lte", Mode::Backup));
        assert_eq!(lte.probe.interval, Duration::from_millis(2000));
        assert_eq!(lte.probe.up, 3);
        assert_eq!(c.wan.probe_for("lte").up, 3);
        assert_eq!(c.wan.probe_for("other"), &ProbeSettings::default());
    }
}
