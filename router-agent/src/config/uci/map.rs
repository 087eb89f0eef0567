//! UCI sections → [`RawConfig`], driven by one table, [`MAPPINGS`].
//!
//! The values are typed here (numbers, booleans, choices, lists), so a bad one is reported
//! by its UCI path, and then handed to serde as a JSON tree. Going through serde rather than
//! building the struct by hand keeps `deny_unknown_fields` and the defaults of the raw
//! struct in force, and lets the raw struct grow without this file breaking.

use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::{OptionError, Package, Section, SectionError, UciError, Value};
use crate::config::raw::RawConfig;

/// How a UCI value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any string.
    Text,
    /// A decimal (or `0x` hexadecimal) unsigned integer.
    Number,
    /// `1/0`, `yes/no`, `on/off`, `true/false`, `enabled/disabled`.
    Bool,
    /// `list NAME 'v'` lines (a single `option` is taken as a one-element list).
    List,
    /// One of the `|`-separated words.
    Choice(&'static str),
}

/// One UCI option and the raw-config field it fills.
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    /// Section type: `globals` or `wan`.
    pub section: &'static str,
    pub option: &'static str,
    pub kind: Kind,
    /// Dotted raw-config path (`concentrator.host`); for `wan` sections the path inside one
    /// `[[wan]]` entry. `None`: read by the init script only, checked but not mapped.
    pub field: Option<&'static str>,
    pub required: bool,
}

/// An option of the `globals` section that fills `field`.
const fn global(option: &'static str, kind: Kind, field: &'static str) -> Mapping {
    Mapping {
        field: Some(field),
        ..script_only("globals", option, kind)
    }
}

/// An option of a `udp_rule` section that fills `field` of its `[[udp.rule]]` entry.
const fn udp_rule(option: &'static str, kind: Kind, field: &'static str) -> Mapping {
    Mapping {
        field: Some(field),
        ..script_only("udp_rule", option, kind)
    }
}

/// An option of a `concentrator` section that fills `field` of its `[[concentrators]]`
/// entry (one section per concentrator; the section name is its default name).
const fn concentrator(option: &'static str, kind: Kind, field: &'static str) -> Mapping {
    Mapping {
        field: Some(field),
        ..script_only("concentrator", option, kind)
    }
}

/// An option of a `wan` section that fills `field` of its `[[wan]]` entry.
const fn wan(option: &'static str, kind: Kind, field: &'static str) -> Mapping {
    Mapping {
        field: Some(field),
        ..script_only("wan", option, kind)
    }
}

const fn required(mapping: Mapping) -> Mapping {
    Mapping {
        required: true,
        ..mapping
    }
}

const fn script_only(section: &'static str, option: &'static str, kind: Kind) -> Mapping {
    Mapping {
        section,
        option,
        kind,
        field: None,
        required: false,
    }
}

use Kind::{Bool, Choice, List, Number, Text};

