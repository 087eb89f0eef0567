//! QUIC through mpbond: a real QUIC stack (`quinn`, its congestion control on) downloads
//! from a server in the internet namespace through the router. The bytes arrive intact,
//! both WANs carry them, and the download survives WAN 1 going down or being
//! black-holed mid-transfer.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{mpbond, shares};
use mpbond_tests::topology::{SERVER_V4, VPS_V4};
use mpbond_tests::{proc, wan_delta, Failure, Node, TestBed};

const QUIC_PORT: u16 = 4433;

fn server_addr() -> SocketAddr {
    SocketAddr::new(SERVER_V4.into(), QUIC_PORT)
}

fn udp_count(bed: &TestBed, key: &str) -> u64 {
    bed.agent_status().expect("agent status")["udp"][key]
        .as_u64()
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root and netns"]
fn a_quic_download_is_bonded_over_both_wans() {
    let (bed, _conc, _agent) = mpbond(&[40, 60]);
    let server = bed
        .quic_server(Node::Server, server_addr())
        .expect("quic server");
    let before = bed.all_wan_bytes();
    let report = bed
        .spawn_quic_fetch(
            Node::Lan,
            server_addr(),
            40_000_000,
            Duration::from_secs(60),
        )
        .expect("quic-fetch starts")
        .finish()
        .expect("quic report");
    let delta = wan_delta(&before, &bed.all_wan_bytes());
    let sh = shares(&delta, true);
    println!("quic download: {report:?}, WAN shares {sh:?}");
    assert!(report.ok, "intact and complete: {report:?}");
    assert!(
        sh.iter().all(|s| *s >= 0.15),
        "both WANs carry the QUIC download: {sh:?}"
    );
    let peers: Vec<IpAddr> = server.peers().iter().map(SocketAddr::ip).collect();
    assert_eq!(peers, [IpAddr::from(VPS_V4)], "through the concentrator");
}

fn quic_survives(how: Failure) {
    let (bed, _conc, _agent) = mpbond(&[40, 60]);
    let _server = bed
        .quic_server(Node::Server, server_addr())
        .expect("quic server");
    let run = bed
        .spawn_quic_fetch(
            Node::Lan,
            server_addr(),
            60_000_000,
            Duration::from_secs(90),
        )
        .expect("quic-fetch starts");
    // Fail WAN 1 once the download is well under way.
    let going = proc::wait_until(Duration::from_secs(20), || {
        bed.wan_bytes(1).0 > 5_000_000 && udp_count(&bed, "bonded_active") >= 1
    });
    assert!(going, "the QUIC download started through the concentrator");
    bed.fail_wan(1, how, true).expect("fail wan1");
    let report = run.finish().expect("quic report");
    bed.fail_wan(1, how, false).expect("restore wan1");
    println!("{}: {report:?}", how.name());
    assert!(
        report.ok,
        "{}: the download completed intact: {report:?}",
        how.name()
    );
}

#[test]
#[ignore = "needs root and netns"]
fn a_quic_download_survives_wan1_going_down() {
    quic_survives(Failure::LinkDown);
}

#[test]
#[ignore = "needs root and netns"]
fn a_quic_download_survives_a_wan1_black_hole() {
    quic_survives(Failure::Blackhole);
}
