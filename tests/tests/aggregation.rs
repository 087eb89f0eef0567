//! One plain TCP connection from the LAN, carried by mpbond over two shaped
//! WANs (40 + 60 Mbit/s): intact, both WANs used, goodput near the sum.
//!
//! The `*_without_fast_open` variants set `tcp_fastopen=0` in the router and
//! the VPS. They separate mpbond's data path from the kernel's handling of
//! MPTCP connections opened with TCP Fast Open (see `testbed.rs`).

mod common;

use std::time::Duration;

use common::{aggregated_transfer, at, bytes_for, metric, mpbond_with};
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{Fetch, Node};

fn aggregated(upload: bool, fast_open: bool) {
    let (bed, _conc, _agent) = mpbond_with(&[40, 60], fast_open);
    let _server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("server");
    let bytes = bytes_for(&bed, 8);
    let fetch = if upload {
        Fetch::put(at(SERVER_V4), bytes)
    } else {
        Fetch::get(at(SERVER_V4), bytes)
    };
    let label = if upload { "upload" } else { "download" };
    let fetch = fetch.timeout(Duration::from_secs(60));
    let r = aggregated_transfer(&bed, label, &fetch, !upload, 0.85);
    let conns = metric(&bed, "mpbond_connections_total");
    println!("concentrator mpbond_connections_total = {conns}");
    assert_eq!(r.mptcp, Some(false), "the LAN side is plain TCP");
    assert!(conns >= 1.0, "the concentrator carried the transfer");
}

#[test]
#[ignore = "needs root and netns"]
fn download_is_aggregated() {
    aggregated(false, true);
}

#[test]
#[ignore = "needs root and netns"]
fn upload_is_aggregated() {
    aggregated(true, true);
}

#[test]
#[ignore = "needs root and netns"]
fn download_is_aggregated_without_fast_open() {
    aggregated(false, false);
}

#[test]
#[ignore = "needs root and netns"]
fn upload_is_aggregated_without_fast_open() {
    aggregated(true, false);
}
