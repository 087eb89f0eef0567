//! Case 8, reload stall (issue 20): a bulk download from the internet server
//! to the LAN client over both WANs (40 + 60 Mbit/s, the agent's control
//! plane with its default probes), and mid-transfer one of two events:
//!
//! * **SIGHUP**: the agent is sent SIGHUP with its config unchanged, as
//!   `/etc/init.d/mpbond reload` (and procd's `interface.*` triggers) do;
//! * **WAN 1 down and up**: `ip link set wan1 down`, [`DOWN_FOR`] later `up`
//!   (addresses and default route restored), as netifd's ifdown/ifup do.
//!
//! The client samples what it receives every [`SAMPLE`]; the events are put
//! on that timeline by the wall clock ([`crate::timeline`]). Reported per
//! event: the longest gap without a received byte from the event to the end
//! (target ≤ 0.5 s: for WAN 1 down and up that is how long WAN 2's traffic
//! stalls), the goodput over the 2 s after that gap ÷ the 2 s before the
//! event (SIGHUP: no drop beyond the stall; WAN 1: after it is back, no
//! target, as it depends on how fast the new subflow ramps up), and whether
//! the data arrived intact (SHA-256).

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{Daemon, Fetch, FetchReport, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::failover::{fetch_on_all_wans, MpbondBed};
use crate::report::{Figure, Measurement, Target};
use crate::stat::Steal;
use crate::timeline::{unix_ms_now, Timeline};

const CASE: &str = "8 reload stall";
const PORT: u16 = 5801;
const RATES: [u32; 2] = [40, 60];
/// When the event comes, after the download starts (the 2 s before it are the baseline).
const EVENT_AFTER: Duration = Duration::from_secs(3);
/// How long WAN 1 stays down.
const DOWN_FOR: Duration = Duration::from_secs(2);
/// The goodput windows before the event and after the stall.
const WINDOW_MS: f64 = 2000.0;
/// The client's sample step: the stall's resolution.
const SAMPLE: Duration = Duration::from_millis(10);
/// The longest stall allowed.
pub const MAX_STALL_MS: f64 = 500.0;
/// Goodput after the stall ÷ before the event, at least (SIGHUP).
pub const MIN_AFTER_RATIO: f64 = 0.9;

/// What happens mid-transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Sighup,
    WanDownUp,
}

impl Event {
    const ALL: [Event; 2] = [Event::Sighup, Event::WanDownUp];

    fn name(self) -> &'static str {
        match self {
            Event::Sighup => "SIGHUP",
            Event::WanDownUp => "WAN 1 link down and up",
        }
    }
}

/// One download's result.
#[derive(Debug, Clone)]
struct Outcome {
    /// Longest gap from the event to the end, ms.
    stall_ms: f64,
    /// Longest gap in the baseline window before the event, ms.
    baseline_stall_ms: f64,
    /// Goodput over the window after the stall (after WAN 1 is back) ÷ before the event.
    after_ratio: f64,
    /// Goodput before the event, Mbit/s.
    before_mbit: f64,
    /// Goodput over the transfer's last window ÷ before the event (does a
    /// WAN that came back carry the running download again?).
    end_ratio: f64,
    intact: bool,
}

/// Run case 8.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    // 3 s before the event, then (short) 4 s or (full) 7 s at the full rate.
    let rate: u32 = RATES.iter().sum();
    let secs = EVENT_AFTER.as_secs() + ctx.pick(4, 7);
    let bytes = u64::from(rate) * secs * 1_000_000 / 8;
    let mut figures = Vec::new();
    for event in Event::ALL {
        let steal = Steal::start();
        let mut outcomes = Vec::new();
        for _ in 0..ctx.runs() {
            outcomes.push(measure(event, bytes + down_extra(event))?);
        }
        figures.extend(figures_of(event, &outcomes, steal.percent()));
    }
    Ok(figures)
}

/// The bytes WAN 1 would have carried while it was down.
fn down_extra(event: Event) -> u64 {
    match event {
        Event::Sighup => 0,
        Event::WanDownUp => u64::from(RATES[0]) * DOWN_FOR.as_secs() * 1_000_000 / 8,
    }
}

