//! `mpbond-bench`: the benchmark suite of issue 5. It builds the namespace test
//! bed once per measurement, compares mpbond with direct kernel MPTCP and with
//! shadowsocks-rust (the peer OpenMPTCProuter runs), prints a table and writes JSON.
//!
//! ```text
//! mpbond-bench [--short|--full] [--cases 1,2,3] [--json FILE] [--soak-minutes N]
//! ```
//! Layout:
//! * [`ctx`]: [`ctx::Ctx`] (mode, binaries, output dir) and [`ctx::BenchError`];
//!   every case is `pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError>`.
//! * [`report`]: the result model ([`report::Figure`], targets, medians, and
//!   [`report::Measurement`], what the figures of one measurement share).
//! * [`table`]: the printed table and the JSON document.
//! * [`stat`]: CPU steal and per-process CPU seconds from `/proc`.
//! * [`peer`]: shadowsocks-rust in the router and VPS namespaces.
//! * [`load`]: N parallel transfers measured over one interval.
//! * [`timeline`]: a download's receive samples, gaps and goodput windows.
//! * cases: [`aggregation`] (1), [`relay_cost`] (2 and 3), [`ttfb`] (4),
//!   [`failover`] (5), [`scale`] (6), [`footprint`] (7), [`reload_stall`] (8),
//!   [`household`] (9: every WAN failure under requests and a download), [`reaction`]
//!   (10: what the agent's reaction to a down WAN does to a download), [`soak`] (11,
//!   full mode only: random failures for 30 min), [`idle`] (12: what watching idle WANs
//!   costs), [`profiles`] (13: every link profile of issue 11, mpbond against direct
//!   MPTCP, the peer and each WAN alone), [`udp`] (14: QUIC and a real-time flow
//!   through mpbond), [`mips`] (15: the relay on the MIPS router VM's CPU against the
//!   mipsel peer, goodput, guest CPU split, agent RSS), [`path_quality`] (16: goodput
//!   with the agent's demotion of a bad WAN on and off), [`congestion`] (17: mpbond's
//!   MPTCP sockets on reno against bbr), [`realtime`] (18: a real-time stream protected
//!   over two WANs against bonded and one WAN, under loss and failures), [`router_cpu`]
//!   (19: the router's CPU per byte against the peer at 100 and 500 Mbit/s and
//!   unshaped), [`socks`] (20: SOCKS5 over MPTCP from curl under `mptcpize`, goodput
//!   over two WANs), [`latency`] (21: a real-time stream's p99 added by a bulk TCP
//!   download, bonded and protected); see [`case_fn`].
//!
//! `tests/bench/run.sh` builds everything and runs it.

mod aggregation;
mod congestion;
mod ctx;
mod descriptors;
mod failover;
mod footprint;
mod household;
mod idle;
mod latency;
mod load;
mod mips;
mod path_quality;
mod peer;
mod profiles;
mod reaction;
mod realtime;
mod relay_cost;
mod reload_stall;
mod report;
mod router_cpu;
mod scale;
mod soak;
mod socks;
mod stat;
mod table;
mod timeline;
mod ttfb;
mod udp;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use crate::ctx::{BenchError, Ctx};
use crate::report::{Figure, Mode};

#[derive(Debug, Parser)]
#[command(name = "mpbond-bench", about = "mpbond benchmark suite (needs root)")]
struct Cli {
    /// Small transfers and one run per comparison (CI).
    #[arg(long, conflicts_with = "full")]
    short: bool,
    /// The documented run: full transfers, 3 interleaved runs (the default).
    #[arg(long)]
    full: bool,
    /// Cases to run, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<u8>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Our binaries (default: $MPBOND_BIN_DIR, else this binary's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Directory with sslocal and ssserver (default: $MPBOND_SS_BIN, else $PATH).
    #[arg(long)]
    ss_bin: Option<PathBuf>,
    /// Captures, logs and configs (default: a fresh directory under /tmp).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Exit non-zero when a figure misses its target (default: only on errors).
    #[arg(long)]
    strict: bool,
    /// How long case 11 (soak) runs, in minutes; it runs in short mode too when given.
    #[arg(long)]
    soak_minutes: Option<u64>,
}

/// A case's entry point.
type CaseFn = fn(&Ctx) -> Result<Vec<Figure>, BenchError>;

/// Every case, in order.
const CASES: &[(u8, &str)] = &[
    (1, "aggregation"),
    (2, "relay cost"),
    (3, "peer comparison"),
    (4, "connection setup"),
    (5, "failover"),
    (6, "scale"),
    (7, "footprint"),
    (8, "reload stall"),
    (9, "household"),
    (10, "reaction"),
    (11, "soak"),
    (12, "idle overhead"),
    (13, "profiles"),
    (14, "udp"),
    (15, "mips"),
    (16, "path quality"),
    (17, "congestion control"),
    (18, "realtime"),
    (19, "router cpu"),
    (20, "socks"),
    (21, "latency"),
];

