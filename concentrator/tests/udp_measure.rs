//! Measurements of the concentrator's UDP side (issue 9), against the real binary in a
//! namespace of its own: resident memory with 1,000 idle flows and with flows that have
//! carried a maximal datagram, and CPU seconds per GB for a bulk stream each way. They print their figures (docs/PERFORMANCE.md records them) and assert only
//! that the traffic went through.
//!
//! With an optimised binary (the debug build's CPU figures mean nothing):
//!
//! ```text
//! cargo build --profile bench-fast -p mpbond-concentrator --bin mpbond-concentrator
//! MPBOND_CONCENTRATOR_BIN=target/bench-fast/mpbond-concentrator \
//!   cargo test -p mpbond-concentrator --test udp_measure -- --ignored --nocapture --test-threads=1
//! ```

mod common;
mod udp_bed;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mpbond_protocol::auth::{ClientId, Key};
use mpbond_protocol::{decode_capsule, encode_datagram, Capsule, ClientHandshake, Message};
use mpbond_testkit::Netns;
use socket2::{Domain, Protocol, Socket, Type};
use udp_bed::{Bed, WAIT};

/// Per-source limits out of the way: every flow comes from 127.0.0.1.
const MANY_FLOWS: &str = "[limits]\nnew_connections_per_source_per_sec = 1000000\n\
    new_connections_per_source_burst = 1000000\nmax_unauthenticated_per_source = 10000\n\
    [udp]\nmax_flows_per_client = 100000\ndatagrams_per_sec_per_client = 10000000\n\
    datagram_burst_per_client = 10000000\n";

fn key() -> Key {
    Key::from_bytes(std::array::from_fn(|i| i as u8))
}

/// An MPTCP connection to the concentrator with a sealed UDP request for `dest`, its
/// reply read.
fn open_flow(listen: SocketAddr, dest: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP)).unwrap();
    socket.connect(&listen.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).unwrap();
    let client: ClientId = "home".parse().unwrap();
    let (_, wire) =
        ClientHandshake::seal(&Message::udp_request(dest), &client, &key(), now, nonce).unwrap();
    stream.write_all(&wire).unwrap();
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [1, 1, 0x22, 0x63], "the flow is refused");
    stream
}

/// Read capsules from `stream` into `buf` until one DATAGRAM is whole; its length.
fn read_datagram(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        if let Ok(Some((capsule, used))) = decode_capsule(buf) {
            let len = match capsule {
                Capsule::Datagram(p) => Some(p.len()),
                _ => None,
            };
            buf.drain(..used);
            if let Some(len) = len {
                return Some(len);
            }
            continue;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn echo_once(stream: &mut TcpStream, size: usize) {
    let mut wire = Vec::new();
    encode_datagram(&vec![0x5a; size], &mut wire).unwrap();
    stream.write_all(&wire).unwrap();
    assert_eq!(read_datagram(stream, &mut Vec::new()), Some(size));
}

#[test]
#[ignore = "needs root and netns; a measurement"]
fn resident_memory_per_udp_flow() {
    let bed = Bed::start("udp-rss", MANY_FLOWS);
    let (listen, echo) = (bed.listen, bed.echo.addr);
    // Warm up the runtime and the allocator with one flow, closed.
    bed.ns.run(|| echo_once(&mut open_flow(listen, echo), 1400));
    bed.wait_metric("mpbond_udp_flows_active", 0);
    let base = bed.rss_kib();

    // 1,000 idle flows, each after one small datagram each way (the independent client).
    let mut hold = bed
        .client_command("hold", echo, ", \"count\": 1000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = [0u8; 64];
    let n = hold.stdout.as_mut().unwrap().read(&mut line).unwrap();
    let said = String::from_utf8_lossy(&line[..n]).to_string();
    assert!(said.contains("\"opened\": 1000"), "{said}");
    bed.wait_metric("mpbond_udp_flows_active", 1000);
    let idle = bed.rss_kib();
    drop(hold.stdin.take());
    hold.wait().unwrap();
    bed.wait_metric("mpbond_udp_flows_active", 0);
    let after_idle = bed.rss_kib();

    // 200 flows that each carried a 65,000-byte datagram both ways (every buffer grown).
    let flows: Vec<TcpStream> = bed.ns.run(|| {
        (0..200)
            .map(|_| {
                let mut s = open_flow(listen, echo);
                echo_once(&mut s, 65_000);
                s
            })
            .collect()
    });
    bed.wait_metric("mpbond_udp_flows_active", 200);
    let big = bed.rss_kib();
    drop(flows);

    let per = |rss: u64, base: u64, n: u64| (rss.saturating_sub(base) as f64) / n as f64;
    println!("concentrator RSS: base {base} KiB (one flow opened and closed)");
    println!(
        "  1000 idle flows: {idle} KiB, {:.1} KiB a flow; after they closed: {after_idle} KiB",
        per(idle, base, 1000)
    );
    println!(
        "  200 flows after a 65,000-byte datagram each way: {big} KiB, {:.1} KiB a flow over {after_idle} KiB",
        per(big, after_idle, 200)
    );
}

/// A UDP server in `ns` for the bulk measurements: it discards what it receives, and
/// answers a datagram that holds a count (8 bytes, big-endian) with that many datagrams
/// of [`BULK_SIZE`] bytes, as fast as it can send them. Runs until the process ends.
fn bulk_server(ns: &Netns) -> SocketAddr {
    let socket = ns.run(|| UdpSocket::bind("127.0.0.1:0").unwrap());
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let payload = vec![0x42u8; BULK_SIZE];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if n == 8 {
                let count = u64::from_be_bytes(buf[..8].try_into().unwrap());
                for _ in 0..count {
                    let _ = socket.send_to(&payload, from);
                }
            }
        }
    });
    addr
}

