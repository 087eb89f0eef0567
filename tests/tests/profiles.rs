//! The data path on every link profile of issue 11 (`mpbond_tests::profiles`):
//! with the agent and the concentrator, one download and one upload through
//! mpbond arrive intact (every byte checked against the deterministic stream)
//! over the profile's delay, jitter, loss and outages.
//!
//! Sizes are small so the four profiles together take well under 2 minutes;
//! throughput is the benchmark's job (`mpbond-bench --cases 13`).

mod common;

use std::time::Duration;

use common::{at, metric};
use mpbond_tests::profiles::Profile;
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{Fetch, Node, TestBed};

/// Bytes each way: seconds of traffic on the slowest profile's best WAN.
const BYTES: u64 = 6_000_000;

fn transfers_arrive_intact(profile: Profile) {
    let bed = TestBed::builder().profile(profile).build();
    let mut links = bed.apply_profile(profile).expect("delay lines start");
    let _conc = bed
        .start_concentrator(&bed.concentrator_config())
        .expect("concentrator starts");
    let _agent = bed.start_agent(&bed.agent_config()).expect("agent starts");
    let server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("server");
    let limit = Duration::from_secs(60);
    let down = bed
        .fetch(
            Node::Lan,
            &Fetch::get(at(SERVER_V4), BYTES).seed(11).timeout(limit),
        )
        .expect("download runs");
    let up = bed
        .fetch(
            Node::Lan,
            &Fetch::put(at(SERVER_V4), BYTES).seed(12).timeout(limit),
        )
        .expect("upload runs");
    let uploaded = server.wait_for(Duration::from_secs(20), |ev| {
        ev.iter().any(|e| e.event == "done" && e.bytes_in == BYTES)
    });
    let lost: Vec<u64> = links
        .lines_mut()
        .iter_mut()
        .map(|l| l.stats().map(|s| s.ab.lost_segments + s.ba.lost_segments))
        .collect::<Result<_, _>>()
        .expect("delay line stats");
    eprintln!(
        "{profile}: download {:.1} Mbit/s, upload {:.1} Mbit/s, packets lost per WAN {lost:?}, seeds {:?}",
        down.mbit_per_s,
        up.mbit_per_s,
        links.seeds()
    );
    assert!(down.ok, "{profile}: download {down:?}");
    assert!(up.ok, "{profile}: upload {up:?}");
    assert!(uploaded, "{profile}: upload not done at the server");
    let done: Vec<_> = server
        .events()
        .into_iter()
        .filter(|e| e.event == "done" && e.bytes_in == BYTES)
        .collect();
    assert!(
        done.iter().all(|e| e.ok == Some(true)),
        "{profile}: the server found the upload corrupt: {done:?}"
    );
    assert!(
        metric(&bed, "mpbond_connections_total") >= 2.0,
        "{profile}: the transfers did not go through mpbond"
    );
    let lossy = profile.links().iter().any(|l| l.loss_pct > 0.0);
    if lossy {
        assert!(
            lost.iter().sum::<u64>() > 0,
            "{profile}: a lossy profile lost nothing: {lost:?}"
        );
    }
}

#[test]
#[ignore = "needs root and netns"]
fn dsl_lte_transfers_arrive_intact() {
    transfers_arrive_intact(Profile::DslLte);
}

#[test]
#[ignore = "needs root and netns"]
fn starlink_transfers_arrive_intact() {
    transfers_arrive_intact(Profile::Starlink);
}

#[test]
#[ignore = "needs root and netns"]
fn bad_backup_transfers_arrive_intact() {
    transfers_arrive_intact(Profile::BadBackup);
}

#[test]
#[ignore = "needs root and netns"]
fn three_transfers_arrive_intact() {
    transfers_arrive_intact(Profile::Three);
}
