//! The agent follows the router's WANs: a hotplugged WAN gets its table, rule
//! and MPTCP endpoint and a running download starts using it; an unplugged one
//! leaves nothing behind; a DHCP renumbering moves the rule and the endpoint to
//! the new address. The waits are bounded (a missing step fails the test), but
//! nothing here asserts how fast a step is: the reaction times are printed, and
//! measured by the benchmark (`mpbond-bench`).
//!
//! Run as root:
//! `cargo test -p mpbond-tests --test control_hotplug -- --include-ignored --nocapture`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::control::{
    control_bed, log_lines, managed, managed_in, start_download, state_text, time_until, utc_now,
    wait_managed, wait_rx,
};
use common::per_second;
use mpbond_tests::{proc, status_wan, WanEntry};

/// How long the agent may take to follow a WAN change before the test fails.
const FOLLOW_LIMIT: Duration = Duration::from_secs(10);

#[test]
#[ignore = "needs root and netns"]
fn hotplugged_wan_is_managed_used_and_removed() {
    let (mut bed, _conc, _server, mut cfg) = control_bed(&[40]);
    cfg.wans.push(WanEntry::new("wan2", "on"));
    let agent = bed.start_agent(&cfg).expect("agent starts");
    wait_managed(&bed, &agent, &[1], Duration::from_secs(5));

    // 40 Mbit/s alone for a few seconds, then 100: about 10 s in all.
    let download = start_download(&bed, 100_000_000, Duration::from_secs(60));
    let rx1 = bed.wan_bytes(1).0;
    assert!(
        wait_rx(&bed, 1, rx1, 5_000_000, Duration::from_secs(10)),
        "the download does not run over wan1"
    );

    let i = bed.add_wan_link(60).expect("wan2 plugged in");
    let rx2 = bed.wan_bytes(i).0;
    let (t0, utc0) = (Instant::now(), utc_now());
    bed.add_wan_addresses(i).expect("wan2 numbered");
    let numbered = t0.elapsed();
    let addr = IpAddr::V4(bed.wan_v4(i));
    let (mut endpoint_at, mut state_at, mut subflow_at) = (None, None, None);
    proc::wait_until(FOLLOW_LIMIT, || {
        if let Ok(s) = bed.owned_state() {
            if endpoint_at.is_none() && !s.endpoints_on(addr).is_empty() {
                endpoint_at = Some(t0.elapsed());
            }
            if state_at.is_none() && managed_in(&s, addr, i) {
                state_at = Some(t0.elapsed());
            }
        }
        if subflow_at.is_none() && bed.subflows_on(i) > 0 {
            subflow_at = Some(t0.elapsed());
        }
        state_at.is_some() && subflow_at.is_some()
    });
    println!(
        "hotplug: address added at {utc0} UTC (took {numbered:?}); -> endpoint {endpoint_at:?}, \
         -> table+rule+endpoint {state_at:?}, -> first subflow {subflow_at:?}"
    );
    println!("{}", log_lines(&agent, &["wan2", "reconciled"]));
    let status_subflows = bed
        .agent_status()
        .ok()
        .and_then(|d| status_wan(&d, "wan2").and_then(|w| w.get("subflows").cloned()));
    println!("hotplug: the status counts {status_subflows:?} subflows on wan2");
    assert!(
        state_at.is_some(),
        "wan2 got no table, rule and endpoint within {FOLLOW_LIMIT:?}:\n{}\n{}",
        state_text(&bed),
        agent.log_tail(30)
    );
    assert!(
        subflow_at.is_some(),
        "no subflow on wan2 within {FOLLOW_LIMIT:?}:\n{}",
        agent.log_tail(30)
    );
    assert!(
        wait_rx(&bed, i, rx2, 5_000_000, Duration::from_secs(15)),
        "the running download does not use wan2 (rx +{} bytes)",
        bed.wan_bytes(i).0 - rx2
    );
    let r = download.finish().expect("download report");
    println!(
        "hotplug download: ok {} {:.1} Mbit/s, stall {:.0} ms, per second {:?}",
        r.ok,
        r.mbit_per_s,
        r.longest_stall_ms,
        per_second(&r.samples_mbit)
    );
    assert!(r.ok, "the download broke: {r:?}");

    bed.remove_wan(i).expect("wan2 unplugged");
    let gone = time_until(FOLLOW_LIMIT, || {
        bed.owned_state().is_ok_and(|s| {
            s.mentioning("wan2").is_empty() && s.mentioning(&addr.to_string()).is_empty()
        })
    });
    println!("unplug: wan2's state gone after {gone:?}");
    assert!(
        gone.is_some(),
        "wan2's state outlived it:\n{}",
        state_text(&bed)
    );
    assert!(managed(&bed, 1), "wan1 is still managed");
}

#[test]
#[ignore = "needs root and netns"]
fn dhcp_renumbering_moves_rule_and_endpoint() {
    let (mut bed, _conc, _server, cfg) = control_bed(&[40, 60]);
    let agent = bed.start_agent(&cfg).expect("agent starts");
    wait_managed(&bed, &agent, &[1, 2], Duration::from_secs(5));
    let old = IpAddr::V4(bed.wan_v4(1));
    let new_v4 = Ipv4Addr::new(10, 200, 1, 7);
    let new = IpAddr::V4(new_v4);

    let t0 = Instant::now();
    bed.change_wan_address(1, new_v4).expect("renumbered");
    let moved = proc::wait_until(FOLLOW_LIMIT, || {
        bed.owned_state().is_ok_and(|s| {
            s.rules_from(old).is_empty()
                && s.endpoints_on(old).is_empty()
                && !s.rules_from(new).is_empty()
                && !s.endpoints_on(new).is_empty()
        })
    });
    let took = t0.elapsed();
    println!("renumbering {old} -> {new}: rule and endpoint moved after {took:?} ({moved})");
    assert!(
        moved,
        "the rule and endpoint did not follow within {FOLLOW_LIMIT:?}:\n{}\n{}",
        state_text(&bed),
        agent.log_tail(30)
    );
    assert!(managed(&bed, 1) && managed(&bed, 2));

    let r = start_download(&bed, 20_000_000, Duration::from_secs(30))
        .finish()
        .expect("download report");
    assert!(r.ok, "a download after the renumbering broke: {r:?}");
}
