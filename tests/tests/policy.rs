//! Hand-made Convert messages to the concentrator: a wrong key, a replayed
//! message, a stale timestamp, no cookie and forbidden destinations are each
//! refused with the right RFC 8803 error code, and none of them reaches its
//! target (the target servers count their connections).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::metric;
use mpbond_tests::topology::{SERVER_TRANSIT_V4, SERVER_V4, SERVER_V6, VPS_V4};
use mpbond_tests::wire::ConvertReport;
use mpbond_tests::{Node, TbServer, TestBed};

fn convert(bed: &TestBed, dest: SocketAddr, extra: &[&str]) -> ConvertReport {
    let key = bed.key_hex();
    let conc = format!("{VPS_V4}:4850");
    let dest = dest.to_string();
    let mut args = vec![
        "--connect",
        conc.as_str(),
        "--dest",
        dest.as_str(),
        "--key",
        key.as_str(),
    ];
    args.extend_from_slice(extra);
    let r = bed.convert(Node::Router, &args).expect("convert runs");
    println!("convert {dest} {extra:?} -> {:?}", r.attempts);
    r
}

fn codes(r: &ConvertReport) -> Vec<Option<u8>> {
    r.attempts.iter().map(|a| a.error_code).collect()
}

fn accepted_exactly(server: &TbServer, n: usize) -> bool {
    server.wait_for(Duration::from_secs(5), |ev| {
        ev.iter().filter(|e| e.event == "accept").count() >= n
    });
    server.accepted() == n
}

#[test]
#[ignore = "needs root and netns"]
fn bad_requests_get_error_codes_and_reach_nothing() {
    let bed = TestBed::builder().wans(&[40, 60]).build();
    let mut cfg = bed.concentrator_config();
    cfg.deny = vec![format!("{SERVER_V6}/128")];
    // Only the v4 server is opened; the v6 one stays refused (denied, and documentation).
    cfg.allow = vec![format!("{SERVER_V4}/32")];
    // The error codes are what this test checks: quiet mode (the default) would answer
    // the unauthenticated requests with silence (concentrator/tests/quiet.rs).
    cfg.quiet = Some(false);
    let _conc = bed.start_concentrator(&cfg).expect("concentrator starts");
    let target = bed
        .serve(Node::Server, "0.0.0.0:5101".parse().unwrap(), false)
        .expect("server");
    let target6 = bed
        .serve(Node::Server, "[::]:5101".parse().unwrap(), false)
        .expect("v6 server");
    let replay_target = bed
        .serve(Node::Server, "0.0.0.0:5102".parse().unwrap(), false)
        .expect("server");
    let vps_target = bed
        .serve(Node::Vps, "0.0.0.0:5103".parse().unwrap(), false)
        .expect("vps server");
    let public = SocketAddr::new(SERVER_V4.into(), 5101);

    assert_eq!(
        codes(&convert(&bed, public, &["--wrong-key"])),
        [Some(32)],
        "wrong key"
    );
    assert_eq!(
        codes(&convert(&bed, public, &["--skew-secs", "-3600"])),
        [Some(32)],
        "stale timestamp"
    );
    assert_eq!(
        codes(&convert(&bed, public, &["--no-cookie"])),
        [Some(3)],
        "missing cookie"
    );
    assert_eq!(
        codes(&convert(&bed, public, &["--client", "stranger"])),
        [Some(32)],
        "unknown client"
    );
    let private = SocketAddr::new(SERVER_TRANSIT_V4.into(), 5101);
    assert_eq!(
        codes(&convert(&bed, private, &[])),
        [Some(32)],
        "private destination"
    );
    let denied6 = SocketAddr::new(SERVER_V6.into(), 5101);
    assert_eq!(
        codes(&convert(&bed, denied6, &[])),
        [Some(32)],
        "configured deny"
    );
    let own = SocketAddr::new(VPS_V4.into(), 5103);
    assert_eq!(
        codes(&convert(&bed, own, &[])),
        [Some(32)],
        "the VPS's own address"
    );
    let loopback: SocketAddr = "127.0.0.1:9850".parse().unwrap();
    assert_eq!(
        codes(&convert(&bed, loopback, &[])),
        [Some(32)],
        "loopback (the metrics port)"
    );

    let replayed = convert(&bed, SocketAddr::new(SERVER_V4.into(), 5102), &["--replay"]);
    assert_eq!(
        replayed.attempts.first().map(|a| a.reply.as_str()),
        Some("ok"),
        "the original passes"
    );
    assert_eq!(
        replayed.attempts.get(1).and_then(|a| a.error_code),
        Some(32),
        "the replay is refused"
    );

    // Positive control: a good request does reach the v4 target, so a count of
    // one there proves the refused ones never arrived.
    assert_eq!(
        codes(&convert(&bed, public, &[])),
        [None],
        "a good request passes"
    );
    assert!(
        accepted_exactly(&target, 1),
        "target accepted {} (want only the control)",
        target.accepted()
    );
    assert!(
        accepted_exactly(&replay_target, 1),
        "replay target accepted {}",
        replay_target.accepted()
    );
    assert_eq!(target6.accepted(), 0, "the denied v6 target was reached");
    assert_eq!(
        vps_target.accepted(),
        0,
        "the VPS's own service was reached"
    );

    let auth = metric(&bed, "mpbond_auth_failures_total");
    let policy = metric(&bed, "mpbond_policy_refusals_total");
    println!("mpbond_auth_failures_total = {auth}, mpbond_policy_refusals_total = {policy}");
    assert!(
        auth >= 4.0,
        "wrong key, stale, unknown client and replay count as auth failures"
    );
    assert!(
        policy >= 4.0,
        "private, denied, own and loopback count as policy refusals"
    );
}
