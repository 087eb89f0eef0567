//! Validation of the control-plane sections: `[routing]`, `[mptcp]`, `[[wan]]` and
//! `[status]`. Kept apart from the data-path sections in `config.rs`; the same rules apply
//! (defaults here, every error names its field).

use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawMptcp, RawRouting, RawStatus, RawWan};
use super::{field, ms, range, valid_interface, ConfigError, FieldError};
use mpbond_relay::congestion::CongestionName;

use crate::core::buffers::BufferMode;
use crate::model::netops::{Limits, Ownership, MPTCP_MAX};
use crate::model::routing::DownReaction;
use crate::model::wan::{Metering, Mode, WanSettings, WanSpec};
use crate::model::wan_health::ProbeSettings;

/// Default state directory: flash on OpenWrt (`/tmp` is RAM), written rarely.
pub const DEFAULT_STATE_DIR: &str = "/etc/mpbond";

/// `net.mptcp.blackhole_timeout` unless configured: 0, the kernel's MPTCP blackhole
/// detection off.
pub const DEFAULT_BLACKHOLE_TIMEOUT: u32 = 0;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MptcpConfig {
    /// Caps: the plan uses `min(subflows, max(2, endpoints))` subflows.
    pub limits: Limits,
    /// `net.mptcp.blackhole_timeout`, seconds ([`DEFAULT_BLACKHOLE_TIMEOUT`] unless set).
    pub blackhole_timeout: Option<u32>,
    /// `net.mptcp.syn_retrans_before_tcp_fallback`.
    pub syn_retrans_before_tcp_fallback: Option<u32>,
    /// `net.mptcp.stale_loss_cnt`.
    pub stale_loss_cnt: Option<u32>,
    /// What becomes of a WAN's endpoints when its probes say down.
    pub down_reaction: DownReaction,
    /// `TCP_CONGESTION` of the upstream MPTCP connections (they send the uploads);
    /// `None`: the kernel default. [`DEFAULT_CONGESTION`] unless set.
    pub congestion: Option<CongestionName>,
    /// Who sizes the upstream connections' socket buffers ([`crate::core::buffers`]).
    pub buffers: BufferMode,
}

/// The congestion control of upstream MPTCP connections unless `mptcp.congestion` says
/// otherwise (docs/DESIGN.md, "Congestion control of our MPTCP sockets").
pub const DEFAULT_CONGESTION: &str = "bbr";

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
            // 0 unless set: the in-kernel path manager opens a subflow to each address the
            // VPS announces, from the router's default address, so a second subflow on a
            // WAN that already has one (docs/DESIGN.md, "One subflow per WAN").
            add_addr_accepted: range("mptcp.add_addr_accepted", m.add_addr_accepted, 0, 0, max)?
                as u32,
        },
        // Off unless set: the kernel's detection takes a WAN whose SYNs are lost (a dead
        // WAN, not a firewall that strips MPTCP) for an MPTCP blackhole and turns MPTCP
        // off for every new connection for an hour. The agent watches the WANs itself.
        blackhole_timeout: opt("mptcp.blackhole_timeout", m.blackhole_timeout, 86_400)?
            .or(Some(DEFAULT_BLACKHOLE_TIMEOUT)),
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
        congestion: CongestionName::parse(m.congestion.as_deref().unwrap_or(DEFAULT_CONGESTION))
            .map_err(|e| field("mptcp.congestion", FieldError::Congestion(e)))?,
        buffers: match m.buffers.as_deref() {
            None => BufferMode::default(),
            Some(text) => text
                .parse()
                .map_err(|reason| field("mptcp.buffers", FieldError::Invalid(reason)))?,
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
        let metering = metering(&at, w.metered, w.allowance.as_deref(), w.reset_day)?;
        // A metered WAN idles on sparse probes unless its interval is set by hand.
        let idle_default = if metering.metered {
            defaults.clone().metered().idle_interval
        } else {
            defaults.idle_interval
        };
        let probe = ProbeSettings {
            interval: ms(
                &at("probe_interval_ms"),
                w.probe_interval_ms,
                default_ms(defaults.interval),
            )?,
            idle_interval: ms(
                &at("probe_idle_interval_ms"),
                w.probe_idle_interval_ms,
                default_ms(idle_default),
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
            metering,
        });
    }
    Ok(WanSettings {
        wans,
        default_probe: defaults,
    })
}

/// A WAN's `metered`, `allowance` and `reset_day`. An allowance needs `metered`.
fn metering(
    at: &dyn Fn(&str) -> String,
    metered: Option<bool>,
    allowance: Option<&str>,
    reset_day: Option<u64>,
) -> Result<Metering, ConfigError> {
    let metered = metered.unwrap_or(false);
    let allowance = match allowance {
        None => None,
        Some(text) => {
            let bytes = parse_allowance(text)
                .map_err(|why| field(at("allowance"), FieldError::Invalid(why)))?;
            if !metered {
                let why = "an allowance needs metered = true".to_owned();
                return Err(field(at("allowance"), FieldError::Invalid(why)));
            }
            Some(bytes)
        }
    };
    Ok(Metering {
        metered,
        allowance,
        reset_day: range(&at("reset_day"), reset_day, 1, 1, 28)? as u8,
    })
}

/// `"500MB"`, `"20 GB"`, `"1.5GB"`, `"2TB"` → bytes, in decimal units as carriers bill
/// (1 GB = 10^9 bytes). The unit is required.
pub fn parse_allowance(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "{text:?}: give a number and a unit, MB, GB or TB (\"20GB\")"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: {number:?} is not a number"))?;
    let bytes = value * scale as f64;
    if !(1_000_000.0..=1e15).contains(&bytes) {
        return Err(format!("{text:?} is out of range 1MB..=1000TB"));
    }
    Ok(bytes.round() as u64)
}

