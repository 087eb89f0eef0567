//! Validation of `[udp]`: the UDP interception (tproxy to the agent's transparent UDP
//! socket), its policy rules and the relay's limits.
//!
//! ```toml
//! [udp]
//! enabled = true            # intercept LAN UDP (default true)
//! listen_port = 4852        # the transparent UDP socket
//! default = "bond"          # bond | direct | block | protect, for UDP no rule matches
//! idle_timeout_secs = 120   # a flow with no datagram either way for this long ends
//! max_flows = 1024
//! queue_bytes = 65536       # capsules waiting for the MPTCP socket, per flow
//! auto_protect = false      # protect flows classed real-time (small, steady) with no rule
//! latency_guard = true      # while a protected flow runs, keep bulk downloads' queues short
//! fwmark = 0x4d42           # the mark that routes tproxied packets to the local table
//! route_table = 4852        # the table holding `local default dev lo`
//! rule_priority = 4852      # `ip rule fwmark <fwmark> lookup <route_table>`
//! [[udp.rule]]
//! ports = "443"             # or "5000-5100"; or prefix = "203.0.113.0/24"
//! action = "block"
//! [[udp.rule]]
//! ports = "3478-3497"
//! action = "protect"
//! mode = "fec"              # protect only: duplicate (default) | fec
//! ```
//!
//! Rules are tried in order; the first whose port (range) and prefix both match decides.
//! `protect` carries a real-time flow (calls, games) over two WANs at once (`udp::protect`):
//! with `mode = "duplicate"` each datagram goes on both and the first copy wins; with
//! `mode = "fec"` each datagram goes once, spread over both, with an XOR repair per short
//! block (about 12–20 % more bytes instead of 100 %). No rule ships by default.
//! Examples: RTP/WebRTC `3478-3497`, Google Meet `19302-19309`, Wi-Fi calling `4500`.
//! `auto_protect` also protects a bonded flow no rule names once `core::classify`
//! classes it real-time (two seconds of small datagrams at a steady rate); an explicit
//! `bond` rule keeps a destination out of it. Off by default (docs/DESIGN.md,
//! "Automatic classing"). `latency_guard` clamps the receive window of every upstream
//! connection while a protected flow is active, so a bulk download keeps no more than
//! about 10 ms queued on the WANs, and paces the reads of those that opened wider before
//! the call (`core::latency_guard`; docs/DESIGN.md, "Small flows under load").

use std::time::Duration;

use ipnet::IpNet;

use super::raw::{RawUdp, RawUdpRule};
use super::{field, prefixes, range, ConfigError, FieldError};

/// Default port of the transparent UDP socket.
pub const DEFAULT_UDP_PORT: u16 = 4852;
/// Default mark of tproxied packets (`MB`).
pub const DEFAULT_FWMARK: u32 = 0x4d42;
/// Default table of the `local default dev lo` route, and the rule's priority.
pub const DEFAULT_ROUTE_TABLE: u32 = 4852;

/// What happens to a UDP flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpAction {
    /// Through the concentrator, one MPTCP connection per flow.
    Bond,
    /// Out by the router's NAT, untouched.
    Direct,
    /// Refused with ICMP port unreachable (a browser falls back from QUIC to TCP at once).
    Block,
    /// Through the concentrator over two WANs at once (`udp::protect`): every datagram
    /// on both legs, the first copy wins. A bonded flow when protection cannot be set up.
    Protect,
}

impl UdpAction {
    fn parse(name: &str, text: &str) -> Result<UdpAction, ConfigError> {
        match text.trim() {
            "bond" => Ok(UdpAction::Bond),
            "direct" => Ok(UdpAction::Direct),
            "block" => Ok(UdpAction::Block),
            "protect" => Ok(UdpAction::Protect),
            other => Err(field(
                name,
                FieldError::Invalid(format!("{other:?} is not bond, direct, block or protect")),
            )),
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UdpAction::Bond => "bond",
            UdpAction::Direct => "direct",
            UdpAction::Block => "block",
            UdpAction::Protect => "protect",
        }
    }

    /// Whether the flow goes to the agent's transparent UDP socket (bond or protect).
    pub fn is_relayed(self) -> bool {
        matches!(self, UdpAction::Bond | UdpAction::Protect)
    }
}

/// How a protected flow is carried (`mode` of a `protect` rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtectMode {
    /// Every datagram on both legs; the first copy wins.
    #[default]
    Duplicate,
    /// Each datagram once, spread over the legs, with an XOR repair per block.
    Fec,
}

