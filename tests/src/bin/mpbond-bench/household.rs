//! Case 9, household: what a household sees through each WAN failure, mpbond and the
//! peer in the same run. On two WANs (40 + 60 Mbit/s) a bulk download runs and a new
//! small request (1 KB answer, its own connection) starts every 250 ms; 2 s in, one WAN
//! fails: a black hole of WAN 1 or WAN 2 in its ISP (link up), WAN 1's link down, or a
//! one-direction black hole of WAN 1 (upstream only; downstream only, where SYNs reach
//! the far end and SYN-ACKs are lost).
//!
//! Reported per failure and contender: failed requests (target 0), p99 and max request
//! time (target p99 ≤ 1.5 s), the time from the failure until every later request is
//! fast again (fast: ≤ 3 × the median before the failure, at least 50 ms), the
//! download's longest stall (target ≤ 0.5 s), its dips (runs of 100 ms samples below
//! half the surviving WAN's rate; target 1) and whether it arrived intact.
//!
//! `MPBOND_BENCH_FAILURES=1,4,5` runs only those failures (1-based, in the order of
//! [`FAILURES`]: WAN 1 black hole, WAN 2 black hole, WAN 1 link down, upstream-only,
//! downstream-only), to measure one of them alone.
//!
//! mpbond runs its control plane with the default probe settings
//! ([`crate::failover::MpbondBed`]); the peer (shadowsocks-rust) runs on the
//! bed's static per-WAN routing and endpoints: the kernel's MPTCP alone.

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::wire::TtfbReport;
use mpbond_tests::{Failure, Fetch, FetchReport, Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::failover::{fetch_on_all_wans, MpbondBed};
use crate::peer::{Method, Peer};
use crate::report::{Figure, Measurement, Target};
use crate::stat::Steal;
use crate::timeline::{unix_ms_now, Timeline};

const CASE: &str = "9 household";
const PORT: u16 = 5901;
const RATES: [u32; 2] = [40, 60];
/// When the failure comes, after the load starts.
const FAIL_AT: Duration = Duration::from_secs(2);
/// A new request this often.
const EVERY: Duration = Duration::from_millis(250);
/// The request time target (p99).
const MAX_P99_MS: f64 = 1500.0;
/// The download stall target.
const MAX_STALL_MS: f64 = 500.0;

/// The failures measured: which WAN, how.
const FAILURES: [(usize, Failure); 5] = [
    (1, Failure::Blackhole),
    (2, Failure::Blackhole),
    (1, Failure::LinkDown),
    (1, Failure::UpstreamOnly),
    (1, Failure::DownstreamOnly),
];

/// What one run through one failure measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub failed: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// From the failure until every later request was fast; NaN: never.
    pub fast_again_ms: f64,
    pub stall_ms: f64,
    pub dips: f64,
    pub intact: bool,
    /// Requests over 100 ms: (start after the failure, ms taken; NaN: failed).
    pub slow: Vec<(f64, f64)>,
    /// Offsets of the dips after the failure.
    pub dips_at: Vec<f64>,
    pub first_error: Option<String>,
}

/// Run case 9.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let seconds = ctx.pick(8u64, 15);
    let peer_missing = ctx.ss("sslocal").and_then(|_| ctx.ss("ssserver")).err();
    let mut figures = Vec::new();
    for (wan, failure) in chosen_failures() {
        let steal = Steal::start();
        let (mut ours, mut peers) = (Vec::new(), Vec::new());
        for _ in 0..ctx.runs() {
            {
                let mpbond = MpbondBed::start(&RATES, server(), CASE, |_| {})?;
                ours.push(through_failure(
                    &mpbond.bed,
                    wan,
                    failure,
                    seconds,
                    "mpbond",
                )?);
            }
            if peer_missing.is_none() {
                let bed = TestBed::builder().wans(&RATES).try_build()?;
                let _server = bed.serve(Node::Server, server(), false)?;
                let _peer = Peer::start(&bed, ctx, Method::Aes2022)?;
                peers.push(through_failure(&bed, wan, failure, seconds, "peer")?);
            }
        }
        let label = format!("wan{wan} {}", failure.name());
        figures.extend(figures_of(&label, &ours, &peers, steal.percent()));
    }
    if let Some(e) = peer_missing {
        for f in &mut figures {
            f.detail = format!("{}; peer not run: {e}", f.detail);
        }
    }
    Ok(figures)
}

/// [`FAILURES`], or those `MPBOND_BENCH_FAILURES` names (1-based positions).
fn chosen_failures() -> Vec<(usize, Failure)> {
    let Ok(list) = std::env::var("MPBOND_BENCH_FAILURES") else {
        return FAILURES.to_vec();
    };
    list.split(',')
        .filter_map(|n| n.trim().parse::<usize>().ok())
        .filter_map(|n| FAILURES.get(n.checked_sub(1)?).copied())
        .collect()
}

pub fn server() -> SocketAddr {
    SocketAddr::new(SERVER_V4.into(), PORT)
}

