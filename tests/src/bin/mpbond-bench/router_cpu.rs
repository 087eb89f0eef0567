//! Case 19, router CPU per byte (issue 17): one checked download from the LAN through
//! mpbond (agent → MPTCP → concentrator), through the peer (sslocal → MPTCP → ssserver,
//! each encrypting method) and straight over kernel MPTCP from the router (no relay, the
//! goodput reference), on WANs shaped to 40 + 60 Mbit/s, to 200 + 300 Mbit/s, and
//! unshaped. Interleaved, the peer in the same run. Reported per rate:
//! * router-side CPU-s per GB: the agent against sslocal; target ≤ 0.5 × the peer's
//!   cheapest method;
//! * VPS-side CPU-s per GB: the concentrator against ssserver;
//! * mpbond's goodput ÷ direct kernel MPTCP (target ≥ 0.97);
//! * the router side's wake-ups (context switches, all threads) per MB;
//! * the router side's CPU while idle, in the [`IDLE_WINDOW`] after each download (the
//!   agent's background work: probes, samples, the control loop), and what that rate
//!   alone adds per GB over the download's duration;
//! * subflows per upstream connection during the mpbond download, sampled with `ss -M`
//!   in the router, and the WANs they leave through (target: one per WAN), on the bed's
//!   endpoints and, in a bed of its own, on the endpoints and limits the agent sets;
//! * the agent's descriptors per idle relayed connection (`fds`), against the baseline
//!   agent when one is given.
//!
//! CPU time is read from `/proc/PID/task/*/schedstat` (nanoseconds): a few seconds of a
//! relay are a handful of the clock ticks `/proc/PID/stat` counts in.
//!
//! With `MPBOND_BENCH_BASELINE=DIR` the agent in `DIR` (an older build: the "before" of a
//! change) runs as one more way, `mpbond baseline`, interleaved with the others, so a
//! change is measured against what it replaces in the same run.
//!
//! With `MPBOND_BENCH_CONGESTION=NAME` (`reno`, `bbr`, `system`) the concentrator of the
//! three shaped/unshaped beds sends with that congestion control instead of its default
//! (bbr; the bed's direct MPTCP and the peer use the namespaces' reno), to tell the
//! relays' cost from the congestion control's goodput.
//!
//! With `MPBOND_BENCH_STRACE=1` each router-side relay also runs one extra download with
//! `strace -c -f` attached, and the detail names its system calls per MB (strace slows
//! the process: those runs count calls, they time nothing, and their CPU is not reported).
//!
//! With `MPBOND_BENCH_PERF=1` each router-side relay likewise runs one extra download with
//! `perf record -e cpu-clock -F 4000 -g -p PID` attached, written next to the report as
//! `perf-RATE-WAY.data` (read it with `perf report -i FILE --children`); those runs time
//! nothing either.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use mpbond_tests::proc::{self, ChildGuard};
use mpbond_tests::topology::{SERVER_V4, VPS_V4};
use mpbond_tests::{Daemon, Fetch, Node, TestBed};

mod fds;

use crate::ctx::{BenchError, Ctx};
use crate::load::transfer;
use crate::peer::{Method, Peer, SERVER_PORT};
use crate::report::{median, Figure, Measurement, Target};
use crate::stat::Steal;

const CASE: &str = "19 router cpu";
const PORT: u16 = 5191;
/// The agent's router-side CPU per GB ÷ the peer's cheapest method must stay below this.
pub const TARGET_CPU_VS_PEER: f64 = 0.5;
/// mpbond's goodput ÷ direct kernel MPTCP must reach this.
pub const TARGET_VS_DIRECT: f64 = 0.97;
/// How long the router side's idle CPU is measured after each download.
const IDLE_WINDOW: Duration = Duration::from_secs(1);
/// The encrypting methods the peer runs; the cheapest is the reference.
const METHODS: [Method; 2] = [Method::Aes2022, Method::Chacha20];

