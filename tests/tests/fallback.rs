//! MPTCP stripped on the path: both ISPs reset the MPTCP option, so the
//! agent's connections fall back to plain TCP. Downloads still arrive intact
//! and the concentrator counts the fallbacks.

mod common;

use std::time::Duration;

use common::{at, measured, metric, shares};
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{Fetch, Node, TestBed};

const STRIP: &str = "table inet mpbt_strip {\n\
                     \tchain forward {\n\
                     \t\ttype filter hook forward priority filter; policy accept;\n\
                     \t\treset tcp option mptcp\n\
                     \t}\n\
                     }\n";

#[test]
#[ignore = "needs root and netns"]
fn stripped_mptcp_option_still_delivers() {
    let bed = TestBed::builder().wans(&[40, 60]).build();
    for i in 1..=bed.wan_rates().len() {
        bed.nft(Node::Isp(i), STRIP).expect("strip rule loads");
    }
    let _conc = bed
        .start_concentrator(&bed.concentrator_config())
        .expect("concentrator starts");
    let _agent = bed.start_agent(&bed.agent_config()).expect("agent starts");
    let _server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("server");

    let (r, delta) = measured(
        &bed,
        &Fetch::get(at(SERVER_V4), 20_000_000).timeout(Duration::from_secs(60)),
    );
    let sh = shares(&delta, true);
    println!(
        "fallback download: {:.1} Mbit/s, ok {}, WAN shares {sh:?}",
        r.mbit_per_s, r.ok
    );
    assert!(r.ok, "the download failed without MPTCP: {r:?}");
    assert!(sh[1] < 0.05, "plain TCP cannot use wan2: {sh:?}");
    let fallbacks = metric(&bed, "mpbond_fallbacks_total");
    let conns = metric(&bed, "mpbond_connections_total");
    println!("mpbond_fallbacks_total = {fallbacks}, mpbond_connections_total = {conns}");
    assert!(fallbacks >= 1.0, "the concentrator counted no fallback");
    assert!(conns >= 1.0, "the download went through the concentrator");
}
