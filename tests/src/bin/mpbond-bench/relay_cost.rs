//! Cases 2 and 3, relay cost and the peer comparison, on unshaped veth WANs.
//! With 1, 8 and 64 parallel endless downloads (`mpbond-tb load`), it measures
//! the aggregate goodput and the CPU seconds per GB of the relaying processes:
//! * mpbond: LAN client → agent → MPTCP → concentrator → server (agent + concentrator);
//! * direct kernel MPTCP: router → VPS, no relay (the reference);
//! * the peer with each method: LAN → sslocal → MPTCP → ssserver → server.
//!
//! In full mode one more path, `mpbond pipes held`, runs agent and concentrator with
//! `MPBOND_PIPE_RELEASE=0`: each relay direction keeps its splice pipe from start to end,
//! as before idle pipes were given back (`relay::pool`). Its goodput and CPU against
//! `mpbond` in the same round are the cost of the release (kept only below 2 %).
//!
//! Each round runs every path once (interleaved); figures are medians over
//! rounds, and ratios pair values of the same round.

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::topology::{SERVER_V4, VPS_V4};
use mpbond_tests::{Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::load::{parallel, LoadSpec, Measured};
use crate::peer::{Method, Peer};
use crate::report::{median, Figure, Target};

const CASE2: &str = "2 relay cost";
const CASE3: &str = "3 peer comparison";
const PORT: u16 = 5001;
/// Parallel connection counts.
pub const CONNS: [usize; 3] = [1, 8, 64];
/// mpbond's goodput ÷ direct kernel MPTCP must reach this.
pub const TARGET_VS_DIRECT: f64 = 0.8;
/// mpbond's goodput ÷ the peer's best method must reach this.
pub const TARGET_VS_PEER: f64 = 3.0;
/// mpbond's CPU per GB ÷ the peer's cheapest method must stay below this.
pub const TARGET_CPU_VS_PEER: f64 = 0.35;

/// Giving idle pipes back may cost at most this share of goodput or CPU per GB.
pub const PIPE_RELEASE_COST: f64 = 0.02;

/// A path through the bed; `Peer(m)` for each method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Mpbond,
    /// mpbond with `MPBOND_PIPE_RELEASE=0` (full mode only).
    MpbondHeld,
    Direct,
    Peer(Method),
}

impl Path {
    fn all() -> Vec<Path> {
        let mut v = vec![Path::Mpbond, Path::MpbondHeld, Path::Direct];
        v.extend(Method::ALL.map(Path::Peer));
        v
    }
    fn name(self) -> String {
        match self {
            Path::Mpbond => "mpbond".into(),
            Path::MpbondHeld => "mpbond pipes held".into(),
            Path::Direct => "direct MPTCP".into(),
            Path::Peer(m) => format!("peer {}", m.as_str()),
        }
    }
}

/// Every measurement: `(path, conns) → runs`.
#[derive(Debug, Default)]
struct Results(Vec<(Path, usize, Vec<Measured>)>);

impl Results {
    fn push(&mut self, path: Path, conns: usize, m: Measured) {
        match self
            .0
            .iter_mut()
            .find(|(p, c, _)| *p == path && *c == conns)
        {
            Some((_, _, runs)) => runs.push(m),
            None => self.0.push((path, conns, vec![m])),
        }
    }
    fn get(&self, path: Path, conns: usize) -> &[Measured] {
        self.0
            .iter()
            .find(|(p, c, _)| *p == path && *c == conns)
            .map_or(&[], |(_, _, r)| r.as_slice())
    }
    fn mbit(&self, path: Path, conns: usize) -> Vec<f64> {
        self.get(path, conns).iter().map(|m| m.mbit).collect()
    }
    fn cpu(&self, path: Path, conns: usize) -> Vec<f64> {
        self.get(path, conns)
            .iter()
            .map(Measured::cpu_per_gb)
            .collect()
    }
}

