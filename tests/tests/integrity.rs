//! 32 connections at once through mpbond, downloads, uploads and both at once,
//! with odd sizes (0 and 1 byte included) and half-closes in each direction:
//! every byte is checked at the receiving end.

mod common;

use std::time::Duration;

use common::{at, mpbond_with};
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{Fetch, Node};

/// (mode, down bytes, up bytes) of each connection.
fn mix() -> Vec<(&'static str, u64, u64)> {
    let sizes = [
        0u64, 1, 2, 3, 1447, 1449, 4095, 65_535, 65_537, 100_003, 777_777, 1_234_567, 2_000_003,
    ];
    let mut jobs = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        jobs.push(("get", size, 0));
        jobs.push(("put", 0, size));
        let other = sizes[(i * 7 + 3) % sizes.len()];
        jobs.push(("xch", size, other));
    }
    jobs.truncate(32);
    jobs
}

#[test]
#[ignore = "needs root and netns"]
fn parallel_mixed_transfers_arrive_intact() {
    parallel_mixed(true);
}

/// The same with `tcp_fastopen=0` in the router and the VPS.
#[test]
#[ignore = "needs root and netns"]
fn parallel_mixed_transfers_arrive_intact_without_fast_open() {
    parallel_mixed(false);
}

fn parallel_mixed(fast_open: bool) {
    let (bed, _conc, _agent) = mpbond_with(&[40, 60], fast_open);
    let server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("server");
    let jobs = mix();
    assert_eq!(jobs.len(), 32);
    let runs: Vec<_> = jobs
        .iter()
        .enumerate()
        .map(|(i, &(mode, down, up))| {
            let fetch = match mode {
                "get" => Fetch::get(at(SERVER_V4), down),
                "put" => Fetch::put(at(SERVER_V4), up),
                _ => Fetch::xch(at(SERVER_V4), up, down),
            };
            let fetch = fetch.seed(1000 + i as u64).timeout(Duration::from_secs(90));
            bed.spawn_fetch(Node::Lan, &fetch).expect("fetch starts")
        })
        .collect();
    let mut failures = Vec::new();
    for (run, job) in runs.into_iter().zip(&jobs) {
        let r = run.finish().expect("fetch report");
        if !r.ok {
            failures.push(format!("{job:?}: {r:?}"));
        }
    }
    let finished = server.wait_for(Duration::from_secs(20), |ev| {
        ev.iter()
            .filter(|e| e.event == "done" || e.event == "error")
            .count()
            >= jobs.len()
    });
    let events = server.events();
    let done: Vec<_> = events.iter().filter(|e| e.event == "done").collect();
    let errors: Vec<_> = events.iter().filter(|e| e.event == "error").collect();
    let bad_uploads: Vec<_> = done.iter().filter(|e| e.ok == Some(false)).collect();
    let bytes: u64 = done.iter().map(|e| e.bytes_in + e.bytes_out).sum();
    println!(
        "integrity: {} connections, {} client failures, server done {} / errors {} / bad uploads {}, {bytes} bytes checked",
        jobs.len(),
        failures.len(),
        done.len(),
        errors.len(),
        bad_uploads.len()
    );
    assert!(
        failures.is_empty(),
        "client-side failures:\n{}",
        failures.join("\n")
    );
    assert!(
        finished,
        "the server finished only {} of {} connections",
        done.len(),
        jobs.len()
    );
    assert!(
        errors.is_empty(),
        "{} connections reached the server but were reset before a request arrived \
         (e.g. the concentrator's leg of a connection the agent abandoned): {errors:?}",
        errors.len()
    );
    assert!(bad_uploads.is_empty(), "uploads corrupted: {bad_uploads:?}");
    assert_eq!(done.len(), jobs.len());
}
