//! The aggregation download over IPv6: LAN client → 2001:db8:200::10 through
//! mpbond (the agent redirects v6 and carries it over its MPTCP upstream).

mod common;

use std::time::Duration;

use common::{assert_aggregated, at, bytes_for, measured, mpbond};
use mpbond_tests::topology::SERVER_V6;
use mpbond_tests::{require_root, Fetch, Node};

#[test]
fn ipv6_download_is_aggregated() {
    require_root!();
    let (bed, conc, _agent) = mpbond(&[40, 60]);
    let _server = bed
        .serve(Node::Server, at(SERVER_V6), false)
        .expect("v6 server");
    let fetch = Fetch::get(at(SERVER_V6), bytes_for(&bed, 8)).timeout(Duration::from_secs(60));
    let (r, delta) = measured(&bed, &fetch);
    assert_aggregated("ipv6 download", &bed, &r, &delta, true, 0.85);
    assert!(
        conc.log().contains("2001:db8:200::10"),
        "the concentrator's log names the v6 destination:\n{}",
        conc.log_tail(20)
    );
}