/// A way through the bed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Way {
    Mpbond,
    /// The agent from `$MPBOND_BENCH_BASELINE`.
    Baseline,
    Direct,
    Peer(usize),
}

impl Way {
    fn all() -> Vec<Way> {
        let mut v = vec![Way::Mpbond];
        if baseline_dir().is_some() {
            v.push(Way::Baseline);
        }
        v.push(Way::Direct);
        v.extend((0..METHODS.len()).map(Way::Peer));
        v
    }
    fn name(self) -> String {
        match self {
            Way::Mpbond => "mpbond".into(),
            Way::Baseline => "mpbond baseline".into(),
            Way::Direct => "direct MPTCP".into(),
            Way::Peer(i) => format!("peer {}", METHODS[i].as_str()),
        }
    }
}

/// One download of one way.
#[derive(Debug, Clone, Default)]
struct Run {
    mbit: f64,
    router_cpu_per_gb: f64,
    vps_cpu_per_gb: f64,
    wakeups_per_mb: f64,
    /// The router side's CPU while idle after the download, ms per second.
    idle_ms_per_s: f64,
    /// What that idle rate alone adds over the download's duration, CPU-s per GB.
    background_per_gb: f64,
    /// Most subflows seen on one upstream connection, and their WANs.
    subflows: Option<(usize, String)>,
}

/// The directory of the baseline agent, if one is given.
fn baseline_dir() -> Option<std::ffi::OsString> {
    std::env::var_os("MPBOND_BENCH_BASELINE").filter(|d| !d.is_empty())
}

/// Start the agent from `dir` instead of the bed's binary directory.
fn start_agent_from(bed: &TestBed, dir: &std::ffi::OsStr) -> Result<Daemon, BenchError> {
    let ours = std::env::var_os("MPBOND_BIN_DIR");
    std::env::set_var("MPBOND_BIN_DIR", dir);
    let agent = bed.start_agent(&bed.agent_config());
    match ours {
        Some(d) => std::env::set_var("MPBOND_BIN_DIR", d),
        None => std::env::remove_var("MPBOND_BIN_DIR"),
    }
    Ok(agent?)
}

/// Run case 19.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let mut out = Vec::new();
    for (label, rates, short_mb, full_mb) in [
        ("100 Mbit/s", [40, 60], 30, 150),
        ("500 Mbit/s", [200, 300], 80, 400),
        ("unshaped", [0, 0], 150, 400),
    ] {
        out.extend(one_rate(
            ctx,
            label,
            &rates,
            ctx.pick(short_mb, full_mb) << 20,
        )?);
    }
    out.push(agent_endpoints(ctx)?);
    out.push(fds::figure()?);
    Ok(out)
}

/// Subflows per upstream connection with the agent's own endpoints and limits (the bed
/// routes nothing itself), one download per run at 40+60 Mbit/s.
fn agent_endpoints(ctx: &Ctx) -> Result<Figure, BenchError> {
    let bed = TestBed::builder()
        .wans(&[40, 60])
        .agent_routing(true)
        .try_build()?;
    let _server = bed.serve(Node::Server, SocketAddr::new(SERVER_V4.into(), PORT), false)?;
    let conc = bed.start_concentrator(&bed.concentrator_config())?;
    let agent = bed.start_agent(&bed.agent_config())?;
    let steal = Steal::start();
    let mut seen = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..ctx.runs() {
        let run = download(&bed, Way::Mpbond, 20 << 20, [agent.pid(), conc.pid()])?;
        seen.extend(run.subflows);
        idle.push(format!("{:.2}", run.idle_ms_per_s));
    }
    agent.stop(Duration::from_secs(5));
    let subflows = seen
        .iter()
        .map(|(n, wans)| format!("{n} ({wans})"))
        .collect::<Vec<_>>()
        .join(", ");
    // The agent here probes its WANs (mode on), as on a router: its idle rate after the
    // download is the one a household sees, where the shaped beds above (WANs in mode
    // off, no WAN probes) fall back to the concentrator probe (issue 17).
    let m = Measurement {
        case: CASE,
        steal_pct: steal.percent(),
        detail: format!(
            "{subflows}; idle ms/s after the download: {}",
            idle.join(", ")
        ),
    };
    Ok(m.figure(
        "40+60 Mbit/s, the agent's endpoints: subflows per upstream connection".into(),
        seen.iter().map(|s| s.0 as f64).collect(),
        "subflows",
        Some(Target::AtMost(2.0)),
    ))
}