/// Run cases 2 and 3 (one measurement reports both).
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let bed = TestBed::builder().wans(&[0, 0]).try_build()?;
    let _server = bed.serve(Node::Server, SocketAddr::new(SERVER_V4.into(), PORT), false)?;
    let _vps = bed.serve(Node::Vps, SocketAddr::new(VPS_V4.into(), PORT), true)?;
    let secs = ctx.pick(2.0, 5.0);
    let mut results = Results::default();
    let paths: Vec<Path> = Path::all()
        .into_iter()
        .filter(|p| *p != Path::MpbondHeld || ctx.pick(false, true))
        .collect();
    for _ in 0..ctx.runs() {
        for &path in &paths {
            let mpbond = match path {
                Path::Mpbond | Path::MpbondHeld => {
                    let _held = PipesHeld::set(path == Path::MpbondHeld);
                    let conc = bed.start_concentrator(&bed.concentrator_config())?;
                    Some((bed.start_agent(&bed.agent_config())?, conc))
                }
                _ => None,
            };
            let peer = match path {
                Path::Peer(m) => Some(Peer::start(&bed, ctx, m)?),
                _ => None,
            };
            let pids: Vec<u32> = match (&mpbond, &peer) {
                (Some((a, conc)), _) => vec![a.pid(), conc.pid()],
                (_, Some(p)) => p.pids().to_vec(),
                _ => Vec::new(),
            };
            for conns in CONNS {
                let (node, dest, mptcp) = match path {
                    Path::Direct => (Node::Router, VPS_V4, true),
                    _ => (Node::Lan, SERVER_V4, false),
                };
                let spec = LoadSpec {
                    connect: SocketAddr::new(dest.into(), PORT),
                    conns,
                    secs,
                    mptcp,
                    rcvbuf: None,
                };
                let m = parallel(&bed, node, &spec, &pids, CASE2)?;
                results.push(path, conns, m);
            }
            if let Some((a, conc)) = mpbond {
                a.stop(Duration::from_secs(5));
                drop(conc);
            }
            drop(peer);
        }
    }
    Ok(figures(&results))
}

/// Sets `MPBOND_PIPE_RELEASE=0` for the daemons started while it lives (when `held`),
/// and removes it on drop. The suite runs its cases one at a time on the main thread,
/// which is the only one that reads the environment (to spawn the daemons).
struct PipesHeld;

impl PipesHeld {
    fn set(held: bool) -> Self {
        if held {
            std::env::set_var("MPBOND_PIPE_RELEASE", "0");
        } else {
            std::env::remove_var("MPBOND_PIPE_RELEASE");
        }
        PipesHeld
    }
}

impl Drop for PipesHeld {
    fn drop(&mut self) {
        std::env::remove_var("MPBOND_PIPE_RELEASE");
    }
}

fn mbit_list(r: &Results, path: Path, conns: usize) -> String {
    format!("{} {:.0}", path.name(), median(&r.mbit(path, conns)))
}

fn steal(r: &Results, conns: usize) -> f64 {
    let all: Vec<f64> =
        r.0.iter()
            .filter(|(_, c, _)| *c == conns)
            .flat_map(|(_, _, ms)| ms.iter().map(|m| m.steal_pct))
            .collect();
    median(&all)
}

/// `values` as "0.51/0.55/0.50".
fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join("/")
}

/// Per-round ratio `a[i] / b[i]`.
fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