fn figures_of(event: Event, o: &[Outcome], steal_pct: f64) -> Vec<Figure> {
    let stalls: Vec<f64> = o.iter().map(|x| x.stall_ms.round()).collect();
    let ratios: Vec<f64> = o
        .iter()
        .map(|x| (x.after_ratio * 1000.0).round() / 1000.0)
        .collect();
    let intact: Vec<f64> = o.iter().map(|x| f64::from(u8::from(x.intact))).collect();
    let each = |f: fn(&Outcome) -> f64, scale: f64| -> Vec<f64> {
        o.iter().map(|x| (f(x) * scale).round() / scale).collect()
    };
    let detail = format!(
        "stalls ms {stalls:?} (before the event {:?}); goodput before {:?} Mbit/s, \
         after/before {ratios:?}, last 2 s/before {:?}; intact {}/{}",
        each(|x| x.baseline_stall_ms, 1.0),
        each(|x| x.before_mbit, 1.0),
        each(|x| x.end_ratio, 100.0),
        o.iter().filter(|x| x.intact).count(),
        o.len()
    );
    let measured = Measurement {
        case: CASE,
        steal_pct,
        detail,
    };
    let fig = |name, runs, unit, target| measured.figure(name, runs, unit, target);
    let (ratio_name, ratio_target) = match event {
        Event::Sighup => (
            "goodput 2 s after the stall ÷ 2 s before, SIGHUP",
            Some(Target::AtLeast(MIN_AFTER_RATIO)),
        ),
        Event::WanDownUp => (
            "goodput 2 s after WAN 1 is back ÷ 2 s before it went down",
            None,
        ),
    };
    vec![
        fig(
            format!("longest stall, {}", event.name()),
            stalls,
            "ms",
            Some(Target::AtMost(MAX_STALL_MS)),
        ),
        fig(ratio_name.into(), ratios, "ratio", ratio_target),
        fig(
            format!("download intact (sha256), {}", event.name()),
            intact,
            "fraction",
            Some(Target::AtLeast(1.0)),
        ),
    ]
}

fn server() -> SocketAddr {
    SocketAddr::new(SERVER_V4.into(), PORT)
}

/// One bed, one download, one event.
fn measure(event: Event, bytes: u64) -> Result<Outcome, BenchError> {
    let mut mpbond = MpbondBed::start(&RATES, server(), CASE, |_| {})?;
    let fetch = Fetch::get(server(), bytes)
        .sample_every(SAMPLE)
        .timeout(Duration::from_secs(90));
    let why = "the download does not use both WANs before the event";
    let run = fetch_on_all_wans(&mpbond.bed, &fetch, EVENT_AFTER, CASE, why)?;
    let (event_at, back_at) = apply(&mpbond.bed, &mut mpbond.agent, event)?;
    let r: FetchReport = run.finish()?;
    Ok(outcome(&r, event_at, back_at))
}

/// Carry out `event`; the wall-clock times it started and (for WAN 1) it ended.
fn apply(bed: &TestBed, agent: &mut Daemon, event: Event) -> Result<(f64, f64), BenchError> {
    match event {
        Event::Sighup => {
            let at = unix_ms_now();
            agent.sighup()?;
            Ok((at, at))
        }
        Event::WanDownUp => {
            let at = unix_ms_now();
            bed.set_link(1, false)?;
            std::thread::sleep(DOWN_FOR); // the schedule of the experiment
            let back = unix_ms_now();
            bed.set_link(1, true)?;
            Ok((at, back))
        }
    }
}

/// The figures of one download whose event started at `event_unix_ms` and
/// whose effect ended at `back_unix_ms` (the same for SIGHUP).
fn outcome(r: &FetchReport, event_unix_ms: f64, back_unix_ms: f64) -> Outcome {
    let t = Timeline::of(r);
    let (event, back) = (t.offset_of(event_unix_ms), t.offset_of(back_unix_ms));
    let end = t.len_ms() + 1.0;
    let stall = t.longest_gap(event, end);
    let before = t.mean_mbit(event - WINDOW_MS, event);
    // After the stall if it came after the event's end, else after the end.
    let from = stall.end_ms().max(back);
    let after = t.mean_mbit(from, from + WINDOW_MS);
    Outcome {
        stall_ms: stall.len_ms,
        baseline_stall_ms: t.longest_gap(event - WINDOW_MS, event).len_ms,
        after_ratio: after / before,
        before_mbit: before,
        end_ratio: t.mean_mbit(t.len_ms() - WINDOW_MS, t.len_ms()) / before,
        intact: r.intact(),
    }
}