fn one_rate(ctx: &Ctx, label: &str, rates: &[u32], bytes: u64) -> Result<Vec<Figure>, BenchError> {
    let bed = TestBed::builder().wans(rates).try_build()?;
    let _server = bed.serve(Node::Server, SocketAddr::new(SERVER_V4.into(), PORT), false)?;
    let _vps = bed.serve(Node::Vps, SocketAddr::new(VPS_V4.into(), PORT), true)?;
    let mut conc_cfg = bed.concentrator_config();
    conc_cfg.congestion = std::env::var("MPBOND_BENCH_CONGESTION")
        .ok()
        .filter(|c| !c.is_empty());
    let conc = bed.start_concentrator(&conc_cfg)?;
    let steal = Steal::start();
    let mut runs: BTreeMap<Way, Vec<Run>> = BTreeMap::new();
    let mut syscalls: BTreeMap<Way, String> = BTreeMap::new();
    let trace = std::env::var_os("MPBOND_BENCH_STRACE").is_some();
    let profile = std::env::var_os("MPBOND_BENCH_PERF").is_some_and(|v| v == "1");
    for round in 0..ctx.runs() {
        for way in Way::all() {
            let mut agent: Option<Daemon> = None;
            let mut peer = None;
            let pids: [u32; 2] = match way {
                Way::Mpbond => {
                    let a = bed.start_agent(&bed.agent_config())?;
                    let pids = [a.pid(), conc.pid()];
                    agent = Some(a);
                    pids
                }
                Way::Baseline => {
                    let dir = baseline_dir().unwrap_or_default();
                    let a = start_agent_from(&bed, &dir)?;
                    let pids = [a.pid(), conc.pid()];
                    agent = Some(a);
                    pids
                }
                Way::Peer(i) => {
                    let p = Peer::start(&bed, ctx, METHODS[i])?;
                    let pids = p.pids();
                    peer = Some(p);
                    pids
                }
                Way::Direct => [0, 0],
            };
            runs.entry(way)
                .or_default()
                .push(download(&bed, way, bytes, pids)?);
            if trace && round == 0 && way != Way::Direct {
                let out = ctx.out(&format!(
                    "strace-{}-{}.txt",
                    label.replace([' ', '/'], "-"),
                    way.name().replace(' ', "-")
                ));
                syscalls.insert(way, strace_download(&out, &bed, way, bytes, pids[0])?);
            }
            if profile && round == 0 && way != Way::Direct {
                let out = ctx.out(&format!(
                    "perf-{}-{}.data",
                    label.replace([' ', '/'], "-"),
                    way.name().replace(' ', "-")
                ));
                perf_download(&out, &bed, way, bytes, pids[0])?;
            }
            if let Some(a) = agent {
                a.stop(Duration::from_secs(5));
            }
            drop(peer);
        }
    }
    let m = Measurement {
        case: CASE,
        steal_pct: steal.percent(),
        detail: String::new(),
    };
    Ok(figures(&m, label, &runs, &syscalls))
}

/// The server address and socket family a way's download uses.
fn fetch_for(way: Way, bytes: u64) -> Fetch {
    let timeout = Duration::from_secs(120);
    match way {
        Way::Direct => Fetch::get(SocketAddr::new(VPS_V4.into(), PORT), bytes).mptcp(),
        _ => Fetch::get(SocketAddr::new(SERVER_V4.into(), PORT), bytes),
    }
    .timeout(timeout)
}

