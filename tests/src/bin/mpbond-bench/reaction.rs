//! Case 10, reaction: what the agent's reaction to a WAN its probes mark down does to a
//! running bulk download. Two WANs (40 + 60 Mbit/s), a download over both; 2 s in,
//! WAN 1's ISP drops everything (link up). The kernel moves the traffic to WAN 2 on its
//! own within a fraction of a second; seconds later the agent's probes mark WAN 1 down
//! and it reacts, as `[mptcp] down_reaction` says: `delete` its endpoint (closing its
//! subflows), flag it `backup` in place, or `keep` it (only new connections start
//! elsewhere). Reported for each: the longest stall after the black hole, the dips
//! (100 ms samples below half of WAN 2's rate), the longest stall and the goodput in
//! the second after the reaction (when the status says down). mpbond only: the peer
//! has no reaction.

use std::time::Duration;

use mpbond_tests::{proc, status_wan, Fetch, FetchReport, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::failover::{fetch_on_all_wans, MpbondBed};
use crate::household::server;
use crate::report::{Figure, Measurement};
use crate::stat::Steal;
use crate::timeline::{unix_ms_now, Timeline};

const CASE: &str = "10 reaction";
const RATES: [u32; 2] = [40, 60];
const CUT_AFTER: Duration = Duration::from_secs(2);
const REACTIONS: [&str; 3] = ["delete", "backup", "keep"];

/// One run's figures.
#[derive(Debug, Clone, Default)]
struct Outcome {
    stall_ms: f64,
    dips: f64,
    /// From the black hole to the status saying down.
    down_after_ms: f64,
    stall_after_reaction_ms: f64,
    mbit_after_reaction: f64,
    intact: bool,
}

/// Run case 10.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let mut figures = Vec::new();
    for reaction in REACTIONS {
        let steal = Steal::start();
        let mut runs = Vec::new();
        for _ in 0..ctx.runs() {
            runs.push(one(reaction, ctx.pick(9, 14))?);
        }
        let detail = format!(
            "runs: {:?}",
            runs.iter()
                .map(|o| format!(
                    "stall {:.0} dips {} down after {:.0} ms, then stall {:.0} ms and {:.1} Mbit/s, intact {}",
                    o.stall_ms, o.dips, o.down_after_ms, o.stall_after_reaction_ms,
                    o.mbit_after_reaction, o.intact
                ))
                .collect::<Vec<_>>()
        );
        let measured = Measurement {
            case: CASE,
            steal_pct: steal.percent(),
            detail,
        };
        let col = |f: fn(&Outcome) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
        let fig = |name: &str, values, unit| {
            measured.figure(format!("{reaction}: {name}"), values, unit, None)
        };
        figures.push(fig("longest stall", col(|o| o.stall_ms), "ms"));
        figures.push(fig("dips", col(|o| o.dips), "count"));
        figures.push(fig("marked down after", col(|o| o.down_after_ms), "ms"));
        figures.push(fig(
            "stall in the second after the reaction",
            col(|o| o.stall_after_reaction_ms),
            "ms",
        ));
        figures.push(fig(
            "goodput in the second after the reaction",
            col(|o| o.mbit_after_reaction),
            "Mbit/s",
        ));
        figures.push(fig(
            "download intact",
            col(|o| f64::from(u8::from(o.intact))),
            "fraction",
        ));
    }
    Ok(figures)
}

/// One download through a black hole of WAN 1 with `reaction`, `after` seconds of it
/// after the cut.
fn one(reaction: &str, after: u64) -> Result<Outcome, BenchError> {
    let mpbond = MpbondBed::start(&RATES, server(), CASE, |cfg| {
        cfg.down_reaction = Some(reaction.to_owned());
    })?;
    let bed = &mpbond.bed;
    let bytes = (u64::from(RATES[0] + RATES[1]) * 2 + u64::from(RATES[1]) * after) * 1_000_000 / 8;
    let fetch = Fetch::get(server(), bytes).timeout(Duration::from_secs(90));
    let run = fetch_on_all_wans(
        bed,
        &fetch,
        CUT_AFTER,
        CASE,
        "the download does not use both WANs",
    )?;
    let cut_at = unix_ms_now();
    bed.blackhole_wan(1, true)?;
    let down_at = watch_down(bed);
    let r: FetchReport = run.finish()?;
    bed.blackhole_wan(1, false)?;
    let t = Timeline::of(&r);
    let (cut, end) = (t.offset_of(cut_at), t.len_ms());
    let reacted = down_at.map(|at| t.offset_of(at));
    Ok(Outcome {
        stall_ms: t.longest_gap(cut, end).len_ms,
        dips: t.dips(cut, end, f64::from(RATES[1]) * 0.5).len() as f64,
        down_after_ms: down_at.map_or(f64::NAN, |at| at - cut_at),
        stall_after_reaction_ms: reacted.map_or(f64::NAN, |r| t.longest_gap(r, r + 1000.0).len_ms),
        mbit_after_reaction: reacted.map_or(f64::NAN, |r| t.mean_mbit(r, r + 1000.0)),
        intact: r.intact(),
    })
}

/// Poll the status until WAN 1 is down; the wall clock (ms) then, or `None` after 15 s.
fn watch_down(bed: &TestBed) -> Option<f64> {
    let down = proc::wait_until(Duration::from_secs(15), || {
        bed.agent_status().is_ok_and(|doc| {
            status_wan(&doc, "wan1")
                .and_then(|w| w.get("state"))
                .and_then(|s| s.as_str())
                == Some("down")
        })
    });
    down.then(unix_ms_now)
}
