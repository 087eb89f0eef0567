//! Case 14, path quality: what the agent's demotion of a WAN that hurts the bond
//! (`[path_quality]`, `core::path_quality`) does to goodput, on `bad-backup` and
//! `dsl-lte`, with the agent owning the per-WAN routing (its endpoints, so its
//! decisions act; case 13 uses the bed's static endpoints).
//!
//! Per profile, interleaved runs of two arms, control on and control off (`enabled =
//! false`), each with a fresh agent: a warm-up download of ~12 s at Σ rates (long enough
//! for a demotion, which needs 6 s of bad samples with traffic), then one download and
//! one upload of ~5 s at Σ rates, measured. Reported: medians of both arms in Mbit/s,
//! their ratio (on ÷ off), and how many runs ended with a WAN demoted. Every WAN's
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

const CASE: &str = "14 path quality";
const PORT: u16 = 5141;
const PROFILES: [Profile; 2] = [Profile::BadBackup, Profile::DslLte];

/// One run of one arm.
#[derive(Debug, Clone, Copy)]
struct Run {
    warmup: f64,
    down: f64,
    up: f64,
    /// WANs demoted at the end of the warm-up.
    demoted: usize,
}

/// Run case 14.
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
    for _ in 0..ctx.pick(2, 5) {
        for control in [true, false] {
            let run = one_run(ctx, &bed, profile, server, control)?;
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
    let tests: [(&str, fn(&Run) -> f64); 3] = [
        ("warm-up download", |r| r.warmup),
        ("download", |r| r.down),
        ("upload", |r| r.up),
    ];
    for (test, pick) in tests {
        let a: Vec<f64> = on.iter().map(pick).collect();
        let b: Vec<f64> = off.iter().map(pick).collect();
        let detail = format!(
            "Mbit/s medians: control on {:.1}, off {:.1}; Σ rates {}",
            median(&a),
            median(&b),
            profile.sum_rate_mbit()
        );
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
) -> Result<Run, BenchError> {
    let agent: Daemon = start_default_agent_with(bed, CASE, |cfg| {
        for w in &mut cfg.wans {
            w.probe_timeout_ms = 1500;
        }
        cfg.path_quality = Some(format!("enabled = {control}"));
    })?;
    let rate = f64::from(profile.sum_rate_mbit()) * 1e6 / 8.0;
    let timeout = Duration::from_secs(90);
    let bytes = |secs: f64| (rate * secs) as u64;
    let get = |secs: f64| Fetch::get(server, bytes(secs)).timeout(timeout);
    let warmup = transfer(bed, Node::Lan, &get(ctx.pick(12.0, 15.0)), &[], CASE)?.mbit;
    let demoted = demoted_wans(bed);
    let down = transfer(bed, Node::Lan, &get(5.0), &[], CASE)?.mbit;
    let put = Fetch::put(server, bytes(5.0)).timeout(timeout);
    let up = transfer(bed, Node::Lan, &put, &[], CASE)?.mbit;
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
