//! A request whose upstream handshake completed just before its WAN went dark (bench
//! case 9's lost request): the SYN and SYN-ACK got through, nothing after them did.
//!
//! WAN 1's ISP is made to forward only TCP segments with SYN set (SYN, SYN-ACK) to and
//! from the router, and drop everything else, probes included: the black hole of case 9
//! as a connection sees it when the hole comes within a round trip of its SYN-ACK. The
//! upstream connection is then established on WAN 1 but never fully established (no
//! data ACK from the concentrator comes back), so the kernel adds no subflow on WAN 2,
//! and the hedge does not fire (the SYN-ACK came). Without the move the LAN client
//! waits until the agent's reply timeout, and its fail open goes out over WAN 1's main
//! route too. The agent must move the connection to WAN 2 once WAN 1 is down and send
//! the request again: the client gets the whole answer, the server reads the request
//! once, and the status counts one moved connection and no direct one.
//!
//! Deterministic: the hole is in place before the connection starts, and the test waits
//! on events (the handshake segments counted in the ISP, the answer), never a sleep.
//! No assertion is about time.
//!
//! Run as root:
//! `cargo test -p mpbond-tests --test handshake_hole -- --include-ignored --nocapture`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::control::{log_lines, wait_managed, wan_state};
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{proc, AgentConfig, Daemon, Node, TestBed};

/// The nft table in WAN 1's ISP that lets only handshake segments through.
const TABLE: &str = "mpbond_test_handshakes";
/// The LAN client's request and the server's answer.
const REQUEST: &[u8] = b"GET /handshake-hole HTTP/1.1\r\nHost: test\r\n\r\n";
const ANSWER_LEN: usize = 64 * 1024;
/// The LAN client's patience: far beyond the agent's move (seconds), and beyond its
/// reply timeout (15 s) plus its direct connect timeout (5 s), so that a request the
/// agent did not move fails as a reset, not as the client's timeout.
const PATIENCE: Duration = Duration::from_secs(40);

#[test]
#[ignore = "needs root and netns"]
fn a_request_whose_wan_dies_right_after_its_syn_ack_moves_to_the_other_wan() {
    let (bed, _conc, agent) = both_wans_up(|_| {});

    let (server, requests) = serve(&bed);
    handshakes_only(&bed, 1, true);
    let before = handshake_segments(&bed);

    let lan = bed.netns(Node::Lan).expect("LAN namespace");
    let client = lan.spawn(move || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(server)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        stream.write_all(REQUEST)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        Ok(answer)
    });
    let answer = client.join().expect("client thread");
    let through = handshake_segments(&bed) - before;
    let status = bed.agent_status().expect("status");
    handshakes_only(&bed, 1, false);
    let connections = &status["connections"];
    println!(
        "handshake segments through WAN 1's ISP: {through}; connections {connections}; \
         server read requests {:?}\nagent:\n{}",
        requests.lock().expect("lock").len(),
        log_lines(&agent, &["moving", "hedg", "down", "direct"])
    );
    let answer = answer.unwrap_or_else(|e| {
        panic!(
            "the request failed ({e}); agent log:\n{}",
            agent.log_tail(40)
        )
    });
    assert_eq!(answer, answer_bytes(), "the whole answer, once");
    assert!(
        through >= 2,
        "the handshake went over WAN 1 (SYN and SYN-ACK seen there): {through}"
    );
    assert_eq!(
        connections["moved"], 1,
        "one connection moved: {connections}"
    );
    assert_eq!(connections["direct"], 0, "no fail open: {connections}");
    let seen = requests.lock().expect("lock").clone();
    assert_eq!(
        seen.iter().filter(|r| r.as_slice() == REQUEST).count(),
        1,
        "the server read the request once: {seen:?}"
    );
}

/// The request of the connection whose hedge makes WAN 1 a suspect.
const TRIGGER: &[u8] = b"GET /trigger HTTP/1.1\r\nHost: test\r\n\r\n";

