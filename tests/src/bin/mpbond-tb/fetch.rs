//! `mpbond-tb fetch`: one transfer, measured, checked and reported as JSON.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mpbond_tests::datagen::{hex, random_seed, Stream};
use mpbond_tests::wire::{FetchReport, Request};
use sha2::{Digest, Sha256};

use crate::sock::{self, BUF_LEN};

/// Options of `fetch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server address.
    #[arg(long)]
    connect: SocketAddr,
    /// Bytes to download (get, xch) or upload (put).
    #[arg(long)]
    bytes: u64,
    /// get, put or xch.
    #[arg(long, default_value = "get")]
    mode: String,
    /// Same as --mode put.
    #[arg(long)]
    upload: bool,
    /// Bytes to upload in xch mode.
    #[arg(long, default_value_t = 0)]
    up_bytes: u64,
    /// Use an MPTCP socket.
    #[arg(long)]
    mptcp: bool,
    /// Send the request line in the SYN (TCP Fast Open, no cookie).
    #[arg(long)]
    tfo: bool,
    /// Fixed receive buffer in bytes (SO_RCVBUFFORCE, else SO_RCVBUF); default: autotuned.
    #[arg(long)]
    rcvbuf: Option<u32>,
    /// Stream seed (random by default).
    #[arg(long)]
    seed: Option<u64>,
    /// Throughput sample interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    sample_ms: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

/// Progress bookkeeping: samples and the longest stall.
struct Meter {
    start: Instant,
    /// Wall-clock time of `start`, milliseconds since the Unix epoch.
    start_unix_ms: f64,
    last: Instant,
    longest_stall: Duration,
    interval: Duration,
    next_sample: Instant,
    in_sample: u64,
    total: u64,
    samples: Vec<f64>,
    deadline: Instant,
}

impl Meter {
    fn new(sample_ms: u64, timeout: Duration) -> Self {
        let now = Instant::now();
        let interval = Duration::from_millis(sample_ms.max(1));
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            start: now,
            start_unix_ms: unix.as_secs_f64() * 1000.0,
            last: now,
            longest_stall: Duration::ZERO,
            interval,
            next_sample: now + interval,
            in_sample: 0,
            total: 0,
            samples: Vec::new(),
            deadline: now + timeout,
        }
    }

    fn progress(&mut self, n: usize) -> io::Result<()> {
        let now = self.record(n);
        if now > self.deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "transfer deadline passed",
            ));
        }
        Ok(())
    }

    /// Count `n` bytes that arrived (or left) now; returns now.
    fn record(&mut self, n: usize) -> Instant {
        let now = Instant::now();
        self.longest_stall = self.longest_stall.max(now - self.last);
        self.last = now;
        // Close the intervals that ended before these bytes arrived, so a
        // stall shows as zero samples and the bytes after it count where they
        // arrived.
        while now >= self.next_sample {
            let mbit = self.in_sample as f64 * 8.0 / self.interval.as_secs_f64() / 1e6;
            self.samples.push((mbit * 10.0).round() / 10.0);
            self.in_sample = 0;
            self.next_sample += self.interval;
        }
        self.in_sample += n as u64;
        self.total += n as u64;
        now
    }
}

