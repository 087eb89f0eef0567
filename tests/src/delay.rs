//! WAN latency for the test bed: a userspace delay line at each ISP.
//!
//! The kernel here has neither `netem` nor `fq` (so no EDT delay from a tc
//! BPF program), hence `mpbond-tb delay` bridges frames with a fixed delay.
//! [`TestBed::add_wan_delay`] splices it into ISP `i`'s link to the core,
//! away from the TBF shapers on the router ↔ ISP link:
//!
//! ```text
//! before:  isp<i>: uplink (10.250.i.2) ═══════════════════════ core: isp<i>
//! after:   isp<i>: uplink (10.250.i.2) ══ dly ⇄ [delay] ⇄ wire ══ core: isp<i>
//! ```
//! `dly` and `wire` carry no addresses, ARP or IPv6; the delay process reads
//! every frame on one and sends it out of the other `ms` later. The core's
//! neighbour entries are flushed, so it learns the new `uplink`'s MAC.
//!
//! ```no_run
//! use mpbond_tests::TestBed;
//! let bed = TestBed::builder().wans(&[40, 60]).build();
//! let _delays = bed.add_wan_delays(10).unwrap();  // RTT + 20 ms on every WAN
//! ```

use std::time::Duration;

use crate::bed::TestBed;
use crate::daemons::bin_path;
use crate::error::BedError;
use crate::loadgen::first_line;
use crate::proc::ChildGuard;
use crate::tools::TB;
use crate::topology::Node;

/// How long the delay process may take to say it is ready.
const READY_LIMIT: Duration = Duration::from_secs(10);

/// The delay lines of a bed; dropping it stops them (the links then carry nothing).
#[derive(Debug)]
pub struct WanDelays {
    children: Vec<ChildGuard>,
}

impl WanDelays {
    /// Pids of the delay processes.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(ChildGuard::pid).collect()
    }
}

impl TestBed {
    /// [`Self::add_wan_delay`] on every WAN, `ms` one way.
    pub fn add_wan_delays(&self, ms: u64) -> Result<WanDelays, BedError> {
        let mut children = Vec::new();
        for i in 1..=self.wan_rates().len() {
            children.push(self.add_wan_delay(i, ms)?);
        }
        Ok(WanDelays { children })
    }

    /// Delay every frame between ISP `i` and the core by `ms`, each way
    /// (so WAN `i`'s RTT grows by 2 × `ms`). The returned guard is the delay
    /// process: while it lives, frames flow; once it is dropped, none do.
    pub fn add_wan_delay(&self, i: usize, ms: u64) -> Result<ChildGuard, BedError> {
        let isp = Node::Isp(i);
        self.netns(isp)?;
        let v4 = format!(
            "link set uplink down\n\
             addr flush dev uplink\n\
             link set uplink name wire\n\
             link add uplink type veth peer name dly\n\
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
        self.ip_batch(Node::Core, &format!("neigh flush dev isp{i}\n"), "")?;
        let bin = bin_path(TB)?;
        let bin = bin.to_string_lossy();
        let ms = ms.to_string();
        let mut child = self.spawn(
            isp,
            &[&bin, "delay", "--a", "dly", "--b", "wire", "--ms", &ms],
        )?;
        let line = first_line(&mut child, READY_LIMIT)?;
        if !line.contains("\"ready\"") {
            return Err(BedError::Usage(format!(
                "delay line on ISP {i} failed: {line}"
            )));
        }
        Ok(child)
    }
}