/// The upstream port a way's router side connects to on the VPS (`None`: no relay).
fn upstream_port(way: Way) -> Option<u16> {
    match way {
        Way::Mpbond | Way::Baseline => Some(mpbond_protocol::DEFAULT_PORT),
        Way::Peer(_) => Some(SERVER_PORT),
        Way::Direct => None,
    }
}

/// One download with the CPU of both relays, the router side's context switches and the
/// subflows of its upstream connection.
fn download(bed: &TestBed, way: Way, bytes: u64, pids: [u32; 2]) -> Result<Run, BenchError> {
    let fetch = fetch_for(way, bytes);
    let node = if way == Way::Direct {
        Node::Router
    } else {
        Node::Lan
    };
    let switches = context_switches(pids[0]);
    let (router, vps) = (cpu_ns(pids[0]), cpu_ns(pids[1]));
    let watch = upstream_port(way).map(|port| SubflowWatch::start(bed, port));
    let m = transfer(bed, node, &fetch, &[], CASE)?;
    let (router_s, vps_s) = (
        cpu_ns(pids[0]).saturating_sub(router) as f64 / 1e9,
        cpu_ns(pids[1]).saturating_sub(vps) as f64 / 1e9,
    );
    let subflows = watch.and_then(SubflowWatch::finish);
    let idle_ms_per_s = if way == Way::Direct {
        f64::NAN
    } else {
        let before = cpu_ns(pids[0]);
        std::thread::sleep(IDLE_WINDOW);
        cpu_ns(pids[0]).saturating_sub(before) as f64 / 1e6 / IDLE_WINDOW.as_secs_f64()
    };
    let secs = m.bytes as f64 * 8.0 / (m.mbit.max(0.001) * 1e6);
    let gb = m.bytes as f64 / 1e9;
    let mb = m.bytes as f64 / 1e6;
    let relayed = way != Way::Direct;
    let per = |v: f64, unit: f64| if relayed { v / unit } else { f64::NAN };
    Ok(Run {
        mbit: m.mbit,
        router_cpu_per_gb: per(router_s, gb),
        vps_cpu_per_gb: per(vps_s, gb),
        wakeups_per_mb: per(
            context_switches(pids[0]).saturating_sub(switches) as f64,
            mb,
        ),
        idle_ms_per_s,
        background_per_gb: per(idle_ms_per_s / 1e3 * secs, gb),
        subflows,
    })
}

/// Nanoseconds every thread of `pid` ran (`/proc/PID/task/*/schedstat`, first field): the
/// clock-tick counters of `/proc/PID/stat` are too coarse for a few seconds of a relay.
fn cpu_ns(pid: u32) -> u64 {
    per_task(pid, "schedstat", |s| {
        s.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// `parse` of file `name` of every thread of `pid`, summed (0 if it is gone).
fn per_task(pid: u32, name: &str, parse: fn(&str) -> u64) -> u64 {
    if pid == 0 {
        return 0;
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join(name)).ok())
        .map(|s| parse(&s))
        .sum()
}

/// Voluntary + involuntary context switches of every thread of `pid` (0 if it is gone).
fn context_switches(pid: u32) -> u64 {
    per_task(pid, "status", parse_switches)
}

/// `voluntary_ctxt_switches + nonvoluntary_ctxt_switches` from a `/proc/*/status` text.
fn parse_switches(status: &str) -> u64 {
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Samples the router's MPTCP connections to the upstream port during a download, in a
/// thread of its own: `ss -MniH` gives each connection's `subflows:N` (the joined ones;
/// absent when none), `ss -tnH` the local addresses of every TCP subflow.
struct SubflowWatch {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Option<(usize, String)>>,
}

impl SubflowWatch {
    fn start(bed: &TestBed, port: u16) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let netns = bed.netns(Node::Router).ok().map(|n| n.name().to_owned());
        let thread = std::thread::spawn(move || {
            let netns = netns?;
            let mut most: Option<(usize, String)> = None;
            let filter = format!("dst {VPS_V4}:{port}");
            let ss = |args: &[&str]| -> String {
                std::process::Command::new("ip")
                    .args(["netns", "exec", &netns, "ss"])
                    .args(args)
                    .args(["state", "established", &filter])
                    .stderr(Stdio::null())
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            };
            loop {
                let count = most_subflows(&ss(&["-MniH"]));
                if count > most.as_ref().map_or(0, |m| m.0) {
                    most = Some((count, subflow_wans(&ss(&["-tnH"]))));
                }
                match stopped.recv_timeout(Duration::from_millis(200)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return most,
                }
            }
        });
        Self { stop, thread }
    }

    fn finish(self) -> Option<(usize, String)> {
        let _ = self.stop.send(());
        self.thread.join().ok().flatten()
    }
}

/// From `ss -MniH` output: the most subflows one MPTCP connection has (`subflows:N` counts
/// the joined ones, so N + 1; 0 without a connection).
fn most_subflows(text: &str) -> usize {
    let mut most = 0;
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) && !line.trim().is_empty() {
            most = most.max(current.take().unwrap_or(0));
            current = Some(1);
        }
        if let Some(n) = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("subflows:"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            current = Some(n + 1);
        }
    }
    most.max(current.unwrap_or(0))
}

