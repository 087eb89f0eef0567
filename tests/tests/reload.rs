//! A reload is a diff, not a restart (issue 20): SIGHUP with a rewritten
//! config applies what changed in place, while a bulk download runs through
//! the router.
//!
//! * The WAN list goes from wan1+wan2 to wan1 alone and back, one SIGHUP
//!   each: wan2's table, rule and MPTCP endpoint go and come back, the status
//!   follows the config, and the download arrives intact with the agent's
//!   process, its connection counts and its uptime untouched.
//! * A config that does not parse: the agent says why and nothing changes.
//! * A config that raises the log level: debug lines follow, nothing else changes.
//!
//! The timing of a reload (the stall it causes) is the benchmark's (case 8);
//! these tests only wait for conditions, with generous bounds.
//!
//! Run: `cargo test -p mpbond-tests --test reload -- --include-ignored --test-threads=1`
//! (as root).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::control::{control_bed, log_lines, managed, start_download, state_text, wait_rx};
use mpbond_tests::agentreload::{
    lines_at_level, restart_signs, status_wan_names, ConnectionCounts, LogMark,
};
use mpbond_tests::topology::{wan_router_v6, SERVER_V4};
use mpbond_tests::{proc, AgentConfig, Daemon, FetchRun, Node, TbServer, TestBed};

/// WAN rates in Mbit/s: slow enough that the download spans both reloads.
const RATES: [u32; 2] = [20, 20];
/// The download: about 12 s on both WANs, longer while wan2 is withdrawn.
const BYTES: u64 = 60_000_000;
/// The bound on every wait for a condition (not a timing assertion).
const LIMIT: Duration = Duration::from_secs(15);
/// What the native config gains to log at debug level. The key is being
/// added to the agent's config (UCI `globals.log_level`); adjust it here.
const LOG_LEVEL_DEBUG: &str = "\n[log]\nlevel = \"debug\"\n";
/// Text that is not TOML at all.
const NOT_TOML: &str = "[concentrator\nhost = \n";

/// What must not change across a reload.
#[derive(Debug, Clone, Copy)]
struct Before {
    pid: u32,
    counts: ConnectionCounts,
    uptime_secs: u64,
}

impl Before {
    /// The agent's pid, connection counts and uptime now.
    fn take(bed: &TestBed, agent: &Daemon) -> Self {
        let doc = bed.agent_status().expect("the agent answers status");
        Self {
            pid: agent.pid(),
            counts: ConnectionCounts::of(&doc).expect("connections in the status"),
            uptime_secs: doc["uptime_secs"].as_u64().expect("uptime in the status"),
        }
    }
}

/// The agent still runs as the same process, wrote no stop or restart line
/// since `mark`, and its status shows the download still open and neither
/// the connection total nor the uptime reset.
fn assert_in_place(bed: &TestBed, agent: &mut Daemon, before: Before, mark: LogMark, when: &str) {
    assert!(
        agent.is_running(),
        "{when}: the agent exited:\n{}",
        agent.log_tail(30)
    );
    assert_eq!(agent.pid(), before.pid, "{when}: another agent process");
    let since = agent.log_since(mark);
    let signs = restart_signs(&since);
    assert!(
        signs.is_empty(),
        "{when}: the agent stopped or restarted instead of reloading in place:\n{}",
        signs.join("\n")
    );
    let doc = bed.agent_status().expect("the agent answers status");
    let counts = ConnectionCounts::of(&doc).expect("connections in the status");
    let uptime = doc["uptime_secs"].as_u64().unwrap_or(0);
    assert!(
        counts.total >= before.counts.total && uptime >= before.uptime_secs,
        "{when}: the status was reset (connections {counts:?}, uptime {uptime} s; before \
         {:?}, {} s): the agent restarted",
        before.counts,
        before.uptime_secs
    );
    assert!(
        counts.active >= 1,
        "{when}: the agent holds no open connection, but the download is running: {counts:?}"
    );
}

/// The bed, with the agent running on wan1+wan2 and a download through both.
fn download_through_both(
    rust_log: bool,
) -> (TestBed, Daemon, Daemon, TbServer, AgentConfig, FetchRun) {
    let (bed, conc, server, cfg) = control_bed(&RATES);
    let agent = if rust_log {
        bed.start_agent(&cfg)
    } else {
        bed.start_agent_without_rust_log(&cfg)
    }
    .expect("agent starts");
    wait_configured(&bed, &agent, &[1, 2]);
    let download = start_download(&bed, BYTES, Duration::from_secs(120));
    let (rx1, rx2) = (bed.wan_bytes(1).0, bed.wan_bytes(2).0);
    assert!(
        wait_rx(&bed, 1, rx1, 1_000_000, LIMIT) && wait_rx(&bed, 2, rx2, 1_000_000, LIMIT),
        "the download does not run over both WANs:\n{}",
        agent.log_tail(30)
    );
    (bed, agent, conc, server, cfg, download)
}