impl ProtectMode {
    fn parse(name: &str, text: &str) -> Result<Self, ConfigError> {
        match text {
            "duplicate" => Ok(ProtectMode::Duplicate),
            "fec" => Ok(ProtectMode::Fec),
            other => Err(field(
                name,
                FieldError::Invalid(format!("{other:?} is not duplicate or fec")),
            )),
        }
    }

    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtectMode::Duplicate => "duplicate",
            ProtectMode::Fec => "fec",
        }
    }
}

impl UdpRule {
    /// Whether the rule covers destination `dst`.
    pub fn matches(&self, dst: std::net::SocketAddr) -> bool {
        let port_ok = match self.ports {
            Some((first, last)) => (first..=last).contains(&dst.port()),
            None => true,
        };
        let prefix_ok = match self.prefix {
            Some(prefix) => prefix.contains(&dst.ip()),
            None => true,
        };
        port_ok && prefix_ok
    }
}

impl UdpConfig {
    /// The action for a flow to `dst`: the first matching rule's, else the default.
    pub fn action_for(&self, dst: std::net::SocketAddr) -> UdpAction {
        self.rules
            .iter()
            .find(|r| r.matches(dst))
            .map_or(self.default, |r| r.action)
    }

    /// How a flow to `dst` is protected: the first matching rule's mode (the default
    /// mode when no rule matches).
    pub fn protect_mode_for(&self, dst: std::net::SocketAddr) -> ProtectMode {
        self.rules
            .iter()
            .find(|r| r.matches(dst))
            .map_or(ProtectMode::default(), |r| r.mode)
    }

    /// Whether `auto_protect` may promote a bonded flow to `dst`: it is on and no rule
    /// names `dst` (an explicit `bond` rule keeps a flow bonded: the way out for a
    /// service that must keep its source port).
    pub fn auto_protects(&self, dst: std::net::SocketAddr) -> bool {
        self.auto_protect && !self.rules.iter().any(|r| r.matches(dst))
    }
}

/// One `[[udp.rule]]`: a destination port range and/or prefix, and its action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpRule {
    /// Inclusive destination port range; `None`: any port.
    pub ports: Option<(u16, u16)>,
    /// Destination prefix; `None`: any address.
    pub prefix: Option<IpNet>,
    pub action: UdpAction,
    /// How a `protect` rule's flows are carried (`duplicate` for the other actions).
    pub mode: ProtectMode,
}

/// The validated `[udp]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    pub enabled: bool,
    pub listen_port: u16,
    pub default: UdpAction,
    pub rules: Vec<UdpRule>,
    pub idle_timeout: Duration,
    pub max_flows: usize,
    pub queue_bytes: usize,
    /// Protect a bonded flow once it is classed real-time (`core::classify`).
    pub auto_protect: bool,
    /// Clamp bulk connections' receive windows while a protected flow is active.
    pub latency_guard: bool,
    pub fwmark: u32,
    pub route_table: u32,
    pub rule_priority: u32,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            enabled: true,
            listen_port: DEFAULT_UDP_PORT,
            default: UdpAction::Bond,
            rules: Vec::new(),
            idle_timeout: Duration::from_secs(120),
            max_flows: 1024,
            queue_bytes: 64 * 1024,
            auto_protect: false,
            latency_guard: true,
            fwmark: DEFAULT_FWMARK,
            route_table: DEFAULT_ROUTE_TABLE,
            rule_priority: DEFAULT_ROUTE_TABLE,
        }
    }
}

/// Validate `[udp]`.
pub fn udp(raw: RawUdp) -> Result<UdpConfig, ConfigError> {
    let d = UdpConfig::default();
    let listen_port = range(
        "udp.listen_port",
        raw.listen_port,
        d.listen_port.into(),
        1,
        65535,
    )? as u16;
    let default = match &raw.default {
        Some(text) => UdpAction::parse("udp.default", text)?,
        None => d.default,
    };
    let rules = raw
        .rule
        .iter()
        .enumerate()
        .map(|(i, rule)| udp_rule(i, rule))
        .collect::<Result<Vec<_>, _>>()?;
    let idle = range(
        "udp.idle_timeout_secs",
        raw.idle_timeout_secs,
        120,
        5,
        86_400,
    )?;
    let fwmark = range(
        "udp.fwmark",
        raw.fwmark,
        d.fwmark.into(),
        1,
        u32::MAX.into(),
    )? as u32;
    let route_table = range(
        "udp.route_table",
        raw.route_table,
        d.route_table.into(),
        1,
        0xFFFF_0000,
    )? as u32;
    if (253..=255).contains(&route_table) {
        let why = format!("{route_table} is a reserved table (default, main, local)");
        return Err(field("udp.route_table", FieldError::Invalid(why)));
    }
    Ok(UdpConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        listen_port,
        default,
        rules,
        idle_timeout: Duration::from_secs(idle),
        max_flows: range("udp.max_flows", raw.max_flows, 1024, 1, 1 << 20)? as usize,
        queue_bytes: range("udp.queue_bytes", raw.queue_bytes, 65_536, 2048, 16 << 20)? as usize,
        auto_protect: raw.auto_protect.unwrap_or(d.auto_protect),
        latency_guard: raw.latency_guard.unwrap_or(d.latency_guard),
        fwmark,
        route_table,
        rule_priority: range(
            "udp.rule_priority",
            raw.rule_priority,
            d.rule_priority.into(),
            1,
            32_765,
        )? as u32,
    })
}

