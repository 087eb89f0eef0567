//! The congestion control of mpbond's own MPTCP sockets (agent `[mptcp] congestion`,
//! concentrator `[relay] congestion`): during a relayed download, `ss -tin` shows the
//! configured algorithm on every subflow toward the concentrator, in the router and in
//! the VPS, while the bed's default (reno) stays on everything else, such as the
//! concentrator's plain TCP to the server. An algorithm the kernel does not have is
//! logged, naming the module to load, and the connection is relayed anyway.

mod common;

use std::time::Duration;

use common::at;
use mpbond_tests::topology::{SERVER_V4, VPS_V4};
use mpbond_tests::{Daemon, Fetch, Node, TestBed};

/// Two 20 Mbit/s WANs: a 20 MB download lasts about 4 s, long enough to look at it.
const RATES: [u32; 2] = [20, 20];
const BYTES: u64 = 20_000_000;

fn start(bed: &TestBed, congestion: &str) -> (Daemon, Daemon) {
    let mut conc = bed.concentrator_config();
    conc.congestion = Some(congestion.into());
    let conc = bed.start_concentrator(&conc).expect("concentrator starts");
    let mut agent = bed.agent_config();
    agent.congestion = Some(congestion.into());
    let agent = bed.start_agent(&agent).expect("agent starts");
    (conc, agent)
}

/// The congestion control named on each socket `ss -tin FILTER` lists in `node`.
fn algorithms(bed: &TestBed, node: Node, filter: &str) -> Vec<String> {
    let out = bed
        .exec(node, &format!("ss -tinH state established {filter}"))
        .expect("ss runs");
    let known = ["reno", "cubic", "bbr", "nosuchcc"];
    out.lines()
        .filter(|l| l.starts_with(char::is_whitespace))
        .map(|info| {
            info.split_whitespace()
                .find(|w| known.contains(w))
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

#[test]
#[ignore = "needs root and netns"]
fn subflows_to_the_concentrator_use_the_configured_algorithm() {
    let bed = TestBed::builder().wans(&RATES).build();
    let (_conc, _agent) = start(&bed, "bbr");
    let _server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("server");
    let run = bed
        .spawn_fetch(
            Node::Lan,
            &Fetch::get(at(SERVER_V4), BYTES).timeout(Duration::from_secs(60)),
        )
        .expect("download starts");
    std::thread::sleep(Duration::from_millis(1500));
    let router = algorithms(&bed, Node::Router, &format!("dst {VPS_V4}:4850"));
    let vps = algorithms(&bed, Node::Vps, "sport = :4850");
    let to_server = algorithms(&bed, Node::Vps, &format!("dst {SERVER_V4}"));
    let default = bed
        .exec(Node::Router, "sysctl -n net.ipv4.tcp_congestion_control")
        .expect("sysctl");
    let status = bed.agent_status().expect("status");
    let report = run.finish().expect("download finishes");
    eprintln!("router {router:?}, vps {vps:?}, vps to server {to_server:?}, default {default}");
    assert_eq!(
        status["concentrator"]["congestion"].as_str(),
        Some("bbr"),
        "{status}"
    );
    assert!(report.ok, "{report:?}");
    assert!(router.len() >= 2, "router subflows: {router:?}");
    assert!(router.iter().all(|a| a == "bbr"), "router: {router:?}");
    assert!(vps.len() >= 2, "vps subflows: {vps:?}");
    assert!(vps.iter().all(|a| a == "bbr"), "vps: {vps:?}");
    assert_eq!(default.trim(), "reno");
    assert!(!to_server.is_empty(), "no connection to the server");
    assert!(to_server.iter().all(|a| a == "reno"), "{to_server:?}");
}

#[test]
#[ignore = "needs root and netns"]
fn an_unknown_algorithm_is_logged_and_the_connection_relayed() {
    let bed = TestBed::builder().wans(&RATES).build();
    let (conc, agent) = start(&bed, "nosuchcc");
    let _server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("server");
    let report = bed
        .fetch(
            Node::Lan,
            &Fetch::get(at(SERVER_V4), 2_000_000).timeout(Duration::from_secs(30)),
        )
        .expect("download runs");
    assert!(report.ok, "{report:?}");
    for (name, daemon) in [("agent", &agent), ("concentrator", &conc)] {
        let log = daemon.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("congestion control not available"))
            .collect();
        assert_eq!(lines.len(), 1, "{name} log:\n{log}");
        assert!(lines[0].contains("modprobe tcp_nosuchcc"), "{}", lines[0]);
    }
    let status = bed.agent_status().expect("status");
    assert_eq!(
        status["concentrator"]["congestion"].as_str(),
        Some("reno"),
        "{status}"
    );
}