/// Wait until exactly `wans` are managed, in the kernel and in the status.
fn wait_configured(bed: &TestBed, agent: &Daemon, wans: &[usize]) {
    let want: Vec<String> = wans.iter().map(|i| format!("wan{i}")).collect();
    let kernel_follows = || {
        (1..=bed.wan_rates().len()).all(|i| {
            if wans.contains(&i) {
                managed(bed, i)
            } else {
                withdrawn(bed, i)
            }
        })
    };
    let ok = proc::wait_until(LIMIT, || {
        kernel_follows()
            && bed
                .agent_status()
                .is_ok_and(|doc| status_wan_names(&doc) == want)
    });
    let names = bed.agent_status().map(|doc| status_wan_names(&doc));
    assert!(
        ok,
        "the agent does not manage exactly {want:?} (status lists {names:?}); owned state:\n{}\n\
         agent log:\n{}",
        state_text(bed),
        agent.log_tail(30)
    );
}

/// Whether nothing of `wan<i>` is left: no route via it, no rule from or
/// endpoint on its addresses.
fn withdrawn(bed: &TestBed, i: usize) -> bool {
    let v4 = IpAddr::V4(bed.wan_v4(i));
    let v6 = IpAddr::V6(wan_router_v6(i));
    bed.owned_state().is_ok_and(|s| {
        s.routes_via(&format!("wan{i}")).is_empty()
            && [v4, v6]
                .iter()
                .all(|&a| s.rules_from(a).is_empty() && s.endpoints_on(a).is_empty())
    })
}

/// The download arrived whole and the server served exactly that one connection.
fn assert_intact(download: FetchRun, server: &TbServer, agent: &Daemon) {
    let r = download.finish().expect("download report");
    println!(
        "download: ok {} {:.1} Mbit/s, longest stall {:.0} ms, sha256 {:?}",
        r.ok, r.mbit_per_s, r.longest_stall_ms, r.sha256_got
    );
    assert!(
        r.ok && r.first_bad_offset.is_none() && r.sha256_got.is_some(),
        "the download broke: {r:?}\nagent log:\n{}",
        agent.log_tail(30)
    );
    let events = server.events();
    let accepted = events.iter().filter(|e| e.event == "accept").count();
    let errors: Vec<_> = events.iter().filter(|e| e.event == "error").collect();
    assert!(
        accepted == 1 && errors.is_empty(),
        "the server saw {accepted} connections and errors {errors:?}: the transfer was \
         not one connection from start to end"
    );
}

#[test]
#[ignore = "needs root and netns"]
fn wan_list_changes_apply_in_place_under_a_download() {
    let (bed, mut agent, _conc, server, cfg, download) = download_through_both(true);
    let before = Before::take(&bed, &agent);
    let mark = agent.log_mark();

    let wan1_only = AgentConfig {
        wans: cfg.wans[..1].to_vec(),
        ..cfg.clone()
    };
    agent
        .rewrite_config(&wan1_only.to_toml())
        .expect("config rewritten");
    agent.sighup().expect("SIGHUP sent");
    wait_configured(&bed, &agent, &[1]);
    assert_in_place(&bed, &mut agent, before, mark, "wan2 withdrawn");
    let rx1 = bed.wan_bytes(1).0;
    assert!(
        wait_rx(&bed, 1, rx1, 2_000_000, LIMIT),
        "the download does not go on over wan1 after wan2 was withdrawn"
    );

    agent
        .rewrite_config(&cfg.to_toml())
        .expect("config rewritten");
    agent.sighup().expect("SIGHUP sent");
    wait_configured(&bed, &agent, &[1, 2]);
    assert_in_place(&bed, &mut agent, before, mark, "wan2 added again");
    let rx2 = bed.wan_bytes(2).0;
    let wan2_again = wait_rx(&bed, 2, rx2, 1_000_000, LIMIT);
    println!("the running download uses wan2 again: {wan2_again}");
    println!(
        "agent log since the first SIGHUP:\n{}",
        log_lines(&agent, &["SIGHUP", "reload", "wan2", "config"])
    );

    assert_intact(download, &server, &agent);
    assert_in_place_after_the_download(&bed, &mut agent, before, mark);
}

