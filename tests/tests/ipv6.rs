//! The aggregation download over IPv6: LAN client → 2001:db8:200::10 through
//! mpbond (the agent redirects v6 and carries it over its MPTCP upstream).

mod common;

use std::time::Duration;

use common::{aggregated_transfer, at, bytes_for, mpbond_with};
use mpbond_tests::topology::SERVER_V6;
use mpbond_tests::{Fetch, Node};

#[test]
#[ignore = "needs root and netns"]
fn ipv6_download_is_aggregated() {
    ipv6_download(true);
}

/// The same with `tcp_fastopen=0` in the router and the VPS.
#[test]
#[ignore = "needs root and netns"]
fn ipv6_download_is_aggregated_without_fast_open() {
    ipv6_download(false);
}

fn ipv6_download(fast_open: bool) {
    let (bed, conc, _agent) = mpbond_with(&[40, 60], fast_open);
    let _server = bed
        .serve(Node::Server, at(SERVER_V6), false)
        .expect("v6 server");
    let fetch = Fetch::get(at(SERVER_V6), bytes_for(&bed, 8)).timeout(Duration::from_secs(60));
    aggregated_transfer(&bed, "ipv6 download", &fetch, true, 0.85);
    assert!(
        conc.log().contains("2001:db8:200::10"),
        "the concentrator's log names the v6 destination:\n{}",
        conc.log_tail(20)
    );
}
