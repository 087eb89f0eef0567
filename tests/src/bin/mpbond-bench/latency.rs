//! Case 21, `latency`: what a bulk TCP download through mpbond adds to a small real-time
//! stream's round trip (50 datagrams/s of 200 bytes, echoed), on 40 + 60 Mbit/s WANs
//! with 10 ms each way (issue 18 item 2). The stream runs bonded (its own MPTCP
//! connection) and protected (two legs, `[[udp.rule]] action = "protect"`, which is also
//! where `[udp] auto_protect` moves a flow classed real-time), interleaved run by run
//! against the same download, each against its own idle figure measured first.
//!
//! Each run measures four arms against the same download, interleaved: bonded and
//! protected with the agent's latency guard off (`[udp] latency_guard = false`, by a
//! reload), then both with it on (the default: while a protected flow is active, every
//! upstream connection's receive window is clamped to the paths' BDP + 10 ms,
//! `core::latency_guard`). Besides the stream's added p99 it reports the download's
//! goodput in each arm, guard on ÷ off, the price of the clamp. See docs/PERFORMANCE.md
//! case 21.
//!
//! A fifth arm, guard on, starts the download while the guard is not armed (no
//! protected flow for longer than the flows' idle timeout and the guard's hold), so it
//! opens wide (the agent's sized buffer or Fast Open) and fills the queues; the
//! protected call joins 2 s later. The clamp cannot reach that connection: the guard
//! paces its reads instead (`GuardView::pace`), and the queue drains once the
//! connection's receive buffer is full. So the call's first second (50 datagrams) is
//! reported on its own, and the added p99 after it (the same count as the other arms)
//! carries the target; against the protected guard-off arm, the download's goodput.

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{proc, AgentConfig, BedError, Daemon, Fetch, Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::report::{Figure, Measurement, Target};
use crate::stat::Steal;

const CASE: &str = "21 latency";
const RATES: [u32; 2] = [40, 60];
const PROTECTED: u16 = 3478;
const BONDED: u16 = 7007;
const FETCH_PORT: u16 = 5001;
const ONE_WAY_MS: u64 = 10;
/// The agent's `[udp] idle_timeout_secs` in this case: a finished stream's flow (and so
/// the guard's arming) ends soon, for the download-first arm.
const FLOW_IDLE_SECS: u64 = 5;

fn at(port: u16) -> SocketAddr {
    SocketAddr::new(SERVER_V4.into(), port)
}

/// The stream's p99 round trip to `port`, `count` datagrams.
fn p99(bed: &TestBed, port: u16, count: u32) -> Result<f64, BenchError> {
    Ok(bed.udp_echo(Node::Lan, at(port), count)?.rtt_p99_ms)
}

/// The `[udp]` body: the protect rule, and the guard on or off.
fn udp_config(guard: bool) -> String {
    format!(
        "latency_guard = {guard}\nidle_timeout_secs = {FLOW_IDLE_SECS}\n[[udp.rule]]\n\
         ports = \"{PROTECTED}\"\naction = \"protect\"\n"
    )
}

/// Reload the agent with the guard `on` and wait for its status to say so.
fn set_guard(
    bed: &TestBed,
    agent: &mut Daemon,
    cfg: &mut AgentConfig,
    on: bool,
) -> Result<(), BenchError> {
    cfg.udp = Some(udp_config(on));
    let failed = |e: BedError| BenchError::measure(CASE, e.to_string());
    agent.rewrite_config(&cfg.to_toml()).map_err(failed)?;
    agent.sighup().map_err(failed)?;
    let applied = proc::wait_until(Duration::from_secs(10), || {
        bed.agent_status()
            .is_ok_and(|s| s["latency_guard"]["enabled"] == on)
    });
    if !applied {
        return Err(BenchError::measure(
            CASE,
            format!("latency_guard = {on} not applied:\n{}", agent.log_tail(20)),
        ));
    }
    Ok(())
}

/// One arm's figures: the stream's added p99, the download's goodput.
#[derive(Debug, Default)]
struct Arm {
    added_p99: Vec<f64>,
    mbit: Vec<f64>,
}

/// Run the stream to `port` during a bulk download; (p99 added over `idle`, Mbit/s).
fn loaded(
    ctx: &Ctx,
    bed: &TestBed,
    port: u16,
    idle: f64,
    count: u32,
) -> Result<(f64, f64), BenchError> {
    let fetch = Fetch::get(at(FETCH_PORT), ctx.pick(60_000_000, 300_000_000))
        .timeout(Duration::from_secs(120));
    let download = bed.spawn_fetch(Node::Lan, &fetch)?;
    // The download's slow start is over (and its queue built) after a second.
    std::thread::sleep(Duration::from_secs(1));
    let p99 = p99(bed, port, count)?;
    let report = download.finish()?;
    Ok((p99 - idle, report.mbit_per_s))
}

/// Wait until the guard is not armed: no protected flow, the hold over.
fn wait_unarmed(bed: &TestBed, agent: &Daemon) -> Result<(), BenchError> {
    let unarmed = proc::wait_until(Duration::from_secs(60), || {
        bed.agent_status().is_ok_and(|s| {
            let g = &s["latency_guard"];
            g["protected_flows"] == 0 && g["clamp"].is_null()
        })
    });
    if !unarmed {
        return Err(BenchError::measure(
            CASE,
            format!("the latency guard stayed armed:\n{}", agent.log_tail(20)),
        ));
    }
    Ok(())
}

/// The download-first arm: the download opens with the guard not armed and fills the
/// queues for 2 s, then the protected call joins: its first second (50 datagrams,
/// while the download's buffer fills and the queue drains), then `count` datagrams.
fn download_first(
    ctx: &Ctx,
    bed: &TestBed,
    agent: &Daemon,
    idle: f64,
    count: u32,
) -> Result<First, BenchError> {
    wait_unarmed(bed, agent)?;
    let fetch = Fetch::get(at(FETCH_PORT), ctx.pick(100_000_000, 300_000_000))
        .timeout(Duration::from_secs(120));
    let download = bed.spawn_fetch(Node::Lan, &fetch)?;
    std::thread::sleep(Duration::from_secs(2));
    let opening = p99(bed, PROTECTED, 50)?;
    let after = p99(bed, PROTECTED, count)?;
    let pace = bed
        .agent_status()
        .map_or(0.0, |s| s["latency_guard"]["pace"].as_f64().unwrap_or(0.0));
    let report = download.finish()?;
    Ok(First {
        opening: opening - idle,
        added: after - idle,
        mbit: report.mbit_per_s,
        pace,
    })
}

/// One download-first arm's figures (see [`download_first`]).
struct First {
    /// p99 added in the call's first second.
    opening: f64,
    /// p99 added after it.
    added: f64,
    mbit: f64,
    /// The guard's pace after the stream, bytes/s (0: not paced, also when
    /// `MPBOND_GUARD_PACE=0` turned the pacing off: the status then shows none).
    pace: f64,
}

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let steal = Steal::start();
    // MPBOND_BENCH_FASTOPEN=0: a bed without TCP Fast Open, so both arms' downloads are
    // plain handshakes and the clamp alone is compared (the guard turns Fast Open off).
    let fast_open = std::env::var("MPBOND_BENCH_FASTOPEN").map_or(true, |v| v != "0");
    let bed = TestBed::builder()
        .wans(&RATES)
        .agent_routing(true)
        .fast_open(fast_open)
        .build();
    let _delays = bed.add_wan_delays(ONE_WAY_MS)?;
    let _protected_server = bed.udp_echo_server(Node::Server, at(PROTECTED))?;
    let _bonded_server = bed.udp_echo_server(Node::Server, at(BONDED))?;
    let _fetch_server = bed.serve(Node::Server, at(FETCH_PORT), false)?;
    let _conc = bed.start_concentrator(&bed.concentrator_config())?;
    let mut cfg = bed.agent_config();
    cfg.udp = Some(udp_config(true));
    let mut agent = bed.start_agent(&cfg)?;
    let up = proc::wait_until(Duration::from_secs(30), || {
        bed.agent_status().is_ok_and(|s| {
            s["wans"]
                .as_array()
                .is_some_and(|w| w.len() == RATES.len() && w.iter().all(|w| w["state"] == "up"))
        })
    });
    if !up {
        return Err(BenchError::measure(
            CASE,
            format!("WANs not up:\n{}", agent.log_tail(20)),
        ));
    }
    let idle_count: u32 = ctx.pick(200, 500);
    let loaded_count: u32 = ctx.pick(200, 750);
    let idle_bonded = p99(&bed, BONDED, idle_count)?;
    let idle_protected = p99(&bed, PROTECTED, idle_count)?;
    // [guard off, guard on] × [bonded, protected].
    let mut arms: [[Arm; 2]; 2] = Default::default();
    let mut clamps = Vec::new();
    let (mut first, mut paces, mut openings) = (Arm::default(), Vec::new(), Vec::new());
    for _ in 0..ctx.runs() {
        for (g, on) in [false, true].into_iter().enumerate() {
            set_guard(&bed, &mut agent, &mut cfg, on)?;
            for (k, (port, idle)) in [(BONDED, idle_bonded), (PROTECTED, idle_protected)]
                .into_iter()
                .enumerate()
            {
                let (added, mbit) = loaded(ctx, &bed, port, idle, loaded_count)?;
                arms[g][k].added_p99.push(added);
                arms[g][k].mbit.push(mbit);
                if on && port == PROTECTED {
                    let status = bed.agent_status().unwrap_or_default();
                    clamps.push(status["latency_guard"]["window"].as_f64().unwrap_or(0.0));
                }
            }
        }
        let arm = download_first(ctx, &bed, &agent, idle_protected, loaded_count)?;
        first.added_p99.push(arm.added);
        first.mbit.push(arm.mbit);
        paces.push(arm.pace);
        openings.push(arm.opening);
    }
    let [[off_b, off_p], [on_b, on_p]] = &arms;
    let ratio = |on: &Arm, off: &Arm| -> Vec<f64> {
        on.mbit.iter().zip(&off.mbit).map(|(a, b)| a / b).collect()
    };
    let m = Measurement {
        case: CASE,
        steal_pct: steal.percent(),
        detail: format!(
            "fast open {fast_open}; idle p99: bonded {idle_bonded:.1} ms, protected {idle_protected:.1} ms; added under \
             a bulk TCP download, guard off: bonded {:?}, protected {:?}; guard on: bonded \
             {:?}, protected {:?}; download Mbit/s off {:?}/{:?}, on {:?}/{:?} \
             (bonded/protected arm); guard window {:?} bytes; download first, guard on: \
             protected {:?} (the call's first second {:?}), download Mbit/s {:?}, pace {:?} \
             bytes/s",
            off_b.added_p99,
            off_p.added_p99,
            on_b.added_p99,
            on_p.added_p99,
            off_b.mbit,
            off_p.mbit,
            on_b.mbit,
            on_p.mbit,
            clamps,
            first.added_p99,
            openings,
            first.mbit,
            paces
        ),
    };
    Ok(vec![
        m.figure(
            "stream p99 added by a bulk TCP download, bonded".into(),
            on_b.added_p99.clone(),
            "ms",
            None,
        ),
        m.figure(
            "stream p99 added by a bulk TCP download, protected, latency guard off".into(),
            off_p.added_p99.clone(),
            "ms",
            None,
        ),
        m.figure(
            "stream p99 added by a bulk TCP download, protected".into(),
            on_p.added_p99.clone(),
            "ms",
            Some(Target::AtMost(30.0)),
        ),
        m.figure(
            "bulk download beside a protected stream, latency guard on ÷ off".into(),
            ratio(on_p, off_p),
            "ratio",
            Some(Target::AtLeast(0.95)),
        ),
        m.figure(
            "stream p99 added by a bulk TCP download already running, protected, \
             after the call's first second"
                .into(),
            first.added_p99.clone(),
            "ms",
            Some(Target::AtMost(30.0)),
        ),
        m.figure(
            "stream p99 added by a bulk TCP download already running, protected, \
             the call's first second"
                .into(),
            openings,
            "ms",
            None,
        ),
        m.figure(
            "bulk download already running, paced ÷ guard off".into(),
            ratio(&first, off_p),
            "ratio",
            None,
        ),
    ])
}