/// `state_dir`: default [`DEFAULT_STATE_DIR`], `""` for none (nothing is kept across
/// restarts).
pub(super) fn state_dir(dir: Option<String>) -> Result<Option<PathBuf>, ConfigError> {
    match dir {
        None => Ok(Some(PathBuf::from(DEFAULT_STATE_DIR))),
        Some(d) if d.is_empty() => Ok(None),
        Some(d) if d.starts_with('/') => Ok(Some(PathBuf::from(d))),
        Some(d) => {
            let why = format!("{d:?} is neither an absolute path nor \"\"");
            Err(field("state_dir", FieldError::Invalid(why)))
        }
    }
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
        // One subflow per WAN: no subflows to addresses the VPS announces.
        let limits = Limits {
            subflows: 8,
            add_addr_accepted: 0,
        };
        assert_eq!(c.mptcp.limits, limits);
        // The kernel's MPTCP blackhole detection is off unless configured.
        assert_eq!(c.mptcp.blackhole_timeout, Some(0));
        assert_eq!(c.mptcp.syn_retrans_before_tcp_fallback, None);
        assert_eq!(c.mptcp.stale_loss_cnt, None);
        assert!(c.wan.wans.is_empty(), "no [[wan]] means auto-detect");
        assert_eq!(c.status.socket, Path::new(DEFAULT_STATUS_SOCKET));
    }

    #[test]
    fn congestion_defaults_to_bbr_and_system_leaves_the_kernel_default() {
        let name = |c: &Config| c.mptcp.congestion.as_ref().map(|n| n.as_str().to_owned());
        assert_eq!(name(&parse("")).as_deref(), Some(DEFAULT_CONGESTION));
        assert_eq!(name(&parse("[mptcp]\ncongestion = \"system\"\n")), None);
        assert_eq!(name(&parse("[mptcp]\ncongestion = \"\"\n")), None);
        let reno = parse("[mptcp]\ncongestion = \"reno\"\n");
        assert_eq!(name(&reno).as_deref(), Some("reno"));
        let text = format!("{HEAD}[mptcp]\ncongestion = \"Bbr v2\"\n");
        let err = Config::parse(&text, Format::Toml, Path::new("t.toml")).unwrap_err();
        assert!(err.to_string().starts_with("mptcp.congestion: "), "{err}");
    }

    #[test]
    fn buffers_default_to_auto_and_take_kernel() {
        assert_eq!(parse("").mptcp.buffers, BufferMode::Auto);
        let kernel = parse("[mptcp]\nbuffers = \"kernel\"\n");
        assert_eq!(kernel.mptcp.buffers, BufferMode::Kernel);
        let text = format!("{HEAD}[mptcp]\nbuffers = \"huge\"\n");
        let err = Config::parse(&text, Format::Toml, Path::new("t.toml")).unwrap_err();
        assert!(err.to_string().starts_with("mptcp.buffers: "), "{err}");
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

    #[test]
    fn a_metered_wan_has_an_allowance_with_a_unit_and_a_reset_day() {
        let c = parse(
            "[[wan]]\nname = \"lte\"\nmetered = true\nallowance = \"1.5GB\"\nreset_day = 28\n\
             [[wan]]\nname = \"dsl\"\n",
        );
        let plan = c.wan.metering_for("lte");
        assert_eq!(
            plan,
            Metering {
                metered: true,
                allowance: Some(1_500_000_000),
                reset_day: 28
            }
        );
        assert_eq!(c.wan.metering_for("dsl"), Metering::default());
        // A metered WAN idles on sparse probes; an unmetered one on the default.
        assert_eq!(
            c.wan.probe_for("lte").idle_interval,
            crate::model::wan_health::METERED_IDLE_INTERVAL
        );
        assert_eq!(
            c.wan.probe_for("dsl").idle_interval,
            ProbeSettings::default().idle_interval
        );
        assert_eq!(c.state_dir.as_deref(), Some(Path::new(DEFAULT_STATE_DIR)));
        let top =
            |line: &str| Config::parse(&format!("{line}\n{HEAD}"), Format::Toml, Path::new("t"));
        assert_eq!(top("state_dir = \"\"").expect("valid").state_dir, None);
        let err = top("state_dir = \"var/lib\"").unwrap_err();
        assert!(err.to_string().starts_with("state_dir:"), "{err}");
        assert_eq!(parse_allowance("500 MB"), Ok(500_000_000));
        assert_eq!(parse_allowance("2tb"), Ok(2_000_000_000_000));
        for bad in ["20", "GB", "20 GiB", "0.1MB", "x GB"] {
            assert!(parse_allowance(bad).is_err(), "{bad}");
        }
        let bad = |extra: &str, field: &str| {
            let text = format!("{HEAD}{extra}");
            let err = Config::parse(&text, Format::Toml, Path::new("t.toml")).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        };
        bad(
            "[[wan]]\nname = \"lte\"\nallowance = \"1GB\"\n",
            "wan[0].allowance",
        );
        bad(
            "[[wan]]\nname = \"lte\"\nmetered = true\nallowance = \"1\"\n",
            "wan[0].allowance",
        );
        bad(
            "[[wan]]\nname = \"lte\"\nreset_day = 29\n",
            "wan[0].reset_day",
        );
    }
}