/// Every option the agent understands, in the order of the shipped `/etc/config/mpbond`.
pub const MAPPINGS: &[Mapping] = &[
    script_only("globals", "enabled", Bool),
    global("log_level", Text, "log.level"),
    // Required unless `concentrator` sections are given (checked in `to_raw`).
    global("host", Text, "concentrator.host"),
    global("port", Number, "concentrator.port"),
    global("client_id", Text, "concentrator.client_id"),
    global("key", Text, "concentrator.key"),
    global("listen_port", Number, "proxy.listen_port"),
    global("lan_interface", List, "proxy.lan_interfaces"),
    global("nft_table", Text, "proxy.nft_table"),
    global("max_connections", Number, "proxy.max_connections"),
    global("connect_timeout_ms", Number, "proxy.connect_timeout_ms"),
    global("reply_timeout_ms", Number, "proxy.reply_timeout_ms"),
    global("idle_timeout_secs", Number, "proxy.idle_timeout_secs"),
    global("bypass_destination", List, "bypass.destinations"),
    global("bypass_source", List, "bypass.sources"),
    global("bypass_domain", List, "bypass.domains"),
    global("dnsmasq_conf", Text, "bypass.dnsmasq_conf"),
    global("dnsmasq_restart", List, "bypass.dnsmasq_restart"),
    global("interval_ms", Number, "health.interval_ms"),
    global("timeout_ms", Number, "health.timeout_ms"),
    global("down_after", Number, "health.down_after"),
    global("up_after", Number, "health.up_after"),
    global("table_base", Number, "routing.table_base"),
    global("table_count", Number, "routing.table_count"),
    global("rule_priority_base", Number, "routing.rule_priority_base"),
    global("rule_priority_count", Number, "routing.rule_priority_count"),
    global("route_protocol", Number, "routing.route_protocol"),
    global("reconcile_secs", Number, "routing.reconcile_secs"),
    global("ubus_socket", Text, "routing.ubus_socket"),
    global("subflows", Number, "mptcp.subflows"),
    global("add_addr_accepted", Number, "mptcp.add_addr_accepted"),
    global("blackhole_timeout", Number, "mptcp.blackhole_timeout"),
    global(
        "syn_retrans_before_tcp_fallback",
        Number,
        "mptcp.syn_retrans_before_tcp_fallback",
    ),
    global("stale_loss_cnt", Number, "mptcp.stale_loss_cnt"),
    global("congestion", Text, "mptcp.congestion"),
    global("buffers", Text, "mptcp.buffers"),
    global("path_quality", Bool, "path_quality.enabled"),
    global("quality_rtt_ratio", Number, "path_quality.rtt_ratio"),
    global(
        "quality_min_rtt_gap_ms",
        Number,
        "path_quality.min_rtt_gap_ms",
    ),
    global(
        "quality_rate_share_pct",
        Number,
        "path_quality.rate_share_pct",
    ),
    global("quality_loss_pct", Number, "path_quality.loss_pct"),
    global(
        "quality_demote_after_secs",
        Number,
        "path_quality.demote_after_secs",
    ),
    global(
        "quality_restore_after_secs",
        Number,
        "path_quality.restore_after_secs",
    ),
    global("status_socket", Text, "status.socket"),
    global("state_dir", Text, "state_dir"),
    global("udp_enabled", Bool, "udp.enabled"),
    global("udp_port", Number, "udp.listen_port"),
    global(
        "udp_default",
        Choice("bond|direct|block|protect"),
        "udp.default",
    ),
    global("udp_idle_timeout_secs", Number, "udp.idle_timeout_secs"),
    global("udp_max_flows", Number, "udp.max_flows"),
    global("udp_queue_bytes", Number, "udp.queue_bytes"),
    concentrator("name", Text, "name"),
    concentrator("priority", Number, "priority"),
    required(concentrator("host", Text, "host")),
    concentrator("port", Number, "port"),
    required(concentrator("client_id", Text, "client_id")),
    required(concentrator("key", Text, "key")),
    global("udp_auto_protect", Bool, "udp.auto_protect"),
    global("udp_latency_guard", Bool, "udp.latency_guard"),
    wan("interface", Text, "name"),
    wan("device", Text, "device"),
    wan("mode", Choice("on|backup|off"), "mode"),
    wan("interval_ms", Number, "probe_interval_ms"),
    wan("idle_interval_ms", Number, "probe_idle_interval_ms"),
    wan("timeout_ms", Number, "probe_timeout_ms"),
    wan("down_after", Number, "down"),
    wan("up_after", Number, "up"),
    wan("metered", Bool, "metered"),
    wan("allowance", Text, "allowance"),
    wan("reset_day", Number, "reset_day"),
    udp_rule("ports", Text, "ports"),
    udp_rule("prefix", Text, "prefix"),
    required(udp_rule(
        "action",
        Choice("bond|direct|block|protect"),
        "action",
    )),
    udp_rule("mode", Choice("duplicate|fec"), "mode"),
];

/// Parse UCI text into the raw config. Values are typed and unknown options rejected; the
/// range and format checks happen later, in [`crate::config::Config::from_raw`] (or use
/// [`super::load_uci`], which does both and names the UCI option in every error).
pub fn parse_uci(text: &str) -> Result<RawConfig, UciError> {
    to_raw(&super::parse(text)?)
}

