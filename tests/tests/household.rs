//! What a household sees when a WAN fails: new small requests every 250 ms and a bulk
//! download through each failure (a black hole of WAN 1, of WAN 2, WAN 1's link down,
//! and one-direction black holes of WAN 1: upstream only, and downstream only, where
//! SYNs reach the concentrator and SYN-ACKs are lost). None of the requests fails, the
//! download arrives intact, no request reaches the server twice (the server counts
//! connections and request lines: a hedged connection whose first SYN reached the
//! concentrator must not deliver the LAN client's bytes a second time) unless the
//! agent moved its connection (`connections.moved`: a request whose first copy
//! arrived before its reply was lost in the hole; at most one extra copy per move,
//! docs/DESIGN.md, "New connections never wait for a dead WAN"), and once the WAN is
//! back it carries traffic again. One bed for every sub-case, with Fast Open on.
//! A second bed checks the `backup` down reaction: the flag is set and cleared in place.
//!
//! No assertion is about time: the times are printed, and the benchmark (`mpbond-bench`,
//! the failover and household cases) measures them.
//!
//! Run as root:
//! `cargo test -p mpbond-tests --test household -- --include-ignored --nocapture --test-threads=1`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::control::{log_lines, start_download, state_text, wait_managed, wait_rx, wan_state};
use common::{at, per_second};
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{proc, Daemon, Failure, Node, TbServer, TestBed};

/// Requests in each sub-case, one every [`EVERY`].
const REQUESTS: usize = 24;
const EVERY: Duration = Duration::from_millis(250);
/// Bytes each answer carries.
const ANSWER: u64 = 1000;
/// A request gives up after this long (the client's patience).
const PATIENCE: Duration = Duration::from_secs(10);
/// The download of each sub-case: ~4 s at 100 Mbit/s, longer on one WAN.
const DOWNLOAD: u64 = 50_000_000;

#[test]
#[ignore = "needs root and netns"]
fn every_failure_leaves_requests_and_downloads_whole_and_the_wan_comes_back() {
    let bed = TestBed::builder()
        .wans(&[40, 60])
        .agent_routing(true)
        .fast_open(true)
        .build();
    let _conc = bed
        .start_concentrator(&bed.concentrator_config())
        .expect("concentrator starts");
    let server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("server");
    let agent = bed.start_agent(&bed.agent_config()).expect("agent starts");
    wait_managed(&bed, &agent, &[1, 2], Duration::from_secs(10));
    let cases = [
        (1, Failure::Blackhole),
        (2, Failure::Blackhole),
        (1, Failure::LinkDown),
        (1, Failure::UpstreamOnly),
        (1, Failure::DownstreamOnly),
    ];
    for (wan, failure) in cases {
        sub_case(&bed, &agent, &server, wan, failure);
    }
}

/// One failure of WAN `wan` under paced requests and a download, then its recovery.
fn sub_case(bed: &TestBed, agent: &Daemon, server: &TbServer, wan: usize, failure: Failure) {
    let label = format!("wan{wan} {}", failure.name());
    wait_all_up(bed, agent, &label);
    let seen_before = server.events().len();
    let moved_before = moved(bed);

    let download = start_download(bed, DOWNLOAD, Duration::from_secs(90));
    let requests = bed
        .spawn_paced(Node::Lan, at(SERVER_V4), REQUESTS, EVERY, ANSWER, PATIENCE)
        .expect("paced requests start");
    // The schedule of the experiment: the failure comes a second into the load, half a
    // pacing step after a request started, so that no request is mid-handshake while
    // the failure is being installed (that race has its own test, `handshake_hole`,
    // and bench case 9; docs/DESIGN.md, "New connections never wait for a dead WAN").
    std::thread::sleep(Duration::from_secs(1) + EVERY / 2);
    bed.fail_wan(wan, failure, true)
        .expect("the failure starts");

    let report = requests.finish().expect("paced report");
    let fetched = download.finish().expect("download report");
    let slow: Vec<(f64, f64)> = report
        .paced
        .iter()
        .filter_map(|p| p.done_ms.map(|d| (p.start_ms, d)))
        .filter(|&(_, d)| d > 100.0)
        .collect();
    println!(
        "{label}: requests ok {} failed {}, max {:.0} ms, slow ones (start, ms) {slow:?}; \
         download ok {} intact {} longest stall {:.0} ms, per second {:?}",
        report.ok,
        report.failed,
        report.done_quantile(1.0),
        fetched.ok,
        fetched.intact(),
        fetched.longest_stall_ms,
        per_second(&fetched.samples_mbit)
    );
    let failed: Vec<(f64, Option<&String>)> = report
        .paced
        .iter()
        .filter(|p| p.done_ms.is_none())
        .map(|p| (p.start_ms, p.error.as_ref()))
        .collect();
    assert_eq!(
        report.failed,
        0,
        "{label}: requests failed (start ms, error): {failed:?}, first error {:?}\nagent log:\n{}",
        report.first_error,
        agent.log_tail(40)
    );
    assert_eq!(report.ok, REQUESTS, "{label}: every request answered");
    assert!(fetched.intact(), "{label}: the download broke: {fetched:?}");

    // The server logs a request when it is done with it: wait for the last ones.
    let seeds = |events: &[mpbond_tests::ServeEvent]| {
        let mine = &events[seen_before.min(events.len())..];
        mine.iter()
            .filter(|e| e.event != "accept" && e.seed.is_some())
            .count()
    };
    let _ = server.wait_for(Duration::from_secs(5), |ev| seeds(ev) > REQUESTS);
    let events = server.events();
    let mine = &events[seen_before.min(events.len())..];
    let mut per_seed: BTreeMap<u64, usize> = BTreeMap::new();
    for seed in mine
        .iter()
        .filter(|e| e.event != "accept")
        .filter_map(|e| e.seed)
    {
        *per_seed.entry(seed).or_default() += 1;
    }
    let accepted = mine.iter().filter(|e| e.event == "accept").count();
    println!(
        "{label}: the server accepted {accepted} connections and read {} request lines",
        per_seed.len()
    );
    let twice: Vec<_> = per_seed.iter().filter(|(_, &n)| n > 1).collect();
    let extra: usize = twice.iter().map(|(_, &n)| n - 1).sum();
    let moved = moved(bed) - moved_before;
    println!(
        "{label}: connections moved {moved}, requests read more than once {twice:?}\n{}",
        log_lines(agent, &["moving", "hedge bound", "wan down"])
    );
    // A moved connection may deliver its request twice when the first copy did arrive
    // and only the reply was lost (docs/DESIGN.md). Upstream-only, the first copy never
    // arrives, so no duplicate is explained there.
    let explained = if matches!(failure, Failure::UpstreamOnly) {
        0
    } else {
        moved
    };
    assert!(
        extra as u64 <= explained,
        "{label}: requests reached the server twice, more than the {explained} moves \
         that could explain it: {twice:?}"
    );
    assert_eq!(
        per_seed.len(),
        REQUESTS + 1,
        "{label}: every request (and the download) reached the server once"
    );

    bed.fail_wan(wan, failure, false).expect("the failure ends");
    recovered(bed, agent, wan, &label);
}