/// From `ss -tnH` output: the WANs the TCP subflows leave through, as "wan1+wan2".
fn subflow_wans(text: &str) -> String {
    let mut wans: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        // State-less `ss -H` columns: Recv-Q Send-Q Local Peer.
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(wan_of)
        .collect();
    wans.sort();
    wans.join("+")
}

/// `10.200.I.2:port` → `wanI`; anything else as it is.
fn wan_of(local: &str) -> String {
    let addr = local.rsplit_once(':').map_or(local, |(a, _)| a);
    match addr
        .strip_prefix("10.200.")
        .and_then(|r| r.split('.').next())
    {
        Some(i) => format!("wan{i}"),
        None => addr.to_owned(),
    }
}

/// One more download of `way` with `strace -c -f -p PID` on the router side; its calls
/// per MB, as "412 calls/MB: splice 200, epoll_wait 100, ...".
fn strace_download(
    out: &std::path::Path,
    bed: &TestBed,
    way: Way,
    bytes: u64,
    pid: u32,
) -> Result<String, BenchError> {
    let mut cmd = std::process::Command::new("strace");
    cmd.args(["-c", "-f", "-o"])
        .arg(out)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut strace = ChildGuard::spawn(cmd)?;
    // strace is attached once the target shows a tracer.
    let traced = proc::wait_until(Duration::from_secs(5), || tracer_of(pid) != 0);
    let m = transfer(bed, Node::Lan, &fetch_for(way, bytes), &[], CASE);
    strace.signal(libc::SIGINT);
    let _ = strace.wait_timeout(Duration::from_secs(10));
    let m = m?;
    if !traced {
        return Ok("strace did not attach".into());
    }
    let text = std::fs::read_to_string(out).unwrap_or_default();
    Ok(describe_strace(&text, m.bytes as f64 / 1e6))
}

/// One more download of `way` with `perf record` sampling the router side's CPU (every
/// thread, call graphs) into `out`. Timing nothing, it reports nothing.
fn perf_download(
    out: &std::path::Path,
    bed: &TestBed,
    way: Way,
    bytes: u64,
    pid: u32,
) -> Result<(), BenchError> {
    let mut cmd = std::process::Command::new("perf");
    cmd.args(["record", "-q", "-e", "cpu-clock", "-F", "4000", "-g", "-o"])
        .arg(out)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut perf = ChildGuard::spawn(cmd)?;
    // perf has no "attached" signal to wait for; its first samples come within
    // milliseconds, and a download's first ones missed change no share.
    let m = transfer(bed, Node::Lan, &fetch_for(way, bytes), &[], CASE);
    perf.signal(libc::SIGINT);
    let _ = perf.wait_timeout(Duration::from_secs(30));
    m?;
    Ok(())
}