pub(super) fn to_raw(package: &Package) -> Result<RawConfig, UciError> {
    let mut root = Map::new();
    let mut wans = Vec::new();
    let mut udp_rules = Vec::new();
    let mut concentrators = Vec::new();
    let mut globals_line = None;
    let mut globals_path = None;
    let mut interfaces: Vec<String> = Vec::new();
    for (index, section) in package.sections.iter().enumerate() {
        let path = package.section_path(index);
        let section_error = |problem| UciError::Section {
            path: path.clone(),
            line: section.line,
            problem,
        };
        match section.kind.as_str() {
            "globals" => {
                if let Some(first) = globals_line {
                    return Err(section_error(SectionError::SecondGlobals(first)));
                }
                globals_line = Some(section.line);
                globals_path = Some(path.clone());
                map_section(section, &path, &mut root)?;
            }
            "wan" => {
                let mut entry = Map::new();
                map_section(section, &path, &mut entry)?;
                if !entry.contains_key("name") {
                    // As in mwan3, the section name is the netifd interface by default.
                    let Some(name) = &section.name else {
                        return Err(missing(&path, "interface"));
                    };
                    entry.insert("name".into(), Json::String(name.clone()));
                }
                if let Some(Json::String(name)) = entry.get("name") {
                    if interfaces.contains(name) {
                        return Err(section_error(SectionError::DuplicateInterface(
                            name.clone(),
                        )));
                    }
                    interfaces.push(name.clone());
                }
                wans.push(Json::Object(entry));
            }
            "concentrator" => {
                let mut entry = Map::new();
                map_section(section, &path, &mut entry)?;
                if let (false, Some(name)) = (entry.contains_key("name"), &section.name) {
                    entry.insert("name".into(), Json::String(name.clone()));
                }
                concentrators.push(Json::Object(entry));
            }
            "udp_rule" => {
                let mut entry = Map::new();
                map_section(section, &path, &mut entry)?;
                udp_rules.push(Json::Object(entry));
            }
            other => return Err(section_error(SectionError::UnknownType(other.to_owned()))),
        }
    }
    if globals_line.is_none() {
        return Err(UciError::Section {
            path: package.name.clone().unwrap_or_else(|| "mpbond".into()),
            line: 1,
            problem: SectionError::NoGlobals,
        });
    }
    if concentrators.is_empty() {
        // The single form: the globals section names the concentrator.
        let globals = globals_path.unwrap_or_default();
        for option in ["host", "client_id", "key"] {
            if root
                .get("concentrator")
                .and_then(|c| c.get(option))
                .is_none()
            {
                return Err(missing(&globals, option));
            }
        }
    } else if let Some(Json::Object(single)) = root.get("concentrator") {
        let option = ["host", "port", "client_id", "key"]
            .into_iter()
            .find(|o| single.contains_key(*o))
            .unwrap_or("host");
        return Err(UciError::Option {
            path: format!("{}.{option}", globals_path.unwrap_or_default()),
            line: 0,
            problem: OptionError::BothConcentratorForms,
        });
    } else {
        root.insert("concentrators".into(), Json::Array(concentrators));
    }
    if !wans.is_empty() {
        root.insert("wan".into(), Json::Array(wans));
    }
    if !udp_rules.is_empty() {
        let udp = root
            .entry("udp")
            .or_insert_with(|| Json::Object(Map::new()));
        if let Json::Object(udp) = udp {
            udp.insert("rule".into(), Json::Array(udp_rules));
        }
    }
    RawConfig::deserialize(Json::Object(root)).map_err(UciError::Mapping)
}

fn missing(section_path: &str, option: &str) -> UciError {
    UciError::Option {
        path: format!("{section_path}.{option}"),
        line: 0,
        problem: OptionError::Missing,
    }
}

/// Type every option of `section` and insert it into `out` at its field path.
fn map_section(section: &Section, path: &str, out: &mut Map<String, Json>) -> Result<(), UciError> {
    let table = || MAPPINGS.iter().filter(|m| m.section == section.kind);
    for option in &section.options {
        let error = |problem| UciError::Option {
            path: format!("{path}.{}", option.name),
            line: option.line,
            problem,
        };
        let mapping = table()
            .find(|m| m.option == option.name)
            .ok_or_else(|| error(OptionError::Unknown))?;
        let value = typed(mapping.kind, &option.value).map_err(error)?;
        if let Some(field) = mapping.field {
            insert(out, field, value);
        }
    }
    for mapping in table().filter(|m| m.required) {
        if section.get(mapping.option).is_none() {
            return Err(missing(path, mapping.option));
        }
    }
    Ok(())
}

