//! Path quality end to end, on the `bad-backup` profile (50 Mbit/s at 15 ms + 5 Mbit/s
//! at 300 ms with 3 % loss): a fresh agent demotes the bad WAN to a backup endpoint on its
//! first probe answers, before any traffic (status `quality: "demoted"` with reason
//! `first probes: …`, the endpoint's `backup` flag, one log line); at its trial
//! (`restore_after`) it is back in the bond, and during a download the rate rule demotes
//! it again (`rtt …`); once its link is made good again (15 ms, no loss) it is restored.
//! The download completes intact meanwhile.
//!
//! With `[path_quality] enabled = false` nothing is demoted, and the test fails: see
//! [`a_bad_wan_is_not_demoted_with_the_control_off`], which asserts exactly that.
//!
//! Run as root:
//! `cargo test -p mpbond-tests --test path_quality -- --include-ignored --nocapture --test-threads=1`.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::at;
use common::control::{log_lines, start_download, state_text, time_until, wait_managed, wait_rx};
use mpbond_tests::profiles::{LinkSpec, Profile};
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{status_wan, AgentConfig, Daemon, Node, TbServer, TestBed};

const MB: u64 = 1_000_000;
/// Long enough for the demotion (6 s of bad samples after the rate is known) on a slow
/// machine; no test asserts a timing.
const LIMIT: Duration = Duration::from_secs(40);

/// A `bad-backup` bed with agent routing, the concentrator, the server, and the agent
/// config: WAN 2's probes get a timeout above its 300 ms RTT.
fn bad_backup_bed() -> (TestBed, Daemon, TbServer, AgentConfig) {
    let bed = TestBed::builder()
        .profile(Profile::BadBackup)
        .agent_routing(true)
        .fast_open(false)
        .build();
    let conc = bed
        .start_concentrator(&bed.concentrator_config())
        .expect("concentrator starts");
    let server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("server");
    let mut cfg = bed.agent_config();
    for wan in &mut cfg.wans {
        wan.probe_timeout_ms = 1500;
    }
    (bed, conc, server, cfg)
}

/// `wans[name].<field>` of the status document, as text.
fn wan_text(bed: &TestBed, name: &str, field: &str) -> Option<String> {
    let doc = bed.agent_status().ok()?;
    let value = status_wan(&doc, name)?.get(field)?.clone();
    value.as_str().map(str::to_owned)
}

/// Whether `addr`'s MPTCP endpoint has the backup flag.
fn endpoint_is_backup(bed: &TestBed, addr: IpAddr) -> bool {
    bed.owned_state().is_ok_and(|s| {
        s.endpoints_on(addr)
            .iter()
            .any(|e| e.split_whitespace().any(|w| w == "backup"))
    })
}

