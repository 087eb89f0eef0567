//! Fail open: with the concentrator gone, the agent withdraws the redirect and
//! the LAN still reaches the internet through the router's NAT; once the
//! concentrator is back, new connections are aggregated again.

mod common;

use std::time::Duration;

use common::{
    assert_aggregated, at, measured, metric, mpbond, redirect_active, shares, wait_redirect,
};
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{Fetch, Node};

#[test]
#[ignore = "needs root and netns"]
fn lan_keeps_working_without_the_concentrator_and_recovers() {
    let (bed, conc, mut agent) = mpbond(&[40, 60]);
    let _server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("server");
    assert!(
        redirect_active(&bed),
        "the redirect is in place once the agent is ready"
    );
    let cfg = bed.concentrator_config();

    let status = conc.stop(Duration::from_secs(10));
    println!("concentrator stopped: {status:?}");
    let withdrawn = wait_redirect(&bed, false, Duration::from_secs(20));
    assert!(
        withdrawn,
        "the agent did not withdraw the redirect:\n{}",
        agent.log_tail(20)
    );
    assert!(agent.is_running(), "the agent keeps running");

    let (r, delta) = measured(
        &bed,
        &Fetch::get(at(SERVER_V4), 10_000_000).timeout(Duration::from_secs(30)),
    );
    let sh = shares(&delta, true);
    println!(
        "fail-open download: {:.1} Mbit/s, ok {}, WAN shares {sh:?}",
        r.mbit_per_s, r.ok
    );
    assert!(r.ok, "the LAN download through NAT failed: {r:?}");
    assert!(
        sh[1] < 0.05,
        "NAT traffic follows the main route (wan1 only): {sh:?}"
    );

    let _conc = bed.start_concentrator(&cfg).expect("concentrator restarts");
    let restored = wait_redirect(&bed, true, Duration::from_secs(20));
    assert!(
        restored,
        "the agent did not restore the redirect:\n{}",
        agent.log_tail(20)
    );

    let (r, delta) = measured(
        &bed,
        &Fetch::get(at(SERVER_V4), 50_000_000).timeout(Duration::from_secs(60)),
    );
    assert_aggregated("after recovery", &bed, &r, &delta, true, 0.0);
    let conns = metric(&bed, "mpbond_connections_total");
    println!("restarted concentrator: mpbond_connections_total = {conns}");
    assert!(
        conns >= 1.0,
        "the restarted concentrator carried the new connection"
    );
}
