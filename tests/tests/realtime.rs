//! Protected real-time UDP flows (`[[udp.rule]] action = "protect"`, issue 18) end to
//! end in the namespace bed: a stream of 50 datagrams a second of 200 bytes, echoed by a
//! server in the internet namespace, carried over two legs (one per WAN) with every
//! datagram on both. It goes through a WAN link-down, a WAN black hole and 5 % random
//! loss on one WAN without a gap over 150 ms, and the status counts its residual loss;
//! a bulk TCP and a bulk QUIC download beside it add delay that is measured and printed
//! (not asserted: a timing). Without a second WAN the flow is bonded as any other.
//!
//! The same stream in `mode = "fec"` (each datagram once, spread over the legs, an XOR
//! repair per block): through a WAN link-down without a gap over 150 ms, and through
//! 5 % loss on one WAN with the losses recovered; the residual loss is printed, and the
//! protection bytes stay under 15 % of the stream's (blocks of 16 at this rate: 6.6 %,
//! plus the sources sent again because their leg was late).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::at;
use mpbond_tests::profiles::LinkSpec;
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{proc, Daemon, Failure, Node, TestBed, UdpEchoReport};

/// The echo server's port: the rule protects it.
const ECHO_PORT: u16 = 3478;
const QUIC_PORT: u16 = 4433;
/// Datagrams of one stream: 8 s at 50 a second.
const STREAM: u32 = 400;
/// The longest gap a protected stream may have.
const MAX_GAP_MS: f64 = 150.0;

fn echo_at() -> SocketAddr {
    SocketAddr::new(SERVER_V4.into(), ECHO_PORT)
}

/// A bed of `rates` WANs the agent routes (legs bind to its WANs), with the
/// concentrator and an agent that protects the echo port, once every WAN is up.
fn protected_bed(rates: &[u32]) -> (TestBed, Daemon, Daemon) {
    protected_bed_in(rates, "duplicate")
}

/// [`protected_bed`] with the protect rule's `mode`.
fn protected_bed_in(rates: &[u32], mode: &str) -> (TestBed, Daemon, Daemon) {
    common::routed_agent(
        rates,
        Some(format!(
            "[[udp.rule]]\nports = \"{ECHO_PORT}\"\naction = \"protect\"\nmode = \"{mode}\"\n"
        )),
    )
}

/// The agent's `protected` status object.
fn protected(bed: &TestBed) -> serde_json::Value {
    bed.agent_status().expect("agent status")["protected"].clone()
}

/// Open legs of the first protected flow.
fn open_legs(bed: &TestBed) -> usize {
    protected(bed)["flows"][0]["legs"]
        .as_array()
        .map_or(0, |legs| {
            legs.iter().filter(|l| l["state"] == "open").count()
        })
}

/// Wait until the stream runs protected: a flow with two open legs, echoes flowing.
fn wait_protected(bed: &TestBed) {
    let ok = proc::wait_until(Duration::from_secs(15), || {
        open_legs(bed) == 2 && protected(bed)["flows"][0]["datagrams_down"].as_u64() >= Some(25)
    });
    assert!(ok, "no protected flow with two legs: {}", protected(bed));
}

/// Run a stream of `datagrams` in `mode` while WAN 1 fails `how` (once the flow runs
/// protected, until the end), then `check` it with the bed still up.
fn stream_through(
    mode: &str,
    how: Failure,
    datagrams: u32,
    check: impl FnOnce(&TestBed, &Daemon, &UdpEchoReport),
) {
    let (bed, _conc, agent) = protected_bed_in(&[40, 60], mode);
    let _server = bed
        .udp_echo_server(Node::Server, echo_at())
        .expect("echo server");
    let run = bed
        .spawn_udp_echo(Node::Lan, echo_at(), datagrams)
        .expect("udp-echo starts");
    wait_protected(&bed);
    bed.fail_wan(1, how, true).expect("fail wan1");
    let report = run.finish().expect("udp-echo report");
    bed.fail_wan(1, how, false).expect("restore wan1");
    println!(
        "{mode}, {}: {report:?}\nprotected: {}",
        how.name(),
        protected(&bed)
    );
    check(&bed, &agent, &report);
}