/// `TracerPid` of `pid` (0: none).
fn tracer_of(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("TracerPid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The `strace -c` table as calls per MB: the total and the five most frequent.
fn describe_strace(text: &str, mb: f64) -> String {
    let mut calls: Vec<(u64, String)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // % time, seconds, usecs/call, calls, [errors], syscall
            let name = *f.last()?;
            let n: u64 = f.get(3)?.parse().ok()?;
            (name != "total" && f.len() >= 5).then(|| (n, name.to_owned()))
        })
        .collect();
    calls.sort_by_key(|c| std::cmp::Reverse(c.0));
    let total: u64 = calls.iter().map(|c| c.0).sum();
    let top: Vec<String> = calls
        .iter()
        .take(5)
        .map(|(n, name)| format!("{name} {:.0}", *n as f64 / mb))
        .collect();
    format!("{:.0} calls/MB: {}", total as f64 / mb, top.join(", "))
}

fn figures(
    m: &Measurement<'_>,
    label: &str,
    runs: &BTreeMap<Way, Vec<Run>>,
    syscalls: &BTreeMap<Way, String>,
) -> Vec<Figure> {
    let get = |way: Way, pick: fn(&Run) -> f64| -> Vec<f64> {
        runs.get(&way)
            .map(|r| r.iter().map(pick).collect())
            .unwrap_or_default()
    };
    let peers: Vec<Way> = (0..METHODS.len()).map(Way::Peer).collect();
    let cheapest = peers
        .iter()
        .copied()
        .min_by(|a, b| {
            median(&get(*a, |r| r.router_cpu_per_gb))
                .total_cmp(&median(&get(*b, |r| r.router_cpu_per_gb)))
        })
        .unwrap_or(Way::Peer(0));
    let ratio =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x / y).collect() };
    let summary = |pick: fn(&Run) -> f64, digits: usize| -> String {
        Way::all()
            .into_iter()
            .filter(|&w| w != Way::Direct)
            .map(|w| format!("{} {:.*}", w.name(), digits, median(&get(w, pick))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let with = |detail: String| Measurement {
        case: m.case,
        steal_pct: m.steal_pct,
        detail,
    };
    let mut out = Vec::new();
    let mp_router = get(Way::Mpbond, |r| r.router_cpu_per_gb);
    let mut detail = format!(
        "s/GB: {}; wake-ups/MB: {}",
        summary(|r| r.router_cpu_per_gb, 2),
        summary(|r| r.wakeups_per_mb, 1)
    );
    for (way, calls) in syscalls {
        detail.push_str(&format!("; {} {calls}", way.name()));
    }
    out.push(with(detail).figure(
        format!("{label}: agent / peer cheapest router CPU per GB"),
        ratio(&mp_router, &get(cheapest, |r| r.router_cpu_per_gb)),
        "ratio",
        Some(Target::AtMost(TARGET_CPU_VS_PEER)),
    ));
    out.push(
        with(format!(
            "s/GB: {}; idle ms/s after the download: {}; that idle rate over the download, s/GB: {}",
            summary(|r| r.router_cpu_per_gb, 2),
            summary(|r| r.idle_ms_per_s, 2),
            summary(|r| r.background_per_gb, 3)
        ))
        .figure(
            format!("{label}: agent CPU"),
            mp_router,
            "s/GB",
            None,
        ),
    );
    out.push(
        with(format!("s/GB: {}", summary(|r| r.vps_cpu_per_gb, 2))).figure(
            format!("{label}: concentrator CPU"),
            get(Way::Mpbond, |r| r.vps_cpu_per_gb),
            "s/GB",
            None,
        ),
    );
    if runs.contains_key(&Way::Baseline) {
        out.push(
            with(format!(
                "s/GB: mpbond {:.2}, baseline {:.2}; wake-ups/MB: mpbond {:.1}, baseline {:.1}",
                median(&get(Way::Mpbond, |r| r.router_cpu_per_gb)),
                median(&get(Way::Baseline, |r| r.router_cpu_per_gb)),
                median(&get(Way::Mpbond, |r| r.wakeups_per_mb)),
                median(&get(Way::Baseline, |r| r.wakeups_per_mb)),
            ))
            .figure(
                format!("{label}: agent / baseline agent router CPU per GB"),
                ratio(
                    &get(Way::Mpbond, |r| r.router_cpu_per_gb),
                    &get(Way::Baseline, |r| r.router_cpu_per_gb),
                ),
                "ratio",
                None,
            ),
        );
    }
    let mp_mbit = get(Way::Mpbond, |r| r.mbit);
    out.push(
        with(format!(
            "Mbit/s: mpbond {:.0}, direct {:.0}, {}",
            median(&mp_mbit),
            median(&get(Way::Direct, |r| r.mbit)),
            summary(|r| r.mbit, 0)
        ))
        .figure(
            format!("{label}: mpbond / direct MPTCP goodput"),
            ratio(&mp_mbit, &get(Way::Direct, |r| r.mbit)),
            "ratio",
            Some(Target::AtLeast(TARGET_VS_DIRECT)),
        ),
    );
    let subflows: Vec<(usize, String)> = runs
        .get(&Way::Mpbond)
        .map(|r| r.iter().filter_map(|x| x.subflows.clone()).collect())
        .unwrap_or_default();
    let peer_subflows: Vec<String> = peers
        .iter()
        .filter_map(|w| runs.get(w)?.first()?.subflows.clone())
        .map(|(n, wans)| format!("{n} ({wans})"))
        .collect();
    out.push(
        with(format!(
            "mpbond: {}; peer: {}",
            subflows
                .iter()
                .map(|(n, wans)| format!("{n} ({wans})"))
                .collect::<Vec<_>>()
                .join(", "),
            peer_subflows.join(", ")
        ))
        .figure(
            format!("{label}: mpbond subflows per upstream connection"),
            subflows.iter().map(|s| s.0 as f64).collect(),
            "subflows",
            Some(Target::AtMost(2.0)),
        ),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_sum_both_kinds() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_switches(status), 127);
        assert_eq!(parse_switches("Name:\tx\n"), 0);
    }

    #[test]
    fn subflows_per_connection_and_their_wans() {
        let mptcp = "0 0 10.200.1.2:40000 192.0.2.1:4850\n\
                     \t subflows:1 add_addr_accepted:0 subflows_max:4 remote_key token:5a1b\n\
                     0 0 10.200.1.2:40002 192.0.2.1:4850\n\
                     \t subflows_max:4 token:77aa\n";
        assert_eq!(most_subflows(mptcp), 2);
        assert_eq!(
            most_subflows("0 0 10.200.1.2:1 192.0.2.1:4850\n\t token:1\n"),
            1
        );
        assert_eq!(most_subflows(""), 0);
        let tcp = "0 0 10.200.2.2:40001 192.0.2.1:4850\n0 0 10.200.1.2:40000 192.0.2.1:4850\n";
        assert_eq!(subflow_wans(tcp), "wan1+wan2");
    }

    #[test]
    fn strace_table_becomes_calls_per_mb() {
        let text = "% time     seconds  usecs/call     calls    errors syscall\n\
                    ------ ----------- ----------- --------- --------- ----------------\n\
                     60.00    0.006000           3      2000       500 splice\n\
                     40.00    0.004000           4      1000           epoll_wait\n\
                    ------ ----------- ----------- --------- --------- ----------------\n\
                    100.00    0.010000           3      3000       500 total\n";
        assert_eq!(
            describe_strace(text, 10.0),
            "300 calls/MB: splice 200, epoll_wait 100"
        );
    }
}
