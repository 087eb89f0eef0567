//! Case 16, path quality: what the agent's demotion of a WAN that hurts the bond
//! (`[path_quality]`, `core::path_quality`) does to goodput, on `bad-backup` and
//! `dsl-lte`, with the agent owning the per-WAN routing (its endpoints, so its
//! decisions act; case 13 uses the bed's static endpoints).
//!
//! Per profile, interleaved runs (3, `--short` 1) of two arms, control on and control off (`enabled =
//! false`), each with a fresh agent: a warm-up download of ~12 s at Σ rates (long enough
//! for a demotion, which needs 6 s of bad samples with traffic), then one download and
//! one upload of ~5 s at Σ rates, measured. Reported: medians of both arms in Mbit/s,
//! their ratio (on ÷ off), and how many runs ended with a WAN demoted. A transfer that
//! does not finish within 60 s counts as bytes ÷ 60 s and is named in the detail. Every WAN's
//! probe timeout is 1.5 s, above `bad-backup`'s 300 ms RTT.

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::profiles::Profile;
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{status_wan, Daemon, Fetch, Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::failover::start_default_agent_with;
use crate::load::transfer;
use crate::report::{median, Figure, Measurement};
use crate::stat::Steal;

const CASE: &str = "16 path quality";
const PORT: u16 = 5141;
const PROFILES: [Profile; 2] = [Profile::BadBackup, Profile::DslLte];
/// Each transfer's bound.
const TIMEOUT: Duration = Duration::from_secs(60);

/// One run of one arm.
#[derive(Debug, Clone, Copy)]
struct Run {
    warmup: f64,
    down: f64,
    up: f64,
    /// WANs demoted at the end of the warm-up.
    demoted: usize,
}

/// Which figure of a [`Run`] a test reports.
type Pick = fn(&Run) -> f64;

/// Run case 16.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let mut figures = Vec::new();
    for profile in PROFILES {
        figures.extend(one_profile(ctx, profile)?);
    }
    Ok(figures)
}

fn one_profile(ctx: &Ctx, profile: Profile) -> Result<Vec<Figure>, BenchError> {
    let bed = TestBed::builder()
        .profile(profile)
        .agent_routing(true)
        .try_build()?;
    let _links = bed.apply_profile(profile)?;
    let server = SocketAddr::new(SERVER_V4.into(), PORT);
    let _server = bed.serve(Node::Server, server, false)?;
    let _conc = bed.start_concentrator(&bed.concentrator_config())?;
    let steal = Steal::start();
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let mut notes = Vec::new();
    for _ in 0..ctx.pick(1, 3) {
        for control in [true, false] {
            let run = one_run(ctx, &bed, profile, server, control, &mut notes)?;
            println!(
                "  {profile} control {}: {run:?}",
                if control { "on" } else { "off" }
            );
            if control { &mut on } else { &mut off }.push(run);
        }
    }
    let m = Measurement {
        case: CASE,
        steal_pct: steal.percent(),
        detail: String::new(),
    };
    let mut out = Vec::new();
    let tests: [(&str, Pick); 3] = [
        ("warm-up download", |r| r.warmup),
        ("download", |r| r.down),
        ("upload", |r| r.up),
    ];
    for (test, pick) in tests {
        let a: Vec<f64> = on.iter().map(pick).collect();
        let b: Vec<f64> = off.iter().map(pick).collect();
        let mut detail = format!(
            "Mbit/s medians: control on {:.1}, off {:.1}; Σ rates {}",
            median(&a),
            median(&b),
            profile.sum_rate_mbit()
        );
        if !notes.is_empty() {
            detail.push_str("; ");
            detail.push_str(&notes.join("; "));
        }
        let m = Measurement {
            detail,
            ..m.clone()
        };
        out.push(m.figure(
            format!("{profile} {test}: control on"),
            a.clone(),
            "Mbit/s",
            None,
        ));
        out.push(m.figure(
            format!("{profile} {test}: control off"),
            b.clone(),
            "Mbit/s",
            None,
        ));
        let ratio: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x / y).collect();
        out.push(m.figure(format!("{profile} {test}: on / off"), ratio, "ratio", None));
    }
    let demoted = |runs: &[Run]| runs.iter().map(|r| r.demoted as f64).collect::<Vec<_>>();
    out.push(m.figure(
        format!("{profile}: WANs demoted, control on"),
        demoted(&on),
        "WANs",
        None,
    ));
    out.push(m.figure(
        format!("{profile}: WANs demoted, control off"),
        demoted(&off),
        "WANs",
        None,
    ));
    Ok(out)
}

fn one_run(
    ctx: &Ctx,
    bed: &TestBed,
    profile: Profile,
    server: SocketAddr,
    control: bool,
    notes: &mut Vec<String>,
) -> Result<Run, BenchError> {
    let agent: Daemon = start_default_agent_with(bed, CASE, |cfg| {
        for w in &mut cfg.wans {
            w.probe_timeout_ms = 1500;
        }
        cfg.path_quality = Some(format!("enabled = {control}"));
    })?;
    let rate = f64::from(profile.sum_rate_mbit()) * 1e6 / 8.0;
    let bytes = |secs: f64| (rate * secs) as u64;
    let arm = if control { "on" } else { "off" };
    // A transfer that does not finish in time counts as its bound (bytes ÷ timeout),
    // named in the detail: on a bad path that is the finding, not an error.
    let mut measure = |fetch: Fetch, what: &str| {
        let bound = fetch.bytes as f64 * 8.0 / TIMEOUT.as_secs_f64() / 1e6;
        match transfer(bed, Node::Lan, &fetch.timeout(TIMEOUT), &[], CASE) {
            Ok(m) => m.mbit,
            Err(e) => {
                notes.push(format!(
                    "control {arm} {what} unfinished ({e}): counted ≤ {bound:.1}"
                ));
                bound
            }
        }
    };
    let warmup = measure(Fetch::get(server, bytes(ctx.pick(12.0, 15.0))), "warm-up");
    let demoted = demoted_wans(bed);
    let down = measure(Fetch::get(server, bytes(5.0)), "download");
    let up = measure(Fetch::put(server, bytes(5.0)), "upload");
    agent.stop(Duration::from_secs(5));
    Ok(Run {
        warmup,
        down,
        up,
        demoted,
    })
}

/// How many WANs the status shows demoted.
fn demoted_wans(bed: &TestBed) -> usize {
    let Ok(doc) = bed.agent_status() else {
        return 0;
    };
    (1..=bed.wan_rates().len())
        .filter(|i| {
            status_wan(&doc, &format!("wan{i}"))
                .and_then(|w| w.get("quality"))
                .and_then(|q| q.as_str())
                == Some("demoted")
        })
        .count()
}