/// The function that runs case `n`; `None` while its module is not wired in.
/// Cases 2 and 3 share one measurement, which reports the figures of both.
fn case_fn(n: u8) -> Option<CaseFn> {
    match n {
        1 => Some(aggregation::run),
        2 => Some(relay_cost::run),
        3 => Some(relay_cost::run),
        4 => Some(ttfb::run),
        5 => Some(failover::run),
        6 => Some(scale::run),
        7 => Some(footprint::run),
        8 => Some(reload_stall::run),
        9 => Some(household::run),
        10 => Some(reaction::run),
        11 => Some(soak::run),
        12 => Some(idle::run),
        13 => Some(profiles::run),
        14 => Some(udp::run),
        15 => Some(mips::run),
        16 => Some(path_quality::run),
        17 => Some(congestion::run),
        18 => Some(realtime::run),
        19 => Some(router_cpu::run),
        20 => Some(socks::run),
        21 => Some(latency::run),
        _ => None,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !mpbond_tests::is_root() {
        eprintln!("mpbond-bench: needs root (network namespaces)");
        return ExitCode::from(2);
    }
    let ctx = match make_ctx(&cli) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("mpbond-bench: {e}");
            return ExitCode::from(2);
        }
    };
    mpbond_tests::interrupt::install_signal_cleanup("mpbond-bench");
    let mut figures = Vec::new();
    let mut errors = Vec::new();
    let mut selected: Vec<u8> = if cli.cases.is_empty() {
        CASES.iter().map(|c| c.0).collect()
    } else {
        cli.cases.clone()
    };
    // Case 2 measures case 3 too: with both selected, run the pair once.
    if selected.contains(&2) {
        selected.retain(|&n| n != 3);
    }
    if let Some((pages, true)) = stat::tcp_memory() {
        let msg = format!(
            "the host's TCP memory is under pressure ({} MiB allocated, over \
             net.ipv4.tcp_mem): every flow is throttled, so throughput figures are meaningless",
            pages * 4 / 1024
        );
        eprintln!("mpbond-bench: WARNING: {msg}");
        errors.push((0, msg));
    }
    let started = Instant::now();
    for n in selected {
        let name = CASES.iter().find(|c| c.0 == n).map_or("unknown", |c| c.1);
        let Some(run) = case_fn(n) else {
            eprintln!("mpbond-bench: case {n} ({name}) is not available in this build");
            errors.push((n, "not available in this build".to_string()));
            continue;
        };
        eprintln!("mpbond-bench: case {n} ({name}) ...");
        let t = Instant::now();
        match run(&ctx) {
            Ok(mut f) => {
                eprintln!(
                    "mpbond-bench: case {n} done in {:.0} s",
                    t.elapsed().as_secs_f64()
                );
                for fig in &f {
                    eprintln!("  {}", table::line(fig));
                }
                figures.append(&mut f);
                if let Some((_, true)) = stat::tcp_memory() {
                    errors.push((n, "the host's TCP memory came under pressure".into()));
                }
            }
            Err(e) => {
                eprintln!("mpbond-bench: case {n} ({name}) failed: {e}");
                errors.push((n, error_chain(&e)));
            }
        }
    }
    print!("{}", table::render(&figures, &errors));
    println!(
        "mode {:?}, {:.0} s",
        ctx.mode,
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = &cli.json {
        let doc = table::json(&ctx, &figures, &errors);
        if let Err(e) = std::fs::write(path, doc) {
            eprintln!("mpbond-bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let failed = figures.iter().any(|f| f.pass() == Some(false));
    if !errors.is_empty() || (cli.strict && failed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn make_ctx(cli: &Cli) -> Result<Ctx, String> {
    let mode = if cli.short { Mode::Short } else { Mode::Full };
    let bin_dir = cli
        .bin_dir
        .clone()
        .or_else(|| std::env::var_os("MPBOND_BIN_DIR").map(PathBuf::from))
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(PathBuf::from))
        })
        .ok_or("cannot find our binaries: pass --bin-dir")?;
    let bin_dir = bin_dir.canonicalize().unwrap_or(bin_dir);
    // The test bed starts the daemons and tools from MPBOND_BIN_DIR.
    std::env::set_var("MPBOND_BIN_DIR", &bin_dir);
    let ss_bin = cli
        .ss_bin
        .clone()
        .or_else(|| std::env::var_os("MPBOND_SS_BIN").map(PathBuf::from))
        .or_else(|| find_in_path("sslocal"))
        .unwrap_or_else(|| bin_dir.clone());
    let out_dir = cli.out_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mpbond-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    Ok(Ctx {
        mode,
        bin_dir,
        ss_bin,
        out_dir,
        soak_minutes: cli.soak_minutes,
    })
}

/// The directory in `$PATH` that holds `name`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join(name).is_file())
}

/// `e` and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
