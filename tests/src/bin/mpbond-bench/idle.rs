//! Case 12, idle overhead: what watching the WANs costs while nothing else happens,
//! and how fast an idle WAN's blackhole is still seen.
//!
//! * The agent runs with its default health settings on two WANs (40 + 60 Mbit/s) and
//!   no LAN traffic at all. Over N seconds (short 30, full 180) the router's WAN
//!   interface counters (bytes and packets, both directions, Ethernet headers included,
//!   ARP and neighbour discovery too) are extrapolated to a day, per WAN, once with the
//!   default (unmetered) settings and once with a metered WAN's idle interval
//!   (`probe_idle_interval_ms = 20000`). The agent's own probe cost
//!   (`probe_bytes_per_day` in its status) is reported next to them.
//! * The concentrator's work per idle router: an nft counter in the VPS namespace counts
//!   the UDP datagrams and the TCP SYNs (new connections) that reach its port.
//! * Detection: after the idle measurement WAN 1's ISP black-holes it (both ways, then
//!   upstream only, then downstream only) and the agent's status is polled until WAN 1
//!   is `down` (the time is the detection time), then the ISP forwards again and the
//!   status is polled until it is `up` (the recovery time).
//!
//! `MPBOND_BENCH_BEFORE=1` measures an agent from before the probe datagrams (issue 16)
//! with its own defaults (probe every 1000 ms, no idle interval, no metered run), for
//! the "before" figures: `--bin-dir` names its binaries.

use std::time::{Duration, Instant};

use mpbond_tests::{proc, status_wan, Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::report::{Figure, Measurement, Target};
use crate::stat::Steal;

const CASE: &str = "12 idle overhead";
const RATES: [u32; 2] = [40, 60];
/// Budgets from issue 16: bytes a day per idle WAN.
const UNMETERED_MB_DAY: f64 = 5.0;
const METERED_MB_DAY: f64 = 1.0;
/// A metered WAN's idle probe interval (router-agent `METERED_IDLE_INTERVAL`).
const METERED_IDLE_MS: u64 = 20_000;
/// An idle WAN's blackhole must be down within this.
const DETECT_MS: f64 = 5000.0;
/// The concentrator's work per idle router: at most one datagram a second.
const DATAGRAMS_PER_S: f64 = 1.0;
/// nft table of the concentrator counters, in the VPS namespace.
const COUNTERS: &str = "mpbidle";
/// nft table of the one-direction blackholes, in ISP 1's namespace.
const ONE_WAY: &str = "mpbidleway";
const DAY: f64 = 86_400.0;

/// What one idle measurement gives.
#[derive(Debug, Clone)]
struct Idle {
    /// Per WAN: bytes and packets a day (both directions).
    bytes_day: Vec<f64>,
    packets_day: Vec<f64>,
    /// Per WAN: the agent's own probe cost, bytes a day.
    probe_day: Vec<f64>,
    datagrams_per_s: f64,
    syns_per_s: f64,
}

/// How WAN 1 goes dark.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Both,
    Upstream,
    Downstream,
}

impl Cut {
    const ALL: [Cut; 3] = [Cut::Both, Cut::Upstream, Cut::Downstream];

    fn name(self) -> &'static str {
        match self {
            Cut::Both => "blackhole",
            Cut::Upstream => "upstream-only blackhole",
            Cut::Downstream => "downstream-only blackhole",
        }
    }

    fn apply(self, bed: &TestBed, on: bool) -> Result<(), BenchError> {
        match self {
            Cut::Both => Ok(bed.blackhole_wan(1, on)?),
            Cut::Upstream | Cut::Downstream if !on => {
                bed.exec(Node::Isp(1), &format!("nft delete table inet {ONE_WAY}"))?;
                Ok(())
            }
            Cut::Upstream | Cut::Downstream => {
                let dir = if matches!(self, Cut::Upstream) {
                    "saddr"
                } else {
                    "daddr"
                };
                let addr = bed.wan_v4(1);
                let ruleset = format!(
                    "table inet {ONE_WAY} {{\n\tchain oneway {{\n\t\ttype filter hook forward priority -10; policy accept;\n\t\tip {dir} {addr} drop\n\t}}\n}}\n"
                );
                Ok(bed.nft(Node::Isp(1), &ruleset)?)
            }
        }
    }
}