/// The agent's `connections.moved` so far.
fn moved(bed: &TestBed) -> u64 {
    let status = bed.agent_status().expect("status");
    status["connections"]["moved"]
        .as_u64()
        .expect("connections.moved")
}

/// Wait until the status says every WAN is up.
fn wait_all_up(bed: &TestBed, agent: &Daemon, label: &str) {
    let up = proc::wait_until(Duration::from_secs(20), || {
        (1..=bed.wan_rates().len())
            .all(|i| wan_state(bed, &format!("wan{i}")).as_deref() == Some("up"))
    });
    assert!(
        up,
        "{label}: not every WAN is up: {:?}\n{}",
        bed.agent_status(),
        agent.log_tail(30)
    );
}

/// WAN `wan` is back: the status says up and a new download uses it.
fn recovered(bed: &TestBed, agent: &Daemon, wan: usize, label: &str) {
    wait_all_up(bed, agent, label);
    wait_managed(bed, agent, &[wan], Duration::from_secs(10));
    let rx = bed.wan_bytes(wan).0;
    let download = start_download(bed, 20_000_000, Duration::from_secs(60));
    let used = wait_rx(bed, wan, rx, 2_000_000, Duration::from_secs(20));
    let fetched = download.finish().expect("recovery download report");
    println!(
        "{label}: after recovery wan{wan} carried {} bytes of a 20 MB download",
        bed.wan_bytes(wan).0 - rx
    );
    assert!(
        used,
        "{label}: wan{wan} is not used again:\n{}\n{}",
        state_text(bed),
        agent.log_tail(30)
    );
    assert!(fetched.intact(), "{label}: the recovery download broke");
}

/// `mptcp.down_reaction = "backup"` (measured against the default in the bench's case
/// 10): a black-holed WAN's endpoint is flagged backup in place when the probes mark it
/// down, and loses the flag when it is back.
#[test]
#[ignore = "needs root and netns"]
fn the_backup_reaction_flags_a_down_wans_endpoint_in_place() {
    let bed = TestBed::builder()
        .wans(&[40, 60])
        .agent_routing(true)
        .build();
    let _conc = bed
        .start_concentrator(&bed.concentrator_config())
        .expect("concentrator starts");
    let mut cfg = bed.agent_config();
    cfg.down_reaction = Some("backup".into());
    let agent = bed.start_agent(&cfg).expect("agent starts");
    wait_managed(&bed, &agent, &[1, 2], Duration::from_secs(10));
    wait_all_up(&bed, &agent, "backup reaction");
    let wan1 = bed.wan_v4(1).into();
    let flagged = |want: bool| {
        bed.owned_state().is_ok_and(|s| {
            let eps = s.endpoints_on(wan1);
            !eps.is_empty() && eps.iter().all(|e| e.contains("backup") == want)
        })
    };
    assert!(
        flagged(false),
        "wan1 starts without the flag:\n{}",
        state_text(&bed)
    );
    bed.fail_wan(1, Failure::Blackhole, true)
        .expect("black hole");
    let down = proc::wait_until(Duration::from_secs(15), || {
        wan_state(&bed, "wan1").as_deref() == Some("down") && flagged(true)
    });
    assert!(
        down,
        "wan1's endpoint is not flagged backup once down:\n{}\n{}",
        state_text(&bed),
        agent.log_tail(30)
    );
    bed.fail_wan(1, Failure::Blackhole, false)
        .expect("black hole ends");
    let back = proc::wait_until(Duration::from_secs(15), || {
        wan_state(&bed, "wan1").as_deref() == Some("up") && flagged(false)
    });
    assert!(
        back,
        "wan1's endpoint keeps the flag once up:\n{}\n{}",
        state_text(&bed),
        agent.log_tail(30)
    );
}
