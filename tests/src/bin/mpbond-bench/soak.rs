//! Case 11, soak (full mode only, or with `--soak-minutes N`): 30 minutes of random WAN
//! failures under a steady household load. Every 20–40 s one WAN fails in one of the
//! [`Failure`] ways for 5–15 s. All the while, downloads (60 MB each) follow one another
//! and a new small request starts every 250 ms. Reported: failed requests, broken
//! downloads, the agent's and the concentrator's RSS and open descriptors at the start
//! (after a first minute of load, so warm-up allocations count as the start) and at the
//! end, and whether the agent left any rule, route or endpoint behind after it stopped.
//! mpbond only.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mpbond_tests::datagen::random_seed;
use mpbond_tests::loadgen::{fd_count, rss_kib};
use mpbond_tests::{Failure, Fetch, Node};

use crate::ctx::{BenchError, Ctx};
use crate::failover::MpbondBed;
use crate::household::server;
use crate::report::{Figure, Measurement, Mode, Target};
use crate::stat::Steal;

const CASE: &str = "11 soak";
const RATES: [u32; 2] = [40, 60];
/// Load before the start figures are taken.
const WARM_UP: Duration = Duration::from_secs(60);
/// Requests per paced batch (one every 250 ms).
const BATCH: usize = 40;

/// Run case 11.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let minutes = match (ctx.soak_minutes, ctx.mode) {
        (Some(m), _) => m.max(2),
        (None, Mode::Full) => 30,
        (None, Mode::Short) => {
            eprintln!("mpbond-bench: case 11 runs in full mode or with --soak-minutes");
            return Ok(Vec::new());
        }
    };
    let steal = Steal::start();
    let mpbond = MpbondBed::start(&RATES, server(), CASE, |_| {})?;
    let bed = &mpbond.bed;
    let pids = [mpbond.agent.pid(), mpbond.conc.pid()];
    let deadline = Instant::now() + Duration::from_secs(minutes * 60);
    let stop = AtomicBool::new(false);
    let (failed, asked, broken, downloads) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let mut start_figures = None;
    let mut failures: Vec<String> = Vec::new();
    std::thread::scope(|scope| -> Result<(), BenchError> {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let fetch = Fetch::get(server(), 60_000_000).timeout(Duration::from_secs(120));
                let ok = bed.fetch(Node::Lan, &fetch).is_ok_and(|r| r.intact());
                downloads.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    broken.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let every = Duration::from_millis(250);
                let timeout = Duration::from_secs(10);
                let report = bed
                    .spawn_paced(Node::Lan, server(), BATCH, every, 1000, timeout)
                    .and_then(|run| run.finish());
                asked.fetch_add(BATCH, Ordering::Relaxed);
                let lost =
                    report.map_or(BATCH, |r| r.failed + BATCH.saturating_sub(r.ok + r.failed));
                failed.fetch_add(lost, Ordering::Relaxed);
            }
        });
        std::thread::sleep(WARM_UP); // the load's schedule
        start_figures = Some(pids.map(|p| (rss_kib(p), fd_count(p))));
        let mut rng = random_seed() | 1;
        let mut next = move |lo: u64, hi: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            lo + rng % (hi - lo + 1)
        };
        while Instant::now() + Duration::from_secs(60) < deadline {
            std::thread::sleep(Duration::from_secs(next(20, 40)));
            let wan = next(1, 2) as usize;
            let how = Failure::ALL[next(0, Failure::ALL.len() as u64 - 1) as usize];
            let result = bed.fail_wan(wan, how, true);
            let lasting = next(5, 15);
            std::thread::sleep(Duration::from_secs(lasting));
            bed.fail_wan(wan, how, false)?;
            result?;
            failures.push(format!("wan{wan} {} {lasting} s", how.name()));
        }
        if let Some(left) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(left);
        }
        stop.store(true, Ordering::Relaxed);
        Ok(())
    })?;
    let end = pids.map(|p| (rss_kib(p), fd_count(p)));
    mpbond.agent.stop(Duration::from_secs(10));
    let leftovers = bed
        .owned_state()
        .map(|s| if s.is_empty() { 0.0 } else { 1.0 })?;
    let start = start_figures.unwrap_or(end);
    let kib = |v: Option<u64>| v.map_or(f64::NAN, |k| k as f64);
    let fds = |v: Option<usize>| v.map_or(f64::NAN, |n| n as f64);
    let growth = |a: f64, b: f64| (b - a) / a * 100.0;
    let detail = format!(
        "{minutes} min, {} failures, {} downloads ({} broken), {} requests; \
         agent rss {:?} → {:?} KiB, fds {:?} → {:?}; concentrator rss {:?} → {:?} KiB, fds {:?} → {:?}; \
         failures: {}",
        failures.len(),
        downloads.load(Ordering::Relaxed),
        broken.load(Ordering::Relaxed),
        asked.load(Ordering::Relaxed),
        start[0].0,
        end[0].0,
        start[0].1,
        end[0].1,
        start[1].0,
        end[1].0,
        start[1].1,
        end[1].1,
        failures.join(", "),
    );
    let measured = Measurement {
        case: CASE,
        steal_pct: steal.percent(),
        detail,
    };
    let fig =
        |name: &str, v: f64, unit, target| measured.figure(name.to_owned(), vec![v], unit, target);
    let one_pct = Some(Target::AtMost(1.0));
    Ok(vec![
        fig(
            "failed requests",
            failed.load(Ordering::Relaxed) as f64,
            "count",
            Some(Target::AtMost(0.0)),
        ),
        fig(
            "broken downloads",
            broken.load(Ordering::Relaxed) as f64,
            "count",
            Some(Target::AtMost(0.0)),
        ),
        fig(
            "agent RSS growth",
            growth(kib(start[0].0), kib(end[0].0)),
            "%",
            one_pct,
        ),
        fig(
            "agent fd growth",
            growth(fds(start[0].1), fds(end[0].1)),
            "%",
            one_pct,
        ),
        fig(
            "concentrator RSS growth",
            growth(kib(start[1].0), kib(end[1].0)),
            "%",
            one_pct,
        ),
        fig(
            "concentrator fd growth",
            growth(fds(start[1].1), fds(end[1].1)),
            "%",
            one_pct,
        ),
        fig(
            "rules, routes or endpoints left after stop",
            leftovers,
            "bool",
            Some(Target::AtMost(0.0)),
        ),
    ])
}