/// Run the stream in `mode` while wan1 loses 5 % of its packets, then `check` it with
/// the bed still up.
fn stream_with_five_percent_loss(
    mode: &str,
    check: impl FnOnce(&TestBed, &Daemon, &UdpEchoReport),
) {
    let (bed, _conc, agent) = protected_bed_in(&[40, 60], mode);
    let lossy = LinkSpec {
        loss_pct: 5.0,
        ..LinkSpec::clean(40, 20)
    };
    let _line = bed
        .add_wan_emulation(1, &lossy, Some(18))
        .expect("5 % loss on wan1");
    let _server = bed
        .udp_echo_server(Node::Server, echo_at())
        .expect("echo server");
    let report = bed
        .udp_echo(Node::Lan, echo_at(), STREAM)
        .expect("udp-echo runs");
    println!("{mode}, 5 % loss on wan1: {report:?}");
    check(&bed, &agent, &report);
}

#[test]
#[ignore = "needs root and netns"]
fn a_protected_stream_has_no_gap_when_a_wan_goes_down() {
    stream_through(
        "duplicate",
        Failure::LinkDown,
        STREAM,
        |_, agent, report| common::assert_stream(report, agent, MAX_GAP_MS, 1),
    );
}

#[test]
#[ignore = "needs root and netns"]
fn a_protected_stream_has_no_gap_when_a_wan_is_blackholed() {
    stream_through(
        "duplicate",
        Failure::Blackhole,
        STREAM,
        |_, agent, report| common::assert_stream(report, agent, MAX_GAP_MS, 1),
    );
}

#[test]
#[ignore = "needs root and netns"]
fn five_percent_loss_on_one_wan_is_hidden_and_the_residual_loss_is_counted() {
    stream_with_five_percent_loss("duplicate", |bed, agent, report| {
        common::assert_stream(report, agent, MAX_GAP_MS, 1);
        // The status counts the stream: every first copy, and the loss after the merge.
        let ended = proc::wait_until(Duration::from_secs(5), || {
            protected(bed)["datagrams_down"].as_u64() >= Some(u64::from(report.received))
        });
        let status = protected(bed);
        assert!(ended, "status counts the delivered datagrams: {status}");
        assert!(status["lost_down"].as_u64().is_some(), "{status}");
        assert!(
            status["protection_bytes"].as_u64() >= Some(u64::from(report.received) * 200),
            "the second copies are counted as protection: {status}"
        );
        assert!(status["total"].as_u64() >= Some(1), "{status}");
    });
}

#[test]
#[ignore = "needs root and netns"]
fn one_wan_carries_a_protect_flow_as_a_bonded_one() {
    let (bed, _conc, _agent) = protected_bed(&[40]);
    let _server = bed
        .udp_echo_server(Node::Server, echo_at())
        .expect("echo server");
    let report = bed
        .udp_echo(Node::Lan, echo_at(), 50)
        .expect("udp-echo runs");
    let status = protected(&bed);
    println!("one WAN: {report:?}\nprotected: {status}");
    assert!(report.received >= 49, "{report:?}");
    assert!(status["fallbacks"].as_u64() >= Some(1), "{status}");
    assert_eq!(status["total"].as_u64(), Some(0), "{status}");
}

#[test]
#[ignore = "needs root and netns"]
fn bulk_tcp_and_quic_downloads_beside_a_protected_stream_add_delay_that_is_measured() {
    let (bed, _conc, agent) = protected_bed(&[40, 60]);
    let _server = bed
        .udp_echo_server(Node::Server, echo_at())
        .expect("echo server");
    let _tcp_server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("tcp server");
    let quic_at = SocketAddr::new(SERVER_V4.into(), QUIC_PORT);
    let _quic = bed.quic_server(Node::Server, quic_at).expect("quic server");
    let idle = bed
        .udp_echo(Node::Lan, echo_at(), 150)
        .expect("udp-echo runs");
    let stream = bed
        .spawn_udp_echo(Node::Lan, echo_at(), STREAM)
        .expect("udp-echo starts");
    let tcp = common::control::start_download(&bed, 60_000_000, Duration::from_secs(60));
    let quic = bed
        .spawn_quic_fetch(Node::Lan, quic_at, 40_000_000, Duration::from_secs(60))
        .expect("quic-fetch starts");
    let loaded = stream.finish().expect("udp-echo report");
    let quic = quic.finish().expect("quic report");
    let tcp = tcp.finish().expect("fetch report");
    println!(
        "protected stream idle: p50 {:.1} ms p99 {:.1} ms; under a TCP + QUIC download: \
         p50 {:.1} ms p99 {:.1} ms (added p50 {:.1} ms, p99 {:.1} ms), max gap {:.0} ms, \
         lost {}; quic {:.1} Mbit/s, tcp {:?}",
        idle.rtt_p50_ms,
        idle.rtt_p99_ms,
        loaded.rtt_p50_ms,
        loaded.rtt_p99_ms,
        loaded.rtt_p50_ms - idle.rtt_p50_ms,
        loaded.rtt_p99_ms - idle.rtt_p99_ms,
        loaded.max_gap_ms,
        loaded.lost,
        quic.mbit_per_s,
        tcp
    );
    assert!(quic.ok, "{quic:?}");
    assert!(
        loaded.received >= loaded.sent * 9 / 10,
        "the stream kept flowing: {loaded:?}\n{}",
        agent.log_tail(20)
    );
}

