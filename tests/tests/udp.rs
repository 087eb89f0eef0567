//! UDP through mpbond, end to end in the namespace bed: LAN UDP is tproxied to the
//! agent, carried over MPTCP to the concentrator as DATAGRAM capsules and answered from
//! the address the client wrote to; what is not for the concentrator (the router's own
//! services, a blocked port, a refused destination, a failing or dead agent) is left to
//! the router's NAT or refused as configured.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::{at, metric, mpbond, wait_redirect};
use mpbond_tests::topology::{wan_router_v4, LAN_ROUTER_V4, SERVER_V4, SERVER_V6, VPS_V4, VPS_V6};
use mpbond_tests::{proc, Failure, Node, TestBed, UdpEchoReport};

/// The echo server's port in the internet namespace.
const ECHO_PORT: u16 = 7007;

fn echo_at(port: u16) -> SocketAddr {
    SocketAddr::new(SERVER_V4.into(), port)
}

/// The agent's `udp` status object.
fn udp_status(bed: &TestBed) -> serde_json::Value {
    bed.agent_status().expect("agent status")["udp"].clone()
}

fn udp_count(bed: &TestBed, key: &str) -> u64 {
    udp_status(bed)[key].as_u64().unwrap_or(0)
}

fn echo(bed: &TestBed, to: SocketAddr, count: u32) -> UdpEchoReport {
    let report = bed.udp_echo(Node::Lan, to, count).expect("udp-echo runs");
    println!("udp-echo to {to}: {report:?}");
    report
}

fn peer_ips(peers: &[SocketAddr]) -> Vec<IpAddr> {
    peers.iter().map(SocketAddr::ip).collect()
}

#[test]
#[ignore = "needs root and netns"]
fn lan_udp_is_bonded_and_answered_from_the_destination() {
    let (bed, _conc, _agent) = mpbond(&[40, 60]);
    let server = bed
        .udp_echo_server(Node::Server, echo_at(ECHO_PORT))
        .expect("echo server");
    let report = echo(&bed, echo_at(ECHO_PORT), 100);
    let text = bed.concentrator_metrics().expect("metrics");
    for line in text
        .lines()
        .filter(|l| l.starts_with("mpbond_udp_drops_total"))
    {
        println!("concentrator: {line}");
    }
    // The client's socket is connected to the server: only replies from the server's
    // address and port count, so every echo proves the reply left from the destination.
    assert!(report.received >= 98, "echoes lost: {report:?}");
    assert_eq!(
        peer_ips(&server.peers()),
        [IpAddr::from(VPS_V4)],
        "the flow reached the server from the concentrator"
    );
    let udp = udp_status(&bed);
    println!("agent udp status: {udp}");
    assert!(udp["total"].as_u64() >= Some(1), "{udp}");
    assert!(udp["bytes_up"].as_u64() >= Some(100 * 200), "{udp}");
    assert!(udp["bytes_down"].as_u64() >= Some(98 * 200), "{udp}");
    assert_eq!(udp["direct"].as_u64(), Some(0), "{udp}");
    let flows = metric(&bed, "mpbond_udp_flows_total");
    assert!(flows >= 1.0, "the concentrator counted the flow: {flows}");
}

/// The name the bed's resolver answers, and its address.
const DNS_NAME: &str = "bonded.test";
const DNS_ANSWER: &str = "198.51.100.53";

