//! `mpbond-tb delay`: a userspace delay line between two interfaces, the test
//! bed's link emulation (the kernel here has neither `netem` nor `fq` for
//! EDT). Every frame seen on `--a` is sent out of `--b` later, and the other
//! way round: an L2 bridge through AF_PACKET sockets. Per direction it adds a
//! one-way delay with jitter, random loss from a seeded generator, and
//! scripted outages that lose everything both ways; the decisions are the
//! pure [`crate::delay_model`].
//!
//! The sockets use `PACKET_VNET_HDR`, so GSO super-frames and frames whose
//! checksum is still to be filled in cross as they are (the kernel segments
//! and checksums on the way out). A lost super-frame is a burst loss of all
//! its segments, so the bed turns GSO off on the devices that feed the line
//! (`gso_max_segs 1`) and the counters show how many super-frames came
//! anyway. Each direction is a FIFO: one thread reads, decides and stamps,
//! one sleeps and sends. The sender oversleeps by up to 0.5 ms so that a
//! stream of frames leaves in batches, one wake-up each, rather than one
//! sleep a frame: frames leave up to 0.5 ms late, never early.
//!
//! Output on stdout, one JSON object a line: `{"event":"ready","seed":S}`
//! once both sockets are bound, then a `{"event":"stats",...}` line
//! ([`mpbond_tests::delay::DelayStats`]) for every SIGUSR1.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mpbond_tests::delay::{DelayStats, DirectionStats};

use crate::delay_model::{Direction, DirectionSpec, Fate, OutageSchedule};

/// Options of `delay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One interface.
    #[arg(long)]
    a: String,
    /// The other interface.
    #[arg(long)]
    b: String,
    /// One-way delay in milliseconds, each direction.
    #[arg(long, default_value_t = 0.0)]
    ms: f64,
    /// One-way delay a → b in milliseconds (default `--ms`).
    #[arg(long)]
    ab_ms: Option<f64>,
    /// One-way delay b → a in milliseconds (default `--ms`).
    #[arg(long)]
    ba_ms: Option<f64>,
    /// Jitter in milliseconds, each direction: delays are drawn from ±this.
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Random loss in percent, each direction on its own.
    #[arg(long, default_value_t = 0.0)]
    loss_pct: f64,
    /// Seed of the loss and jitter generator (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Every this many milliseconds, an outage (`--outage-ms` of total loss, both ways).
    #[arg(long)]
    outage_every_ms: Option<u64>,
    /// Length of each outage in milliseconds.
    #[arg(long, default_value_t = 0)]
    outage_ms: u64,
}

const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// Room for a 64 KiB GSO frame, its link header and the virtio header.
const FRAME_MAX: usize = 70 * 1024;
/// How late a frame may leave after its due time (never early).
const SEND_SLACK: Duration = Duration::from_micros(500);
/// `struct virtio_net_hdr` in front of every frame.
const VNET_HDR_LEN: usize = 10;

/// Bridge until killed; returns only on a setup error or a dead direction.
pub fn run(args: &Args) -> io::Result<()> {
    let delays = [Some(args.ms), args.ab_ms, args.ba_ms, Some(args.jitter_ms)];
    if !(0.0..=100.0).contains(&args.loss_pct)
        || delays
            .into_iter()
            .flatten()
            .any(|ms| !(0.0..1e6).contains(&ms))
    {
        return Err(io::Error::other("loss is 0..=100 %, delays 0..1e6 ms"));
    }
    let a = PacketSocket::bind(&args.a)?;
    let b = PacketSocket::bind(&args.b)?;
    let seed = match args.seed {
        Some(seed) => seed,
        None => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
            u64::from_le_bytes(bytes)
        }
    };
    let outage = args.outage_every_ms.map(|every| OutageSchedule {
        every: Duration::from_millis(every),
        length: Duration::from_millis(args.outage_ms),
    });
    let spec = |ms: Option<f64>| DirectionSpec {
        delay: Duration::from_secs_f64(ms.unwrap_or(args.ms) / 1000.0),
        jitter: Duration::from_secs_f64(args.jitter_ms / 1000.0),
        loss: args.loss_pct / 100.0,
        outage,
    };
    let start = Instant::now();
    let ab_dir = Direction::new(spec(args.ab_ms), start, seed);
    let ba_dir = Direction::new(spec(args.ba_ms), start, seed ^ 0x5555_5555_5555_5555);
    // SIGUSR1 is taken by sigwait below; the threads inherit the mask.
    let signals = block_sigusr1()?;
    let (ab_count, ba_count) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
    let (a2, b2) = (a.try_clone()?, b.try_clone()?);
    let ab = {
        let count = ab_count.clone();
        std::thread::spawn(move || direction(a, b2, ab_dir, &count))
    };
    let ba = {
        let count = ba_count.clone();
        std::thread::spawn(move || direction(b, a2, ba_dir, &count))
    };
    println!("{{\"event\":\"ready\",\"seed\":{seed}}}");
    io::stdout().flush()?;
    while !ab.is_finished() && !ba.is_finished() {
        if wait_signal(&signals, Duration::from_millis(500)) {
            let stats = DelayStats {
                ab: ab_count.snapshot(),
                ba: ba_count.snapshot(),
            };
            let line = serde_json::to_string(&stats).map_err(io::Error::other)?;
            let mut out = io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
    }
    Err(io::Error::other("a direction stopped"))
}

