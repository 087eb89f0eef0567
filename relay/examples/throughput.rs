//! Relay throughput on loopback: `splice` against the copy fallback.
//!
//! ```text
//! cargo run -p mpbond-relay --profile bench-fast --example throughput -- [GiB, default 4]
//! ```
//!
//! A source thread writes N GiB into `source ⇄ a`, the relay moves them from `a` to `b` on
//! its own single-threaded runtime, and a sink thread reads them from `b ⇄ sink`. The
//! endpoints cost the same in both modes (one copy each), so the difference between the
//! modes is the relay's. The relay thread's own CPU time is measured too, which matters
//! more than wall time on a busy machine.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use mpbond_relay::relay::{relay_with, Mode, RelayOpts, RelayStats};

const CHUNK: usize = 1 << 20;

fn main() {
    let gib: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let total = gib << 30;
    println!("relaying {gib} GiB over 127.0.0.1, one direction");
    for mode in [Mode::Splice, Mode::Copy] {
        let run = run(mode, total);
        let bits = total as f64 * 8.0;
        println!(
            "{mode:?}: {:.2} s wall, {:.2} Gbit/s; relay thread CPU {:.2} s, {:.2} Gbit/s per CPU second ({:?})",
            run.wall.as_secs_f64(),
            bits / run.wall.as_secs_f64() / 1e9,
            run.relay_cpu.as_secs_f64(),
            bits / run.relay_cpu.as_secs_f64() / 1e9,
            run.stats.close,
        );
        assert_eq!(run.stats.a_to_b, total, "{mode:?} lost bytes");
    }
}

struct Run {
    wall: Duration,
    relay_cpu: Duration,
    stats: RelayStats,
}

fn run(mode: Mode, total: u64) -> Run {
    let (mut source, a) = pair();
    let (b, mut sink) = pair();
    let relay = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let a = tokio_stream(a);
            let b = tokio_stream(b);
            let cpu = thread_cpu();
            let stats = relay_with(a, b, &RelayOpts::default(), mode).await;
            (stats, thread_cpu().saturating_sub(cpu))
        })
    });
    let started = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0; CHUNK];
        let mut got = 0u64;
        loop {
            match sink.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n as u64,
                Err(error) => panic!("sink: {error}"),
            }
        }
        (got, started.elapsed())
    });
    let buf = vec![0x5a; CHUNK];
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        source.write_all(&buf[..n]).expect("source write");
        left -= n as u64;
    }
    source.shutdown(Shutdown::Write).expect("source shutdown");
    let (got, wall) = reader.join().expect("sink thread");
    assert_eq!(got, total);
    drop(source);
    let (stats, relay_cpu) = relay.join().expect("relay thread");
    Run {
        wall,
        relay_cpu,
        stats,
    }
}

fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

fn tokio_stream(stream: TcpStream) -> tokio::net::TcpStream {
    stream.set_nonblocking(true).expect("nonblocking");
    tokio::net::TcpStream::from_std(stream).expect("register")
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