#[test]
#[ignore = "needs root and netns"]
fn dns_to_an_internet_resolver_goes_through_the_concentrator() {
    let (bed, _conc, _agent) = mpbond(&[40, 60]);
    // A real resolver (dnsmasq) on the server's address, its query log in the bed's dir.
    let log = bed.dir().join("dnsmasq.log");
    let pid_file = bed.dir().join("dnsmasq.pid");
    let (log_arg, pid_arg) = (
        format!("--log-facility={}", log.display()),
        format!("--pid-file={}", pid_file.display()),
    );
    let (listen, answer) = (
        format!("--listen-address={SERVER_V4}"),
        format!("--address=/{DNS_NAME}/{DNS_ANSWER}"),
    );
    let _resolver = bed
        .spawn(
            Node::Server,
            &[
                "dnsmasq",
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--port=53",
                "--bind-interfaces",
                "--user=root",
                "--log-queries",
                &listen,
                &answer,
                &log_arg,
                &pid_arg,
            ],
        )
        .expect("dnsmasq runs (tests/setup.sh installs it)");
    let listening = proc::wait_until(Duration::from_secs(10), || {
        bed.exec(Node::Server, "ss -Hlun sport = :53")
            .is_ok_and(|out| out.contains(&SERVER_V4.to_string()))
    });
    assert!(listening, "dnsmasq did not bind {SERVER_V4}:53");
    let flows_before = metric(&bed, "mpbond_udp_flows_total");
    let up_before = udp_count(&bed, "bytes_up");

    // A real client on the LAN asks it.
    let answer = bed
        .exec(
            Node::Lan,
            &format!("dig +short +time=2 +tries=3 @{SERVER_V4} {DNS_NAME} A"),
        )
        .expect("dig runs (tests/setup.sh installs dnsutils)");
    assert_eq!(answer.trim(), DNS_ANSWER, "dig's answer");

    let udp = udp_status(&bed);
    println!("agent udp status: {udp}");
    assert!(udp["bytes_up"].as_u64().unwrap_or(0) > up_before, "{udp}");
    assert_eq!(udp["direct"].as_u64(), Some(0), "{udp}");
    let flows = metric(&bed, "mpbond_udp_flows_total");
    assert!(
        flows > flows_before,
        "the concentrator opened a flow for the query: {flows_before} -> {flows}"
    );
    // The resolver saw the query come from the VPS, not from the router's WAN.
    let from_vps = format!("{DNS_NAME} from {VPS_V4}");
    let mut text = String::new();
    let logged = proc::wait_until(Duration::from_secs(5), || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains(&from_vps)
    });
    assert!(logged, "dnsmasq's log has no query from {VPS_V4}:\n{text}");
}

#[test]
#[ignore = "needs root and netns"]
fn udp_to_the_router_itself_is_not_intercepted() {
    let (bed, _conc, _agent) = mpbond(&[40, 60]);
    // DNS to the router: a responder on the router's LAN address, port 53.
    let router_dns = SocketAddr::new(LAN_ROUTER_V4.into(), 53);
    let server = bed
        .udp_echo_server(Node::Router, router_dns)
        .expect("router responder");
    let report = echo(&bed, router_dns, 20);
    assert_eq!(report.received, 20, "{report:?}");
    assert_eq!(
        peer_ips(&server.peers()),
        [IpAddr::from(mpbond_tests::topology::LAN_CLIENT_V4)],
        "the router's own service sees the LAN client itself"
    );
    assert_eq!(udp_count(&bed, "total"), 0, "the agent took no flow");
    let listing = bed
        .exec(Node::Router, "nft list chain inet mpbond udp_lan")
        .expect("nft list");
    assert!(
        listing.contains("fib daddr type != unicast return"),
        "{listing}"
    );
}

