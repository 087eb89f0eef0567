//! Shared by the control-plane scenarios: a bed whose per-WAN routing belongs
//! to the agent, and waits on the state the agent keeps.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{
    proc, status_wan, AgentConfig, Daemon, Fetch, FetchRun, Node, OwnedState, TbServer, TestBed,
};

use super::at;

/// A bed with `rates`, agent routing and no TCP Fast Open, with the
/// concentrator and the internet server running, and the agent config to
/// start (every WAN of the bed is an `on` `[[wan]]` entry).
pub fn control_bed(rates: &[u32]) -> (TestBed, Daemon, TbServer, AgentConfig) {
    let bed = TestBed::builder()
        .wans(rates)
        .agent_routing(true)
        .fast_open(false)
        .build();
    let conc = bed
        .start_concentrator(&bed.concentrator_config())
        .expect("concentrator starts");
    let server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("server");
    let cfg = bed.agent_config();
    (bed, conc, server, cfg)
}

/// Whether the agent has WAN `i`'s rule, endpoint and a route via its device.
pub fn managed(bed: &TestBed, i: usize) -> bool {
    bed.owned_state()
        .is_ok_and(|state| managed_in(&state, bed.wan_v4(i).into(), i))
}

/// Whether `state` has the rule and endpoint of `addr` and a route via `wan<i>`.
pub fn managed_in(state: &OwnedState, addr: IpAddr, i: usize) -> bool {
    !state.rules_from(addr).is_empty()
        && !state.endpoints_on(addr).is_empty()
        && !state.routes_via(&format!("wan{i}")).is_empty()
}

/// Poll until every WAN in `wans` is [`managed`]; panic with the state and the
/// agent's log after `limit`. Returns how long it took.
pub fn wait_managed(bed: &TestBed, agent: &Daemon, wans: &[usize], limit: Duration) -> Duration {
    let start = Instant::now();
    let ok = proc::wait_until(limit, || wans.iter().all(|&i| managed(bed, i)));
    assert!(
        ok,
        "the agent did not set up WANs {wans:?} within {limit:?}; owned state:\n{}\nagent log:\n{}",
        state_text(bed),
        agent.log_tail(30)
    );
    start.elapsed()
}

/// The owned state, printable (or the error).
pub fn state_text(bed: &TestBed) -> String {
    match bed.owned_state() {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot read it: {e}"),
    }
}

/// Start a download of `bytes` from the LAN client through mpbond (100 ms samples).
pub fn start_download(bed: &TestBed, bytes: u64, timeout: Duration) -> FetchRun {
    let fetch = Fetch::get(at(SERVER_V4), bytes).timeout(timeout);
    bed.spawn_fetch(Node::Lan, &fetch).expect("fetch starts")
}

/// The WANs' byte counters, then a download of `bytes` ([`start_download`]) that must
/// have brought 2 MB in over WAN 1 within 10 s (the test fails otherwise): a transfer
/// running over WAN 1, for a test that fails WAN 1 next.
pub fn download_over_wan1(
    bed: &TestBed,
    bytes: u64,
    timeout: Duration,
) -> (Vec<(u64, u64)>, FetchRun) {
    let before = bed.all_wan_bytes();
    let download = start_download(bed, bytes, timeout);
    assert!(
        wait_rx(bed, 1, before[0].0, 2_000_000, Duration::from_secs(10)),
        "the download does not run over wan1"
    );
    (before, download)
}

/// Poll until `wan<i>`'s rx counter has grown `bytes` past `from`; whether it did.
pub fn wait_rx(bed: &TestBed, i: usize, from: u64, bytes: u64, limit: Duration) -> bool {
    proc::wait_until(limit, || bed.wan_bytes(i).0 >= from + bytes)
}

/// `wans[name].state` of the agent's status document, if it answers.
pub fn wan_state(bed: &TestBed, name: &str) -> Option<String> {
    let doc = bed.agent_status().ok()?;
    status_wan(&doc, name)?
        .get("state")?
        .as_str()
        .map(str::to_owned)
}

/// The UTC time of day now, `hh:mm:ss.mmm`, to line events up with daemon logs.
pub fn utc_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (s, ms) = (now.as_secs() % 86_400, now.subsec_millis());
    format!("{:02}:{:02}:{:02}.{ms:03}", s / 3600, s / 60 % 60, s % 60)
}

/// The agent's log lines that contain any of `words`.
pub fn log_lines(agent: &Daemon, words: &[&str]) -> String {
    agent
        .log()
        .lines()
        .filter(|l| words.iter().any(|w| l.contains(w)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Poll until `cond` holds; `Some(elapsed)` or `None` after `limit`.
pub fn time_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    proc::wait_until(limit, &mut cond).then(|| start.elapsed())
}
