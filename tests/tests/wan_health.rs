//! WAN health through the probe datagrams and the passive samples, on the namespace bed
//! (two WANs, 40 + 60 Mbit/s, the agent managing them). No assertion is about speed:
//! the waits are generous bounds and the times are printed; the benchmark
//! (`mpbond-bench`, case 11) measures them.
//!
//! * An idle WAN black-holed by its ISP (both ways, upstream only, downstream only) goes
//!   `down`, cause `probe`, and `up` again once its ISP forwards again.
//! * A busy WAN black-holed during an upload goes `down` from its subflows' TCP state
//!   (data in flight, no ACK: cause `passive`, no probe needed), and the upload
//!   continues on the other WAN. During a download the router has nothing in flight:
//!   the WAN's traffic stopping makes it suspicious and its probes decide (cause
//!   `probe`); the download continues too.
//! * The concentrator answered probe datagrams and saw no TCP connection for them.
//!
//! Run as root:
//! `cargo test -p mpbond-tests --test wan_health -- --include-ignored --test-threads=1 --nocapture`.

mod common;

use std::time::Duration;

use common::control::{control_bed, start_download, time_until, wait_managed, wait_rx, wan_state};
use common::{at, metric};
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{proc, status_wan, Fetch, FetchRun, Node, TestBed};

/// nft table of the one-direction blackholes, in ISP 1's namespace.
const ONE_WAY: &str = "mpbhealth";

#[derive(Debug, Clone, Copy)]
enum Cut {
    Both,
    Upstream,
    Downstream,
}

fn cut(bed: &TestBed, how: Cut, on: bool) {
    match how {
        Cut::Both => bed.blackhole_wan(1, on).expect("ISP 1 blackhole"),
        _ if !on => {
            bed.exec(Node::Isp(1), &format!("nft delete table inet {ONE_WAY}"))
                .expect("remove the one-way drop");
        }
        Cut::Upstream | Cut::Downstream => {
            let dir = if matches!(how, Cut::Upstream) {
                "saddr"
            } else {
                "daddr"
            };
            let ruleset = format!(
                "table inet {ONE_WAY} {{\n\tchain oneway {{\n\t\ttype filter hook forward priority -10; policy accept;\n\t\tip {dir} {} drop\n\t}}\n}}\n",
                bed.wan_v4(1)
            );
            bed.nft(Node::Isp(1), &ruleset).expect("one-way drop");
        }
    }
}

fn last_cause(bed: &TestBed) -> Option<String> {
    let doc = bed.agent_status().ok()?;
    let change = status_wan(&doc, "wan1")?.get("last_change")?;
    Some(change.get("cause")?.as_str()?.to_owned())
}

fn idle_blackhole(how: Cut) {
    let (bed, _conc, _server, cfg) = control_bed(&[40, 60]);
    let agent = bed.start_agent(&cfg).expect("agent starts");
    wait_managed(&bed, &agent, &[1, 2], Duration::from_secs(5));
    let up = |name: &str| wan_state(&bed, name).as_deref() == Some("up");
    assert!(
        time_until(Duration::from_secs(10), || up("wan1") && up("wan2")).is_some(),
        "the WANs are not up: {:?}",
        bed.agent_status()
    );

    cut(&bed, how, true);
    let down = time_until(Duration::from_secs(15), || {
        wan_state(&bed, "wan1").as_deref() == Some("down")
    });
    println!("{how:?}: idle wan1 down after {down:?}");
    assert!(
        down.is_some(),
        "{how:?}: wan1 not down:\n{}",
        agent.log_tail(30)
    );
    assert_eq!(last_cause(&bed).as_deref(), Some("probe"), "{how:?}");
    assert_eq!(
        wan_state(&bed, "wan2").as_deref(),
        Some("up"),
        "{how:?}: wan2 unharmed"
    );

    cut(&bed, how, false);
    let back = time_until(Duration::from_secs(15), || up("wan1"));
    println!("{how:?}: wan1 up again after {back:?}");
    assert!(
        back.is_some(),
        "{how:?}: wan1 not up again:\n{}",
        agent.log_tail(30)
    );
    assert!(
        metric(&bed, "mpbond_probe_datagrams_total{result=\"answered\"}") > 0.0,
        "the concentrator answered probe datagrams"
    );
}

#[test]
#[ignore = "needs root and netns"]
fn an_idle_wans_blackhole_is_seen_and_so_is_its_recovery() {
    idle_blackhole(Cut::Both);
}

#[test]
#[ignore = "needs root and netns"]
fn an_upstream_only_blackhole_is_seen() {
    idle_blackhole(Cut::Upstream);
}

#[test]
#[ignore = "needs root and netns"]
fn a_downstream_only_blackhole_is_seen() {
    idle_blackhole(Cut::Downstream);
}

/// Whether `wan<i>`'s tx counter grows `bytes` past `from` within `limit`.
fn wait_tx(bed: &TestBed, i: usize, from: u64, bytes: u64, limit: Duration) -> bool {
    proc::wait_until(limit, || bed.wan_bytes(i).1 >= from + bytes)
}

/// A transfer over both WANs, cut on WAN 1; the cause the agent gives.
fn busy_blackhole(upload: bool) -> Option<String> {
    let (bed, _conc, _server, cfg) = control_bed(&[40, 60]);
    let agent = bed.start_agent(&cfg).expect("agent starts");
    wait_managed(&bed, &agent, &[1, 2], Duration::from_secs(5));
    assert!(
        time_until(Duration::from_secs(10), || wan_state(&bed, "wan1")
            .as_deref()
            == Some("up"))
        .is_some(),
        "wan1 is not up"
    );
    let moved = |i: usize| {
        let (rx, tx) = bed.wan_bytes(i);
        if upload {
            wait_tx(&bed, i, tx, 3_000_000, Duration::from_secs(15))
        } else {
            wait_rx(&bed, i, rx, 3_000_000, Duration::from_secs(15))
        }
    };
    let run: FetchRun = if upload {
        let fetch = Fetch::put(at(SERVER_V4), 150_000_000).timeout(Duration::from_secs(90));
        bed.spawn_fetch(Node::Lan, &fetch).expect("upload starts")
    } else {
        start_download(&bed, 150_000_000, Duration::from_secs(90))
    };
    assert!(moved(1) && moved(2), "the transfer does not use both WANs");

    cut(&bed, Cut::Both, true);
    let down = time_until(Duration::from_secs(10), || {
        wan_state(&bed, "wan1").as_deref() == Some("down")
    });
    let cause = last_cause(&bed);
    println!("busy wan1 (upload {upload}) down after {down:?}, cause {cause:?}");
    assert!(down.is_some(), "wan1 not down:\n{}", agent.log_tail(30));
    assert!(moved(2), "the transfer does not continue on wan2");
    cut(&bed, Cut::Both, false);
    let r = run.finish().expect("transfer report");
    assert!(r.ok, "the transfer broke: {r:?}");
    cause
}

#[test]
#[ignore = "needs root and netns"]
fn a_busy_upload_wans_blackhole_is_seen_from_its_subflows() {
    assert_eq!(busy_blackhole(true).as_deref(), Some("passive"));
}

#[test]
#[ignore = "needs root and netns"]
fn a_busy_download_wans_blackhole_is_seen() {
    let cause = busy_blackhole(false);
    assert!(
        matches!(cause.as_deref(), Some("passive" | "probe")),
        "{cause:?}"
    );
}
