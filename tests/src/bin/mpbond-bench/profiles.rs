//! Case 13, link profiles: on every profile of issue 11
//! ([`mpbond_tests::profiles`]: `dsl-lte`, `starlink`, `bad-backup`, `three`),
//! in the same run and interleaved, each way across the WANs does
//! * one download and one upload (`mpbond-tb fetch`, checked),
//! * 8 parallel downloads (`mpbond-tb load`),
//! * small requests (1000 bytes, one every 100 ms, each on a new connection)
//!   during a bulk download: their 99th-percentile time to the last byte.
//!
//! The ways: mpbond (a fresh agent owning the per-WAN routing, as installed,
//! so its decisions act, with the tests starting at its READY: before any probe
//! has answered; what it decided is noted), direct kernel MPTCP from the
//! router to the VPS with the kernel's defaults (no LAN, no relay: no small
//! requests either), the peer (shadowsocks-rust over MPTCP), and plain TCP
//! from the LAN over each WAN alone (the router's NAT with a route to the
//! server through that WAN). Goodput is reported ÷ Σ rates and ÷ the best
//! single WAN of the same run and test, with the targets on mpbond:
//! ≥ 0.95 × best WAN everywhere, ≥ 0.9 × Σ on `dsl-lte` and `three`, ≥ the
//! peer and ≥ direct MPTCP. A transfer that fails counts as NaN (a missed
//! target) and is named in the detail; the case goes on.
//!
//! Each transfer carries 5 s (`--short`: 1.5 s) at the way's rate; the 8 downloads are
//! measured over as long after a 1-second warm-up; the small requests span 5 s
//! (`--short`: 1 s). `MPBOND_BENCH_SECS=S` sets the transfers' length, for a look at the
//! method.
//!
//! The full run (or any run whose `MPBOND_BENCH_WAYS` names `kernel`) adds mpbond
//! with `[mptcp] buffers = "kernel"` (autotuned
//! socket buffers instead of the agent's BDP sizing) as one more way, without
//! targets: the with/without comparison of docs/DESIGN.md. `MPBOND_BENCH_PROFILES`
//! (names, comma-separated) runs only those profiles, for an investigation.
//! `MPBOND_BENCH_DIAG=1` prints to stderr, per way, the kernel counters
//! (`nstat`) that moved in the router and the VPS, and an `ss -tinM`
//! snapshot of both halfway through the download. `MPBOND_BENCH_TBF_QUEUE_MS=N` bounds
//! the bed's TBF queues to N ms at each WAN's rate (`mpbond_tests::shaping`), for the
//! bed-fidelity comparison; with `MPBOND_BENCH_TBF_SMOOTH=1` also without bursts above
//! the rate. With `MPBOND_BENCH_DIAG` each single transfer also prints its 100 ms goodput
//! samples and each WAN's share of its bytes (the ramp against the steady rate), and
//! each small request's start and time to its last byte.
//!
//! For an A/B investigation: `MPBOND_BENCH_AB="vps:net.ipv4.tcp_wmem=4096 16384 8388608;
//! router:..."` adds the way "mpbond B", a fresh agent like mpbond's with these sysctls
//! set in those namespaces for its tests only (restored after), interleaved with the
//! others (`MPBOND_BENCH_AB_BIN=DIR` starts way B's agent from DIR instead, for an
//! old-against-new comparison; `MPBOND_BENCH_SYSCTL`, same form, sets them for every way,
//! before the concentrator starts);
//! `MPBOND_BENCH_CONC_CC=reno` runs the concentrator with that `[relay] congestion`,
//! `MPBOND_BENCH_AGENT_CC=reno` way B's agent with that `[mptcp] congestion`;
//! `MPBOND_BENCH_WAYS=mpbond,b` keeps only the named ways (`mpbond`, `b`,
//! `kernel`, `direct`, `peer`, `wan`), `MPBOND_BENCH_TESTS=download,upload,8,requests`
//! only the named tests (the others count as NaN).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::profiles::Profile;
use mpbond_tests::shaping::TbfShape;
use mpbond_tests::topology::{
    router_default_lines, wan_isp_v4, wan_router_v4, wan_router_v6, BED_ENDPOINT_V4,
    BED_ENDPOINT_V6, SERVER_V4, VPS_V4,
};
use mpbond_tests::{status_wan, AgentConfig, Daemon, Fetch, Node, TestBed, WanDelays};

use crate::ctx::{BenchError, Ctx};
use crate::failover::AGENT_PROBE;
use crate::load::{parallel, transfer, LoadSpec};
use crate::peer::{Method, Peer};
use crate::report::{median, Figure, Measurement, Target};
use crate::stat::Steal;

