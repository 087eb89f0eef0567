//! One plain TCP connection from the LAN, carried by mpbond over two shaped
//! WANs (40 + 60 Mbit/s): intact, both WANs used, goodput near the sum.

mod common;

use std::time::Duration;

use common::{assert_aggregated, at, bytes_for, measured, metric, mpbond};
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{require_root, Fetch, Node};

fn aggregated(upload: bool) {
    let (bed, _conc, _agent) = mpbond(&[40, 60]);
    let _server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("server");
    let bytes = bytes_for(&bed, 8);
    let fetch = if upload {
        Fetch::put(at(SERVER_V4), bytes)
    } else {
        Fetch::get(at(SERVER_V4), bytes)
    };
    let (r, delta) = measured(&bed, &fetch.timeout(Duration::from_secs(60)));
    let conns = metric(&bed, "mpbond_connections_total");
    println!("concentrator mpbond_connections_total = {conns}");
    assert_aggregated(
        if upload { "upload" } else { "download" },
        &bed,
        &r,
        &delta,
        !upload,
        0.85,
    );
    assert_eq!(r.mptcp, Some(false), "the LAN side is plain TCP");
    assert!(conns >= 1.0, "the concentrator carried the transfer");
}

#[test]
fn download_is_aggregated() {
    require_root!();
    aggregated(false);
}

#[test]
fn upload_is_aggregated() {
    require_root!();
    aggregated(true);
}