fn figures(r: &Results) -> Vec<Figure> {
    let mut out = Vec::new();
    let peers = Method::ALL.map(Path::Peer);
    for conns in CONNS {
        let steal = steal(r, conns);
        let mk = |case: &str, name: String, values: Vec<f64>, unit: &str, target, detail| Figure {
            case: case.into(),
            name,
            value: median(&values),
            unit: unit.into(),
            target,
            runs: values,
            steal_pct: steal,
            detail,
        };
        for path in Path::all() {
            if r.get(path, conns).is_empty() {
                continue;
            }
            let case = if matches!(path, Path::Peer(_)) {
                CASE3
            } else {
                CASE2
            };
            let cpu = r.cpu(path, conns);
            let detail = if path == Path::Direct {
                String::new()
            } else {
                format!("CPU {:.2} s/GB (runs {})", median(&cpu), list(&cpu))
            };
            out.push(mk(
                case,
                format!("{conns} conn: {} goodput", path.name()),
                r.mbit(path, conns),
                "Mbit/s",
                None,
                detail,
            ));
        }
        let mp = r.mbit(Path::Mpbond, conns);
        let mp_cpu = r.cpu(Path::Mpbond, conns);
        let held = r.mbit(Path::MpbondHeld, conns);
        if !held.is_empty() {
            let held_cpu = r.cpu(Path::MpbondHeld, conns);
            out.push(mk(
                CASE2,
                format!("{conns} conn: mpbond pipes released / held goodput"),
                ratios(&mp, &held),
                "ratio",
                Some(Target::AtLeast(1.0 - PIPE_RELEASE_COST)),
                format!(
                    "Mbit/s: {}, {}",
                    mbit_list(r, Path::Mpbond, conns),
                    mbit_list(r, Path::MpbondHeld, conns)
                ),
            ));
            out.push(mk(
                CASE2,
                format!("{conns} conn: mpbond pipes released / held CPU per GB"),
                ratios(&mp_cpu, &held_cpu),
                "ratio",
                Some(Target::AtMost(1.0 + PIPE_RELEASE_COST)),
                format!(
                    "s/GB: released {:.2} (runs {}), held {:.2} (runs {})",
                    median(&mp_cpu),
                    list(&mp_cpu),
                    median(&held_cpu),
                    list(&held_cpu)
                ),
            ));
        }
        out.push(mk(
            CASE2,
            format!("{conns} conn: mpbond / direct MPTCP goodput"),
            ratios(&mp, &r.mbit(Path::Direct, conns)),
            "ratio",
            Some(Target::AtLeast(TARGET_VS_DIRECT)),
            format!(
                "Mbit/s: {}, {}",
                mbit_list(r, Path::Mpbond, conns),
                mbit_list(r, Path::Direct, conns)
            ),
        ));
        let shares: Vec<String> = [Path::Mpbond, Path::Direct, Path::Peer(Method::Aes2022)]
            .iter()
            .filter_map(|&p| {
                r.get(p, conns)
                    .first()
                    .map(|m| format!("{} {}", p.name(), m.shares()))
            })
            .collect();
        out.push(mk(
            CASE2,
            format!("{conns} conn: mpbond CPU (agent + concentrator)"),
            mp_cpu.clone(),
            "s/GB",
            None,
            format!("WAN shares % (first run): {}", shares.join(", ")),
        ));
        let best = *peers
            .iter()
            .max_by(|a, b| median(&r.mbit(**a, conns)).total_cmp(&median(&r.mbit(**b, conns))))
            .unwrap_or(&peers[0]);
        let cheapest = *peers
            .iter()
            .min_by(|a, b| median(&r.cpu(**a, conns)).total_cmp(&median(&r.cpu(**b, conns))))
            .unwrap_or(&peers[0]);
        let peer_mbit: Vec<String> = peers.iter().map(|&p| mbit_list(r, p, conns)).collect();
        let peer_cpu: Vec<String> = peers
            .iter()
            .map(|&p| format!("{} {:.2}", p.name(), median(&r.cpu(p, conns))))
            .collect();
        out.push(mk(
            CASE3,
            format!("{conns} conn: mpbond / peer best goodput"),
            ratios(&mp, &r.mbit(best, conns)),
            "ratio",
            Some(Target::AtLeast(TARGET_VS_PEER)),
            format!(
                "Mbit/s: {}, {}",
                mbit_list(r, Path::Mpbond, conns),
                peer_mbit.join(", ")
            ),
        ));
        out.push(mk(
            CASE3,
            format!("{conns} conn: mpbond / peer cheapest CPU per GB"),
            ratios(&mp_cpu, &r.cpu(cheapest, conns)),
            "ratio",
            Some(Target::AtMost(TARGET_CPU_VS_PEER)),
            format!(
                "s/GB: mpbond {:.2}, {}",
                median(&mp_cpu),
                peer_cpu.join(", ")
            ),
        ));
    }
    out
}