const CASE: &str = "13 profiles";
/// Comma-separated profile names: run only these (default: all).
const PROFILES_ENV: &str = "MPBOND_BENCH_PROFILES";
/// Set to N: N interleaved runs of every way instead of the mode's count, for medians
/// in an investigation; each run's figures are printed to stderr.
const RUNS_ENV: &str = "MPBOND_BENCH_RUNS";
/// Set to S: the transfers' length in seconds at Σ rates instead of the mode's
/// ([`SHORT_SECS`], [`FULL_SECS`]), for an investigation of the method.
const SECS_ENV: &str = "MPBOND_BENCH_SECS";
/// The transfers' length in short mode, seconds at Σ rates (and the 8 downloads'
/// measured interval, after their 1-second warm-up). One second measured mostly the
/// ramp of 60 ms lines (mpbond ÷ Σ moved by 0.05-0.11 from run to run, uploads trailed
/// direct MPTCP by 3-7 %); 2 s moved by ≤ 0.03 but added 92 s to the case, 1.5 s adds
/// 45 s (docs/PERFORMANCE.md, issue 11, round 16).
const SHORT_SECS: f64 = 1.5;
/// The transfers' length in full mode, seconds.
const FULL_SECS: f64 = 5.0;
/// The small requests' span (one every [`EVERY`]), seconds: short and full mode.
const REQUEST_SECS: (f64, f64) = (1.0, 5.0);
/// How long a WAN alone may take over a short-mode transfer before it counts as failed.
const SHORT_WAN_TIMEOUT: Duration = Duration::from_secs(9);
/// Set: print the diagnosis of every way to stderr.
pub(crate) const DIAG_ENV: &str = "MPBOND_BENCH_DIAG";
/// Set to N: bound the bed's TBF queues to N ms at each WAN's rate
/// ([`TestBed::bound_tbf_queues`]; default: the bed's `latency 25ms` + burst).
const TBF_QUEUE_ENV: &str = "MPBOND_BENCH_TBF_QUEUE_MS";
/// Set (with [`TBF_QUEUE_ENV`]): no bursts above the rate (`TbfShape::smooth`).
const TBF_SMOOTH_ENV: &str = "MPBOND_BENCH_TBF_SMOOTH";
/// `node:name=value;...`: the sysctls of the way "mpbond B".
const AB_ENV: &str = "MPBOND_BENCH_AB";
/// A directory with the agent binary of the way "mpbond B".
const AB_BIN_ENV: &str = "MPBOND_BENCH_AB_BIN";
/// `node:name=value;...`: sysctls set in the bed for every way.
const SYSCTL_ENV: &str = "MPBOND_BENCH_SYSCTL";
/// The `[mptcp] congestion` of way B's agent (`reno`, `bbr`, `system`; default: the
/// agent's own, `bbr` where offered).
const AGENT_CC_ENV: &str = "MPBOND_BENCH_AGENT_CC";
/// Comma-separated ways to keep (default: all).
const WAYS_ENV: &str = "MPBOND_BENCH_WAYS";
/// Comma-separated tests to run (default: all).
const TESTS_ENV: &str = "MPBOND_BENCH_TESTS";
/// The concentrator's `[relay] congestion` (`reno`, `bbr`, `system`) for every way
/// (default: the concentrator's own, `bbr` where offered).
const CONC_CC_ENV: &str = "MPBOND_BENCH_CONC_CC";
/// The counters the diagnosis prints when they moved (plus every `MPTcpExt`).
const DIAG_COUNTERS: [&str; 19] = [
    "TcpRetransSegs",
    "TcpExtTCPSynRetrans",
    "TcpExtListenOverflows",
    "TcpExtListenDrops",
    "TcpExtTCPLostRetransmit",
    "TcpExtTCPRcvQDrop",
    "TcpExtTCPOFODrop",
    "TcpExtTCPOFOQueue",
    "TcpExtTCPZeroWindowDrop",
    "TcpExtTCPToZeroWindowAdv",
    "TcpExtTCPWantZeroWindowAdv",
    "TcpExtTCPRcvCollapsed",
    "TcpExtPruneCalled",
    "TcpExtRcvPruned",
    "TcpExtTCPBacklogDrop",
    "TcpExtTCPTimeouts",
    "TcpExtTCPSpuriousRTOs",
    "TcpExtTCPLossProbes",
    "TcpExtTCPLossProbeRecovery",
];
const PORT: u16 = 5131;
/// One small request every this often during the bulk download.
const EVERY: Duration = Duration::from_millis(100);
/// mpbond ≥ this × the best single WAN, on every profile and test.
pub const TARGET_VS_BEST: f64 = 0.95;
/// mpbond ≥ this × Σ rates, on `dsl-lte` and `three`.
pub const TARGET_VS_SUM: f64 = 0.9;