fn udp_rule(i: usize, raw: &RawUdpRule) -> Result<UdpRule, ConfigError> {
    let name = format!("udp.rule[{i}]");
    let ports = match raw.ports.as_deref().map(str::trim) {
        None => None,
        Some(text) => Some(port_range(text).ok_or_else(|| {
            let why = format!("ports {text:?} is not PORT or FIRST-LAST (1-65535)");
            field(&name, FieldError::Invalid(why))
        })?),
    };
    let prefix = match &raw.prefix {
        None => None,
        Some(text) => prefixes(&format!("{name}.prefix"), std::slice::from_ref(text))?
            .first()
            .copied(),
    };
    if ports.is_none() && prefix.is_none() {
        let why = "a rule needs ports or a prefix".to_owned();
        return Err(field(&name, FieldError::Invalid(why)));
    }
    let action = UdpAction::parse(&format!("{name}.action"), &raw.action)?;
    let mode = match raw.mode.as_deref() {
        None => ProtectMode::default(),
        Some(_) if action != UdpAction::Protect => {
            let why = "mode is for action = \"protect\" only".to_owned();
            return Err(field(format!("{name}.mode"), FieldError::Invalid(why)));
        }
        Some(text) => ProtectMode::parse(&format!("{name}.mode"), text)?,
    };
    Ok(UdpRule {
        ports,
        prefix,
        action,
        mode,
    })
}