/// Case 9's downstream-only black hole as the connection it used to hold sees it: its
/// request went up WAN 1 and was acknowledged (the router is fully established), then
/// WAN 1 stopped delivering anything downstream, and the Convert reply is lost. Its
/// only subflow has nothing unacknowledged, so it never stalls; its join on WAN 2 was
/// refused (WAN 2's ISP resets joins here, as the concentrator did in the bench). WAN 1
/// is a suspect (a later connection's hedge won against it) but not down (its probes
/// need 1000 misses here). The agent must tell from the connection's own unanswered
/// keepalive probe that WAN 1 delivers nothing, move it to WAN 2 and send the request
/// again: the client gets the whole answer, one connection moved, none went direct,
/// and the server read the request at most twice (the first copy may have arrived: the
/// documented cost of a move in a downstream-only hole).
///
/// Ordered by events, never a sleep: the destination's SYNs are held back until the
/// router has tried its join (so is fully established) and the hole is in place, so
/// the reply cannot come before the hole. No assertion is about time.
#[test]
#[ignore = "needs root and netns"]
fn a_request_whose_reply_is_lost_downstream_moves_on_its_unanswered_keepalive_probe() {
    let (bed, _conc, agent) = both_wans_up(|config| config.wans[0].down = 1000);

    let (server, requests) = serve(&bed);
    joins_refused(&bed, 2, true);
    syns_held(&bed, server.port(), true);
    let lan = bed.netns(Node::Lan).expect("LAN namespace");
    let ask = |request: &'static [u8]| {
        lan.spawn(move || -> std::io::Result<Vec<u8>> {
            let mut stream = TcpStream::connect(server)?;
            stream.set_read_timeout(Some(PATIENCE))?;
            stream.write_all(request)?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer)?;
            Ok(answer)
        })
    };
    let client = ask(REQUEST);
    // The kernel adds a join once the connection is fully established.
    let joined = proc::wait_until(Duration::from_secs(20), || {
        counted(&bed, 2, "mpbond_test_joins", "joins") >= 1
    });
    assert!(joined, "the router tried a join on WAN 2");
    downstream_hole(&bed, 1, true);
    syns_held(&bed, server.port(), false);
    let trigger = ask(TRIGGER).join().expect("trigger thread");
    let answer = client.join().expect("client thread");
    let status = bed.agent_status().expect("status");
    let wan1 = wan_state(&bed, "wan1");
    downstream_hole(&bed, 1, false);
    joins_refused(&bed, 2, false);
    let connections = &status["connections"];
    let count = |r: &[u8]| {
        let seen = requests.lock().expect("lock");
        seen.iter().filter(|s| s.as_slice() == r).count()
    };
    println!(
        "connections {connections}; wan1 {wan1:?}; requests read {} (trigger {})\nagent:\n{}",
        count(REQUEST),
        count(TRIGGER),
        log_lines(&agent, &["moving", "hedg", "down", "direct"])
    );
    assert_eq!(trigger.ok(), Some(answer_bytes()), "the trigger answered");
    let answer = answer.unwrap_or_else(|e| {
        panic!(
            "the request failed ({e}); agent log:\n{}",
            agent.log_tail(40)
        )
    });
    assert_eq!(answer, answer_bytes(), "the whole answer, once");
    assert_eq!(
        wan1.as_deref(),
        Some("up"),
        "WAN 1 not called down: the move came from the connection's own probe"
    );
    assert_eq!(
        connections["moved"], 1,
        "one connection moved: {connections}"
    );
    assert_eq!(connections["direct"], 0, "no fail open: {connections}");
    assert!(
        (1..=2).contains(&count(REQUEST)),
        "the server read the request once or twice"
    );
}

/// The server namespace drops SYNs to `port` (`on`): the concentrator cannot connect
/// to the destination, so its reply waits; or lets them through again.
fn syns_held(bed: &TestBed, port: u16, on: bool) {
    let ruleset = format!(
        "\tchain input_drop {{\n\t\ttype filter hook input priority -10; policy accept;\n\t\t\
         tcp dport {port} tcp flags & (syn | ack) == syn drop\n\t}}\n"
    );
    table_in(
        bed,
        Node::Server,
        "mpbond_test_held",
        on.then_some(&ruleset),
    );
}

/// ISP `i` drops every segment it forwards to the router (`on`), or none again.
fn downstream_hole(bed: &TestBed, i: usize, on: bool) {
    let ruleset = "\tchain forward_drop {\n\t\t\
                   type filter hook forward priority -10; policy accept;\n\t\t\
                   oifname \"cust\" drop\n\t}\n";
    table_in(
        bed,
        Node::Isp(i),
        "mpbond_test_downstream",
        on.then_some(ruleset),
    );
}

/// ISP `i` answers every MPTCP join SYN (`MP_JOIN`, subtype 1) with a reset, counting
/// them in `joins` (`on`), or lets them through again.
fn joins_refused(bed: &TestBed, i: usize, on: bool) {
    let ruleset = "\tcounter joins { }\n\tchain forward_drop {\n\t\t\
                   type filter hook forward priority -10; policy accept;\n\t\t\
                   tcp flags & syn == syn tcp option mptcp subtype 1 counter name joins \
                   reject with tcp reset\n\t}\n";
    table_in(
        bed,
        Node::Isp(i),
        "mpbond_test_joins",
        on.then_some(ruleset),
    );
}

