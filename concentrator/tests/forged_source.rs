//! No session before the sender proved its source address (TCP Fast Open cookies), in a
//! namespace of its own with `net.ipv4.tcp_fastopen = 3`:
//!
//! * SYNs with a valid, captured Convert request as their data, sent from a raw socket
//!   with a forged source address (routed into a black hole, so the SYN-ACK goes
//!   nowhere), create no session and reach no destination: without a cookie, with a
//!   cookie request and with a made-up cookie (`independent/forged_syn.py`, Python's
//!   `socket` and `struct` only).
//! * A client that asks for cookies gets 0-RTT from its second connection on: the first
//!   connection learns the cookie (its request follows the handshake), the later ones
//!   carry it in the SYN, all of them MPTCP. The kernel's own counters are the evidence.
//!
//! Needs root, `ip`, `ss` and `python3`: `#[ignore = "needs root and netns"]`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use mpbond_concentrator::Config;
use mpbond_relay::connect::connect_with;
use mpbond_testkit::netstat::{self, grown};
use mpbond_testkit::{require_tools, Netns};

/// The concentrator's address in the bed.
const SERVER_IP: &str = "11.0.0.1";
/// The forged source: routed to a next hop that swallows every packet, so nothing the
/// server sends reaches anybody who could answer.
const FORGED_IP: &str = "11.9.9.9";
/// Rounds of forged SYNs; each round sends three (see `forged_syn.py`).
const ROUNDS: usize = 20;
/// Bound on waiting for the kernel to show the forged SYNs; not a timing assertion.
const KERNEL_WAIT: Duration = Duration::from_secs(10);

/// `lo` up, TFO client and server bits, a link `d0` (veth, both ends here) with
/// 11.0.0.1/24, and 11.9.9.0/24 routed via 11.0.0.99, a neighbour whose made-up MAC
/// address nobody has: the SYN-ACKs leave `d0` and `d1` drops them. (A `blackhole` route
/// would not do: without a route back the kernel drops the SYN itself.)
fn bed(role: &str) -> Netns {
    require_tools(&["ip", "ss", "python3"]);
    let ns = veth_netns(role, &[SERVER_IP]);
    ns.sysctl("net/ipv4/tcp_fastopen", "3");
    ns.ip(&[
        "neigh",
        "add",
        "11.0.0.99",
        "lladdr",
        "02:00:00:00:00:99",
        "dev",
        "d0",
        "nud",
        "permanent",
    ]);
    ns.ip(&[
        "route",
        "add",
        "11.9.9.0/24",
        "via",
        "11.0.0.99",
        "dev",
        "d0",
    ]);
    ns
}

fn bed_config() -> Config {
    config_on(
        &format!("{SERVER_IP}:0"),
        "127.0.0.0/8",
        "",
        &client_toml("home", &key(1)),
    )
}

/// TCP sockets of this thread's namespace in SYN-RECV whose peer is `ip`.
fn syn_recv_from(ip: &str) -> usize {
    let out = Command::new("ss")
        .args(["-Htn", "state", "syn-recv", "src", SERVER_IP, "dst", ip])
        .output()
        .expect("ss runs");
    assert!(out.status.success(), "ss failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Send the forged SYNs (see `forged_syn.py`) carrying `payload` to `server`.
fn send_forged(server: SocketAddr, payload: &[u8]) -> usize {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/independent/forged_syn.py");
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    let out = Command::new("python3")
        .arg(script)
        .args([FORGED_IP, SERVER_IP, &server.port().to_string()])
        .args([&ROUNDS.to_string(), &hex])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "forged_syn.py failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("forged_syn.py prints a count")
}

/// `mpbond_connections_total`: sessions made so far.
async fn connections_total(server: &TestServer) -> u64 {
    let metrics = server.scrape().await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("mpbond_connections_total "))
        .and_then(|v| v.parse().ok())
        .expect("mpbond_connections_total in the metrics")
}

#[test]
#[ignore = "needs root and netns"]
fn forged_source_syns_with_data_create_no_session() {
    let ns = bed("forged-syn");
    block_on_in(&ns, || async {
        let server = start(bed_config()).await;
        let target = silent_target("127.0.0.1");
        // A valid request, as an attacker who captured one would replay it.
        let captured = home_connect(target.local_addr().unwrap());
        let before = netstat::counters();
        let sent = send_forged(server.addr, &captured);
        assert_eq!(sent, 3 * ROUNDS);

        // Wait until the kernel shows every forged SYN waiting in SYN-RECV for an ACK that
        // never comes (its SYN-ACK was swallowed), or until a session was made.
        let deadline = tokio::time::Instant::now() + KERNEL_WAIT;
        let (waiting, sessions) = loop {
            let waiting = syn_recv_from(FORGED_IP);
            let sessions = connections_total(&server).await;
            if waiting >= sent || sessions > 0 || tokio::time::Instant::now() >= deadline {
                break (waiting, sessions);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(sessions, 0, "sessions were made for forged sources");
        assert_eq!(waiting, sent, "forged SYNs in SYN-RECV");
        let after = netstat::counters();
        assert_eq!(
            grown(&before, &after, "TcpExt.TCPFastOpenPassive"),
            0,
            "the kernel took data from a forged SYN"
        );
        assert_eq!(
            grown(&before, &after, "TcpExt.TCPFastOpenPassiveFail"),
            ROUNDS as u64,
            "the made-up cookies were not refused"
        );

        // A real client after them is served, and its session is the only one.
        let (echo, _) = echo_target("127.0.0.1").await;
        let first = home_connect(echo);
        let (s, code) = request(server.addr, &first).await;
        assert_eq!(code, None, "the real client is served");
        assert_eq!(echo_round(s, b"real").await, b"real");
        assert_eq!(
            connections_total(&server).await,
            1,
            "sessions were made for forged sources"
        );
        assert_no_connection(&target);
        server.stop().await;
    });
}

#[test]
#[ignore = "needs root and netns"]
fn a_client_with_a_cookie_gets_zero_rtt_from_its_second_connection() {
    let ns = bed("tfo-cookie");
    block_on_in(&ns, || async {
        let server = start(bed_config()).await;
        let (echo, _) = echo_target("127.0.0.1").await;
        let before = netstat::counters();
        let mut in_syn = Vec::new();
        for n in 0..3 {
            let first = home_connect(echo);
            let mut c = connect_with(server.addr, &first, &mptcp_client(true))
                .await
                .expect("connect");
            assert!(c.fastopen && c.mptcp, "connection {n}: {c:?}");
            assert_eq!(read_reply(&mut c.stream).await.error_code(), None);
            in_syn.push(mpbond_relay::sys::syn_data_acked(&c.stream));
            assert_eq!(echo_round(c.stream, b"bonded").await, b"bonded");
        }
        let after = netstat::counters();
        assert_eq!(
            in_syn,
            [Some(false), Some(true), Some(true)],
            "the first connection learns the cookie, the later ones use it"
        );
        assert_eq!(grown(&before, &after, "TcpExt.TCPFastOpenCookieReqd"), 1);
        assert_eq!(grown(&before, &after, "TcpExt.TCPFastOpenPassive"), 2);
        assert_eq!(grown(&before, &after, "TcpExt.TCPFastOpenPassiveFail"), 0);
        assert_eq!(
            grown(&before, &after, "MPTcpExt.MPCapableDataFallback"),
            0,
            "a connection fell back to plain TCP"
        );
        server.stop().await;
    });
}
