//! Case 1, aggregation efficiency: one download and one upload from the LAN
//! client to the internet server over shaped WANs (40+60, and 20+30+50
//! Mbit/s), through mpbond, through direct kernel MPTCP between the router and
//! the VPS (the limit), and through the peer (shadowsocks-rust, 2022 cipher).
//!
//! Runs are interleaved (mpbond, direct, peer, mpbond, ...) and every figure is
//! the median of per-run values; the ratio to direct pairs runs of the same round.

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::topology::{SERVER_V4, VPS_V4};
use mpbond_tests::{Daemon, Fetch, Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::load::{transfer, Measured};
use crate::peer::{Method, Peer};
use crate::report::{median, Figure, Target};

const CASE: &str = "1 aggregation";
const PORT: u16 = 5001;
/// mpbond must reach this fraction of direct kernel MPTCP.
pub const TARGET_VS_DIRECT: f64 = 0.97;

/// The three ways a LAN transfer can cross the WANs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Mpbond,
    Direct,
    Peer,
}

impl Path {
    const ALL: [Path; 3] = [Path::Mpbond, Path::Direct, Path::Peer];
    fn name(self) -> &'static str {
        match self {
            Path::Mpbond => "mpbond",
            Path::Direct => "direct MPTCP",
            Path::Peer => "peer",
        }
    }
}

/// Per-run results of one topology: `[path][direction]` → runs.
type Runs = [[Vec<Measured>; 2]; 3];

/// Run case 1.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let mut figures = Vec::new();
    for rates in [&[40u32, 60][..], &[20, 30, 50][..]] {
        figures.extend(topology(ctx, rates)?);
    }
    Ok(figures)
}

fn topology(ctx: &Ctx, rates: &[u32]) -> Result<Vec<Figure>, BenchError> {
    let bed = TestBed::builder().wans(rates).try_build()?;
    let sum: u32 = rates.iter().sum();
    // Full: ~8 s at the summed rate; short: ~2 s.
    let bytes = u64::from(sum) * 1_000_000 / 8 * ctx.pick(2, 8);
    let timeout = Duration::from_secs(ctx.pick(60, 120));
    let _server = bed.serve(Node::Server, SocketAddr::new(SERVER_V4.into(), PORT), false)?;
    let _vps = bed.serve(Node::Vps, SocketAddr::new(VPS_V4.into(), PORT), true)?;
    let conc = bed.start_concentrator(&bed.concentrator_config())?;
    let mut runs: Runs = Default::default();
    let mut failures: [Vec<String>; 3] = Default::default();
    for _ in 0..ctx.runs() {
        for path in Path::ALL {
            let agent = match path {
                Path::Mpbond => Some(bed.start_agent(&bed.agent_config())?),
                _ => None,
            };
            let peer = match path {
                Path::Peer => Some(Peer::start(&bed, ctx, Method::Aes2022)?),
                _ => None,
            };
            let pids: Vec<u32> = match (&agent, &peer) {
                (Some(a), _) => vec![a.pid(), conc.pid()],
                (_, Some(p)) => p.pids().to_vec(),
                _ => Vec::new(),
            };
            for (d, upload) in [false, true].into_iter().enumerate() {
                let (node, dest, mptcp) = match path {
                    Path::Direct => (Node::Router, VPS_V4, true),
                    _ => (Node::Lan, SERVER_V4, false),
                };
                let dest = SocketAddr::new(dest.into(), PORT);
                let mut fetch = if upload {
                    Fetch::put(dest, bytes)
                } else {
                    Fetch::get(dest, bytes)
                }
                .timeout(timeout);
                if mptcp {
                    fetch = fetch.mptcp();
                }
                // A transfer that fails its hash check is reported and run once more:
                // the reference paths have no mpbond code, and one kernel hiccup
                // should not hide every other figure. A second failure ends the case.
                let m = match transfer(&bed, node, &fetch, &pids, CASE) {
                    Ok(m) => m,
                    Err(first) => {
                        eprintln!("mpbond-bench: {first}; running it once more");
                        failures[path as usize].push(first.to_string());
                        transfer(&bed, node, &fetch, &pids, CASE)?
                    }
                };
                runs[path as usize][d].push(m);
            }
            stop(agent);
            drop(peer);
        }
    }
    let mut out = figures(rates, sum, &runs);
    out.extend(failure_figures(rates, &failures));
    Ok(out)
}

/// One figure per path whose transfers failed and were repeated; mpbond's must be none.
fn failure_figures(rates: &[u32], failures: &[Vec<String>; 3]) -> Vec<Figure> {
    Path::ALL
        .into_iter()
        .filter(|&path| path == Path::Mpbond || !failures[path as usize].is_empty())
        .map(|path| {
            let failed = &failures[path as usize];
            Figure {
                case: CASE.into(),
                name: format!(
                    "{} WANs: {} transfers repeated after a failure",
                    rates.len(),
                    path.name()
                ),
                value: failed.len() as f64,
                unit: "transfers".into(),
                target: (path == Path::Mpbond).then_some(Target::AtMost(0.0)),
                runs: Vec::new(),
                steal_pct: 0.0,
                detail: if failed.is_empty() {
                    "none".into()
                } else {
                    failed.join("; ")
                },
            }
        })
        .collect()
}

fn stop(agent: Option<Daemon>) {
    if let Some(a) = agent {
        a.stop(Duration::from_secs(5));
    }
}

fn figures(rates: &[u32], sum: u32, runs: &Runs) -> Vec<Figure> {
    let label = format!(
        "{} WANs {}",
        rates.len(),
        rates
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join("+")
    );
    let mut out = Vec::new();
    for (d, dir) in ["download", "upload"].into_iter().enumerate() {
        let of = |p: Path| &runs[p as usize][d];
        let steal = |ms: &[&Measured]| median(&ms.iter().map(|m| m.steal_pct).collect::<Vec<_>>());
        for path in Path::ALL {
            let ms = of(path);
            let values: Vec<f64> = ms.iter().map(|m| m.mbit / f64::from(sum)).collect();
            let shares: Vec<String> = ms.iter().map(Measured::shares).collect();
            out.push(Figure {
                case: CASE.into(),
                name: format!("{dir} {label}: {} / Σ rates", path.name()),
                value: median(&values),
                unit: "ratio".into(),
                target: None,
                runs: values,
                steal_pct: steal(&ms.iter().collect::<Vec<_>>()),
                detail: format!("WAN shares % {}", shares.join(", ")),
            });
        }
        for (other, target) in [
            (Path::Direct, Some(Target::AtLeast(TARGET_VS_DIRECT))),
            (Path::Peer, None),
        ] {
            let pairs: Vec<(&Measured, &Measured)> =
                of(Path::Mpbond).iter().zip(of(other)).collect();
            let values: Vec<f64> = pairs.iter().map(|(a, b)| a.mbit / b.mbit).collect();
            let all: Vec<&Measured> = pairs.iter().flat_map(|(a, b)| [*a, *b]).collect();
            out.push(Figure {
                case: CASE.into(),
                name: format!("{dir} {label}: mpbond / {}", other.name()),
                value: median(&values),
                unit: "ratio".into(),
                target,
                runs: values,
                steal_pct: steal(&all),
                detail: format!(
                    "mpbond {:.1}, {} {:.1} Mbit/s (medians)",
                    median(&of(Path::Mpbond).iter().map(|m| m.mbit).collect::<Vec<_>>()),
                    other.name(),
                    median(&of(other).iter().map(|m| m.mbit).collect::<Vec<_>>())
                ),
            });
        }
    }
    out
}
