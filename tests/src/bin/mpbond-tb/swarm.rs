//! `mpbond-tb swarm`: open many idle connections and hold them.
//!
//! Each connection is either plain (through the agent's redirect, to a
//! `mpbond-tb hold` server) or, with `--dest`, an MPTCP connection straight
//! to the concentrator carrying a sealed Convert `Connect(--dest)` in the SYN
//! (TCP Fast Open), as the agent sends it. A connection counts once the
//! concentrator's OK reply (for Convert) and the holder's [`HELLO`] byte have
//! arrived, so it is relayed end to end. When all are open it prints a
//! [`SwarmReport`] JSON line and holds them until killed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mpbond_protocol::auth::{seal, ClientId, Key};
use mpbond_protocol::{Message, FIXED_HEADER_LEN};
use mpbond_tests::wire::SwarmReport;

use crate::hold::{raise_nofile, HELLO};
use crate::sock;

/// The concentrator's success reply: the fixed header alone.
const OK_REPLY: [u8; FIXED_HEADER_LEN] = [1, 1, 0x22, 0x63];

/// Options of `swarm`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to connect: the holder (plain) or the concentrator (with --dest).
    #[arg(long)]
    connect: SocketAddr,
    /// How many connections.
    #[arg(long)]
    count: usize,
    /// Threads opening them.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Ask the concentrator (at --connect) for this destination, over MPTCP with TFO.
    #[arg(long)]
    dest: Option<SocketAddr>,
    /// Client id for the Convert cookie.
    #[arg(long, default_value = "home")]
    client: String,
    /// Client key, 64 hex characters (with --dest).
    #[arg(long, default_value = "")]
    key: String,
    /// Per-connection timeout.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

/// Open, report, hold.
pub fn run(args: &Args) -> ExitCode {
    raise_nofile();
    let sealer = match args.dest.map(|d| Sealer::new(&args.client, &args.key, d)) {
        Some(Err(e)) => {
            eprintln!("mpbond-tb swarm: {e}");
            return ExitCode::from(2);
        }
        Some(Ok(s)) => Some(s),
        None => None,
    };
    let threads = args.parallel.clamp(1, 64);
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let start = Instant::now();
    let results: Vec<(Vec<TcpStream>, usize, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = args.count / threads + usize::from(t < args.count % threads);
                let sealer = sealer.as_ref();
                s.spawn(move || open_many(args.connect, n, sealer, timeout))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (Vec::new(), 0, Some("thread panicked".into())))
            })
            .collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut held = Vec::new();
    let mut report = SwarmReport {
        seconds,
        ..Default::default()
    };
    for (streams, failed, err) in results {
        report.opened += streams.len();
        report.failed += failed;
        report.first_error = report.first_error.or(err);
        held.extend(streams);
    }
    report.per_second = report.opened as f64 / seconds.max(1e-9);
    match serde_json::to_string(&report) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("mpbond-tb swarm: cannot print the report: {e}"),
    }
    let _ = io::stdout().flush();
    loop {
        std::thread::park();
    }
}

/// Open `n` connections one after another; (open ones, failures, first error).
fn open_many(
    to: SocketAddr,
    n: usize,
    sealer: Option<&Sealer>,
    timeout: Duration,
) -> (Vec<TcpStream>, usize, Option<String>) {
    let mut open = Vec::with_capacity(n);
    let (mut failed, mut first) = (0, None);
    for _ in 0..n {
        match open_one(to, sealer, timeout) {
            Ok(s) => open.push(s),
            Err(e) => {
                failed += 1;
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
    (open, failed, first)
}

fn open_one(to: SocketAddr, sealer: Option<&Sealer>, timeout: Duration) -> io::Result<TcpStream> {
    let mut stream = sock::connect(to, sealer.is_some(), sealer.is_some(), None, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    if let Some(sealer) = sealer {
        stream.write_all(&sealer.seal()?)?;
        let mut reply = [0u8; FIXED_HEADER_LEN];
        stream.read_exact(&mut reply)?;
        // The bare header `01 01 22 63` is OK; a longer message carries an Error TLV.
        if reply != OK_REPLY {
            return Err(io::Error::other(format!(
                "concentrator refused: {reply:02x?}"
            )));
        }
    }
    let mut hello = [0u8; 1];
    stream.read_exact(&mut hello)?;
    if hello[0] != HELLO {
        return Err(io::Error::other("the holder did not greet"));
    }
    stream.set_read_timeout(None)?;
    Ok(stream)
}

/// Seals a fresh Convert `Connect(dest)` per connection (new nonce each).
struct Sealer {
    client: ClientId,
    key: Key,
    message: Message,
}

impl Sealer {
    fn new(client: &str, key: &str, dest: SocketAddr) -> Result<Self, String> {
        Ok(Self {
            client: client.parse().map_err(|e| format!("bad --client: {e:?}"))?,
            key: Key::from_hex(key).map_err(|e| format!("bad --key: {e:?}"))?,
            message: Message::connect(dest),
        })
    }

    fn seal(&self) -> io::Result<Vec<u8>> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
        seal(&self.message, &self.client, &self.key, now, nonce)
            .map_err(|e| io::Error::other(format!("cannot seal: {e:?}")))
    }
}
