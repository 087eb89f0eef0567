//! Case 17 (full mode only), congestion control of the concentrator's MPTCP sockets
//! (`[relay] congestion`, the downloads' sender): `reno` against `bbr`, on `dsl-lte`,
//! `three` and `bad-backup`, with the agent on its defaults (`[mptcp] congestion = "bbr"`
//! for the uploads) and owning the per-WAN routing as installed, fresh at each run (case
//! 13's mpbond way, so its path-quality decisions act). Every namespace of the bed runs
//! reno (cubic cannot be chosen in a child namespace), so the `reno` arm is what the
//! concentrator's default `system` gives there (docs/DESIGN.md, "Congestion control of our
//! MPTCP sockets").
//!
//! Per profile, interleaved runs (3 in both modes: the decision needs medians) of the two
//! arms, each with a fresh concentrator and agent: one download, one upload and 8
//! parallel downloads of ~5 s at Σ rates (not less: slow start would dominate).
//! Reported: medians in Mbit/s, ÷ Σ rates and the ratio bbr ÷ reno. A transfer that does
//! not finish within 60 s counts as bytes ÷ 60 s and is named in the detail. Case 13's
//! `MPBOND_BENCH_PROFILES`, `MPBOND_BENCH_DIAG` (`ss -tinM` halfway through each
//! download) and `MPBOND_BENCH_TBF_QUEUE_MS` apply here too.

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::profiles::Profile;
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{Fetch, Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::load::{parallel, transfer, LoadSpec};
use crate::report::{median, Figure, Measurement, Mode};
use crate::stat::Steal;

const CASE: &str = "17 congestion";
const PORT: u16 = 5151;
const PROFILES: [Profile; 3] = [Profile::DslLte, Profile::Three, Profile::BadBackup];
const ARMS: [&str; 2] = ["reno", "bbr"];
/// Runs of each arm, in both modes.
const RUNS: usize = 3;
/// Seconds of each transfer at Σ rates.
const SECS: f64 = 5.0;
/// When the diagnosis looks at the subflows, into the download.
const SECS_HALF: Duration = Duration::from_millis(2500);
/// Each transfer's bound.
const TIMEOUT: Duration = Duration::from_secs(60);

/// One run of one arm, Mbit/s.
#[derive(Debug, Clone, Copy)]
struct Run {
    down: f64,
    up: f64,
    down8: f64,
}

type Pick = fn(&Run) -> f64;

/// Run case 17 (full mode only: it is the measurement behind a default, not a check
/// that CI's short run needs).
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    if ctx.mode == Mode::Short {
        eprintln!("mpbond-bench: case 17 runs in full mode only");
        return Ok(Vec::new());
    }
    let mut figures = Vec::new();
    // MPBOND_BENCH_PROFILES (case 13's) narrows the profiles down.
    let wanted = crate::profiles::selected()?;
    for profile in PROFILES.into_iter().filter(|p| wanted.contains(p)) {
        figures.extend(one_profile(ctx, profile)?);
    }
    Ok(figures)
}

fn one_profile(_ctx: &Ctx, profile: Profile) -> Result<Vec<Figure>, BenchError> {
    let bed = TestBed::builder().profile(profile).try_build()?;
    let _links = bed.apply_profile(profile)?;
    crate::profiles::bound_queues_from_env(&bed, CASE)?;
    let server = SocketAddr::new(SERVER_V4.into(), PORT);
    let _server = bed.serve(Node::Server, server, false)?;
    let steal = Steal::start();
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let mut notes = Vec::new();
    for _ in 0..RUNS {
        for (k, arm) in ARMS.iter().enumerate() {
            let run = one_run(&bed, profile, server, arm, &mut notes)?;
            println!("  {profile} {arm}: {run:?}");
            runs[k].push(run);
        }
    }
    let sum = f64::from(profile.sum_rate_mbit());
    let m = Measurement {
        case: CASE,
        steal_pct: steal.percent(),
        detail: String::new(),
    };
    let mut out = Vec::new();
    let tests: [(&str, Pick); 3] = [
        ("download", |r| r.down),
        ("upload", |r| r.up),
        ("8 downloads", |r| r.down8),
    ];
    for (test, pick) in tests {
        let [reno, bbr] = [&runs[0], &runs[1]].map(|r| r.iter().map(pick).collect::<Vec<_>>());
        let mut detail = format!(
            "Mbit/s medians: reno {:.1}, bbr {:.1}; Σ rates {sum}",
            median(&reno),
            median(&bbr)
        );
        if !notes.is_empty() {
            detail.push_str("; ");
            detail.push_str(&notes.join("; "));
        }
        let m = Measurement {
            detail,
            ..m.clone()
        };
        for (arm, values) in ARMS.iter().zip([&reno, &bbr]) {
            out.push(m.figure(
                format!("{profile} {test}: {arm}"),
                values.clone(),
                "Mbit/s",
                None,
            ));
            out.push(m.figure(
                format!("{profile} {test}: {arm} / Σ rates"),
                values.iter().map(|v| v / sum).collect(),
                "ratio",
                None,
            ));
        }
        let ratio: Vec<f64> = bbr.iter().zip(&reno).map(|(b, r)| b / r).collect();
        out.push(m.figure(
            format!("{profile} {test}: bbr / reno"),
            ratio,
            "ratio",
            None,
        ));
    }
    Ok(out)
}

fn one_run(
    bed: &TestBed,
    profile: Profile,
    server: SocketAddr,
    arm: &str,
    notes: &mut Vec<String>,
) -> Result<Run, BenchError> {
    let mut conc_cfg = bed.concentrator_config();
    conc_cfg.congestion = Some(arm.into());
    let conc = bed.start_concentrator(&conc_cfg)?;
    let agent = crate::profiles::start_fresh_agent(bed, |_| {})?;
    let bytes = (f64::from(profile.sum_rate_mbit()) * 1e6 / 8.0 * SECS) as u64;
    let mut measure = |fetch: Fetch, what: &str| {
        let bound = fetch.bytes as f64 * 8.0 / TIMEOUT.as_secs_f64() / 1e6;
        match transfer(bed, Node::Lan, &fetch.timeout(TIMEOUT), &[], CASE) {
            Ok(m) => m.mbit,
            Err(e) => {
                notes.push(format!(
                    "{arm} {what} unfinished ({e}): counted ≤ {bound:.1}"
                ));
                bound
            }
        }
    };
    // MPBOND_BENCH_DIAG: the subflows (pacing and delivery rates) halfway through.
    let diag = std::env::var_os(crate::profiles::DIAG_ENV).is_some();
    let down = std::thread::scope(|s| {
        if diag {
            let label = format!("{profile} {arm} download");
            s.spawn(move || crate::profiles::ss_snapshot(bed, &label, SECS_HALF));
        }
        measure(Fetch::get(server, bytes), "download")
    });
    let up = measure(Fetch::put(server, bytes), "upload");
    let spec = LoadSpec {
        connect: server,
        conns: 8,
        secs: SECS,
        mptcp: false,
        rcvbuf: None,
    };
    let down8 = match parallel(bed, Node::Lan, &spec, &[], CASE) {
        Ok(m) => m.mbit,
        Err(e) => {
            notes.push(format!("{arm} 8 downloads failed ({e}): counted as 0"));
            0.0
        }
    };
    agent.stop(Duration::from_secs(5));
    crate::profiles::hand_back_routing(bed)?;
    conc.stop(Duration::from_secs(5));
    Ok(Run { down, up, down8 })
}