/// `443` or `5000-5100`, both ends in 1..=65535, first ≤ last.
fn port_range(text: &str) -> Option<(u16, u16)> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let first: u16 = first.trim().parse().ok()?;
    let last: u16 = last.trim().parse().ok()?;
    (first >= 1 && first <= last).then_some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<UdpConfig, String> {
        let raw: RawUdp = toml::from_str(text).map_err(|e| e.to_string())?;
        udp(raw).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_bond_everything() {
        let c = parse("").expect("empty section");
        assert_eq!(c, UdpConfig::default());
        assert!(c.enabled);
        assert_eq!(c.default, UdpAction::Bond);
    }

    #[test]
    fn rules_keep_their_order_and_ranges() {
        let c = parse(concat!(
            "default = \"direct\"\n",
            "[[rule]]\nports = \"443\"\naction = \"block\"\n",
            "[[rule]]\nports = \"5000-5100\"\nprefix = \"203.0.113.9/24\"\naction = \"bond\"\n",
        ))
        .expect("valid");
        assert_eq!(c.default, UdpAction::Direct);
        assert_eq!(c.rules[0].ports, Some((443, 443)));
        assert_eq!(c.rules[0].action, UdpAction::Block);
        assert_eq!(c.rules[1].ports, Some((5000, 5100)));
        assert_eq!(c.rules[1].prefix, Some("203.0.113.0/24".parse().unwrap()));
    }

    #[test]
    fn uci_options_and_rule_sections_map_to_udp() {
        let text = format!(
            "config globals 'globals'\n\toption host '192.0.2.1'\n\toption client_id 'home'\n\
             \toption key '{}'\n\toption udp_default 'direct'\n\toption udp_enabled '1'\n\
             config udp_rule\n\toption ports '443'\n\toption action 'block'\n\
             config udp_rule\n\toption prefix '198.51.100.0/24'\n\toption action 'bond'\n",
            "ab".repeat(32)
        );
        let config = crate::config::uci::load_uci(&text).expect("valid UCI");
        assert_eq!(config.udp.default, UdpAction::Direct);
        assert_eq!(config.udp.rules.len(), 2);
        assert_eq!(config.udp.rules[0].ports, Some((443, 443)));
        assert_eq!(config.udp.rules[1].action, UdpAction::Bond);
        let bad = text.replace("'block'", "'drop'");
        assert!(crate::config::uci::load_uci(&bad).is_err());
    }

    #[test]
    fn protect_is_an_action_and_rules_classify_destinations() {
        let c = parse(concat!(
            "[[rule]]\nports = \"3478-3497\"\naction = \"protect\"\n",
            "[[rule]]\nprefix = \"203.0.113.0/24\"\naction = \"direct\"\n",
        ))
        .expect("valid");
        let dst = |s: &str| s.parse::<std::net::SocketAddr>().expect("addr");
        assert_eq!(c.action_for(dst("198.51.100.1:3480")), UdpAction::Protect);
        assert_eq!(c.action_for(dst("203.0.113.5:3480")), UdpAction::Protect);
        assert_eq!(c.action_for(dst("203.0.113.5:443")), UdpAction::Direct);
        assert_eq!(c.action_for(dst("198.51.100.1:443")), UdpAction::Bond);
        assert!(UdpAction::Protect.is_relayed());
        assert_eq!(UdpAction::Protect.as_str(), "protect");
        let e = parse("default = \"protected\"").unwrap_err();
        assert!(e.contains("protect"), "{e}");
    }

    #[test]
    fn protect_rules_take_a_mode_and_other_actions_do_not() {
        let c = parse(concat!(
            "[[rule]]\nports = \"3478\"\naction = \"protect\"\nmode = \"fec\"\n",
            "[[rule]]\nports = \"4500\"\naction = \"protect\"\n",
        ))
        .expect("valid");
        let dst = |s: &str| s.parse::<std::net::SocketAddr>().expect("addr");
        assert_eq!(
            c.protect_mode_for(dst("198.51.100.1:3478")),
            ProtectMode::Fec
        );
        assert_eq!(
            c.protect_mode_for(dst("198.51.100.1:4500")),
            ProtectMode::Duplicate
        );
        assert_eq!(
            c.protect_mode_for(dst("198.51.100.1:53")),
            ProtectMode::Duplicate
        );
        assert_eq!(ProtectMode::Fec.as_str(), "fec");
        let e =
            parse("[[rule]]\nports = \"1\"\naction = \"protect\"\nmode = \"triple\"").unwrap_err();
        assert!(e.contains("udp.rule[0].mode"), "{e}");
        let e = parse("[[rule]]\nports = \"1\"\naction = \"bond\"\nmode = \"fec\"").unwrap_err();
        assert!(e.contains("protect"), "{e}");
    }

    #[test]
    fn auto_protect_is_off_by_default_and_spares_destinations_a_rule_names() {
        let dst = |s: &str| s.parse::<std::net::SocketAddr>().expect("addr");
        let off = parse("").expect("valid");
        assert!(!off.auto_protect);
        assert!(!off.auto_protects(dst("198.51.100.1:5004")));
        let on = parse(concat!(
            "auto_protect = true\n",
            "[[rule]]\nports = \"27015\"\naction = \"bond\"\n",
        ))
        .expect("valid");
        assert!(on.auto_protects(dst("198.51.100.1:5004")));
        assert!(!on.auto_protects(dst("198.51.100.1:27015")));
    }

    #[test]
    fn uci_maps_the_protect_action() {
        let text = format!(
            "config globals 'globals'\n\toption host '192.0.2.1'\n\toption client_id 'home'\n\
             \toption key '{}'\n\
             config udp_rule\n\toption ports '3478-3497'\n\toption action 'protect'\n\
             config udp_rule\n\toption ports '4500'\n\toption action 'protect'\n\
             \toption mode 'fec'\n",
            "ab".repeat(32)
        );
        let config = crate::config::uci::load_uci(&text).expect("valid UCI");
        assert_eq!(config.udp.rules.len(), 2);
        assert_eq!(config.udp.rules[0].ports, Some((3478, 3497)));
        assert_eq!(config.udp.rules[0].action, UdpAction::Protect);
        assert_eq!(config.udp.rules[1].action, UdpAction::Protect);
        assert_eq!(config.udp.rules[0].mode, ProtectMode::Duplicate);
        assert_eq!(config.udp.rules[1].mode, ProtectMode::Fec);
    }

    #[test]
    fn bad_values_name_their_field() {
        let e = parse("default = \"tunnel\"").unwrap_err();
        assert!(e.contains("udp.default"), "{e}");
        let e = parse("[[rule]]\nports = \"9-3\"\naction = \"bond\"").unwrap_err();
        assert!(e.contains("udp.rule[0]"), "{e}");
        let e = parse("[[rule]]\naction = \"bond\"").unwrap_err();
        assert!(e.contains("needs ports or a prefix"), "{e}");
        let e = parse("route_table = 254").unwrap_err();
        assert!(e.contains("udp.route_table"), "{e}");
        assert!(parse("listen_port = 0").is_err());
    }
}