/// Replace nft table `table` in namespace `node` by one with `body`, or delete it
/// (`None`).
fn table_in(bed: &TestBed, node: Node, table: &str, body: Option<&str>) {
    if bed
        .exec(node, "nft list tables")
        .is_ok_and(|t| t.contains(table))
    {
        bed.exec(node, &format!("nft delete table inet {table}"))
            .expect("delete the table");
    }
    if let Some(body) = body {
        bed.nft(node, &format!("table inet {table} {{\n{body}}}\n"))
            .expect("the ISP's table");
    }
}

/// Packets counted by nft counter `name` of table `table` in ISP `i`.
fn counted(bed: &TestBed, i: usize, table: &str, name: &str) -> u64 {
    let out = bed
        .exec(
            Node::Isp(i),
            &format!("nft list counter inet {table} {name}"),
        )
        .expect("the counter");
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a packet count")
}

/// The answer the server sends: a counting pattern, so that a gap or a repeat shows.
fn answer_bytes() -> Vec<u8> {
    (0..ANSWER_LEN).map(|i| (i % 251) as u8).collect()
}

/// A destination in the server namespace on a free port: each connection's request is
/// recorded (whatever arrived, also nothing) and a full one gets [`answer_bytes`].
fn serve(bed: &TestBed) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = bed
        .netns(Node::Server)
        .expect("server namespace")
        .run(|| TcpListener::bind((SERVER_V4, 0)))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let record = Arc::clone(&record);
            std::thread::spawn(move || answer(stream, &record));
        }
    });
    (addr, seen)
}

fn answer(mut stream: TcpStream, record: &Mutex<Vec<Vec<u8>>>) {
    if read_request(&stream, record) {
        let _ = stream.write_all(&answer_bytes());
    }
}

/// Read one request (up to its end, `\r\n\r\n`) from `stream` and record it, whatever
/// arrived. Returns whether it is complete.
fn read_request(mut stream: &TcpStream, record: &Mutex<Vec<Vec<u8>>>) -> bool {
    let _ = stream.set_read_timeout(Some(PATIENCE * 2));
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let full = got.ends_with(b"\r\n\r\n");
    record.lock().expect("lock").push(got);
    full
}

/// ISP `i` forwards only TCP segments with SYN set to and from the router (`on`), or
/// everything again.
fn handshakes_only(bed: &TestBed, i: usize, on: bool) {
    let isp = Node::Isp(i);
    if bed
        .exec(isp, "nft list tables")
        .is_ok_and(|t| t.contains(TABLE))
    {
        bed.exec(isp, &format!("nft delete table inet {TABLE}"))
            .expect("delete the table");
    }
    if on {
        // The ISP's end of the router link is `cust`.
        let ruleset = format!(
            "table inet {TABLE} {{\n\tcounter handshakes {{ }}\n\t\
             chain forward_drop {{\n\t\t\
             type filter hook forward priority -10; policy accept;\n\t\t\
             tcp flags & syn == syn counter name handshakes accept\n\t\t\
             iifname \"cust\" drop\n\t\toifname \"cust\" drop\n\t}}\n}}\n"
        );
        bed.nft(isp, &ruleset).expect("the handshake-only hole");
    }
}

/// Segments with SYN set that WAN 1's ISP let through so far.
fn handshake_segments(bed: &TestBed) -> u64 {
    let out = bed
        .exec(
            Node::Isp(1),
            &format!("nft list counter inet {TABLE} handshakes"),
        )
        .expect("the counter");
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a packet count")
}

/// A bed with Fast Open and two WANs the agent routes, its concentrator and its agent
/// (its config first changed by `tweak`), once both WANs are up.
fn both_wans_up(tweak: impl FnOnce(&mut AgentConfig)) -> (TestBed, Daemon, Daemon) {
    let bed = TestBed::builder()
        .wans(&[40, 60])
        .agent_routing(true)
        .fast_open(true)
        .build();
    let conc = bed
        .start_concentrator(&bed.concentrator_config())
        .expect("concentrator starts");
    let mut config = bed.agent_config();
    tweak(&mut config);
    let agent = bed.start_agent(&config).expect("agent starts");
    wait_managed(&bed, &agent, &[1, 2], Duration::from_secs(10));
    let up = proc::wait_until(Duration::from_secs(20), || {
        (1..=2).all(|i| wan_state(&bed, &format!("wan{i}")).as_deref() == Some("up"))
    });
    assert!(up, "both WANs up first:\n{}", agent.log_tail(20));
    (bed, conc, agent)
}
