//! The latency guard (`[udp] latency_guard`, issue 18) on a download that was already
//! running when a protected flow started, in the namespace bed with the real agent and
//! concentrator: the download opened wide (no protected flow, so no clamp), the guard
//! cannot narrow its window, so it paces its reads instead (`latency_guard.pace` in the
//! status while the protected stream runs and through the hold), and after the hold
//! the pace is gone while the download still runs. The relays did read within the
//! budget: `latency_guard.paced_bytes` (the bytes read within it, as of the release)
//! grew by more than a megabyte while paced, where relays that ignored the bucket would
//! leave it unchanged. The download arrives whole (the
//! fetch checks every byte) and the stream keeps flowing. The delay the stream sees is
//! printed, not asserted (a timing): bench case 21 measures it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::at;
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{proc, Node};

/// The echo server's port: the rule protects it.
const ECHO_PORT: u16 = 3478;
/// The shortest `[udp] idle_timeout_secs`: the stream's flow ends soon after it.
const FLOW_IDLE_SECS: u64 = 5;

#[test]
#[ignore = "needs root and netns"]
fn a_download_already_running_is_paced_while_a_protected_flow_runs_then_released() {
    let (bed, _conc, agent) = common::routed_agent(
        &[40, 60],
        Some(format!(
            "idle_timeout_secs = {FLOW_IDLE_SECS}\n[[udp.rule]]\nports = \"{ECHO_PORT}\"\n\
             action = \"protect\"\n"
        )),
    );
    let echo_at = SocketAddr::new(SERVER_V4.into(), ECHO_PORT);
    let _echo = bed
        .udp_echo_server(Node::Server, echo_at)
        .expect("echo server");
    let _server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("tcp server");
    let guard = || bed.agent_status().expect("agent status")["latency_guard"].clone();
    assert!(
        guard()["pace"].is_null(),
        "paced before any flow: {}",
        guard()
    );
    let paced_bytes = |g: &serde_json::Value| g["paced_bytes"].as_u64().unwrap_or(0);
    let read_before = paced_bytes(&guard());

    // 300 MB: about 27 s at the WANs' 100 Mbit/s, longer paced: it outlasts the hold.
    let download = common::control::start_download(&bed, 300_000_000, Duration::from_secs(120));
    let flowing = proc::wait_until(Duration::from_secs(15), || {
        bed.all_wan_bytes().iter().map(|(a, b)| a + b).sum::<u64>() > 10_000_000
    });
    assert!(
        flowing,
        "the download did not start: {}",
        agent.log_tail(20)
    );
    assert!(
        guard()["clamp"].is_null(),
        "armed before the call: {}",
        guard()
    );

    let stream = bed
        .udp_echo(Node::Lan, echo_at, 150)
        .expect("udp-echo runs");
    let paced = guard();
    assert!(
        paced["pace"].as_u64().is_some_and(|rate| rate > 0),
        "the download already running is not paced: {paced}\n{}",
        agent.log_tail(20)
    );
    assert!(
        stream.received >= stream.sent * 9 / 10,
        "the stream kept flowing: {stream:?}"
    );

    // The flow ends after its idle timeout, the pace after the hold.
    let released = proc::wait_until(Duration::from_secs(60), || guard()["pace"].is_null());
    assert!(released, "still paced: {}\n{}", guard(), agent.log_tail(20));
    let read_paced = paced_bytes(&guard()).saturating_sub(read_before);
    assert!(
        read_paced > 1 << 20,
        "the relays did not read within the pace's budget ({read_paced} bytes): {}\n{}",
        guard(),
        agent.log_tail(20)
    );
    let report = download.finish().expect("fetch report");
    println!(
        "download already running, protected stream joined: p50 {:.1} ms, p99 {:.1} ms, \
         lost {}; guard while paced {paced}; {read_paced} bytes read paced; \
         download {report:?}",
        stream.rtt_p50_ms, stream.rtt_p99_ms, stream.lost
    );
    assert!(
        report.ok,
        "the download did not arrive whole: {report:?}\n{}",
        agent.log_tail(20)
    );
}