const BULK_SIZE: usize = 1200;

/// Concentrator CPU seconds per GB of UDP payload it relays while `run` moves a bulk
/// stream, and the bytes relayed (up, down).
fn cpu_per_gb(bed: &Bed, run: impl FnOnce()) -> (f64, u64, u64, f64) {
    let up0 = bed.metric("mpbond_udp_bytes_total{direction=\"up\"}");
    let down0 = bed.metric("mpbond_udp_bytes_total{direction=\"down\"}");
    let cpu0 = bed.cpu_secs();
    let started = Instant::now();
    run();
    bed.wait_metric("mpbond_udp_flows_active", 0);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = bed.cpu_secs() - cpu0;
    let up = bed.metric("mpbond_udp_bytes_total{direction=\"up\"}") - up0;
    let down = bed.metric("mpbond_udp_bytes_total{direction=\"down\"}") - down0;
    (cpu / ((up + down) as f64 / 1e9), up, down, elapsed)
}

#[test]
#[ignore = "needs root and netns; a measurement"]
fn cpu_seconds_per_gigabyte_of_a_bulk_stream() {
    let bed = Bed::start("udp-cpu", MANY_FLOWS);
    let server = bulk_server(&bed.ns);
    let listen = bed.listen;
    const COUNT: usize = 500_000;

    // Upstream: the client writes capsules as fast as the stream takes them; the
    // server discards the datagrams.
    let (up_cost, up, _, up_secs) = cpu_per_gb(&bed, || {
        bed.ns.run(|| {
            let mut stream = open_flow(listen, server);
            let mut batch = Vec::new();
            for _ in 0..64 {
                encode_datagram(&[0x42; BULK_SIZE], &mut batch).unwrap();
            }
            for _ in 0..COUNT / 64 {
                stream.write_all(&batch).unwrap();
            }
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let _ = stream.read(&mut [0u8; 1]);
        })
    });
    // Downstream: one datagram asks the server for COUNT datagrams; the client reads
    // capsules until the stream has been quiet for a second.
    let mut received = 0usize;
    let (down_cost, _, down, down_secs) = cpu_per_gb(&bed, || {
        bed.ns.run(|| {
            let mut stream = open_flow(listen, server);
            let mut ask = Vec::new();
            encode_datagram(&(COUNT as u64).to_be_bytes(), &mut ask).unwrap();
            stream.write_all(&ask).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            let mut buf = Vec::new();
            while read_datagram(&mut stream, &mut buf).is_some() {
                received += 1;
            }
        })
    });
    let queue_full = bed.metric("mpbond_udp_drops_total{reason=\"queue_full\"}");
    println!(
        "upstream: {up} bytes in {up_secs:.1} s ({:.0} Mbit/s): {up_cost:.2} CPU-s per GB",
        up as f64 * 8.0 / up_secs / 1e6
    );
    println!(
        "downstream: {down} bytes ({received} of {COUNT} datagrams reached the client, \
         {queue_full} dropped at the queue) in {down_secs:.1} s: {down_cost:.2} CPU-s per GB"
    );
    assert!(up > 0 && down > 0);
}