/// A way across the WANs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Way {
    Mpbond,
    /// mpbond with `[mptcp] buffers = "kernel"`.
    MpbondKernelBuffers,
    /// mpbond with [`AB_ENV`]'s sysctls.
    MpbondB,
    Direct,
    Peer,
    /// Plain TCP over WAN `i` alone.
    Wan(usize),
}

impl Way {
    /// The word [`WAYS_ENV`] names it by.
    fn key(self) -> &'static str {
        match self {
            Way::Mpbond => "mpbond",
            Way::MpbondKernelBuffers => "kernel",
            Way::MpbondB => "b",
            Way::Direct => "direct",
            Way::Peer => "peer",
            Way::Wan(_) => "wan",
        }
    }

    fn name(self) -> String {
        match self {
            Way::Mpbond => "mpbond".into(),
            Way::MpbondKernelBuffers => "mpbond, kernel buffers".into(),
            Way::MpbondB => "mpbond B".into(),
            Way::Direct => "direct MPTCP".into(),
            Way::Peer => "peer".into(),
            Way::Wan(i) => format!("WAN {i} alone"),
        }
    }
}

/// One run of one way: goodputs in Mbit/s and the request p99 in ms (NaN: failed or n/a).
#[derive(Debug, Clone, Copy)]
struct Run {
    down: f64,
    up: f64,
    down8: f64,
    p99_ms: f64,
}

/// Which figure of a [`Run`] a test reports.
type Pick = fn(&Run) -> f64;

const TESTS: [(&str, Pick); 3] = [
    ("download", |r| r.down),
    ("upload", |r| r.up),
    ("8 downloads", |r| r.down8),
];

/// The runs of every way: [`RUNS_ENV`], else the mode's.
fn run_count(ctx: &Ctx) -> Result<usize, BenchError> {
    match std::env::var(RUNS_ENV) {
        Ok(n) => n
            .parse()
            .map_err(|_| BenchError::measure(CASE, format!("{RUNS_ENV}={n:?}: not a count"))),
        Err(_) => Ok(ctx.runs()),
    }
}

/// Run case 13.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let mut figures = Vec::new();
    for profile in selected()? {
        figures.extend(one_profile(ctx, profile)?);
    }
    Ok(figures)
}

/// Bound `bed`'s TBF queues as [`TBF_QUEUE_ENV`] says, if it is set.
pub(crate) fn bound_queues_from_env(bed: &TestBed, case: &'static str) -> Result<(), BenchError> {
    let Ok(text) = std::env::var(TBF_QUEUE_ENV) else {
        return Ok(());
    };
    let ms = text
        .trim()
        .parse::<u32>()
        .map_err(|e| BenchError::measure(case, format!("{TBF_QUEUE_ENV}: {e}")))?;
    let smooth = std::env::var_os(TBF_SMOOTH_ENV).is_some();
    eprintln!("mpbond-bench: TBF queues bounded to {ms} ms, smooth {smooth}");
    Ok(bed.reshape_tbf(TbfShape {
        queue_ms: ms,
        smooth,
    })?)
}

/// The profiles [`PROFILES_ENV`] names, or all of them.
pub(crate) fn selected() -> Result<Vec<Profile>, BenchError> {
    let Ok(names) = std::env::var(PROFILES_ENV) else {
        return Ok(Profile::ALL.to_vec());
    };
    names
        .split(',')
        .map(|name| {
            name.trim()
                .parse::<Profile>()
                .map_err(|e| BenchError::measure(CASE, format!("{PROFILES_ENV}: {e}")))
        })
        .collect()
}