/// Run the transfer and print its report; exit 0 only if it was OK.
pub fn run(args: &Args) -> ExitCode {
    let seed = args.seed.unwrap_or_else(random_seed);
    let req = match (args.upload, args.mode.as_str()) {
        (true, _) | (false, "put") => Request::Put {
            bytes: args.bytes,
            seed,
        },
        (false, "get") => Request::Get {
            bytes: args.bytes,
            seed,
        },
        (false, "xch") => Request::Xch {
            up: args.up_bytes,
            down: args.bytes,
            seed,
        },
        (false, other) => {
            eprintln!("mpbond-tb fetch: unknown mode {other:?} (get, put or xch)");
            return ExitCode::from(2);
        }
    };
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let mut report = FetchReport {
        mode: req.mode().into(),
        seed,
        ..Default::default()
    };
    let mut meter = Meter::new(args.sample_ms, timeout);
    if let Err(e) = transfer(args, &req, timeout, &mut meter, &mut report) {
        report.ok = false;
        report.error = Some(e.to_string());
        // The time without progress up to the failure is a stall too.
        meter.record(0);
        // What got through before the failure (the transfer functions return early).
        match req {
            Request::Put { .. } => report.bytes_up = report.bytes_up.max(meter.total),
            _ => report.bytes_down = report.bytes_down.max(meter.total),
        }
    }
    report.seconds = meter.last.duration_since(meter.start).as_secs_f64();
    let bits = (report.bytes_down + report.bytes_up) as f64 * 8.0;
    report.mbit_per_s = if report.seconds > 0.0 {
        bits / report.seconds / 1e6
    } else {
        0.0
    };
    report.longest_stall_ms = meter.longest_stall.as_secs_f64() * 1000.0;
    report.samples_mbit = meter.samples;
    report.sample_ms = meter.interval.as_millis() as u64;
    report.started_unix_ms = meter.start_unix_ms;
    match serde_json::to_string(&report) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("mpbond-tb fetch: cannot print the report: {e}"),
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn transfer(
    args: &Args,
    req: &Request,
    timeout: Duration,
    meter: &mut Meter,
    r: &mut FetchReport,
) -> io::Result<()> {
    let mut stream = sock::connect(args.connect, args.mptcp, args.tfo, args.rcvbuf, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    meter.progress(0)?;
    stream.write_all(req.to_line().as_bytes())?;
    match *req {
        Request::Get { bytes, seed } => {
            let (got, bad, sha) = receive(&mut stream, seed, meter)?;
            r.bytes_down = got;
            r.sha256_got = Some(sha);
            r.first_bad_offset = bad;
            r.ok = got == bytes && bad.is_none();
        }
        Request::Put { bytes, seed } => {
            let sha = send(&mut stream, seed, bytes, Some(meter))?;
            r.bytes_up = bytes;
            r.sha256_expected = Some(sha.clone());
            stream.shutdown(Shutdown::Write)?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply)?;
            meter.progress(0)?;
            let words: Vec<&str> = reply.split_whitespace().collect();
            r.sha256_got = words.last().map(|s| s.to_string());
            r.ok = words.first() == Some(&"OK") && r.sha256_got.as_deref() == Some(sha.as_str());
            if !r.ok {
                r.error = Some(format!("server replied {:?}", reply.trim()));
            }
        }
        Request::Xch { up, down, seed } => {
            let mut writer = stream.try_clone()?;
            let up_seed = req.up_seed();
            let sender = std::thread::spawn(move || -> io::Result<String> {
                let sha = send(&mut writer, up_seed, up, None)?;
                writer.shutdown(Shutdown::Write)?;
                Ok(sha)
            });
            let received = receive(&mut stream, seed, meter);
            let sent = sender
                .join()
                .map_err(|_| io::Error::other("sender thread panicked"))?;
            let (got, bad, sha) = received?;
            r.sha256_expected = Some(sent?);
            r.bytes_up = up;
            r.bytes_down = got;
            r.sha256_got = Some(sha);
            r.first_bad_offset = bad;
            r.ok = got == down && bad.is_none();
        }
    }
    r.mptcp = sock::is_mptcp(&stream);
    Ok(())
}

/// Write `bytes` of stream `seed`; returns their SHA-256.
fn send(
    stream: &mut TcpStream,
    seed: u64,
    bytes: u64,
    mut meter: Option<&mut Meter>,
) -> io::Result<String> {
    let mut gen = Stream::new(seed);
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; BUF_LEN];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(BUF_LEN as u64) as usize;
        gen.fill(&mut buf[..n]);
        sha.update(&buf[..n]);
        stream.write_all(&buf[..n])?;
        if let Some(m) = meter.as_deref_mut() {
            m.progress(n)?;
        }
        left -= n as u64;
    }
    Ok(hex(&sha.finalize()))
}

/// Read to EOF, checking against stream `seed`: (bytes, first bad offset, sha256 hex).
fn receive(
    stream: &mut TcpStream,
    seed: u64,
    meter: &mut Meter,
) -> io::Result<(u64, Option<u64>, String)> {
    let mut check = Stream::new(seed);
    let mut sha = Sha256::new();
    let mut bad = None;
    let mut buf = vec![0u8; BUF_LEN];
    loop {
        let n = stream.read(&mut buf)?;
        meter.progress(n)?;
        if n == 0 {
            break;
        }
        bad = bad.or(check.check(&buf[..n]));
        sha.update(&buf[..n]);
    }
    Ok((check.position(), bad, hex(&sha.finalize())))
}
