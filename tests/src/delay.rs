//! WAN link emulation for the test bed: a userspace delay line at each ISP.
//!
//! The kernel here has neither `netem` nor `fq` (so no EDT delay from a tc
//! BPF program), hence `mpbond-tb delay` bridges frames with a delay, jitter,
//! random loss and scripted outages (see its module docs for the model).
//! [`TestBed::add_wan_emulation`] splices it into ISP `i`'s link to the core,
//! away from the TBF shapers on the router ↔ ISP link:
//!
//! ```text
//! before:  isp<i>: uplink (10.250.i.2) ═══════════════════════ core: isp<i>
//! after:   isp<i>: uplink (10.250.i.2) ══ dly ⇄ [delay] ⇄ wire ══ core: isp<i>
//! ```
//! `dly` and `wire` carry no addresses, ARP or IPv6; the delay process reads
//! every frame on one and sends it out of the other later. The core's
//! neighbour entries are flushed, so it learns the new `uplink`'s MAC.
//!
//! **GSO is off into the line**: `uplink` (ISP) and `isp<i>` (core) get
//! `gso_max_segs 1`, so the kernel segments before the line and every frame
//! it sees is one packet: 1 % loss is 1 % of packets, not 1 % of 64 KiB
//! super-frames (which would be bursts of ~44 losses), and jitter and the
//! FIFO act per packet. [`DirectionStats::gso_frames`] counts the
//! super-frames that came anyway (0 in the fidelity test).
//!
//! ```no_run
//! use mpbond_tests::TestBed;
//! let bed = TestBed::builder().wans(&[40, 60]).build();
//! let mut delays = bed.add_wan_delays(10).unwrap();  // RTT + 20 ms on every WAN
//! let stats = delays.line_mut(1).unwrap().stats().unwrap();
//! println!("download: {} of {} packets lost", stats.ba.lost_segments, stats.ba.segments);
//! ```
//! Profiles (rate, RTT, jitter, loss, outages per WAN) are in [`crate::profiles`].

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bed::TestBed;
use crate::daemons::bin_path;
use crate::error::BedError;
use crate::proc::ChildGuard;
use crate::profiles::LinkSpec;
use crate::tools::TB;
use crate::topology::Node;

/// How long the delay process may take to say it is ready or answer for stats.
const READY_LIMIT: Duration = Duration::from_secs(10);

/// The counters of one direction of a delay line, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionStats {
    /// Frames read (a GSO super-frame is one frame).
    pub frames: u64,
    /// Packets those frames are on the wire (a super-frame counts its segments).
    pub segments: u64,
    /// Bytes of those frames (link header included).
    pub bytes: u64,
    /// Frames that were GSO super-frames of more than one segment.
    pub gso_frames: u64,
    /// Frames lost at random, and their packets.
    pub lost_frames: u64,
    pub lost_segments: u64,
    /// Frames lost in scripted outages, and their packets.
    pub outage_frames: u64,
    pub outage_segments: u64,
    /// Frames sent on, and frames the outgoing device refused.
    pub sent_frames: u64,
    pub send_errors: u64,
}

/// Both directions of a delay line: `ab` is upload (ISP → core, towards the
/// internet), `ba` is download.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayStats {
    pub ab: DirectionStats,
    pub ba: DirectionStats,
}

impl DelayStats {
    /// Counters of the upload direction (router → internet).
    pub fn upload(&self) -> &DirectionStats {
        &self.ab
    }

    /// Counters of the download direction (internet → router).
    pub fn download(&self) -> &DirectionStats {
        &self.ba
    }
}

/// One running delay line; dropping it stops it (the link then carries nothing).
#[derive(Debug)]
pub struct DelayLine {
    wan: usize,
    seed: u64,
    child: ChildGuard,
    lines: Receiver<String>,
}

impl DelayLine {
    /// The WAN it sits on.
    pub fn wan(&self) -> usize {
        self.wan
    }

    /// The seed of its loss and jitter generator (to repeat a run).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Its counters now (it answers SIGUSR1 with a stats line).
    pub fn stats(&mut self) -> Result<DelayStats, BedError> {
        while self.lines.try_recv().is_ok() {}
        self.child.signal(libc::SIGUSR1);
        loop {
            let line = self
                .lines
                .recv_timeout(READY_LIMIT)
                .map_err(|_| BedError::Timeout {
                    cmd: self.child.cmd().to_owned(),
                    secs: READY_LIMIT.as_secs(),
                })?;
            if line.contains("\"ab\"") {
                return serde_json::from_str(&line)
                    .map_err(|e| BedError::Usage(format!("bad delay stats {line:?}: {e}")));
            }
        }
    }

    /// CPU seconds (user + system) it has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        process_cpu_seconds(self.pid())
    }
}

/// The delay lines of a bed, WAN 1 first.
#[derive(Debug)]
pub struct WanDelays {
    lines: Vec<DelayLine>,
}

impl WanDelays {
    /// Pids of the delay processes.
    pub fn pids(&self) -> Vec<u32> {
        self.lines.iter().map(DelayLine::pid).collect()
    }

    /// Seeds of the delay lines, WAN 1 first.
    pub fn seeds(&self) -> Vec<u64> {
        self.lines.iter().map(DelayLine::seed).collect()
    }

    /// The delay line of WAN `i` (1-based).
    pub fn line_mut(&mut self, i: usize) -> Option<&mut DelayLine> {
        self.lines.iter_mut().find(|l| l.wan == i)
    }

    /// All of them, WAN 1 first.
    pub fn lines_mut(&mut self) -> &mut [DelayLine] {
        &mut self.lines
    }