fn one_profile(ctx: &Ctx, profile: Profile) -> Result<Vec<Figure>, BenchError> {
    let bed = TestBed::builder().profile(profile).try_build()?;
    let mut links = bed.apply_profile(profile)?;
    bound_queues_from_env(&bed, CASE)?;
    let server = SocketAddr::new(SERVER_V4.into(), PORT);
    let _server = bed.serve(Node::Server, server, false)?;
    let _vps = bed.serve(Node::Vps, SocketAddr::new(VPS_V4.into(), PORT), true)?;
    // Before the concentrator starts: its listener's sockets take some (the minimum RTO)
    // when they are created.
    for (node, name, value) in sysctls_from(SYSCTL_ENV)? {
        set_sysctl(&bed, node, &name, &value)?;
    }
    let mut conc_cfg = bed.concentrator_config();
    conc_cfg.congestion = std::env::var(CONC_CC_ENV).ok();
    let _conc = bed.start_concentrator(&conc_cfg)?;
    let peer_missing = ctx.ss("sslocal").and_then(|_| ctx.ss("ssserver")).is_err();
    let mut ways = vec![Way::Mpbond, Way::Direct, Way::Peer];
    // The full run, or any run whose WAYS_ENV names it, has the kernel-buffers way.
    let named =
        |key: &str| std::env::var(WAYS_ENV).is_ok_and(|w| w.split(',').any(|k| k.trim() == key));
    if ctx.pick(false, true) || named(Way::MpbondKernelBuffers.key()) {
        ways.push(Way::MpbondKernelBuffers);
    }
    ways.extend((1..=profile.links().len()).map(Way::Wan));
    let ab = sysctls_from(AB_ENV)?;
    if !ab.is_empty()
        || [AB_BIN_ENV, AGENT_CC_ENV]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
    {
        ways.insert(1, Way::MpbondB);
    }
    if let Ok(keep) = std::env::var(WAYS_ENV) {
        let keep: Vec<&str> = keep.split(',').map(str::trim).collect();
        ways.retain(|w| keep.contains(&w.key()));
    }
    let secs = match std::env::var(SECS_ENV) {
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0)
            .ok_or_else(|| {
                BenchError::measure(CASE, format!("{SECS_ENV}={text:?}: not seconds"))
            })?,
        Err(_) => ctx.pick(SHORT_SECS, FULL_SECS),
    };
    let steal = Steal::start();
    let mut runs: BTreeMap<Way, Vec<Run>> = BTreeMap::new();
    let mut notes = Vec::new();
    for _ in 0..run_count(ctx)? {
        for &way in &ways {
            let run = if way == Way::Peer && peer_missing {
                notes.push("peer: shadowsocks-rust not found".to_owned());
                Run::missing()
            } else {
                measure(ctx, &bed, profile, way, secs, &ab, &mut notes)?
            };
            if std::env::var_os(RUNS_ENV).is_some() {
                // Each run's figures, for the per-run ratios of an investigation.
                eprintln!(
                    "run {profile} {}: download {:.1} upload {:.1} 8 downloads {:.1} Mbit/s, \
                     request p99 {:.0} ms",
                    way.name(),
                    run.down,
                    run.up,
                    run.down8,
                    run.p99_ms
                );
            }
            runs.entry(way).or_default().push(run);
        }
    }
    let m = Measurement {
        case: CASE,
        steal_pct: steal.percent(),
        detail: String::new(),
    };
    let mut out = figures(&m, profile, &runs, &notes);
    out.push(link_figure(&m, profile, &mut links)?);
    Ok(out)
}

impl Run {
    fn missing() -> Self {
        Self {
            down: f64::NAN,
            up: f64::NAN,
            down8: f64::NAN,
            p99_ms: f64::NAN,
        }
    }
}

/// Set up `way`, run the four tests over it, and take it down again.
fn measure(
    ctx: &Ctx,
    bed: &TestBed,
    profile: Profile,
    way: Way,
    secs: f64,
    ab: &[(Node, String, String)],
    notes: &mut Vec<String>,
) -> Result<Run, BenchError> {
    let mut agent: Option<Daemon> = None;
    let mut peer = None;
    let mut restore = Vec::new();
    match way {
        Way::Mpbond => agent = Some(start_fresh_agent(bed, |_| {})?),
        Way::MpbondB => {
            for (node, name, value) in ab {
                let old = bed.exec(*node, &format!("sysctl -n {name}"))?;
                set_sysctl(bed, *node, name, value)?;
                restore.push((
                    *node,
                    name.clone(),
                    old.split_whitespace().collect::<Vec<_>>().join(" "),
                ));
            }
            // MPBOND_BENCH_AGENT_CC: way B's `[mptcp] congestion`.
            let cc = std::env::var(AGENT_CC_ENV).ok();
            let config = move |c: &mut AgentConfig| c.congestion = cc;
            agent = Some(match std::env::var_os(AB_BIN_ENV) {
                None => start_fresh_agent(bed, config)?,
                Some(dir) => {
                    // The bed starts daemons from MPBOND_BIN_DIR (set by main).
                    let ours = std::env::var_os("MPBOND_BIN_DIR");
                    std::env::set_var("MPBOND_BIN_DIR", dir);
                    let started = start_fresh_agent(bed, config);
                    match ours {
                        Some(ours) => std::env::set_var("MPBOND_BIN_DIR", ours),
                        None => std::env::remove_var("MPBOND_BIN_DIR"),
                    }
                    started?
                }
            });
        }
        Way::MpbondKernelBuffers => {
            agent = Some(start_fresh_agent(bed, |c| {
                c.buffers = Some("kernel".into())
            })?);
        }
        Way::Peer => peer = Some(Peer::start(bed, ctx, Method::Aes2022)?),
        Way::Wan(i) => route_to_server(bed, i, true)?,
        Way::Direct => {}
    }
    let diag = std::env::var_os(DIAG_ENV).is_some();
    let before = diag.then(|| counters(bed));
    let run = tests(ctx, bed, profile, way, secs, notes);
    if let Some(before) = before {
        print_counters(
            &format!("{profile} {}", way.name()),
            &before,
            &counters(bed),
        );
    }
    if let Some(a) = agent {
        notes.extend(decisions(bed, profile, way));
        a.stop(Duration::from_secs(5));
        hand_back_routing(bed)?;
    }
    drop(peer);
    if let Way::Wan(i) = way {
        route_to_server(bed, i, false)?;
    }
    for (node, name, value) in restore {
        set_sysctl(bed, node, &name, &value)?;
    }
    Ok(run)
}

