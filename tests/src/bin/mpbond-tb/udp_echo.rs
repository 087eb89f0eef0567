//! `mpbond-tb udp-echo-server` and `mpbond-tb udp-echo`: the real-time UDP flow.
//!
//! The server echoes every datagram and logs each new peer address as a JSON event
//! (`{"event":"peer","addr":...}`), so a test sees whether a flow arrived from the
//! concentrator's address (bonded) or from a WAN (NAT). The client sends `--rate`
//! datagrams a second of `--size` bytes (sequence number and send time inside) on a
//! connected socket, so only replies from the address it wrote to count, and prints one
//! JSON report: sent, received, lost, late, round-trip percentiles and the longest gap
//! between echoes.

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Options of `udp-echo-server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
}

/// Echo forever; returns only on a socket error.
pub fn serve(args: &ServerArgs) -> io::Result<()> {
    let sock = UdpSocket::bind(args.listen)?;
    println!("{{\"event\":\"listening\",\"addr\":\"{}\"}}", args.listen);
    let mut peers = HashSet::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, peer) = sock.recv_from(&mut buf)?;
        if peers.insert(peer) {
            println!("{{\"event\":\"peer\",\"addr\":\"{peer}\"}}");
        }
        let _ = sock.send_to(&buf[..n], peer);
    }
}

/// Options of `udp-echo`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The echo server.
    #[arg(long)]
    to: SocketAddr,
    /// Datagrams a second.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Bytes a datagram (at least 16).
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Datagrams to send.
    #[arg(long, default_value_t = 250)]
    count: u32,
    /// An echo later than this (ms) counts as late.
    #[arg(long, default_value_t = 200)]
    late_ms: u64,
}

/// What `udp-echo` prints.
#[derive(Debug, Serialize)]
struct Report {
    sent: u32,
    received: u32,
    lost: u32,
    late: u32,
    rtt_p50_ms: f64,
    rtt_p99_ms: f64,
    rtt_max_ms: f64,
    /// Longest time between two echoes (or from the start to the first).
    max_gap_ms: f64,
    /// ICMP port unreachable answers (ECONNREFUSED on the connected socket).
    refused: u32,
}

pub fn run(args: &ClientArgs) -> ExitCode {
    match client(args) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mpbond-tb udp-echo: {}: {e}", args.to);
            ExitCode::FAILURE
        }
    }
}

fn client(args: &ClientArgs) -> io::Result<Report> {
    let bind: SocketAddr = if args.to.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(args.to)?;
    sock.set_read_timeout(Some(Duration::from_millis(5)))?;
    let size = args.size.max(16);
    let interval = Duration::from_secs(1) / args.rate.max(1);
    let start = Instant::now();
    let mut sent_at: Vec<Option<Instant>> = vec![None; args.count as usize];
    let mut seen = vec![false; args.count as usize];
    let mut rtts = Vec::new();
    let mut late = 0u32;
    let mut refused = 0u32;
    let mut last_echo = start;
    let mut max_gap = Duration::ZERO;
    let mut next = 0u32;
    let mut buf = vec![0u8; 65_536];
    let mut payload = vec![0u8; size];
    let linger = Duration::from_secs(2);
    let end_of_send = start + interval * args.count;
    while Instant::now() < end_of_send + linger {
        let now = Instant::now();
        if next < args.count && now >= start + interval * next {
            payload[..4].copy_from_slice(&next.to_be_bytes());
            sent_at[next as usize] = Some(now);
            let _ = sock.send(&payload);
            next += 1;
            continue;
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                refused += 1;
                continue;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        if n < 4 {
            continue;
        }
        let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let (Some(Some(at)), Some(false)) = (sent_at.get(seq).copied(), seen.get(seq).copied())
        else {
            continue;
        };
        seen[seq] = true;
        let got = Instant::now();
        let rtt = got - at;
        if rtt > Duration::from_millis(args.late_ms) {
            late += 1;
        }
        rtts.push(rtt);
        max_gap = max_gap.max(got - last_echo);
        last_echo = got;
    }
    // The gap after the last echo, up to the last send, counts too.
    if last_echo < end_of_send {
        max_gap = max_gap.max(end_of_send - last_echo);
    }
    rtts.sort();
    let pct = |p: f64| -> f64 {
        if rtts.is_empty() {
            return 0.0;
        }
        let i = ((rtts.len() - 1) as f64 * p).round() as usize;
        rtts[i].as_secs_f64() * 1000.0
    };
    let received = rtts.len() as u32;
    Ok(Report {
        sent: next,
        received,
        lost: next - received,
        late,
        rtt_p50_ms: pct(0.5),
        rtt_p99_ms: pct(0.99),
        rtt_max_ms: pct(1.0),
        max_gap_ms: max_gap.as_secs_f64() * 1000.0,
        refused,
    })
}

/// Options of `udp-hold`.
#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    /// The echo server.
    #[arg(long)]
    to: SocketAddr,
    /// Flows (sockets) to open.
    #[arg(long)]
    flows: u32,
    /// New flows a second (0: all at once). A household opens its flows over time; a
    /// burst of 1,000 in a second meets the concentrator's per-source limit on new
    /// connections (200 a second, 400 saved up).
    #[arg(long, default_value_t = 0)]
    per_sec: u32,
}

/// Open `flows` sockets, `per_sec` a second, send one datagram on each, print how many
/// were echoed, then hold them (idle flows) until killed.
pub fn hold(args: &HoldArgs) -> io::Result<()> {
    let bind: SocketAddr = if args.to.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let mut socks = Vec::new();
    let start = std::time::Instant::now();
    for i in 0..args.flows {
        if args.per_sec > 0 {
            // Pacing, not synchronisation: flow i opens at i / per_sec seconds.
            let due = start + Duration::from_secs_f64(f64::from(i) / f64::from(args.per_sec));
            std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        }
        let sock = UdpSocket::bind(bind)?;
        sock.connect(args.to)?;
        let _ = sock.send(b"hold");
        socks.push(sock);
    }
    let mut echoed = 0u32;
    let mut buf = [0u8; 64];
    for sock in &socks {
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        if sock.recv(&mut buf).is_ok() {
            echoed += 1;
        }
    }
    println!(
        "{{\"event\":\"holding\",\"flows\":{},\"echoed\":{echoed}}}",
        socks.len()
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