/// Run case 12.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let secs = ctx.pick(30u64, 180);
    let mut figures = Vec::new();
    let kinds: &[bool] = if before() { &[false] } else { &[false, true] };
    for &metered in kinds {
        let steal = Steal::start();
        let mut runs = Vec::new();
        for _ in 0..ctx.runs() {
            runs.push(idle_run(metered, secs)?);
        }
        figures.extend(idle_figures(metered, secs, &runs, steal.percent()));
    }
    let steal = Steal::start();
    let mut errors = Vec::new();
    let mut detect: Vec<(Cut, Vec<f64>, Vec<f64>)> = Cut::ALL
        .iter()
        .map(|&c| (c, Vec::new(), Vec::new()))
        .collect();
    for _ in 0..ctx.runs() {
        let bed = bed()?;
        let _conc = bed.start_concentrator(&bed.concentrator_config())?;
        let _agent = start_agent(&bed, false)?;
        for (cut, found, back) in &mut detect {
            settle_idle();
            // A cut that is never seen is a figure (NaN, and the reason), not the end
            // of the case.
            let (d, r) = detect_run(&bed, *cut).unwrap_or_else(|e| {
                errors.push(e.to_string());
                (f64::NAN, f64::NAN)
            });
            found.push(d);
            back.push(r);
        }
    }
    let measured = Measurement {
        case: CASE,
        steal_pct: steal.percent(),
        detail: detect
            .iter()
            .map(|(c, d, r)| format!("{}: down after {d:?} ms, up again after {r:?} ms", c.name()))
            .chain(errors)
            .collect::<Vec<_>>()
            .join("; "),
    };
    for (cut, found, back) in detect {
        figures.push(measured.figure(
            format!("idle WAN {} detected: mpbond", cut.name()),
            found,
            "ms",
            Some(Target::AtMost(DETECT_MS)),
        ));
        figures.push(measured.figure(
            format!("idle WAN {} recovery seen: mpbond", cut.name()),
            back,
            "ms",
            None,
        ));
    }
    Ok(figures)
}

fn bed() -> Result<TestBed, BenchError> {
    Ok(TestBed::builder()
        .wans(&RATES)
        .agent_routing(true)
        .try_build()?)
}

/// The agent with its default settings (a metered WAN's idle interval if `metered`),
/// every WAN up.
fn start_agent(bed: &TestBed, metered: bool) -> Result<mpbond_tests::Daemon, BenchError> {
    let mut cfg = bed.agent_config();
    // The agent's defaults: [health] and ProbeSettings::default().
    (
        cfg.health_interval_ms,
        cfg.health_timeout_ms,
        cfg.down_after,
        cfg.up_after,
    ) = (1000, 1500, 2, 1);
    let interval = if before() { 1000 } else { 400 };
    for w in &mut cfg.wans {
        (w.probe_interval_ms, w.probe_timeout_ms, w.down, w.up) = (interval, 1000, 3, 2);
        w.probe_idle_interval_ms = metered.then_some(METERED_IDLE_MS);
    }
    let agent = bed.start_agent(&cfg)?;
    let up = proc::wait_until(Duration::from_secs(15), || {
        bed.agent_status()
            .is_ok_and(|doc| (1..=RATES.len()).all(|i| wan_state(&doc, i).as_deref() == Some("up")))
    });
    if !up {
        return Err(BenchError::measure(
            CASE,
            format!("the agent's WANs are not up:\n{}", agent.log_tail(20)),
        ));
    }
    Ok(agent)
}

/// Measuring an agent from before issue 16 (`MPBOND_BENCH_BEFORE=1`).
fn before() -> bool {
    std::env::var_os("MPBOND_BENCH_BEFORE").is_some_and(|v| v == "1")
}

