//! UCI → raw config → validated Config: the shipped `/etc/config/mpbond`, every mapped
//! option, the TOML equivalence, and errors named by UCI path.

use std::path::Path;

use mpbond_agent::config::uci::{load_uci, load_uci_file, parse_uci, UciError, MAPPINGS};
use mpbond_agent::config::{Config, Format};
use mpbond_agent::model::wan::Mode;

const KEY: &str = "abababababababababababababababababababababababababababababababab";

fn shipped_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../openwrt/mpbond/files/mpbond.config")
}

fn globals(extra: &str) -> String {
    format!(
        "config globals 'globals'\n\toption host '192.0.2.1'\n\toption client_id 'home'\n\
         \toption key '{KEY}'\n{extra}"
    )
}

fn error(text: &str) -> String {
    match load_uci(text) {
        Ok(_) => panic!("{text:?} loaded but should not"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_shipped_config_is_valid() {
    let config = load_uci_file(&shipped_path()).unwrap_or_else(|e| panic!("mpbond.config: {e}"));
    assert_eq!(config.concentrator.host, "192.0.2.1");
    assert_eq!(config.concentrator.port, 4850);
    assert_eq!(config.proxy.lan_interfaces, ["br-lan"]);
    assert_eq!(config.proxy.listen_port, 4851);
    assert_eq!(config.routing.ownership.table_base, 2000);
    assert_eq!(config.routing.ownership.rule_priority_base, 2000);
    assert_eq!(config.routing.ownership.route_protocol, 93);
    assert_eq!(config.log_level, "info");
    // No wan section is active in the shipped file: auto-detection.
    assert!(config.wan.wans.is_empty());
}

#[test]
fn the_shipped_config_matches_the_toml_defaults() {
    let uci = load_uci_file(&shipped_path()).expect("shipped config");
    let toml_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/minimal.toml");
    let toml = Config::load(&toml_path).expect("minimal.toml");
    assert_eq!(format!("{:?}", uci.proxy), format!("{:?}", toml.proxy));
    assert_eq!(format!("{:?}", uci.health), format!("{:?}", toml.health));
    assert_eq!(format!("{:?}", uci.routing), format!("{:?}", toml.routing));
    assert_eq!(format!("{:?}", uci.mptcp), format!("{:?}", toml.mptcp));
}

#[test]
fn every_option_maps_like_its_toml_field() {
    let uci = globals(
        "\toption port '4999'\n\toption listen_port '4852'\n\tlist lan_interface 'br-lan'\n\
         \tlist lan_interface 'br-guest'\n\toption nft_table 'mpb'\n\toption max_connections '100'\n\
         \toption connect_timeout_ms '2000'\n\toption reply_timeout_ms '3000'\n\
         \toption idle_timeout_secs '0'\n\tlist bypass_destination '198.51.100.0/24'\n\
         \tlist bypass_source '192.168.1.50'\n\tlist bypass_domain 'Bank.Example'\n\
         \toption dnsmasq_conf '/tmp/d/m.conf'\n\tlist dnsmasq_restart '/bin/true'\n\
         \toption interval_ms '500'\n\toption timeout_ms '400'\n\
         \toption down_after '4'\n\toption up_after '3'\n\toption table_base '3000'\n\
         \toption table_count '16'\n\toption rule_priority_base '3000'\n\
         \toption rule_priority_count '32'\n\toption route_protocol '0x5e'\n\
         \toption reconcile_secs '60'\n\toption ubus_socket 'off'\n\toption subflows '4'\n\toption add_addr_accepted '2'\n\
         \toption blackhole_timeout '0'\n\toption syn_retrans_before_tcp_fallback '2'\n\
         \toption stale_loss_cnt '3'\n\toption congestion 'reno'\n\toption buffers 'kernel'\n\toption path_quality '0'\n\toption quality_rtt_ratio '6'\n\
         \toption quality_min_rtt_gap_ms '80'\n\toption quality_rate_share_pct '30'\n\
         \toption quality_loss_pct '12'\n\toption quality_demote_after_secs '4'\n\
         \toption quality_restore_after_secs '20'\n\toption udp_enabled '1'\n\toption udp_port '4860'\n\toption udp_default 'direct'\n\
         \toption udp_idle_timeout_secs '90'\n\toption udp_max_flows '512'\n\toption udp_queue_bytes '32768'\n\toption udp_auto_protect '1'\n\toption udp_latency_guard '0'\n\toption status_socket '/tmp/mpbond.sock'\n\
         \toption enabled '1'\n\toption log_level 'debug'\n\toption state_dir '/tmp/mpb'\n\
         config wan 'wan'\n\toption device 'eth1'\n\
         config wan\n\toption interface 'wanb'\n\toption device 'pppoe-wanb'\n\toption mode 'backup'\n\
         \toption interval_ms '2000'\n\toption idle_interval_ms '9000'\n\toption timeout_ms '1500'\n\toption down_after '5'\n\
         \toption up_after '4'\n\toption metered '1'\n\toption allowance '20GB'\n\
         \toption reset_day '14'\n\
         config udp_rule\n\toption ports '443'\n\toption prefix '203.0.113.0/24'\n\toption action 'block'\n",
    );
    let toml = format!(
        r#"
state_dir = "/tmp/mpb"
[concentrator]
host = "192.0.2.1"
port = 4999
client_id = "home"
key = "{KEY}"
[proxy]
listen_port = 4852
lan_interfaces = ["br-lan", "br-guest"]
nft_table = "mpb"
max_connections = 100
connect_timeout_ms = 2000
reply_timeout_ms = 3000
idle_timeout_secs = 0
[bypass]
destinations = ["198.51.100.0/24"]
sources = ["192.168.1.50"]
domains = ["bank.example"]
dnsmasq_conf = "/tmp/d/m.conf"
dnsmasq_restart = ["/bin/true"]
[health]
interval_ms = 500
timeout_ms = 400
down_after = 4
up_after = 3
[routing]
table_base = 3000
table_count = 16
rule_priority_base = 3000
rule_priority_count = 32
route_protocol = 94
reconcile_secs = 60
ubus_socket = "off"
[mptcp]
subflows = 4
add_addr_accepted = 2
blackhole_timeout = 0
syn_retrans_before_tcp_fallback = 2
stale_loss_cnt = 3
congestion = "reno"
buffers = "kernel"
[path_quality]
enabled = false
rtt_ratio = 6
min_rtt_gap_ms = 80
rate_share_pct = 30
loss_pct = 12
demote_after_secs = 4
restore_after_secs = 20
[udp]
enabled = true
listen_port = 4860
default = "direct"
idle_timeout_secs = 90
max_flows = 512
queue_bytes = 32768
auto_protect = true
latency_guard = false
[[udp.rule]]
ports = "443"
prefix = "203.0.113.0/24"
action = "block"
[status]
socket = "/tmp/mpbond.sock"
[log]
level = "debug"
[[wan]]
name = "wan"
device = "eth1"
[[wan]]
name = "wanb"
device = "pppoe-wanb"
mode = "backup"
probe_interval_ms = 2000
probe_idle_interval_ms = 9000
probe_timeout_ms = 1500
down = 5
up = 4
metered = true
allowance = "20 GB"
reset_day = 14
"#
    );
    let from_uci = load_uci(&uci).unwrap_or_else(|e| panic!("{e}"));
    let from_toml = Config::parse(&toml, Format::Toml, Path::new("x.toml")).expect("toml");
    assert_eq!(format!("{from_uci:?}"), format!("{from_toml:?}"));
    assert_eq!(from_uci.wan.wans.len(), 2);
    let congestion = from_uci.mptcp.congestion.as_ref().map(|n| n.as_str());
    assert_eq!(congestion, Some("reno"));
    let buffers = from_uci.mptcp.buffers;
    assert_eq!(buffers, mpbond_agent::core::buffers::BufferMode::Kernel);
    assert_eq!(from_uci.wan.wans[1].mode, Mode::Backup);
    let plan = from_uci.wan.wans[1].metering;
    assert!(plan.metered);
    assert_eq!((plan.allowance, plan.reset_day), (Some(20_000_000_000), 14));
    assert_eq!(from_uci.wan.metering_for("wan"), Default::default());
    assert_eq!(from_uci.state_dir.as_deref(), Some(Path::new("/tmp/mpb")));
    // Every mapped option of the table was used above (the `concentrator` sections'
    // in `concentrator_sections_are_a_list_with_priorities`).
    for m in MAPPINGS.iter().filter(|m| m.section != "concentrator") {
        assert!(
            uci.contains(&format!("option {} ", m.option))
                || uci.contains(&format!("list {} ", m.option)),
            "{} is not covered",
            m.option
        );
    }
}

#[test]
fn wan_interface_defaults_to_the_section_name() {
    let config = load_uci(&globals("config wan 'wanb'\n\toption mode 'off'\n")).expect("valid");
    assert_eq!(config.wan.wans[0].name, "wanb");
    assert_eq!(config.wan.wans[0].device, "wanb");
    assert_eq!(config.wan.wans[0].mode, Mode::Off);
    // A single `option` for a list option is a one-element list.
    let config = load_uci(&globals("\toption lan_interface 'br-x'\n")).expect("valid");
    assert_eq!(config.proxy.lan_interfaces, ["br-x"]);
}

#[test]
fn bad_options_are_named_by_uci_path() {
    let cases = [
        (
            globals("\toption port 'abc'\n"),
            "mpbond.globals.port: expected a number, got \"abc\" (line 5)",
        ),
        (
            globals("\toption port '-1'\n"),
            "mpbond.globals.port: expected a number",
        ),
        (
            globals("\toption port '70000'\n"),
            "mpbond.globals.port: 70000 is out of range 1..=65535",
        ),
        (
            globals("\toption enabled 'maybe'\n"),
            "mpbond.globals.enabled: expected a boolean",
        ),
        (
            globals("\toption colour 'red'\n"),
            "mpbond.globals.colour: unknown option (line 5)",
        ),
        (
            globals("\tlist port '1'\n"),
            "mpbond.globals.port: expected a single value, not a list",
        ),
        (
            globals("\tlist lan_interface 'br lan'\n"),
            "mpbond.globals.lan_interface[0]: \"br lan\" is not a valid interface name",
        ),
        (
            globals("\tlist bypass_source 'nope'\n"),
            "mpbond.globals.bypass_source[0]: \"nope\" is not an IP prefix",
        ),
        (
            globals("\toption table_base 'x'\n"),
            "mpbond.globals.table_base: expected a number",
        ),
        (
            globals("\toption route_protocol '300'\n"),
            "mpbond.globals.route_protocol: 300 is out of range",
        ),
        (
            globals("\toption log_level 'debgu'\n"),
            "mpbond.globals.log_level: \"debgu\" is not a log filter",
        ),
        (
            globals("config wan 'w'\n\toption mode 'sometimes'\n"),
            "mpbond.w.mode: expected one of on|backup|off, got \"sometimes\" (line 6)",
        ),
        (
            globals("config wan\n\toption mode 'on'\n"),
            "mpbond.@wan[0].interface: required option is missing",
        ),
        (
            globals("config wan 'a'\nconfig wan 'b'\n\toption device 'br-lan'\n"),
            "mpbond.b.device: \"br-lan\" is a LAN interface",
        ),
        (
            globals("config wan 'a'\n\toption down_after '0'\n"),
            "mpbond.a.down_after: 0 is out of range 1..=1000",
        ),
        (
            globals("config wan 'a'\nconfig wan\n\toption interface 'a'\n"),
            "mpbond.@wan[1]: two wan sections name the interface \"a\" (line 6)",
        ),
        (
            globals("config rule 'r'\n"),
            "mpbond.r: unknown section type \"rule\"",
        ),
        (
            globals("config globals 'again'\n"),
            "mpbond.again: a second globals section (the first is at line 1)",
        ),
        (
            "config wan 'wan'\n".to_owned(),
            "mpbond: no `config globals 'globals'` section",
        ),
        (
            "config globals 'globals'\n\toption host 'h'\n".to_owned(),
            "mpbond.globals.client_id: required option is missing",
        ),
        (
            globals("").replace(KEY, "12"),
            "mpbond.globals.key: expected 64 hex characters",
        ),
        (
            globals("").replace("'home'", "'no spaces'"),
            "mpbond.globals.client_id: expected 1-32 characters",
        ),
        (
            globals("").replace("192.0.2.1", "bad host!"),
            "mpbond.globals.host: \"bad host!\" is not a valid host name",
        ),
        (
            globals("\toption x 'open\n"),
            "line 5: unterminated ' quote",
        ),
    ];
    for (text, expected) in cases {
        let message = error(&text);
        assert!(
            message.contains(expected),
            "{text:?}\n  got:      {message}\n  expected: {expected}"
        );
    }
}

#[test]
fn parse_uci_gives_the_raw_config() {
    let raw = parse_uci(&globals("config wan 'wan'\n\toption device 'eth1'\n")).expect("raw");
    assert_eq!(raw.concentrator.expect("[concentrator]").host, "192.0.2.1");
    assert_eq!(raw.wan.len(), 1);
    assert_eq!(raw.wan[0].device.as_deref(), Some("eth1"));
    // Typing errors are caught here already; range errors only by load_uci.
    assert!(matches!(
        parse_uci(&globals("\toption port 'x'\n")),
        Err(UciError::Option { .. })
    ));
    assert!(parse_uci(&globals("\toption port '0'\n")).is_ok());
}

#[test]
fn the_key_never_prints() {
    let config = load_uci(&globals("")).expect("valid");
    let debug = format!("{config:?}");
    assert!(!debug.contains("abababab"), "{debug}");
    let raw = parse_uci(&globals("")).expect("valid");
    assert!(!format!("{raw:?}").contains("abababab"));
}

#[test]
fn concentrator_sections_are_a_list_with_priorities() {
    let text = format!(
        "config globals 'globals'\n\toption enabled '1'\n\
         config concentrator 'backup'\n\toption host '198.51.100.7'\n\toption priority '2'\n\
         \toption client_id 'home'\n\toption key '{KEY}'\n\
         config concentrator 'home'\n\toption host '192.0.2.1'\n\toption priority '1'\n\
         \toption port '4850'\n\toption client_id 'home'\n\toption key '{KEY}'\n"
    );
    let config = load_uci(&text).expect("valid");
    let names: Vec<(&str, u8)> = config
        .concentrators
        .iter()
        .map(|c| (c.name.as_str(), c.priority))
        .collect();
    assert_eq!(names, vec![("home", 1), ("backup", 2)]);
    let covered = MAPPINGS.iter().filter(|m| m.section == "concentrator");
    for m in covered.filter(|m| m.option != "name") {
        assert!(
            text.contains(&format!("option {} ", m.option)),
            "{}",
            m.option
        );
    }
    // Errors are named by the section's UCI path.
    let bad = text.replace("option priority '2'", "option priority '0'");
    assert!(
        error(&bad).contains("mpbond.backup.priority: 0 is out of range 1..=255"),
        "{}",
        error(&bad)
    );
    let dup = text.replace(
        "config concentrator 'home'\n",
        "config concentrator 'home'\n\toption name 'backup'\n",
    );
    assert!(
        error(&dup).contains("\"backup\" appears twice"),
        "{}",
        error(&dup)
    );
    // Both forms at once is refused.
    let both = text.replace("\toption enabled '1'\n", "\toption host '192.0.2.9'\n");
    assert!(error(&both).contains("not both"), "{}", error(&both));
}
