//! Traffic for the cases: one checked transfer ([`transfer`], `mpbond-tb
//! fetch`) with the WAN byte counters and CPU around it, and N parallel
//! endless downloads measured over one interval ([`parallel`], `mpbond-tb load`).

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::wire::LoadReport;
use mpbond_tests::{wan_delta, BedError, Fetch, FetchReport, Node, TestBed};

use crate::ctx::BenchError;
use crate::stat::{CpuMeter, Steal};

/// One measured transfer.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Goodput, Mbit/s.
    pub mbit: f64,
    /// Bytes per WAN in the transfer's direction, WAN 1 first.
    pub wan_bytes: Vec<u64>,
    /// CPU seconds of the watched pids.
    pub cpu_secs: f64,
    /// Payload bytes moved (for CPU per GB).
    pub bytes: u64,
    /// Steal over the transfer, percent.
    pub steal_pct: f64,
}

impl Measured {
    /// Each WAN's share of the bytes, percent, as "40.1/59.9".
    pub fn shares(&self) -> String {
        let total: u64 = self.wan_bytes.iter().sum::<u64>().max(1);
        self.wan_bytes
            .iter()
            .map(|&b| format!("{:.1}", b as f64 * 100.0 / total as f64))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// CPU seconds per GB (10⁹ bytes) moved.
    pub fn cpu_per_gb(&self) -> f64 {
        if self.bytes == 0 {
            return f64::NAN;
        }
        self.cpu_secs / (self.bytes as f64 / 1e9)
    }
}

/// Run `fetch` in `node`, with the WAN counters, steal and the CPU of `pids`
/// around it. A failed or corrupted transfer is an error.
pub fn transfer(
    bed: &TestBed,
    node: Node,
    fetch: &Fetch,
    pids: &[u32],
    case: &'static str,
) -> Result<Measured, BenchError> {
    let before = bed.all_wan_bytes();
    let (steal, cpu) = (Steal::start(), CpuMeter::start(pids));
    let r: FetchReport = bed.fetch(node, fetch)?;
    let (cpu_secs, steal_pct) = (cpu.seconds(), steal.percent());
    let delta = wan_delta(&before, &bed.all_wan_bytes());
    if !r.ok {
        return Err(BenchError::measure(
            case,
            format!(
                "{} {} from {node:?} failed: {}",
                r.mode,
                fetch.connect,
                r.error.as_deref().unwrap_or("hash mismatch")
            ),
        ));
    }
    let upload = fetch.mode == "put";
    Ok(Measured {
        mbit: r.mbit_per_s,
        wan_bytes: delta
            .iter()
            .map(|&(rx, tx)| if upload { tx } else { rx })
            .collect(),
        cpu_secs,
        bytes: r.bytes_down + r.bytes_up,
        steal_pct,
    })
}

/// How a parallel load connects.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    /// Where `mpbond-tb serve` listens.
    pub connect: SocketAddr,
    /// Parallel connections.
    pub conns: usize,
    /// Measured interval.
    pub secs: f64,
    /// MPTCP sockets (the direct reference).
    pub mptcp: bool,
    /// Fixed receive buffer (bytes).
    pub rcvbuf: Option<u32>,
}

/// Run `mpbond-tb load` in `node` with the CPU of `pids` measured over the
/// whole run; CPU per GB uses every byte the run moved.
pub fn parallel(
    bed: &TestBed,
    node: Node,
    spec: &LoadSpec,
    pids: &[u32],
    case: &'static str,
) -> Result<Measured, BenchError> {
    let bin = mpbond_tests::daemons::bin_path(mpbond_tests::tools::TB)?;
    let mut args = vec![
        bin.to_string_lossy().into_owned(),
        "load".into(),
        "--connect".into(),
        spec.connect.to_string(),
        "--conns".into(),
        spec.conns.to_string(),
        "--secs".into(),
        spec.secs.to_string(),
    ];
    if spec.mptcp {
        args.push("--mptcp".into());
    }
    if let Some(b) = spec.rcvbuf {
        args.extend(["--rcvbuf".into(), b.to_string()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = bed.all_wan_bytes();
    let (steal, cpu) = (Steal::start(), CpuMeter::start(pids));
    let child = bed.spawn(node, &refs)?;
    let cmd = child.cmd().to_owned();
    let out = child.output_within(Duration::from_secs_f64(spec.secs + 40.0))?;
    let (cpu_secs, steal_pct) = (cpu.seconds(), steal.percent());
    let delta = wan_delta(&before, &bed.all_wan_bytes());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let r: LoadReport =
        serde_json::from_str(text.lines().last().unwrap_or("")).map_err(|source| {
            BedError::BadOutput {
                cmd,
                output: format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
                source,
            }
        })?;
    if r.total_bytes == 0 {
        return Err(BenchError::measure(
            case,
            format!("no byte arrived from {} in {node:?}", spec.connect),
        ));
    }
    if r.failed > 0 || r.connected < r.conns {
        return Err(BenchError::measure(
            case,
            format!(
                "{} of {} connections to {} failed from {node:?}: {}",
                r.failed + r.conns - r.connected,
                r.conns,
                spec.connect,
                r.error.as_deref().unwrap_or("not connected")
            ),
        ));
    }
    Ok(Measured {
        mbit: r.mbit_per_s,
        wan_bytes: delta.iter().map(|&(rx, _)| rx).collect(),
        cpu_secs,
        bytes: r.total_bytes,
        steal_pct,
    })
}