    /// CPU seconds all of them have used so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.lines.iter().filter_map(DelayLine::cpu_seconds).sum()
    }
}

impl FromIterator<DelayLine> for WanDelays {
    fn from_iter<T: IntoIterator<Item = DelayLine>>(iter: T) -> Self {
        Self {
            lines: iter.into_iter().collect(),
        }
    }
}

impl TestBed {
    /// [`Self::add_wan_delay`] on every WAN, `ms` one way.
    pub fn add_wan_delays(&self, ms: u64) -> Result<WanDelays, BedError> {
        (1..=self.wan_rates().len())
            .map(|i| self.add_wan_delay(i, ms))
            .collect()
    }

    /// Delay every frame between ISP `i` and the core by `ms`, each way
    /// (so WAN `i`'s RTT grows by 2 × `ms`), with no jitter or loss.
    pub fn add_wan_delay(&self, i: usize, ms: u64) -> Result<DelayLine, BedError> {
        self.start_delay_line(i, &["--ms", &ms.to_string(), "--seed", "0"])
    }

    /// Emulate `link` on WAN `i` (its delay, jitter, loss and outages; the
    /// rate is the TBF shapers', set when the bed or WAN was built). The
    /// generator is seeded with `seed`, or a random seed ([`DelayLine::seed`]).
    pub fn add_wan_emulation(
        &self,
        i: usize,
        link: &LinkSpec,
        seed: Option<u64>,
    ) -> Result<DelayLine, BedError> {
        let args = link.delay_args(seed);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.start_delay_line(i, &args)
    }

    fn start_delay_line(&self, i: usize, extra: &[&str]) -> Result<DelayLine, BedError> {
        self.splice_delay_ports(i)?;
        self.run_delay_line(i, extra)
    }

    /// Stop WAN `i`'s delay line in `delays` and emulate `link` there instead (the
    /// ports stay spliced; the link carries nothing for the moment in between).
    pub fn replace_wan_emulation(
        &self,
        delays: &mut WanDelays,
        i: usize,
        link: &LinkSpec,
        seed: Option<u64>,
    ) -> Result<(), BedError> {
        let at = delays
            .lines
            .iter()
            .position(|l| l.wan == i)
            .ok_or_else(|| BedError::Usage(format!("no delay line on WAN {i}")))?;
        drop(delays.lines.remove(at));
        let args = link.delay_args(seed);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let line = self.run_delay_line(i, &args)?;
        delays.lines.insert(at, line);
        Ok(())
    }

    /// Run the delay line between the spliced ports of ISP `i`.
    fn run_delay_line(&self, i: usize, extra: &[&str]) -> Result<DelayLine, BedError> {
        let bin = bin_path(TB)?;
        let bin = bin.to_string_lossy();
        let mut args = vec![&*bin, "delay", "--a", "dly", "--b", "wire"];
        args.extend_from_slice(extra);
        let mut child = self.spawn(Node::Isp(i), &args)?;
        let lines = stdout_lines(&mut child)?;
        let line = lines
            .recv_timeout(READY_LIMIT)
            .map_err(|_| BedError::Timeout {
                cmd: child.cmd().to_owned(),
                secs: READY_LIMIT.as_secs(),
            })?;
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        let seed = ready.get("seed").and_then(serde_json::Value::as_u64);
        match (ready.get("event").and_then(|e| e.as_str()), seed) {
            (Some("ready"), Some(seed)) => Ok(DelayLine {
                wan: i,
                seed,
                child,
                lines,
            }),
            _ => Err(BedError::Usage(format!(
                "delay line on ISP {i} failed: {line}"
            ))),
        }
    }

    /// Put the `dly` ⇄ `wire` ports into ISP `i`'s link to the core, with GSO
    /// off on the two devices that send into them.
    fn splice_delay_ports(&self, i: usize) -> Result<(), BedError> {
        let isp = Node::Isp(i);
        self.netns(isp)?;
        let v4 = format!(
            "link set uplink down\n\
             addr flush dev uplink\n\
             link set uplink name wire\n\
             link add uplink type veth peer name dly\n\
             link set uplink gso_max_segs 1\n\
             link set wire arp off promisc on up\n\
             link set dly arp off promisc on up\n\
             link set uplink up\n\
             addr add 10.250.{i}.2/30 dev uplink\n\
             addr add 2001:db8:250:{i}::2/64 dev uplink nodad\n\
             route add default via 10.250.{i}.1\n"
        );
        let sysctls = [
            "net.ipv6.conf.wire.disable_ipv6=1",
            "net.ipv6.conf.dly.disable_ipv6=1",
        ];
        // IPv6 goes off on the bridge ports before they come up, so they send nothing.
        let (first, rest) = v4.split_at(v4.find("link set wire").unwrap_or(0));
        self.ip_batch(isp, first, "")?;
        let mut sysctl = self.netns(isp)?.command("sysctl");
        sysctl.arg("-q").arg("-w").args(sysctls);
        crate::proc::run(sysctl, None, Duration::from_secs(10))?;
        self.ip_batch(
            isp,
            rest,
            &format!("route add default via 2001:db8:250:{i}::1\n"),
        )?;
        self.ip_batch(
            Node::Core,
            &format!("link set isp{i} gso_max_segs 1\nneigh flush dev isp{i}\n"),
            "",
        )
    }
}

/// Every stdout line of `child`, from a reader thread.
fn stdout_lines(child: &mut ChildGuard) -> Result<Receiver<String>, BedError> {
    let stdout = child
        .child_mut()
        .stdout
        .take()
        .ok_or_else(|| BedError::Usage(format!("{}: no stdout", child.cmd())))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// User + system CPU seconds of `pid` (all its threads), from `/proc/PID/stat`.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}
