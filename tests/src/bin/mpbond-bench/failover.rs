//! Case 5, failover: a long download from the internet server to the LAN
//! client over both WANs (40 + 60 Mbit/s), and 2 s in, WAN 1 dies: its link
//! goes down (`ip link set wan1 down`), or, separately, its ISP silently
//! drops everything while the link stays up. Reported for mpbond and the
//! peer: the longest stall (`mpbond-tb fetch` measures the longest gap
//! between received bytes; it also samples them every 100 ms) and whether the
//! data arrived intact (SHA-256 of the stream).
//!
//! mpbond runs with the agent's control plane (`agent_routing(true)`) and its
//! default probe settings ([`AGENT_PROBE`]), so the figure is what a default
//! install does. The peer runs on the bed's static per-WAN routing and
//! endpoints: it has only the kernel's MPTCP to fail over with.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{
    proc, status_wan, AgentConfig, BedError, Daemon, Fetch, FetchReport, FetchRun, Node, TbServer,
    TestBed,
};

use crate::ctx::{BenchError, Ctx};
use crate::peer::{Method, Peer};
use crate::report::{median, Figure, Measurement, Target};
use crate::stat::Steal;

const CASE: &str = "5 failover";
const PORT: u16 = 5501;
const RATES: [u32; 2] = [40, 60];
/// The WAN that dies.
const VICTIM: usize = 1;
/// When it dies, after the download starts.
const CUT_AFTER: Duration = Duration::from_secs(2);
/// The longest stall allowed, and mpbond must also not stall longer than the peer.
pub const MAX_STALL_MS: f64 = 500.0;
/// The agent's default per-WAN probe settings (router-agent `ProbeSettings`
/// and `[health]` defaults): interval (while suspicious), timeout (ms), down and
/// up counts. The idle interval is left to the agent's default (3 s).
pub const AGENT_PROBE: (u64, u64, u32, u32) = (400, 1000, 3, 2);

/// How WAN 1 dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    LinkDown,
    Blackhole,
}

impl Cut {
    const ALL: [Cut; 2] = [Cut::LinkDown, Cut::Blackhole];
    fn name(self) -> &'static str {
        match self {
            Cut::LinkDown => "link down",
            Cut::Blackhole => "ISP black hole",
        }
    }
    fn apply(self, bed: &TestBed) -> Result<(), BedError> {
        match self {
            Cut::LinkDown => bed.set_link(VICTIM, false),
            Cut::Blackhole => bed.blackhole_wan(VICTIM, true),
        }
    }
}

/// One download's result.
#[derive(Debug, Clone)]
struct Outcome {
    stall_ms: f64,
    intact: bool,
}

/// Run case 5.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    // Short: ~5 s in all; full: ~10 s. 2 s on both WANs, the rest on WAN 2.
    let after = ctx.pick(3u64, 8);
    let bytes = (u64::from(RATES[0] + RATES[1]) * 2 + u64::from(RATES[1]) * after) * 1_000_000 / 8;
    // Without shadowsocks-rust the peer's figures are left out, the rest still runs.
    let peer_missing = ctx.ss("sslocal").and_then(|_| ctx.ss("ssserver")).err();
    let mut figures = Vec::new();
    for cut in Cut::ALL {
        let steal = Steal::start();
        let (mut ours, mut peers) = (Vec::new(), Vec::new());
        for _ in 0..ctx.runs() {
            ours.push(mpbond_run(cut, bytes)?);
            if peer_missing.is_none() {
                peers.push(peer_run(ctx, cut, bytes)?);
            }
        }
        figures.extend(figures_of(cut, &ours, &peers, steal.percent()));
    }
    if let Some(e) = peer_missing {
        for f in &mut figures {
            f.detail = format!("{}; peer not run: {e}", f.detail);
        }
    }
    Ok(figures)
}

fn figures_of(cut: Cut, ours: &[Outcome], peers: &[Outcome], steal_pct: f64) -> Vec<Figure> {
    let stalls = |o: &[Outcome]| o.iter().map(|x| x.stall_ms.round()).collect::<Vec<_>>();
    let intact = |o: &[Outcome]| o.iter().filter(|x| x.intact).count();
    let (mine, theirs) = (stalls(ours), stalls(peers));
    // NaN (no peer run) leaves the 500 ms bound alone.
    let peer_median = median(&theirs);
    let detail = format!(
        "stalls ms: mpbond {mine:?}, peer {theirs:?}; sha256 intact: mpbond {}/{}, peer {}/{}",
        intact(ours),
        ours.len(),
        intact(peers),
        peers.len()
    );
    let measured = Measurement {
        case: CASE,
        steal_pct,
        detail,
    };
    let fig = |name, runs, unit, target| measured.figure(name, runs, unit, target);
    let all_intact = |o: &[Outcome]| o.iter().map(|x| f64::from(u8::from(x.intact))).collect();
    let mut out = vec![
        fig(
            format!(
                "longest stall, {}: mpbond (≤ 500 ms and ≤ peer)",
                cut.name()
            ),
            mine,
            "ms",
            Some(Target::AtMost(MAX_STALL_MS.min(peer_median))),
        ),
        fig(
            format!("download intact (sha256), {}: mpbond", cut.name()),
            all_intact(ours),
            "fraction",
            Some(Target::AtLeast(1.0)),
        ),
    ];
    if !peers.is_empty() {
        out.push(fig(
            format!("longest stall, {}: peer", cut.name()),
            theirs,
            "ms",
            None,
        ));
        out.push(fig(
            format!("download intact (sha256), {}: peer", cut.name()),
            all_intact(peers),
            "fraction",
            None,
        ));
    }
    out
}

