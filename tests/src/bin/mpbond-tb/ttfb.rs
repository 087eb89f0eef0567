//! `mpbond-tb ttfb`: small requests, each on a new connection, timing connect() to
//! the first byte of the answer. Sequential, or with `--every-ms` one started every so
//! often whatever the others do (each in its own thread, as a household's browser
//! would), timing each to its last byte too. Prints a [`TtfbReport`] (the library's
//! `wire` module, which the bench reads back).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mpbond_tests::datagen::random_seed;
use mpbond_tests::wire::{PacedRequest, Request, TtfbReport};

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
    /// Start one request every this many milliseconds, without waiting for the others
    /// (0: one after another).
    #[arg(long, default_value_t = 0)]
    every_ms: u64,
}

/// Run the requests and print the report; exit 0 if all succeeded.
pub fn run(args: &Args) -> ExitCode {
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let mut report = TtfbReport::default();
    let results = if args.every_ms == 0 {
        (0..args.count).map(|_| (0.0, one(args, timeout))).collect()
    } else {
        paced(args, timeout)
    };
    let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
    for (start_ms, result) in results {
        let mut paced = PacedRequest {
            start_ms: round(start_ms),
            ..PacedRequest::default()
        };
        match result {
            Ok((ttfb, done)) => {
                report.ok += 1;
                report.ttfb_ms.push(round(ttfb));
                paced.done_ms = Some(round(done));
            }
            Err(e) => {
                report.failed += 1;
                report.first_error.get_or_insert_with(|| e.to_string());
                paced.error = Some(e.to_string());
            }
        }
        if args.every_ms > 0 {
            report.paced.push(paced);
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

/// `args.count` requests, one started every `args.every_ms`, each in its own thread:
/// their start offsets (ms) and results, in the order started.
fn paced(args: &Args, timeout: Duration) -> Vec<(f64, io::Result<(f64, f64)>)> {
    let start = Instant::now();
    let every = Duration::from_millis(args.every_ms);
    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(args.count);
        for i in 0..args.count {
            let at = start + every * i as u32;
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait); // the pace of the load, not synchronisation
            }
            let started = start.elapsed().as_secs_f64() * 1000.0;
            handles.push((started, scope.spawn(move || one(args, timeout))));
        }
        handles
            .into_iter()
            .map(|(started, handle)| {
                let result = handle
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("request thread panicked")));
                (started, result)
            })
            .collect()
    })
}

/// One request: milliseconds from connect() to the first byte and to the last, after
/// checking the rest.
fn one(args: &Args, timeout: Duration) -> io::Result<(f64, f64)> {
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
    let done = start.elapsed();
    Ok((ttfb.as_secs_f64() * 1000.0, done.as_secs_f64() * 1000.0))
}
