//! `mpbond-tb ttfb`: sequential small requests, each on a new connection,
//! timing connect() to the first byte of the answer. Prints a [`TtfbReport`] (the
//! library's `wire` module, which the bench reads back).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mpbond_tests::datagen::random_seed;
use mpbond_tests::wire::{Request, TtfbReport};

use crate::sock;

/// Options of `ttfb`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A `mpbond-tb serve` server.
    #[arg(long)]
    connect: SocketAddr,
    /// Requests to make, one after another.
    #[arg(long, default_value_t = 500)]
    count: usize,
    /// Bytes each answer carries.
    #[arg(long, default_value_t = 1000)]
    bytes: u64,
    /// Use an MPTCP socket.
    #[arg(long)]
    mptcp: bool,
    /// Send the request in the SYN (TCP Fast Open, no cookie).
    #[arg(long)]
    tfo: bool,
    /// Per-request timeout.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

/// Run the requests and print the report; exit 0 if all succeeded.
pub fn run(args: &Args) -> ExitCode {
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let mut report = TtfbReport::default();
    for _ in 0..args.count {
        match one(args, timeout) {
            Ok(ms) => {
                report.ok += 1;
                report.ttfb_ms.push((ms * 1000.0).round() / 1000.0);
            }
            Err(e) => {
                report.failed += 1;
                report.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let mut sorted = report.ttfb_ms.clone();
    sorted.sort_by(f64::total_cmp);
    report.median_ms = match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    match serde_json::to_string(&report) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("mpbond-tb ttfb: cannot print the report: {e}"),
    }
    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One request: milliseconds from connect() to the first byte, after checking the rest.
fn one(args: &Args, timeout: Duration) -> io::Result<f64> {
    let req = Request::Get {
        bytes: args.bytes,
        seed: random_seed(),
    };
    let start = Instant::now();
    let mut stream = sock::connect(args.connect, args.mptcp, args.tfo, None, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(req.to_line().as_bytes())?;
    let mut buf = [0u8; 4096];
    let first = stream.read(&mut buf)?;
    let ttfb = start.elapsed();
    if first == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before the answer",
        ));
    }
    let mut total = first as u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    if total != args.bytes {
        return Err(io::Error::other(format!(
            "got {total} of {} bytes",
            args.bytes
        )));
    }
    Ok(ttfb.as_secs_f64() * 1000.0)
}