#[test]
#[ignore = "needs root and netns"]
fn blocked_ports_get_port_unreachable_and_refused_destinations_go_direct() {
    let bed = TestBed::builder().wans(&[40, 60]).build();
    let mut conc_cfg = bed.concentrator_config();
    // The server's documentation range stays refused (the bed opens it by default).
    conc_cfg
        .allow
        .retain(|prefix| !prefix.starts_with("203.0.113."));
    let _conc = bed.start_concentrator(&conc_cfg).expect("concentrator");
    let mut cfg = bed.agent_config();
    cfg.udp = Some("[[udp.rule]]\nports = \"443\"\naction = \"block\"\n".into());
    let _agent = bed.start_agent(&cfg).expect("agent");

    let _quic = bed
        .udp_echo_server(Node::Server, echo_at(443))
        .expect("port 443 server");
    let report = echo(&bed, echo_at(443), 10);
    assert_eq!(
        report.received, 0,
        "a blocked port passes nothing: {report:?}"
    );
    assert!(
        report.refused >= 1,
        "ICMP port unreachable came back: {report:?}"
    );

    // The concentrator's policy forbids the server: refused, counted, then direct.
    let server = bed
        .udp_echo_server(Node::Server, echo_at(ECHO_PORT))
        .expect("echo server");
    let report = echo(&bed, echo_at(ECHO_PORT), 50);
    assert!(
        report.received >= 45,
        "the refused flow went direct: {report:?}"
    );
    let peers = peer_ips(&server.peers());
    assert!(
        peers.iter().all(|ip| *ip != IpAddr::from(VPS_V4)),
        "direct, not through the VPS: {peers:?}"
    );
    assert!(udp_count(&bed, "refused") >= 1, "{}", udp_status(&bed));
    // The direct flow's bytes count on the WAN whose address the server saw.
    let status = bed.agent_status().expect("agent status");
    let peer = peers[0].to_string();
    let wan = status["wans"]
        .as_array()
        .and_then(|wans| {
            wans.iter().find(|w| {
                w["addresses"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a.as_str() == Some(peer.as_str())))
            })
        })
        .unwrap_or_else(|| panic!("a WAN holds {peer}: {status}"));
    let payload = u64::from(report.received) * 200;
    assert!(
        wan["udp_rx_bytes"].as_u64().unwrap_or(0) >= payload
            && wan["udp_tx_bytes"].as_u64().unwrap_or(0) >= payload,
        "the direct flow's {payload} bytes each way count on {peer}: {wan}"
    );
    let text = bed.concentrator_metrics().expect("metrics");
    let policy = text
        .lines()
        .find(|l| l.starts_with("mpbond_udp_drops_total{reason=\"policy\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        policy >= 1.0,
        "the concentrator counted the refusal:\n{text}"
    );
}

#[test]
#[ignore = "needs root and netns"]
fn udp_fails_open_without_the_concentrator_and_comes_back() {
    let (bed, conc, agent) = mpbond(&[40, 60]);
    let server = bed
        .udp_echo_server(Node::Server, echo_at(ECHO_PORT))
        .expect("echo server");
    let cfg = bed.concentrator_config();
    conc.stop(Duration::from_secs(10));
    assert!(
        wait_redirect(&bed, false, Duration::from_secs(20)),
        "no fail open:\n{}",
        agent.log_tail(20)
    );
    let listing = bed
        .exec(Node::Router, "nft list chain inet mpbond udp_lan")
        .expect("nft list");
    assert!(
        !listing.contains("tproxy"),
        "no UDP interception while failing open:\n{listing}"
    );
    let report = echo(&bed, echo_at(ECHO_PORT), 25);
    assert!(report.received >= 24, "UDP by NAT: {report:?}");
    assert_eq!(
        peer_ips(&server.peers()),
        [IpAddr::from(wan_router_v4(1))],
        "NAT over the main route's WAN"
    );

    let _conc = bed.start_concentrator(&cfg).expect("concentrator restarts");
    assert!(
        wait_redirect(&bed, true, Duration::from_secs(20)),
        "no redirect after the restart:\n{}",
        agent.log_tail(20)
    );
    let report = echo(&bed, echo_at(ECHO_PORT), 25);
    assert!(report.received >= 24, "{report:?}");
    assert!(
        peer_ips(&server.peers()).contains(&IpAddr::from(VPS_V4)),
        "a new flow is bonded again: {:?}",
        server.peers()
    );
}