/// After the download: still the same process, nothing restarted, the total
/// not reset (the download itself is closed by now).
fn assert_in_place_after_the_download(
    bed: &TestBed,
    agent: &mut Daemon,
    before: Before,
    mark: LogMark,
) {
    assert!(
        agent.is_running(),
        "the agent exited:\n{}",
        agent.log_tail(30)
    );
    assert!(restart_signs(&agent.log_since(mark)).is_empty());
    let counts = bed
        .agent_status()
        .ok()
        .and_then(|doc| ConnectionCounts::of(&doc));
    assert!(
        counts.is_some_and(|c| c.total >= before.counts.total),
        "the connection total was reset: {counts:?}, before {:?}",
        before.counts
    );
}

#[test]
#[ignore = "needs root and netns"]
fn unparsable_config_changes_nothing() {
    let (bed, mut agent, _conc, server, _cfg, download) = download_through_both(true);
    let before = Before::take(&bed, &agent);
    let state = bed.owned_state().expect("owned state");
    let mark = agent.log_mark();

    agent.rewrite_config(NOT_TOML).expect("config rewritten");
    agent.sighup().expect("SIGHUP sent");
    let file = agent
        .config_path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let complaint = |log: &str| -> Vec<String> {
        lines_at_level(log, "ERROR")
            .into_iter()
            .chain(lines_at_level(log, "WARN"))
            .filter(|l| l.contains(&file))
            .map(str::to_owned)
            .collect()
    };
    let said_why = proc::wait_until(LIMIT, || !complaint(&agent.log_since(mark)).is_empty());
    assert!(
        said_why,
        "no error or warning naming {file} after SIGHUP with a broken config:\n{}",
        agent.log_since(mark)
    );
    println!(
        "the agent says: {}",
        complaint(&agent.log_since(mark)).join("\n")
    );

    assert_in_place(&bed, &mut agent, before, mark, "broken config");
    let after = bed.owned_state().expect("owned state");
    assert_eq!(
        after, state,
        "the routing or nft state changed after a config that does not parse"
    );
    wait_configured(&bed, &agent, &[1, 2]);
    assert_intact(download, &server, &agent);
    assert_in_place_after_the_download(&bed, &mut agent, before, mark);
}

#[test]
#[ignore = "needs root and netns"]
fn log_level_changes_on_reload() {
    let (bed, mut agent, _conc, server, cfg, download) = download_through_both(false);
    assert!(
        lines_at_level(&agent.log(), "DEBUG").is_empty(),
        "debug lines before the reload (the default level should be info):\n{}",
        agent.log_tail(10)
    );
    // A second server: one short request to it after the reload makes a debug line
    // ("connection closed"). The WANs carry the download, so they are not probed.
    let side = SocketAddr::new(IpAddr::V4(SERVER_V4), common::PORT + 1);
    let _side_server = bed.serve(Node::Server, side, false).expect("side server");
    let before = Before::take(&bed, &agent);
    let mark = agent.log_mark();

    let text = format!("{}{LOG_LEVEL_DEBUG}", cfg.to_toml());
    agent.rewrite_config(&text).expect("config rewritten");
    agent.sighup().expect("SIGHUP sent");
    let reloaded = proc::wait_until(LIMIT, || agent.log_since(mark).contains("reload"));
    assert!(
        reloaded,
        "no reload line after SIGHUP:\n{}",
        agent.log_since(mark)
    );
    let request = bed
        .spawn_paced(Node::Lan, side, 1, Duration::from_millis(10), 1000, LIMIT)
        .expect("one request")
        .finish()
        .expect("its report");
    assert_eq!(
        request.ok, 1,
        "the side request failed: {:?}",
        request.first_error
    );
    let debug = proc::wait_until(LIMIT, || {
        !lines_at_level(&agent.log_since(mark), "DEBUG").is_empty()
    });
    assert!(
        debug,
        "no debug line after SIGHUP with {LOG_LEVEL_DEBUG:?} in the config:\n{}",
        agent.log_since(mark)
    );
    assert_in_place(&bed, &mut agent, before, mark, "log level raised");
    wait_configured(&bed, &agent, &[1, 2]);
    assert_intact(download, &server, &agent);
    assert_in_place_after_the_download(&bed, &mut agent, before, mark);
}