fn typed(kind: Kind, value: &Value) -> Result<Json, OptionError> {
    if kind == Kind::List {
        let values = match value {
            Value::Single(v) => vec![v.clone()],
            Value::List(vs) => vs.clone(),
        };
        return Ok(Json::Array(values.into_iter().map(Json::String).collect()));
    }
    let Value::Single(text) = value else {
        return Err(OptionError::NotSingle);
    };
    match kind {
        Kind::Text | Kind::List => Ok(Json::String(text.clone())),
        Kind::Number => parse_number(text)
            .map(Json::from)
            .ok_or_else(|| OptionError::Number(text.clone())),
        Kind::Bool => super::parse_bool(text)
            .map(Json::Bool)
            .ok_or_else(|| OptionError::Bool(text.clone())),
        Kind::Choice(allowed) => {
            let word = text.trim();
            if allowed.split('|').any(|a| a == word) {
                Ok(Json::String(word.to_owned()))
            } else {
                Err(OptionError::Choice {
                    value: text.clone(),
                    allowed,
                })
            }
        }
    }
}

fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
    .filter(|_| !text.starts_with('+'))
}

/// Insert `value` at the dotted `field` path, creating the objects on the way.
fn insert(out: &mut Map<String, Json>, field: &str, value: Json) {
    match field.split_once('.') {
        None => {
            out.insert(field.to_owned(), value);
        }
        Some((head, rest)) => {
            let child = out
                .entry(head.to_owned())
                .or_insert_with(|| Json::Object(Map::new()));
            if let Json::Object(child) = child {
                insert(child, rest, value);
            }
        }
    }
}

/// Rename a raw-config field path from a validation error (`concentrator.key`,
/// `proxy.lan_interfaces[1]`, `wan[0].device`) to the UCI option that set it.
pub(super) fn uci_path(package: &Package, field: &str) -> String {
    if let Some(rest) = field.strip_prefix("concentrators[") {
        if let Some((n, inner)) = rest.split_once("].") {
            let section = n.parse::<usize>().ok().and_then(|n| {
                let (i, _) = package
                    .sections
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.kind == "concentrator")
                    .nth(n)?;
                Some(i)
            });
            if let Some(i) = section {
                return format!("{}.{inner}", package.section_path(i));
            }
        }
    }
    let (field, index) = split_index(field);
    let suffix = index.map(|i| format!("[{i}]")).unwrap_or_default();
    if let Some(rest) = field.strip_prefix("wan[") {
        let Some((n, inner)) = rest.split_once("].") else {
            return field.to_owned();
        };
        let wan_index = n.parse::<usize>().ok().and_then(|n| {
            let (i, _) = package
                .sections
                .iter()
                .enumerate()
                .filter(|(_, s)| s.kind == "wan")
                .nth(n)?;
            Some(i)
        });
        let option = MAPPINGS
            .iter()
            .find(|m| m.section == "wan" && m.field == Some(inner))
            .map_or(inner, |m| m.option);
        return match wan_index {
            Some(i) => format!("{}.{option}{suffix}", package.section_path(i)),
            None => format!("{field}{suffix}"),
        };
    }
    let globals = package.sections.iter().position(|s| s.kind == "globals");
    match (
        MAPPINGS
            .iter()
            .find(|m| m.section == "globals" && m.field == Some(field)),
        globals,
    ) {
        (Some(m), Some(i)) => format!("{}.{}{suffix}", package.section_path(i), m.option),
        _ => format!("{field}{suffix}"),
    }
}

/// `proxy.lan_interfaces[1]` → (`proxy.lan_interfaces`, Some(1)).
fn split_index(field: &str) -> (&str, Option<usize>) {
    if let Some(open) = field.rfind('[') {
        if let Some(n) = field[open + 1..].strip_suffix(']') {
            if let Ok(n) = n.parse() {
                if !field[..open].ends_with("wan") || field[..open].contains('.') {
                    return (&field[..open], Some(n));
                }
            }
        }
    }
    (field, None)
}
