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
use mpbond_tests::{proc, Node, TestBed};

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
    let bed = TestBed::builder()
        .wans(&[40, 60])
        .agent_routing(true)
        .fast_open(true)
        .build();
    let _conc = bed
        .start_concentrator(&bed.concentrator_config())
        .expect("concentrator starts");
    let agent = bed.start_agent(&bed.agent_config()).expect("agent starts");
    wait_managed(&bed, &agent, &[1, 2], Duration::from_secs(10));
    let up = proc::wait_until(Duration::from_secs(20), || {
        (1..=2).all(|i| wan_state(&bed, &format!("wan{i}")).as_deref() == Some("up"))
    });
    assert!(up, "both WANs up first:\n{}", agent.log_tail(20));

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
    let _ = stream.set_read_timeout(Some(PATIENCE * 2));
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while got.len() < REQUEST.len() {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let full = got.len() >= REQUEST.len();
    record.lock().expect("lock").push(got);
    if full {
        let _ = stream.write_all(&answer_bytes());
    }
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