/// Let the start-up probes end: the schedule of the experiment, not synchronisation.
fn settle_idle() {
    std::thread::sleep(Duration::from_secs(5));
}

fn wan_state(doc: &serde_json::Value, i: usize) -> Option<String> {
    status_wan(doc, &format!("wan{i}"))
        .and_then(|w| w.get("state"))
        .and_then(|s| s.as_str())
        .map(str::to_owned)
}

/// `(bytes, packets)` both ways of the router's `wan<i>`.
fn wan_counters(bed: &TestBed, i: usize) -> Result<(u64, u64), BenchError> {
    let read = |what: &str| -> Result<u64, BenchError> {
        let path = format!("/sys/class/net/wan{i}/statistics/{what}");
        let text = bed.exec(Node::Router, &format!("cat {path}"))?;
        text.trim()
            .parse()
            .map_err(|_| BenchError::measure(CASE, format!("{path}: {text:?}")))
    };
    Ok((
        read("rx_bytes")? + read("tx_bytes")?,
        read("rx_packets")? + read("tx_packets")?,
    ))
}

/// Count the UDP datagrams and TCP SYNs to the concentrator's port in the VPS.
fn install_counters(bed: &TestBed, port: u16) -> Result<(), BenchError> {
    let ruleset = format!(
        "table inet {COUNTERS} {{\n\tchain input {{\n\t\ttype filter hook input priority -5; policy accept;\n\
         \t\tudp dport {port} counter\n\t\ttcp dport {port} tcp flags & (syn | ack) == syn counter\n\t}}\n}}\n"
    );
    Ok(bed.nft(Node::Vps, &ruleset)?)
}

/// `(datagrams, syns)` counted so far.
fn read_counters(bed: &TestBed) -> Result<(u64, u64), BenchError> {
    let text = bed.exec(Node::Vps, &format!("nft list table inet {COUNTERS}"))?;
    let packets: Vec<u64> = text
        .split("counter packets ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    match packets[..] {
        [udp, syn] => Ok((udp, syn)),
        _ => Err(BenchError::measure(CASE, format!("nft counters: {text}"))),
    }
}

fn idle_run(metered: bool, secs: u64) -> Result<Idle, BenchError> {
    let bed = bed()?;
    let conc_cfg = bed.concentrator_config();
    let _conc = bed.start_concentrator(&conc_cfg)?;
    install_counters(&bed, mpbond_protocol::DEFAULT_PORT)?;
    let _agent = start_agent(&bed, metered)?;
    settle_idle();
    let wans = 1..=RATES.len();
    let before: Vec<(u64, u64)> = wans
        .clone()
        .map(|i| wan_counters(&bed, i))
        .collect::<Result<_, _>>()?;
    let (udp0, syn0) = read_counters(&bed)?;
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs)); // the measured idle interval
    let elapsed = start.elapsed().as_secs_f64();
    let after: Vec<(u64, u64)> = wans
        .clone()
        .map(|i| wan_counters(&bed, i))
        .collect::<Result<_, _>>()?;
    let (udp1, syn1) = read_counters(&bed)?;
    let doc = bed.agent_status()?;
    let per_day = |delta: u64| delta as f64 * DAY / elapsed;
    Ok(Idle {
        bytes_day: before
            .iter()
            .zip(&after)
            .map(|(b, a)| per_day(a.0 - b.0))
            .collect(),
        packets_day: before
            .iter()
            .zip(&after)
            .map(|(b, a)| per_day(a.1 - b.1))
            .collect(),
        probe_day: wans
            .map(|i| {
                status_wan(&doc, &format!("wan{i}"))
                    .and_then(|w| w.get("probe_bytes_per_day"))
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(f64::NAN)
            })
            .collect(),
        datagrams_per_s: (udp1 - udp0) as f64 / elapsed,
        syns_per_s: (syn1 - syn0) as f64 / elapsed,
    })
}