/// mpbond: agent routing, the agent's default probes, a download, the cut.
fn mpbond_run(cut: Cut, bytes: u64) -> Result<Outcome, BenchError> {
    let mpbond = MpbondBed::start(&RATES, server(), CASE, |_| {})?;
    download_and_cut(&mpbond.bed, cut, bytes, "mpbond")
}

/// Start the agent with its default probe settings ([`AGENT_PROBE`]) and `tweak` applied
/// to the config last, and wait until every WAN of `bed` is up in its status.
pub fn start_default_agent_with(
    bed: &TestBed,
    case: &'static str,
    tweak: impl FnOnce(&mut AgentConfig),
) -> Result<Daemon, BenchError> {
    let mut cfg = bed.agent_config();
    (
        cfg.health_interval_ms,
        cfg.health_timeout_ms,
        cfg.down_after,
        cfg.up_after,
    ) = (1000, 1500, 2, 1);
    let (interval, timeout, down, up) = AGENT_PROBE;
    for w in &mut cfg.wans {
        (w.probe_interval_ms, w.probe_timeout_ms, w.down, w.up) = (interval, timeout, down, up);
    }
    tweak(&mut cfg);
    let agent = bed.start_agent(&cfg)?;
    let up_in_time = proc::wait_until(Duration::from_secs(15), || {
        bed.agent_status().is_ok_and(|doc| {
            (1..=bed.wan_rates().len()).all(|i| {
                status_wan(&doc, &format!("wan{i}"))
                    .and_then(|w| w.get("state"))
                    .and_then(|s| s.as_str())
                    == Some("up")
            })
        })
    });
    if !up_in_time {
        return Err(BenchError::measure(
            case,
            format!("the agent's WANs are not up:\n{}", agent.log_tail(20)),
        ));
    }
    Ok(agent)
}

/// mpbond on a bed of its own with agent routing: the internet server, the concentrator
/// and the agent with its default probes ([`start_default_agent_with`]). The fields drop
/// in the order the processes stop: agent, concentrator, server, then the bed.
pub struct MpbondBed {
    pub agent: Daemon,
    pub conc: Daemon,
    _server: TbServer,
    pub bed: TestBed,
}

impl MpbondBed {
    /// WANs at `rates`, the server listening on `server`, `tweak` applied to the agent's
    /// config last.
    pub fn start(
        rates: &[u32],
        server: SocketAddr,
        case: &'static str,
        tweak: impl FnOnce(&mut AgentConfig),
    ) -> Result<MpbondBed, BenchError> {
        let bed = TestBed::builder()
            .wans(rates)
            .agent_routing(true)
            .try_build()?;
        let server = bed.serve(Node::Server, server, false)?;
        let conc = bed.start_concentrator(&bed.concentrator_config())?;
        let agent = start_default_agent_with(&bed, case, tweak)?;
        Ok(MpbondBed {
            agent,
            conc,
            _server: server,
            bed,
        })
    }
}

/// The peer on the bed's static routing: a download, the cut.
fn peer_run(ctx: &Ctx, cut: Cut, bytes: u64) -> Result<Outcome, BenchError> {
    let bed = TestBed::builder().wans(&RATES).try_build()?;
    let _server = bed.serve(Node::Server, server(), false)?;
    let _peer = Peer::start(&bed, ctx, Method::Aes2022)?;
    download_and_cut(&bed, cut, bytes, "peer")
}

fn server() -> SocketAddr {
    SocketAddr::new(SERVER_V4.into(), PORT)
}

/// Start the download, check that both WANs carry it, cut WAN 1 at
/// [`CUT_AFTER`], and wait for the report.
fn download_and_cut(bed: &TestBed, cut: Cut, bytes: u64, who: &str) -> Result<Outcome, BenchError> {
    let fetch = Fetch::get(server(), bytes).timeout(Duration::from_secs(90));
    let why = format!("{who}: the download does not use both WANs before the cut");
    let run = fetch_on_all_wans(bed, &fetch, CUT_AFTER, CASE, &why)?;
    cut.apply(bed)?;
    let r: FetchReport = run.finish()?;
    Ok(Outcome {
        stall_ms: r.longest_stall_ms,
        intact: r.intact(),
    })
}

/// Start `fetch` on the LAN client, wait (at most `at`) until every WAN has carried 1 MB
/// of it, then until `at` after the start: the moment the experiment's event comes. An
/// error of `case` with `why` when the download does not use every WAN by then.
pub fn fetch_on_all_wans(
    bed: &TestBed,
    fetch: &Fetch,
    at: Duration,
    case: &'static str,
    why: &str,
) -> Result<FetchRun, BenchError> {
    let before = bed.all_wan_bytes();
    let start = Instant::now();
    let run = bed.spawn_fetch(Node::Lan, fetch)?;
    let all = proc::wait_until(at, || {
        bed.all_wan_bytes()
            .iter()
            .zip(&before)
            .all(|(now, then)| now.0 >= then.0 + 1_000_000)
    });
    if !all {
        return Err(BenchError::measure(case, why));
    }
    if let Some(left) = at.checked_sub(start.elapsed()) {
        std::thread::sleep(left); // the schedule of the experiment, not synchronisation
    }
    Ok(run)
}