/// The download and the paced requests through failure `how` of WAN `wan`, for
/// `seconds` of load.
pub fn through_failure(
    bed: &TestBed,
    wan: usize,
    how: Failure,
    seconds: u64,
    who: &str,
) -> Result<Outcome, BenchError> {
    let survivors: u32 = RATES
        .iter()
        .enumerate()
        .filter(|(i, _)| i + 1 != wan)
        .map(|(_, r)| r)
        .sum();
    let bytes = u64::from(survivors) * (seconds + 2) * 1_000_000 / 8;
    let fetch = Fetch::get(server(), bytes).timeout(Duration::from_secs(90));
    let count = (Duration::from_secs(seconds).as_millis() / EVERY.as_millis()) as usize;
    let why = format!("{who}: the download does not use both WANs");
    // The paced requests start with the download; the failure comes FAIL_AT later.
    let requests = bed.spawn_paced(
        Node::Lan,
        server(),
        count,
        EVERY,
        1000,
        Duration::from_secs(10),
    )?;
    let requests_started = unix_ms_now();
    let download = fetch_on_all_wans(bed, &fetch, FAIL_AT, CASE, &why)?;
    // Installing the failure (nft or ip in the ISP's namespace) takes tens of ms: the
    // failure counts from when it is surely in place, and a request started while it
    // was being installed shows as starting a little before it.
    bed.fail_wan(wan, how, true)?;
    let failed_at = unix_ms_now();
    let paced = requests.finish()?;
    let fetched: FetchReport = download.finish()?;
    bed.fail_wan(wan, how, false)?;
    Ok(outcome(
        &paced,
        &fetched,
        failed_at - requests_started,
        failed_at,
        f64::from(survivors),
    ))
}

/// The figures of one run: `fail_ms` is the failure's offset on the requests' clock,
/// `failed_unix_ms` its wall clock, `survivors_mbit` what the other WANs carry.
fn outcome(
    paced: &TtfbReport,
    fetched: &FetchReport,
    fail_ms: f64,
    failed_unix_ms: f64,
    survivors_mbit: f64,
) -> Outcome {
    let before: Vec<f64> = paced
        .paced
        .iter()
        .filter(|p| p.start_ms < fail_ms)
        .filter_map(|p| p.done_ms)
        .collect();
    let before_median = crate::report::median(&before);
    let fast_ms = if before_median.is_nan() {
        50.0
    } else {
        (3.0 * before_median).max(50.0)
    };
    let timeline = Timeline::of(fetched);
    let from = timeline.offset_of(failed_unix_ms);
    let to = timeline.len_ms();
    let dips_at = timeline.dips(from, to, survivors_mbit * 0.5);
    let slow = paced
        .paced
        .iter()
        .filter(|p| p.done_ms.map_or(true, |d| d > 100.0))
        .map(|p| (p.start_ms - fail_ms, p.done_ms.unwrap_or(f64::NAN)))
        .collect();
    Outcome {
        failed: paced.failed as f64,
        p99_ms: paced.done_quantile(0.99),
        max_ms: paced.done_quantile(1.0),
        fast_again_ms: paced.fast_again_after(fail_ms, fast_ms).unwrap_or(f64::NAN),
        stall_ms: timeline.longest_gap(from, to).len_ms,
        dips: dips_at.len() as f64,
        intact: fetched.intact(),
        slow,
        dips_at: dips_at.iter().map(|d| d - from).collect(),
        first_error: paced.first_error.clone(),
    }
}

fn figures_of(label: &str, ours: &[Outcome], peers: &[Outcome], steal_pct: f64) -> Vec<Figure> {
    let col = |o: &[Outcome], f: fn(&Outcome) -> f64| o.iter().map(f).collect::<Vec<f64>>();
    let detail = format!(
        "mpbond {:?}; peer {:?}",
        ours.iter().map(short).collect::<Vec<_>>(),
        peers.iter().map(short).collect::<Vec<_>>()
    );
    let measured = Measurement {
        case: CASE,
        steal_pct,
        detail,
    };
    let mut out = Vec::new();
    for (who, runs, targets) in [("mpbond", ours, true), ("peer", peers, false)] {
        if runs.is_empty() {
            continue;
        }
        let t = |target: Target| targets.then_some(target);
        let fig = |name: &str, values, unit, target| {
            measured.figure(format!("{label}: {name}, {who}"), values, unit, target)
        };
        out.push(fig(
            "failed requests",
            col(runs, |o| o.failed),
            "count",
            t(Target::AtMost(0.0)),
        ));
        out.push(fig(
            "request p99",
            col(runs, |o| o.p99_ms),
            "ms",
            t(Target::AtMost(MAX_P99_MS)),
        ));
        out.push(fig("request max", col(runs, |o| o.max_ms), "ms", None));
        out.push(fig(
            "requests fast again after",
            col(runs, |o| o.fast_again_ms),
            "ms",
            None,
        ));
        out.push(fig(
            "download longest stall",
            col(runs, |o| o.stall_ms),
            "ms",
            t(Target::AtMost(MAX_STALL_MS)),
        ));
        out.push(fig(
            "download dips",
            col(runs, |o| o.dips),
            "count",
            t(Target::AtMost(1.0)),
        ));
        out.push(fig(
            "download intact",
            col(runs, |o| f64::from(u8::from(o.intact))),
            "fraction",
            t(Target::AtLeast(1.0)),
        ));
    }
    out
}

fn short(o: &Outcome) -> String {
    let slow: Vec<String> = o
        .slow
        .iter()
        .map(|(at, ms)| format!("{at:.0}:{ms:.0}"))
        .collect();
    let dips: Vec<String> = o.dips_at.iter().map(|d| format!("{d:.0}")).collect();
    format!(
        "failed {} p99 {:.0} max {:.0} fast-again {:.0} stall {:.0} dips {} at [{}] intact {}; \
         requests over 100 ms (start after the failure:ms) [{}]; first error {:?}",
        o.failed,
        o.p99_ms,
        o.max_ms,
        o.fast_again_ms,
        o.stall_ms,
        o.dips,
        dips.join(" "),
        o.intact,
        slow.join(" "),
        o.first_error
    )
}
