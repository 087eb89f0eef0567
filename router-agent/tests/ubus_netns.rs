//! The control plane resolving a WAN through netifd, in a network namespace (root only;
//! ignored unless run with `--include-ignored`, failing without root).
//!
//! The config names one WAN, `wan`, with no device. The ubusd stand-in says netifd's
//! `wan` has `l3_device` `eth9` and a default route via 10.209.0.1; the main table has no
//! default route at all, so both the device and the gateway can only come from netifd.
//! The agent must build the WAN's table on eth9. Then netifd moves `wan` to `eth8` and
//! sends `ifup`: the table follows to eth8. Then `ifdown`: the WAN is down, so its MPTCP
//! endpoint goes, and so does the default route netifd no longer reports; `ifup` brings
//! both back. On shutdown everything owned is removed.

mod net_ns;
mod ubus_standin;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpbond_agent::config::{Config, Format};
use mpbond_agent::control::ControlPlane;
use mpbond_agent::proxy::ConnParams;
use mpbond_agent::status::StatusModel;
use mpbond_agent::upstream::Upstream;
use net_ns::Netns;
use serde_json::{json, Map, Value as Json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use ubus_standin::{SockDir, StandIn};

const LIMIT: Duration = Duration::from_secs(30);

fn dump(device: Option<&str>, gateway: &str) -> Map<String, Json> {
    let wan = match device {
        Some(dev) => json!({
            "interface": "wan", "up": true, "pending": false, "available": true,
            "autostart": true, "dynamic": false, "uptime": 10, "l3_device": dev,
            "proto": "dhcp", "device": dev, "metric": 0,
            "ipv4-address": [], "ipv6-address": [],
            "route": [{"target": "0.0.0.0", "mask": 0, "nexthop": gateway, "source": "0.0.0.0/0"}],
            "data": {}
        }),
        None => json!({
            "interface": "wan", "up": false, "pending": false, "available": true,
            "autostart": true, "dynamic": false, "proto": "dhcp", "data": {}
        }),
    };
    let lan = json!({"interface": "lan", "up": true, "l3_device": "lan0", "proto": "static"});
    match json!({ "interface": [lan, wan] }) {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

fn config(socket: &Path) -> Config {
    // state_dir = "": a test keeps no data usage file (the default is /etc/mpbond).
    let text = format!(
        r#"state_dir = ""
[concentrator]
host = "192.0.2.1"
client_id = "home"
key = "abababababababababababababababababababababababababababababababab"
[proxy]
lan_interfaces = ["lan0"]
[routing]
ubus_socket = "{}"
[[wan]]
name = "wan"
probe_interval_ms = 60000
"#,
        socket.display()
    );
    Config::parse(&text, Format::Toml, Path::new("ubus.toml")).expect("valid config")
}

fn ip_out(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("run ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll `check` every 20 ms until it holds, or fail after 10 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
#[ignore = "needs root and netns"]
fn the_agent_manages_the_device_netifd_names() {
    let ns = Netns::new();
    ns.veth("eth9", "isp9");
    ns.veth("eth8", "isp8");
    ns.ip(&["addr", "add", "10.209.0.2/24", "dev", "eth9"]);
    ns.ip(&["addr", "add", "10.208.0.2/24", "dev", "eth8"]);
    let name = ns.name.clone();
    ns.run(LIMIT, move || async move {
        let dir = SockDir::new();
        let ubusd = StandIn::start(&dir.socket(), dump(Some("eth9"), "10.209.0.1"));
        let config = config(&dir.socket());
        let upstream = Upstream {
            addr: "192.0.2.1:4850".parse().expect("addr"),
            client_id: config.concentrator.client_id.clone(),
            key: config.concentrator.key.clone(),
            connect_timeout: Duration::from_secs(1),
            fastopen: true,
            source: None,
            hedge: None,
            congestion: None,
            buffers: Default::default(),
        };
        let params = ConnParams {
            upstream,
            reply_timeout: Duration::from_secs(1),
            direct_timeout: Duration::from_secs(1),
            relay: Default::default(),
            legs: Vec::new(),
            abandoned: Vec::new(),
            suspects: Vec::new(),
        };
        let (_params_tx, params_rx) = watch::channel(Arc::new(params));
        let (core_tx, _core_rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(StatusModel::new("test", Instant::now(), "x")));
        let control = ControlPlane::start(Arc::new(config), params_rx, core_tx, status)
            .await
            .expect("control plane");
        let shutdown = CancellationToken::new();
        let (_commands_tx, commands) = mpsc::unbounded_channel();
        let running = tokio::spawn(control.run(commands, shutdown.clone()));

        let routes = |dev: &str, gw: &str| {
            let out = ip_out(&name, &["-4", "route", "show", "table", "all"]);
            out.lines().any(|l| {
                l.starts_with(&format!("default via {gw} dev {dev} ")) && l.contains("table 2000")
            })
        };
        let endpoint = |addr: &str| {
            ip_out(&name, &["mptcp", "endpoint", "show"])
                .lines()
                .any(|l| l.starts_with(&format!("{addr} ")))
        };
        // The first reconcile already used netifd's device and gateway.
        assert!(
            routes("eth9", "10.209.0.1"),
            "table 2000 via eth9 from the start:\n{}",
            ip_out(&name, &["-4", "route", "show", "table", "all"])
        );
        eventually("eth9's endpoint", || endpoint("10.209.0.2")).await;

        ubusd.set_dump(dump(Some("eth8"), "10.208.0.1"));
        ubusd.event(
            "network.interface",
            json!({"action": "ifup", "interface": "wan"}),
        );
        eventually("table 2000 via eth8", || routes("eth8", "10.208.0.1")).await;
        eventually("eth9 no longer used", || !routes("eth9", "10.209.0.1")).await;
        eventually("eth8's endpoint", || endpoint("10.208.0.2")).await;
        assert!(!endpoint("10.209.0.2"), "eth9 is no WAN any more");

        ubusd.set_dump(dump(None, ""));
        ubusd.event(
            "network.interface",
            json!({"action": "ifdown", "interface": "wan"}),
        );
        eventually("the down WAN loses its endpoint", || {
            !endpoint("10.208.0.2")
        })
        .await;
        eventually("netifd's route went with the interface", || {
            !routes("eth8", "10.208.0.1")
        })
        .await;

        ubusd.set_dump(dump(Some("eth8"), "10.208.0.1"));
        ubusd.event(
            "network.interface",
            json!({"action": "ifup", "interface": "wan"}),
        );
        eventually("back up: table", || routes("eth8", "10.208.0.1")).await;
        eventually("back up: endpoint", || endpoint("10.208.0.2")).await;

        shutdown.cancel();
        running.await.expect("control plane stops");
        let left = ip_out(&name, &["-4", "route", "show", "table", "2000"]);
        assert!(left.trim().is_empty(), "cleaned up: {left}");
    });
}