/// [`AB_ENV`] or [`SYSCTL_ENV`]: `(node, name, value)` per sysctl (none when unset).
fn sysctls_from(env: &str) -> Result<Vec<(Node, String, String)>, BenchError> {
    let Ok(text) = std::env::var(env) else {
        return Ok(Vec::new());
    };
    let bad =
        |what: &str| BenchError::measure(CASE, format!("{env}: {what:?}: want node:name=value"));
    text.split(';')
        .filter(|t| !t.trim().is_empty())
        .map(|item| {
            let (node, rest) = item.trim().split_once(':').ok_or_else(|| bad(item))?;
            let (name, value) = rest.split_once('=').ok_or_else(|| bad(item))?;
            let node = match node {
                "router" => Node::Router,
                "vps" => Node::Vps,
                "lan" => Node::Lan,
                "server" => Node::Server,
                _ => return Err(bad(item)),
            };
            Ok((node, name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

/// `sysctl -w name=value` in `node` (the value may hold spaces).
fn set_sysctl(bed: &TestBed, node: Node, name: &str, value: &str) -> Result<(), BenchError> {
    bed.exec_args(node, &["sysctl", "-w", &format!("{name}={value}")], None)?;
    Ok(())
}

/// Whether [`TESTS_ENV`] keeps `test` (all when unset).
fn wanted(test: &str) -> bool {
    std::env::var(TESTS_ENV).map_or(true, |t| t.split(',').any(|w| w.trim() == test))
}

/// A fresh agent owning the per-WAN routing, as installed, so its decisions act (the
/// path-quality backup flag on its endpoints): the bed's static endpoints go, WANs 2.. get
/// their main-table default routes (where the agent finds a WAN's gateway), every WAN is
/// `on` with the agent's default probes ([`AGENT_PROBE`]). The tests start at READY,
/// before any probe has answered: the figures are a fresh agent's. `tweak` is applied to
/// the config last.
pub(crate) fn start_fresh_agent(
    bed: &TestBed,
    tweak: impl FnOnce(&mut AgentConfig),
) -> Result<Daemon, BenchError> {
    bed.exec(Node::Router, "ip mptcp endpoint flush")?;
    for i in 2..=bed.wan_rates().len() {
        for line in router_default_lines(i, wan_isp_v4(i)) {
            bed.exec(Node::Router, &format!("ip {line}"))?;
        }
    }
    let mut cfg = bed.agent_config();
    let (interval, timeout, down, up) = AGENT_PROBE;
    for w in &mut cfg.wans {
        w.mode = "on".into();
        (w.probe_interval_ms, w.probe_timeout_ms, w.down, w.up) = (interval, timeout, down, up);
    }
    tweak(&mut cfg);
    Ok(bed.start_agent(&cfg)?)
}

/// Undo [`start_fresh_agent`] once the agent has stopped (it removed its own endpoints,
/// rules and tables): the bed's static endpoints and limits back, the extra defaults gone.
pub(crate) fn hand_back_routing(bed: &TestBed) -> Result<(), BenchError> {
    for i in 1..=bed.wan_rates().len() {
        if i >= 2 {
            for line in router_default_lines(i, wan_isp_v4(i)) {
                let del = line.replacen("route replace", "route del", 1);
                bed.exec(Node::Router, &format!("ip {del}"))?;
            }
        }
        let v4 = (wan_router_v4(i).to_string(), BED_ENDPOINT_V4 + i);
        let v6 = (wan_router_v6(i).to_string(), BED_ENDPOINT_V6 + i);
        for (addr, id) in [v4, v6] {
            let cmd = format!("ip mptcp endpoint add {addr} dev wan{i} id {id} subflow");
            bed.exec(Node::Router, &cmd)?;
        }
    }
    bed.exec(
        Node::Router,
        "ip mptcp limits set subflows 8 add_addr_accepted 8",
    )?;
    Ok(())
}

/// What the agent decided of each WAN by the end of the tests (its status), as notes:
/// `bad-backup mpbond: wan1 good`, `bad-backup mpbond: wan2 demoted (first probes: rtt
/// 310 ms vs 16 ms)`.
fn decisions(bed: &TestBed, profile: Profile, way: Way) -> Vec<String> {
    let Ok(doc) = bed.agent_status() else {
        return vec![format!("{profile} {}: no status", way.name())];
    };
    (1..=bed.wan_rates().len())
        .filter_map(|i| {
            let name = format!("wan{i}");
            let wan = status_wan(&doc, &name)?;
            let quality = wan.get("quality")?.as_str()?;
            let reason = wan.get("quality_reason").and_then(|r| r.as_str());
            let why = reason.map(|r| format!(" ({r})")).unwrap_or_default();
            Some(format!("{profile} {}: {name} {quality}{why}", way.name()))
        })
        .collect()
}

/// The router's route to the server through WAN `i` alone (added or deleted).
fn route_to_server(bed: &TestBed, i: usize, add: bool) -> Result<(), BenchError> {
    let verb = if add { "add" } else { "del" };
    let cmd = format!(
        "ip route {verb} {SERVER_V4}/32 via {} dev wan{i}",
        wan_isp_v4(i)
    );
    bed.exec(Node::Router, &cmd)?;
    Ok(())
}

/// The four tests over `way`, each transfer `secs` long at the way's rate.
fn tests(
    ctx: &Ctx,
    bed: &TestBed,
    profile: Profile,
    way: Way,
    secs: f64,
    notes: &mut Vec<String>,
) -> Run {
    let rate = match way {
        Way::Wan(i) => profile.links()[i - 1].rate_mbit,
        _ => profile.sum_rate_mbit(),
    };
    let bytes = (f64::from(rate) * 1e6 / 8.0 * secs) as u64;
    let (node, dest, mptcp) = match way {
        Way::Direct => (Node::Router, VPS_V4, true),
        _ => (Node::Lan, SERVER_V4, false),
    };
    let dest = SocketAddr::new(dest.into(), PORT);
    // A lossy WAN alone runs reno at a few Mbit/s (Mathis: 1 % loss at 60 ms
    // is ~2.4 Mbit/s): it is cut off early and counts as failed, never as best.
    // In short mode its bound stays at 9 s, whatever `secs`: the bound, not the
    // lossy line, would otherwise set the case's length.
    let timeout = match way {
        Way::Wan(_) => ctx.pick(SHORT_WAN_TIMEOUT, Duration::from_secs_f64(4.0 * secs + 5.0)),
        _ => Duration::from_secs(ctx.pick(30, 60)),
    };
    let mut note = |what: &str, e: BenchError| {
        notes.push(format!("{} {what}: {e}", way.name()));
        f64::NAN
    };
    let diag = std::env::var_os(DIAG_ENV).is_some();
    let mut one = |fetch: Fetch, what: &str| {
        if !wanted(what) {
            return f64::NAN;
        }
        let fetch = if mptcp { fetch.mptcp() } else { fetch };
        let fetch = fetch.timeout(timeout);
        if diag {
            return match ramp(bed, node, &fetch) {
                Ok((mbit, line)) => {
                    eprintln!("diag {profile} {} {what}: {line}", way.name());
                    mbit
                }
                Err(e) => note(what, e),
            };
        }
        match transfer(bed, node, &fetch, &[], CASE) {
            Ok(m) => m.mbit,
            Err(e) => note(what, e),
        }
    };
    let down = std::thread::scope(|s| {
        if diag {
            let half = Duration::from_secs_f64(secs / 2.0);
            s.spawn(move || snapshot(bed, profile, way, half));
        }
        one(Fetch::get(dest, bytes), "download")
    });
    let up = one(Fetch::put(dest, bytes), "upload");
    let spec = LoadSpec {
        connect: dest,
        conns: 8,
        secs,
        mptcp,
        rcvbuf: None,
    };
    let down8 = match wanted("8").then(|| parallel(bed, node, &spec, &[], CASE)) {
        None => f64::NAN,
        Some(Ok(m)) => m.mbit,
        Some(Err(e)) => note("8 downloads", e),
    };
    let p99_ms = match way {
        // The router's own MPTCP client has no LAN requests to time.
        Way::Direct => f64::NAN,
        _ if !wanted("requests") => f64::NAN,
        _ => {
            // MPBOND_BENCH_DIAG: the counters that moved during the requests alone.
            let before = diag.then(|| counters(bed));
            let label = format!("{profile} {}", way.name());
            let span = ctx.pick(REQUEST_SECS.0, REQUEST_SECS.1);
            let p99 = match requests_under_bulk(bed, dest, bytes, span, timeout, &label) {
                Ok(p99) => p99,
                Err(e) => note("requests", e),
            };
            if let Some(before) = before {
                let label = format!("{profile} {} requests (p99 {p99:.0} ms)", way.name());
                print_counters(&label, &before, &counters(bed));
            }
            p99
        }
    };
    Run {
        down,
        up,
        down8,
        p99_ms,
    }
}

/// One checked transfer for the diagnosis: its goodput, and a line with its 100 ms
/// samples (Mbit/s), each WAN's share of its bytes and the goodput after the first
/// 500 ms (the ramp left out).
fn ramp(bed: &TestBed, node: Node, fetch: &Fetch) -> Result<(f64, String), BenchError> {
    let before = bed.all_wan_bytes();
    let r = bed.fetch(node, fetch)?;
    let delta = mpbond_tests::wan_delta(&before, &bed.all_wan_bytes());
    if !r.ok {
        let why = r.error.as_deref().unwrap_or("hash mismatch");
        return Err(BenchError::measure(
            CASE,
            format!("{} failed: {why}", r.mode),
        ));
    }
    let upload = fetch.mode == "put";
    let per_wan: Vec<u64> = delta
        .iter()
        .map(|&(rx, tx)| if upload { tx } else { rx })
        .collect();
    let total = per_wan.iter().sum::<u64>().max(1) as f64;
    let shares: Vec<String> = per_wan
        .iter()
        .map(|&b| format!("{:.0}", 100.0 * b as f64 / total))
        .collect();
    let skip = (500 / r.sample_ms.max(1)) as usize;
    let after: Vec<f64> = r.samples_mbit.iter().skip(skip).copied().collect();
    let steady = after.iter().sum::<f64>() / after.len().max(1) as f64;
    let samples: Vec<String> = r.samples_mbit.iter().map(|v| format!("{v:.0}")).collect();
    let line = format!(
        "{:.1} Mbit/s in {:.2} s; after 500 ms {steady:.1}; WAN shares % {}; samples {}",
        r.mbit_per_s,
        r.seconds,
        shares.join("/"),
        samples.join(" ")
    );
    Ok((r.mbit_per_s, line))
}

/// Small requests from the LAN while a bulk download runs; their p99 in ms
/// (a failed request counts as infinitely slow).
fn requests_under_bulk(
    bed: &TestBed,
    dest: SocketAddr,
    bytes: u64,
    secs: f64,
    timeout: Duration,
    label: &str,
) -> Result<f64, BenchError> {
    // Twice the test's bytes outlast the requests; it is killed after them.
    let bulk = bed.spawn_fetch(Node::Lan, &Fetch::get(dest, 2 * bytes).timeout(timeout))?;
    let count = (secs * 1000.0 / EVERY.as_millis() as f64).ceil() as usize;
    let paced = bed
        .spawn_paced(Node::Lan, dest, count, EVERY, 1000, Duration::from_secs(10))?
        .finish()?;
    drop(bulk);
    if std::env::var_os(DIAG_ENV).is_some() {
        // Each request's start and time to its last byte, ms: where the slow ones fall.
        let each: Vec<String> = paced
            .paced
            .iter()
            .map(|p| match p.done_ms {
                Some(d) => format!("{:.0}:{d:.0}", p.start_ms),
                None => format!("{:.0}:failed", p.start_ms),
            })
            .collect();
        eprintln!("diag {label} requests (start:done ms): {}", each.join(" "));
    }
    if paced.failed > 0 {
        return Ok(f64::INFINITY);
    }
    Ok(paced.done_quantile(0.99))
}

/// Per run: the best single WAN's value of `test`.
fn best_wan(runs: &BTreeMap<Way, Vec<Run>>, test: Pick, k: usize) -> f64 {
    runs.iter()
        .filter(|(w, _)| matches!(w, Way::Wan(_)))
        .filter_map(|(_, r)| r.get(k).map(test))
        .filter(|v| v.is_finite())
        .fold(f64::NAN, f64::max)
}

fn figures(
    m: &Measurement,
    profile: Profile,
    runs: &BTreeMap<Way, Vec<Run>>,
    notes: &[String],
) -> Vec<Figure> {
    let sum = f64::from(profile.sum_rate_mbit());
    let empty = Vec::new();
    let of = |w: Way| runs.get(&w).unwrap_or(&empty);
    let mut out = Vec::new();
    for (test, value) in TESTS {
        let absolute: Vec<String> = runs
            .iter()
            .map(|(w, r)| {
                let v: Vec<f64> = r.iter().map(value).collect();
                format!("{} {:.1}", w.name(), median(&v))
            })
            .collect();
        let mut detail = format!("Mbit/s (medians): {}", absolute.join(", "));
        if !notes.is_empty() {
            detail.push_str("; notes (failures, the agent's decisions): ");
            detail.push_str(&notes.join("; "));
        }
        let m = Measurement {
            detail,
            ..m.clone()
        };
        for way in [Way::Mpbond, Way::Direct, Way::Peer] {
            let of_sum: Vec<f64> = of(way).iter().map(|r| value(r) / sum).collect();
            let of_best: Vec<f64> = of(way)
                .iter()
                .enumerate()
                .map(|(k, r)| value(r) / best_wan(runs, value, k))
                .collect();
            let mpbond = way == Way::Mpbond;
            let sum_target = mpbond && matches!(profile, Profile::DslLte | Profile::Three);
            out.push(m.figure(
                format!("{profile} {test}: {} / Σ rates", way.name()),
                of_sum,
                "ratio",
                sum_target.then_some(Target::AtLeast(TARGET_VS_SUM)),
            ));
            out.push(m.figure(
                format!("{profile} {test}: {} / best WAN", way.name()),
                of_best,
                "ratio",
                mpbond.then_some(Target::AtLeast(TARGET_VS_BEST)),
            ));
        }
        for other in [Way::Peer, Way::Direct] {
            let ratios: Vec<f64> = of(Way::Mpbond)
                .iter()
                .zip(of(other))
                .map(|(a, b)| value(a) / value(b))
                .collect();
            out.push(m.figure(
                format!("{profile} {test}: mpbond / {}", other.name()),
                ratios,
                "ratio",
                Some(Target::AtLeast(1.0)),
            ));
        }
    }
    for (way, r) in runs {
        if *way == Way::Direct {
            continue;
        }
        let p99: Vec<f64> = r.iter().map(|r| r.p99_ms).collect();
        out.push(m.figure(
            format!("{profile} request p99 during a download: {}", way.name()),
            p99,
            "ms",
            None,
        ));
    }
    out
}

/// What the delay lines did: CPU per GB they carried, loss and outages per WAN.
fn link_figure(
    m: &Measurement,
    profile: Profile,
    links: &mut WanDelays,
) -> Result<Figure, BenchError> {
    let cpu = links.cpu_seconds();
    let mut bytes = 0u64;
    let mut per_wan = Vec::new();
    for line in links.lines_mut() {
        let s = line.stats()?;
        bytes += s.ab.bytes + s.ba.bytes;
        let pct = |lost: u64, of: u64| 100.0 * lost as f64 / of.max(1) as f64;
        per_wan.push(format!(
            "WAN {}: lost {:.2} % down / {:.2} % up, {} outage drops, {} GSO frames, seed {}",
            line.wan(),
            pct(s.ba.lost_segments, s.ba.segments),
            pct(s.ab.lost_segments, s.ab.segments),
            s.ab.outage_frames + s.ba.outage_frames,
            s.ab.gso_frames + s.ba.gso_frames,
            line.seed()
        ));
    }
    let m = Measurement {
        detail: per_wan.join("; "),
        ..m.clone()
    };
    Ok(m.figure(
        format!("{profile}: delay lines' CPU"),
        vec![cpu / (bytes.max(1) as f64 / 1e9)],
        "s/GB",
        None,
    ))
}

/// `nstat` of the router and the VPS: name → value.
fn counters(bed: &TestBed) -> BTreeMap<(Node, String), u64> {
    let mut out = BTreeMap::new();
    for node in [Node::Router, Node::Vps] {
        let Ok(text) = bed.exec(node, "nstat -asz") else {
            continue;
        };
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            if let (Some(name), Some(Ok(value))) = (fields.next(), fields.next().map(str::parse)) {
                out.insert((node, name.to_owned()), value);
            }
        }
    }
    out
}

/// The counters of interest that moved between `before` and `after`.
fn print_counters(
    label: &str,
    before: &BTreeMap<(Node, String), u64>,
    after: &BTreeMap<(Node, String), u64>,
) {
    for node in [Node::Router, Node::Vps] {
        let moved: Vec<String> = after
            .iter()
            .filter(|((n, name), _)| {
                *n == node
                    && (name.starts_with("MPTcpExt") || DIAG_COUNTERS.contains(&name.as_str()))
            })
            .filter_map(|(key, &value)| {
                let delta = value.saturating_sub(before.get(key).copied().unwrap_or(0));
                (delta > 0).then(|| format!("{}={delta}", key.1))
            })
            .collect();
        eprintln!("diag {label} {node:?} counters: {}", moved.join(" "));
    }
}

/// `ss -tinmM` (with socket memory) of the router and the VPS `after` into the download.
fn snapshot(bed: &TestBed, profile: Profile, way: Way, after: Duration) {
    ss_snapshot(bed, &format!("{profile} {}", way.name()), after);
}

/// `ss -tinmM` (with socket memory) of the router and the VPS `after` from now, labelled `label`.
pub(crate) fn ss_snapshot(bed: &TestBed, label: &str, after: Duration) {
    std::thread::sleep(after);
    for node in [Node::Router, Node::Vps] {
        let text = bed
            .exec(node, "ss -tinmMH")
            .unwrap_or_else(|e| e.to_string());
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        eprintln!("diag {label} {node:?} ss: {text}");
    }
}
