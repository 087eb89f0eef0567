//! `mpbond-demo`: build the namespace test bed, start the concentrator and the
//! agent, download once from the LAN client through mpbond, and print what each
//! WAN carried. `--unshaped --compare-direct` also measures kernel MPTCP
//! straight from the router to the VPS and prints mpbond ÷ direct.
//!
//! `--capture-status DIR` captures the agent's status documents for the LuCI
//! page's browser test instead.
//!
//! Everything is removed on exit, on error and on Ctrl-C (SIGINT/SIGTERM): a
//! handler thread deletes the namespaces this process registered.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mpbond_tests::topology::{SERVER_V4, VPS_V4};
use mpbond_tests::{wan_delta, BedError, Fetch, FetchReport, Node, TestBed};

#[derive(Debug, Parser)]
#[command(
    name = "mpbond-demo",
    about = "mpbond bonding demo in network namespaces"
)]
struct Cli {
    /// WAN rates in Mbit/s, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [40u32, 60])]
    wans: Vec<u32>,
    /// Bytes to download (default: 8 s at the summed rate, 1 GB when unshaped).
    #[arg(long)]
    bytes: Option<u64>,
    /// Do not shape the WANs.
    #[arg(long)]
    unshaped: bool,
    /// Also measure direct kernel MPTCP from the router to the VPS.
    #[arg(long)]
    compare_direct: bool,
    /// Keep the test bed until Ctrl-C (for poking at it with `ip netns exec`).
    #[arg(long)]
    hold: bool,
    /// Instead of the demo, capture the agent's status documents for the LuCI
    /// test into DIR (three WANs, one black-holed, during a download).
    #[arg(long, value_name = "DIR")]
    capture_status: Option<std::path::PathBuf>,
}

const PORT: u16 = 5001;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !mpbond_tests::is_root() {
        eprintln!("mpbond-demo: needs root (network namespaces)");
        return ExitCode::from(2);
    }
    mpbond_tests::interrupt::install_signal_cleanup("mpbond-demo");
    let result = match &cli.capture_status {
        Some(dir) => mpbond_tests::capture::capture_status(dir).map(|()| true),
        None => run(&cli),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mpbond-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<bool, BedError> {
    let rates: Vec<u32> = if cli.unshaped {
        vec![0; cli.wans.len()]
    } else {
        cli.wans.clone()
    };
    let sum: u64 = rates.iter().map(|&r| u64::from(r)).sum();
    let bytes = cli.bytes.unwrap_or(if sum == 0 {
        1_000_000_000
    } else {
        sum * 1_000_000
    });
    println!(
        "building the test bed: {} WANs {:?} Mbit/s (0 = unshaped)",
        rates.len(),
        rates
    );
    let bed = TestBed::builder().wans(&rates).try_build()?;
    let _server = bed.serve(Node::Server, SocketAddr::new(SERVER_V4.into(), PORT), false)?;
    let conc = bed.start_concentrator(&bed.concentrator_config())?;
    let agent = bed.start_agent(&bed.agent_config())?;
    println!(
        "concentrator (pid {}) and agent (pid {}) are ready",
        conc.pid(),
        agent.pid()
    );

    let timeout = Duration::from_secs(300);
    let fetch = Fetch::get(SocketAddr::new(SERVER_V4.into(), PORT), bytes).timeout(timeout);
    let (report, delta) = measure(&bed, Node::Lan, &fetch)?;
    print_table("mpbond: LAN client -> 203.0.113.10", &bed, &report, &delta);
    let mut ok = report.ok;

    if cli.compare_direct {
        let _vps = bed.serve(Node::Vps, SocketAddr::new(VPS_V4.into(), PORT), true)?;
        let direct = Fetch::get(SocketAddr::new(VPS_V4.into(), PORT), bytes)
            .mptcp()
            .timeout(timeout);
        let (dreport, ddelta) = measure(&bed, Node::Router, &direct)?;
        print_table(
            "direct kernel MPTCP: router -> VPS",
            &bed,
            &dreport,
            &ddelta,
        );
        if dreport.mbit_per_s > 0.0 {
            println!(
                "mpbond / direct = {:.3}",
                report.mbit_per_s / dreport.mbit_per_s
            );
        }
        ok &= dreport.ok;
    }
    if cli.hold {
        println!("holding the test bed; namespaces:");
        for node in [Node::Lan, Node::Router, Node::Core, Node::Vps, Node::Server] {
            println!("  {:?}: {}", node, bed.ns_name(node));
        }
        println!("press Ctrl-C to tear down");
        loop {
            std::thread::park();
        }
    }
    Ok(ok)
}

fn measure(
    bed: &TestBed,
    node: Node,
    fetch: &Fetch,
) -> Result<(FetchReport, Vec<(u64, u64)>), BedError> {
    let before = bed.all_wan_bytes();
    let report = bed.fetch(node, fetch)?;
    Ok((report, wan_delta(&before, &bed.all_wan_bytes())))
}

fn print_table(title: &str, bed: &TestBed, r: &FetchReport, delta: &[(u64, u64)]) {
    println!("\n{title}");
    println!(
        "  {:<8} {:>10} {:>12} {:>8}",
        "WAN", "rate", "carried", "share"
    );
    let total: u64 = delta.iter().map(|d| d.0).sum::<u64>().max(1);
    for (i, (&rate, &(rx, _))) in bed.wan_rates().iter().zip(delta).enumerate() {
        let mbit = rx as f64 * 8.0 / r.seconds.max(1e-9) / 1e6;
        let rate = if rate == 0 {
            "unshaped".to_string()
        } else {
            format!("{rate} Mbit/s")
        };
        println!(
            "  wan{:<5} {rate:>10} {mbit:>7.1} Mbit/s {:>7.1}%",
            i + 1,
            rx as f64 * 100.0 / total as f64
        );
    }
    let sum: u32 = bed.wan_rates().iter().sum();
    println!(
        "  total goodput {:.1} Mbit/s in {:.2} s ({} bytes)",
        r.mbit_per_s, r.seconds, r.bytes_down
    );
    if sum > 0 {
        println!(
            "  goodput / sum of rates = {:.3}",
            r.mbit_per_s / f64::from(sum)
        );
    }
    println!(
        "  hash OK: {}{}",
        r.ok,
        r.error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
}
