//! A backup-mode WAN (MPTCP backup flag) carries almost nothing while the
//! primary works, and carries the download when the primary's link dies.
//!
//! Run as root:
//! `cargo test -p mpbond-tests --test control_backup -- --include-ignored --nocapture`.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::control::{control_bed, download_over_wan1, start_download, state_text, wait_managed};
use common::shares;
use mpbond_tests::{proc, wan_delta};

#[test]
#[ignore = "needs root and netns"]
fn backup_wan_idles_until_the_primary_dies() {
    let (bed, _conc, _server, mut cfg) = control_bed(&[40, 60]);
    cfg.wans[1].mode = "backup".into();
    let agent = bed.start_agent(&cfg).expect("agent starts");
    wait_managed(&bed, &agent, &[1, 2], Duration::from_secs(5));
    let wan2 = IpAddr::V4(bed.wan_v4(2));
    let flagged = proc::wait_until(Duration::from_secs(3), || {
        bed.owned_state()
            .is_ok_and(|s| s.endpoints_on(wan2).iter().all(|e| e.contains("backup")))
    });
    assert!(
        flagged,
        "wan2's endpoint lacks the backup flag:\n{}",
        state_text(&bed)
    );

    let before = bed.all_wan_bytes();
    let r = start_download(&bed, 20_000_000, Duration::from_secs(30))
        .finish()
        .expect("download report");
    let sh = shares(&wan_delta(&before, &bed.all_wan_bytes()), true);
    println!(
        "primary up: ok {} {:.1} Mbit/s, shares wan1 {:.1}% wan2 {:.1}%",
        r.ok,
        r.mbit_per_s,
        sh[0] * 100.0,
        sh[1] * 100.0
    );
    assert!(r.ok, "download broke: {r:?}");
    assert!(sh[1] < 0.05, "the backup WAN carried {:.1}%", sh[1] * 100.0);

    let bytes = 40_000_000;
    let (before, download) = download_over_wan1(&bed, bytes, Duration::from_secs(60));
    bed.set_link(1, false).expect("wan1 down");
    let r = download.finish().expect("download report");
    let delta = wan_delta(&before, &bed.all_wan_bytes());
    println!(
        "primary down: ok {} {:.1} Mbit/s, stall {:.0} ms, wan2 carried {} of {bytes} bytes",
        r.ok, r.mbit_per_s, r.longest_stall_ms, delta[1].0
    );
    assert!(r.ok, "download broke: {r:?}\n{}", agent.log_tail(30));
    assert!(
        delta[1].0 >= bytes / 2,
        "the backup WAN carried only {} bytes",
        delta[1].0
    );
}