fn idle_figures(metered: bool, secs: u64, runs: &[Idle], steal_pct: f64) -> Vec<Figure> {
    let kind = if metered { "metered" } else { "unmetered" };
    let budget = if metered {
        METERED_MB_DAY
    } else {
        UNMETERED_MB_DAY
    };
    let mb = |x: f64| (x / 1e6 * 100.0).round() / 100.0;
    let detail = format!(
        "{secs} s idle, {} run(s); per run, per WAN: MB/day {:?}, packets/day {:?}, probe cost MB/day {:?}; concentrator datagrams/s {:?}, TCP SYNs/s {:?}",
        runs.len(),
        runs.iter().map(|r| r.bytes_day.iter().map(|&b| mb(b)).collect::<Vec<_>>()).collect::<Vec<_>>(),
        runs.iter().map(|r| r.packets_day.iter().map(|p| p.round()).collect::<Vec<_>>()).collect::<Vec<_>>(),
        runs.iter().map(|r| r.probe_day.iter().map(|&b| mb(b)).collect::<Vec<_>>()).collect::<Vec<_>>(),
        runs.iter().map(|r| (r.datagrams_per_s * 100.0).round() / 100.0).collect::<Vec<_>>(),
        runs.iter().map(|r| (r.syns_per_s * 100.0).round() / 100.0).collect::<Vec<_>>(),
    );
    let measured = Measurement {
        case: CASE,
        steal_pct,
        detail,
    };
    let mut out = Vec::new();
    for (w, _) in RATES.iter().enumerate() {
        out.push(measured.figure(
            format!("idle bytes a day, WAN {}, {kind}: mpbond", w + 1),
            runs.iter().map(|r| mb(r.bytes_day[w])).collect(),
            "MB/day",
            Some(Target::AtMost(budget)),
        ));
        out.push(measured.figure(
            format!("idle packets a day, WAN {}, {kind}: mpbond", w + 1),
            runs.iter().map(|r| r.packets_day[w].round()).collect(),
            "packets/day",
            None,
        ));
        out.push(measured.figure(
            format!("probe cost in the agent's status, WAN {}, {kind}", w + 1),
            runs.iter().map(|r| mb(r.probe_day[w])).collect(),
            "MB/day",
            None,
        ));
    }
    let rate = |f: fn(&Idle) -> f64| {
        runs.iter()
            .map(|r| (f(r) * 100.0).round() / 100.0)
            .collect()
    };
    out.push(measured.figure(
        format!("concentrator datagrams per idle router, {kind}"),
        rate(|r| r.datagrams_per_s),
        "per s",
        Some(Target::AtMost(DATAGRAMS_PER_S)),
    ));
    out.push(measured.figure(
        format!("concentrator TCP connections per idle router, {kind}"),
        rate(|r| r.syns_per_s),
        "per s",
        Some(Target::AtMost(0.1)),
    ));
    out
}

/// Cut WAN 1 the way `cut` says and time until the agent says `down`; then restore it
/// and time until `up`. Milliseconds, polled every 50 ms.
fn detect_run(bed: &TestBed, cut: Cut) -> Result<(f64, f64), BenchError> {
    let state = || bed.agent_status().ok().and_then(|doc| wan_state(&doc, 1));
    let poll = |want: &str| -> Result<f64, BenchError> {
        let start = Instant::now();
        let limit = Duration::from_secs(30);
        loop {
            if state().as_deref() == Some(want) {
                return Ok((start.elapsed().as_secs_f64() * 1000.0).round());
            }
            if start.elapsed() > limit {
                return Err(BenchError::measure(
                    CASE,
                    format!("{}: WAN 1 not {want} within {limit:?}", cut.name()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    cut.apply(bed, true)?;
    let found = poll("down");
    cut.apply(bed, false)?;
    let found = found?;
    let back = poll("up")?;
    // The agent's own word for what it saw (cause `probe` expected for an idle WAN).
    let cause = bed
        .agent_status()
        .ok()
        .and_then(|doc| {
            let change = status_wan(&doc, "wan1")?.get("last_change")?.clone();
            Some(change.to_string())
        })
        .unwrap_or_default();
    eprintln!(
        "  {}: down after {found} ms, up after {back} ms, last change {cause}",
        cut.name()
    );
    Ok((found, back))
}