#[test]
#[ignore = "needs root and netns"]
fn a_bad_wan_is_demoted_at_start_again_during_traffic_and_restored_when_good() {
    let (bed, _conc, _server, mut cfg) = bad_backup_bed();
    cfg.path_quality = Some("restore_after_secs = 8".into());
    let mut links = bed.apply_profile(Profile::BadBackup).expect("profile");
    let agent = bed.start_agent(&cfg).expect("agent starts");
    wait_managed(&bed, &agent, &[1, 2], LIMIT);
    let wan2 = IpAddr::V4(bed.wan_v4(2));

    // No traffic yet: its first probes demote it.
    let first = time_until(LIMIT, || {
        wan_text(&bed, "wan2", "quality_reason").is_some_and(|r| r.starts_with("first probes"))
    });
    println!("wan2 demoted on its first probes: {first:?}");
    assert!(
        first.is_some(),
        "wan2 not demoted on its first probes; status wan2 {:?}\nagent log:\n{}",
        wan_text(&bed, "wan2", "quality_reason"),
        agent.log_tail(40)
    );
    assert_eq!(wan_text(&bed, "wan1", "quality").as_deref(), Some("good"));
    assert!(
        time_until(LIMIT, || endpoint_is_backup(&bed, wan2)).is_some(),
        "wan2's endpoint has no backup flag:\n{}",
        state_text(&bed)
    );
    assert!(
        !log_lines(&agent, &["WAN demoted to backup"]).is_empty(),
        "no log line for the demotion"
    );

    // 50 Mbit/s for ~25 s: its trial comes, and the rate rule demotes it again.
    let bytes = 150 * MB;
    let before = bed.wan_bytes(1).0;
    let download = start_download(&bed, bytes, Duration::from_secs(120));
    assert!(
        wait_rx(&bed, 1, before, 2 * MB, LIMIT),
        "the download does not run over wan1"
    );
    let by_rate = |r: Option<String>| r.is_some_and(|r| r.starts_with("rtt "));
    let demoted_after = time_until(LIMIT, || by_rate(wan_text(&bed, "wan2", "quality_reason")));
    let reason = wan_text(&bed, "wan2", "quality_reason");
    println!("wan2 demoted by the rate rule after {demoted_after:?} of traffic: {reason:?}");
    assert!(
        demoted_after.is_some(),
        "wan2 not demoted after its trial; status wan2 {reason:?}\nagent log:\n{}",
        agent.log_tail(40)
    );
    assert!(
        !log_lines(&agent, &["on trial"]).is_empty(),
        "no trial logged"
    );
    assert!(
        time_until(LIMIT, || endpoint_is_backup(&bed, wan2)).is_some(),
        "wan2's endpoint has no backup flag:\n{}",
        state_text(&bed)
    );

    // The link made good: 15 ms, no loss.
    bed.replace_wan_emulation(&mut links, 2, &LinkSpec::clean(5, 15), Some(2))
        .expect("wan2 made good");
    let restored_after = time_until(LIMIT, || {
        wan_text(&bed, "wan2", "quality").as_deref() == Some("good")
    });
    println!("wan2 restored {restored_after:?} after its link was made good");
    assert!(
        restored_after.is_some(),
        "wan2 not restored:\n{}",
        agent.log_tail(40)
    );
    assert!(
        time_until(LIMIT, || !endpoint_is_backup(&bed, wan2)).is_some(),
        "wan2's endpoint is still a backup:\n{}",
        state_text(&bed)
    );
    assert!(!log_lines(&agent, &["WAN restored from backup"]).is_empty());

    let r = download.finish().expect("download report");
    println!(
        "download: ok {} {:.1} Mbit/s, longest stall {:.0} ms",
        r.ok, r.mbit_per_s, r.longest_stall_ms
    );
    assert!(r.ok, "download broke: {r:?}\n{}", agent.log_tail(30));
}

#[test]
#[ignore = "needs root and netns"]
fn a_bad_wan_is_not_demoted_with_the_control_off() {
    let (bed, _conc, _server, mut cfg) = bad_backup_bed();
    cfg.path_quality = Some("enabled = false".into());
    let _links = bed.apply_profile(Profile::BadBackup).expect("profile");
    let agent = bed.start_agent(&cfg).expect("agent starts");
    wait_managed(&bed, &agent, &[1, 2], LIMIT);
    let wan2 = IpAddr::V4(bed.wan_v4(2));
    let bytes = 60 * MB;
    let before = bed.wan_bytes(1).0;
    let download = start_download(&bed, bytes, Duration::from_secs(120));
    assert!(
        wait_rx(&bed, 1, before, 2 * MB, LIMIT),
        "the download does not run over wan1"
    );
    let r = download.finish().expect("download report");
    println!("control off: ok {} {:.1} Mbit/s", r.ok, r.mbit_per_s);
    assert!(r.ok, "download broke: {r:?}");
    assert_ne!(
        wan_text(&bed, "wan2", "quality").as_deref(),
        Some("demoted")
    );
    assert!(!endpoint_is_backup(&bed, wan2));
    assert!(log_lines(&agent, &["WAN demoted to backup"]).is_empty());
}