/// The counters of one direction, written by its reader and sender threads.
#[derive(Debug, Default)]
struct Counters {
    frames: AtomicU64,
    segments: AtomicU64,
    bytes: AtomicU64,
    gso_frames: AtomicU64,
    lost_frames: AtomicU64,
    lost_segments: AtomicU64,
    outage_frames: AtomicU64,
    outage_segments: AtomicU64,
    sent_frames: AtomicU64,
    send_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DirectionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            frames: get(&self.frames),
            segments: get(&self.segments),
            bytes: get(&self.bytes),
            gso_frames: get(&self.gso_frames),
            lost_frames: get(&self.lost_frames),
            lost_segments: get(&self.lost_segments),
            outage_frames: get(&self.outage_frames),
            outage_segments: get(&self.outage_segments),
            sent_frames: get(&self.sent_frames),
            send_errors: get(&self.send_errors),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Read frames from `from`, decide their fate, and send the survivors out of `to`.
fn direction(from: PacketSocket, to: PacketSocket, mut model: Direction, count: &Arc<Counters>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let sender_count = count.clone();
    let sender = std::thread::spawn(move || {
        for (due, frame) in rx {
            let now = Instant::now();
            if due > now {
                // Oversleep a little, so the frames that become due meanwhile
                // leave in the same wake-up: one sleep per SEND_SLACK, not per frame.
                std::thread::sleep(due + SEND_SLACK - now);
            }
            // A frame the device refuses (it is down, say) is dropped, as a wire would.
            match to.send(&frame) {
                Ok(_) => add(&sender_count.sent_frames, 1),
                Err(_) => add(&sender_count.send_errors, 1),
            }
        }
    });
    let mut buf = vec![0u8; FRAME_MAX];
    loop {
        match from.recv(&mut buf) {
            Ok(n) => {
                let frame = &buf[..n];
                let segments = segments(frame);
                add(&count.frames, 1);
                add(&count.segments, segments);
                add(&count.bytes, n.saturating_sub(VNET_HDR_LEN) as u64);
                if segments > 1 {
                    add(&count.gso_frames, 1);
                }
                match model.admit(Instant::now()) {
                    Fate::SendAt(due) => {
                        if tx.send((due, frame.to_vec())).is_err() {
                            break;
                        }
                    }
                    Fate::Lost => {
                        add(&count.lost_frames, 1);
                        add(&count.lost_segments, segments);
                    }
                    Fate::OutageLost => {
                        add(&count.outage_frames, 1);
                        add(&count.outage_segments, segments);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                eprintln!("mpbond-tb delay: recv: {e}");
                break;
            }
        }
    }
    drop(tx);
    let _ = sender.join();
}

/// How many packets a frame (virtio header first) becomes on the wire: 1, or
/// a GSO super-frame's segment count.
fn segments(frame: &[u8]) -> u64 {
    const GSO_ECN: u8 = 0x80;
    const GSO_TCPV4: u8 = 1;
    const GSO_UDP: u8 = 3;
    const GSO_TCPV6: u8 = 4;
    const GSO_UDP_L4: u8 = 5;
    let Some(hdr) = frame.get(..VNET_HDR_LEN) else {
        return 1;
    };
    let gso_type = hdr[1] & !GSO_ECN;
    let gso_size = u16::from_ne_bytes([hdr[4], hdr[5]]) as usize;
    let csum_start = u16::from_ne_bytes([hdr[6], hdr[7]]) as usize;
    if gso_size == 0 {
        return 1;
    }
    let l4 = VNET_HDR_LEN + csum_start;
    let l4_len = match gso_type {
        GSO_TCPV4 | GSO_TCPV6 => match frame.get(l4 + 12) {
            Some(off) => usize::from(off >> 4) * 4,
            None => return 1,
        },
        GSO_UDP | GSO_UDP_L4 => 8,
        _ => return 1,
    };
    let payload = frame.len().saturating_sub(l4 + l4_len);
    payload.div_ceil(gso_size).max(1) as u64
}

/// Block SIGUSR1 in this thread (and the threads it starts); the set to wait on.
fn block_sigusr1() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; the old mask is not wanted (null).
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(set)
}

/// Wait up to `limit` for a signal of `set`; whether one came.
fn wait_signal(set: &libc::sigset_t, limit: Duration) -> bool {
    let timeout = libc::timespec {
        tv_sec: limit.as_secs() as libc::time_t,
        tv_nsec: limit.subsec_nanos() as libc::c_long,
    };
    // SAFETY: set and timeout are valid; the siginfo is not wanted (null).
    let rc = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
    rc == libc::SIGUSR1
}
/// An AF_PACKET socket bound to one interface, with virtio-net headers.
struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    fn bind(ifname: &str) -> io::Result<Self> {
        let name = CString::new(ifname).map_err(|_| io::Error::other("bad interface name"))?;
        // SAFETY: if_nametoindex reads a NUL-terminated string we own.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked below.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto)) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for opt in [PACKET_VNET_HDR, PACKET_IGNORE_OUTGOING] {
            mpbond_netlink::sockopt::set_int(&fd, libc::SOL_PACKET, opt, 1)?;
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        // SAFETY: sll is a valid sockaddr_ll and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
        })
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: frame is valid for reads of frame.len() bytes.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}