#[test]
#[ignore = "needs root and netns"]
fn a_killed_agent_leaves_udp_to_nat() {
    let (bed, _conc, agent) = mpbond(&[40, 60]);
    let server = bed
        .udp_echo_server(Node::Server, echo_at(ECHO_PORT))
        .expect("echo server");
    let report = echo(&bed, echo_at(ECHO_PORT), 10);
    assert_eq!(report.received, 10, "{report:?}");
    agent.kill();
    let gone = proc::wait_until(Duration::from_secs(10), || {
        bed.exec(Node::Router, "nft list tables")
            .is_ok_and(|t| !t.contains("inet mpbond"))
    });
    assert!(gone, "the owner table died with the agent");
    let report = echo(&bed, echo_at(ECHO_PORT), 25);
    assert!(
        report.received >= 24,
        "UDP by NAT after kill -9: {report:?}"
    );
    assert!(
        peer_ips(&server.peers()).contains(&IpAddr::from(wan_router_v4(1))),
        "the new flow left by NAT: {:?}",
        server.peers()
    );
    let _ = at(SERVER_V4);
}

/// The real-time flow (50 datagrams a second of 200 bytes) while WAN 1 fails `how`
/// a second into a 6 s stream: without failover every datagram after the failure would
/// be lost (≥ 80 %); with it the loss stays a small part of the stream.
fn realtime_flow_survives(how: Failure) {
    let (bed, _conc, _agent) = mpbond(&[40, 60]);
    let _server = bed
        .udp_echo_server(Node::Server, echo_at(ECHO_PORT))
        .expect("echo server");
    let run = bed
        .spawn_udp_echo(Node::Lan, echo_at(ECHO_PORT), 300)
        .expect("udp-echo starts");
    let bonded = proc::wait_until(Duration::from_secs(10), || {
        udp_count(&bed, "bonded_active") >= 1 && udp_count(&bed, "datagrams_down") >= 50
    });
    assert!(
        bonded,
        "the flow is bonded and echoing: {}",
        udp_status(&bed)
    );
    bed.fail_wan(1, how, true).expect("fail wan1");
    let report = run.finish().expect("udp-echo report");
    bed.fail_wan(1, how, false).expect("restore wan1");
    println!("{}: {report:?}", how.name());
    assert!(
        report.lost <= report.sent / 5,
        "{}: the flow did not fail over: {report:?}",
        how.name()
    );
    assert!(report.received >= 240, "{report:?}");
}

#[test]
#[ignore = "needs root and netns"]
fn a_realtime_flow_keeps_flowing_when_wan1_goes_down() {
    realtime_flow_survives(Failure::LinkDown);
}

#[test]
#[ignore = "needs root and netns"]
fn a_realtime_flow_keeps_flowing_when_wan1_is_blackholed() {
    realtime_flow_survives(Failure::Blackhole);
}

#[test]
#[ignore = "needs root and netns"]
fn lan_ipv6_udp_is_bonded() {
    let (bed, _conc, _agent) = mpbond(&[40, 60]);
    let to = SocketAddr::new(SERVER_V6.into(), ECHO_PORT);
    let server = bed.udp_echo_server(Node::Server, to).expect("echo server");
    let report = echo(&bed, to, 50);
    assert!(report.received >= 49, "{report:?}");
    assert_eq!(
        peer_ips(&server.peers()),
        [IpAddr::from(VPS_V6)],
        "the IPv6 flow reached the server from the concentrator"
    );
}

/// The QUIC server's port in the internet namespace.
const QUIC_PORT: u16 = 4433;

#[test]
#[ignore = "needs root and netns"]
fn status_shows_a_quic_downloads_udp_bytes_on_both_wans() {
    const PAYLOAD: u64 = 20_000_000;
    let (bed, _conc, _agent) = mpbond(&[40, 60]);
    let _server = bed
        .quic_server(Node::Server, echo_at(QUIC_PORT))
        .expect("quic server");
    let report = bed
        .spawn_quic_fetch(
            Node::Lan,
            echo_at(QUIC_PORT),
            PAYLOAD,
            Duration::from_secs(60),
        )
        .expect("quic-fetch starts")
        .finish()
        .expect("quic report");
    assert!(report.ok, "intact and complete: {report:?}");
    let status = bed.agent_status().expect("agent status");
    let wans = status["wans"].as_array().expect("wans");
    let bytes = |key: &str| -> Vec<u64> {
        wans.iter()
            .map(|w| {
                w[key]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{key} of {} is a number: {w}", w["name"]))
            })
            .collect()
    };
    let (rx, tx) = (bytes("udp_rx_bytes"), bytes("udp_tx_bytes"));
    println!(
        "udp bytes per WAN: rx {rx:?}, tx {tx:?}; udp {}",
        status["udp"]
    );
    assert_eq!(rx.len(), 2, "{status}");
    assert!(
        rx.iter().all(|&b| b >= PAYLOAD / 10),
        "both WANs carried the download: {rx:?}"
    );
    assert!(
        rx.iter().sum::<u64>() >= PAYLOAD,
        "the WANs' UDP bytes add up to at least the payload: {rx:?}"
    );
    assert!(
        tx.iter().sum::<u64>() > 0,
        "the requests and ACKs went up: {tx:?}"
    );
    assert_eq!(
        status["udp"]["unattributed_rx_bytes"].as_u64(),
        Some(0),
        "{status}"
    );
}

