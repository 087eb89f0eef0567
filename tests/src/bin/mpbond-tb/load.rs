//! `mpbond-tb load`: N parallel downloads, measured together over one
//! interval. Each connection asks `serve` for an endless `GET` and counts what
//! it reads without checking it (the relay-cost benchmark wants the client
//! cheap); after `--warmup-ms` the tool counts every connection's bytes for
//! `--secs`, then closes them all and prints one JSON [`LoadReport`]
//! (the library's `wire` module, which the bench reads back).

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpbond_tests::datagen::random_seed;
use mpbond_tests::wire::{LoadReport, Request};

use crate::sock::{self, BUF_LEN};

/// Options of `load`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server address.
    #[arg(long)]
    connect: SocketAddr,
    /// Parallel connections.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Measured interval, seconds.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Time before the interval starts (connections ramp up).
    #[arg(long, default_value_t = 1000)]
    warmup_ms: u64,
    /// Use MPTCP sockets.
    #[arg(long)]
    mptcp: bool,
    /// Fixed receive buffer in bytes; default: autotuned.
    #[arg(long)]
    rcvbuf: Option<u32>,
}

/// Run the load and print its report; exit 0 if every connection lasted.
pub fn run(args: &Args) -> ExitCode {
    let report = measure(args);
    match serde_json::to_string(&report) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("mpbond-tb load: cannot print the report: {e}"),
    }
    if report.failed == 0 && report.connected == args.conns {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn measure(args: &Args) -> LoadReport {
    let counter = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let error = Arc::new(Mutex::new(None::<String>));
    let streams = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = Instant::now();
    let timeout = Duration::from_secs(10);
    let mut threads = Vec::new();
    for _ in 0..args.conns {
        let (counter, connected, failed) = (counter.clone(), connected.clone(), failed.clone());
        let (error, streams, stop) = (error.clone(), streams.clone(), stop.clone());
        let (addr, mptcp, rcvbuf) = (args.connect, args.mptcp, args.rcvbuf);
        threads.push(std::thread::spawn(move || {
            let result = (|| -> std::io::Result<()> {
                let mut s = sock::connect(addr, mptcp, false, rcvbuf, timeout)?;
                {
                    // Under the lock, so the closing loop sees every stream.
                    let mut all = streams
                        .lock()
                        .map_err(|_| std::io::Error::other("poisoned"))?;
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    all.push(s.try_clone()?);
                }
                connected.fetch_add(1, Ordering::Relaxed);
                let req = Request::Get {
                    bytes: u64::MAX / 2,
                    seed: random_seed(),
                };
                std::io::Write::write_all(&mut s, req.to_line().as_bytes())?;
                let mut buf = vec![0u8; BUF_LEN];
                loop {
                    let n = s.read(&mut buf)?;
                    if n == 0 {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "server closed",
                        ));
                    }
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                }
            })();
            if let Err(e) = result {
                if !stop.load(Ordering::Relaxed) {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut first) = error.lock() {
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        }));
    }
    // The interval is the measurement itself, not a synchronisation wait.
    std::thread::sleep(Duration::from_millis(args.warmup_ms));
    let (t0, b0) = (Instant::now(), counter.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs_f64(args.secs.max(0.1)));
    let (t1, b1) = (Instant::now(), counter.load(Ordering::Relaxed));
    if let Ok(all) = streams.lock() {
        stop.store(true, Ordering::Relaxed);
        for s in all.iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    for t in threads {
        let _ = t.join();
    }
    let seconds = (t1 - t0).as_secs_f64();
    let bytes = b1.saturating_sub(b0);
    LoadReport {
        conns: args.conns,
        connected: connected.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        seconds,
        bytes,
        mbit_per_s: bytes as f64 * 8.0 / seconds / 1e6,
        total_bytes: b1,
        total_seconds: (t1 - start).as_secs_f64(),
        error: error.lock().ok().and_then(|e| e.clone()),
    }
}