/// Datagrams of an FEC stream through a link-down: 5 s at 50 a second.
const FEC_LINK_DOWN_STREAM: u32 = 250;

#[test]
#[ignore = "needs root and netns"]
fn an_fec_stream_has_no_gap_when_a_wan_goes_down() {
    stream_through(
        "fec",
        Failure::LinkDown,
        FEC_LINK_DOWN_STREAM,
        |bed, agent, report| {
            let flow = protected(bed)["flows"][0].clone();
            println!(
                "fec, link down: residual loss {:.2} % ({} of {})",
                f64::from(report.lost) * 100.0 / f64::from(report.sent),
                report.lost,
                report.sent
            );
            assert_eq!(flow["mode"], "fec", "{flow}");
            // Half the datagrams go by the dead WAN until the agent drops its leg and the
            // concentrator stops using it: a few are lost, never a run of them.
            common::assert_stream(report, agent, MAX_GAP_MS, 4);
        },
    );
}

#[test]
#[ignore = "needs root and netns"]
fn fec_recovers_five_percent_loss_on_one_wan_at_a_fraction_of_duplications_bytes() {
    stream_with_five_percent_loss("fec", |bed, agent, report| {
        let ended = proc::wait_until(Duration::from_secs(5), || {
            protected(bed)["flows"][0]["datagrams_down"].as_u64()
                >= Some(u64::from(report.received))
        });
        let flow = protected(bed)["flows"][0].clone();
        let counted = |name: &str| flow[name].as_u64().unwrap_or(0);
        let payload = u64::from(report.received) * 200;
        let overhead = (counted("protection_bytes_up") + counted("protection_bytes_down")) as f64
            * 100.0
            / (u64::from(report.sent) * 200 + payload) as f64;
        println!(
            "fec, 5 % loss on wan1: {report:?}; residual loss {:.2} % ({} of {}); downstream \
             lost before {} after {}, recovered {}; protection {overhead:.1} % of the stream's \
             bytes; protected: {flow}",
            f64::from(report.lost) * 100.0 / f64::from(report.sent),
            report.lost,
            report.sent,
            counted("lost_before_down"),
            counted("lost_down"),
            counted("recovered_down"),
        );
        assert!(ended, "status counts the delivered datagrams: {flow}");
        assert_eq!(flow["mode"], "fec", "{flow}");
        // Unprotected, half the stream crosses the lossy WAN each way: about 5 % of the
        // echoes lost. Recovered, well under that (the target is 0.5 %; the bound leaves
        // room for chance). The flow was printed above.
        common::assert_stream(report, agent, MAX_GAP_MS, 2);
        // About 10 sources crossed the lossy WAN held up downstream: some were rebuilt
        // by a repair or came again on the other leg (their leg was late).
        assert!(
            counted("recovered_down") + counted("duplicates_down") >= 1,
            "nothing recovered: {flow}"
        );
        // Blocks of 16 at 50 datagrams a second: 6.6 %, plus the sources sent again
        // because their leg was late (a few % at 5 % loss); the bound leaves room for a
        // loaded machine, whose late ACKs look like late legs. Duplication costs 100 %.
        assert!(
            overhead < 15.0,
            "protection costs {overhead:.1} % of the stream's bytes: {flow}"
        );
    });
}