/// A `udhcpc` script that only records what it was told: `bound 192.168.50.120`.
fn udhcpc_script(dir: &Path) -> std::path::PathBuf {
    let events = dir.join("udhcpc.events");
    let script = dir.join("udhcpc.script");
    let body = format!(
        "#!/bin/sh\necho \"$1 ${{ip:-}}\" >> '{}'\n",
        events.display()
    );
    std::fs::write(&script, body).expect("write the udhcpc script");
    let mut perms = std::fs::metadata(&script).expect("script").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).expect("chmod the script");
    script
}

#[test]
#[ignore = "needs root and netns"]
fn dhcp_to_the_router_is_not_intercepted() {
    let (bed, _conc, _agent) = mpbond(&[40, 60]);
    // A real DHCP server (dnsmasq, DNS off) on the router's LAN bridge.
    let (leases, log) = (bed.dir().join("dhcp.leases"), bed.dir().join("dhcp.log"));
    let args = [
        format!("--interface={}", mpbond_tests::topology::ROUTER_LAN_IF),
        "--dhcp-range=192.168.50.100,192.168.50.150,255.255.255.0,1h".to_owned(),
        format!("--dhcp-leasefile={}", leases.display()),
        format!("--log-facility={}", log.display()),
        format!("--pid-file={}", bed.dir().join("dhcp.pid").display()),
    ];
    let mut argv = vec![
        "dnsmasq",
        "--no-daemon",
        "--port=0",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--user=root",
        "--log-dhcp",
    ];
    argv.extend(args.iter().map(String::as_str));
    let _dhcp = bed
        .spawn(Node::Router, &argv)
        .expect("dnsmasq runs (tests/setup.sh installs dnsmasq-base)");
    let listening = proc::wait_until(Duration::from_secs(10), || {
        bed.exec(Node::Router, "ss -Hlun sport = :67")
            .is_ok_and(|out| !out.trim().is_empty())
    });
    assert!(listening, "dnsmasq did not bind port 67");

    // A real DHCP client on the LAN: discover, offer, request, ack, then quit.
    let script = udhcpc_script(bed.dir());
    let out = bed
        .exec(
            Node::Lan,
            &format!(
                "busybox udhcpc -i eth0 -f -q -n -t 5 -T 2 -s {}",
                script.display()
            ),
        )
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("udhcpc got no lease (tests/setup.sh installs busybox): {e}\n{log}")
        });
    println!("udhcpc: {out}");
    let events = std::fs::read_to_string(bed.dir().join("udhcpc.events")).unwrap_or_default();
    assert!(
        events.lines().any(|l| l.starts_with("bound 192.168.50.1")),
        "a lease from the router's DHCP server: {events:?}"
    );
    let leases = std::fs::read_to_string(&leases).unwrap_or_default();
    assert!(
        leases.contains("192.168.50.1"),
        "dnsmasq's leases: {leases:?}"
    );
    let udp = udp_status(&bed);
    assert_eq!(
        udp["total"].as_u64(),
        Some(0),
        "the agent took no flow: {udp}"
    );
    assert_eq!(udp["drops_flow_limit"].as_u64(), Some(0), "{udp}");
}
