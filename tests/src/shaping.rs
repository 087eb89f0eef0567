//! The TBF shapers' queue, bounded in time.
//!
//! The bed shapes each WAN with `tbf rate R burst B latency 25ms` (router `wan<i>` for
//! upload, ISP `cust` for download; `topology::Plan::tc_script`). `tc` turns `latency`
//! into the queue's byte limit as `R × latency + B`, so the burst that the bed needs
//! (max(128 KiB, 4 ms of rate): `topology::tbf_burst`) also lengthens the queue: 77 ms
//! at 20 Mbit/s, 46 ms at 50. A DSL or fibre line's shaper has a modest buffer that does
//! not grow with a token bucket, and a loss-based sender fills whatever queue there is,
//! so the bed's 10 ms path ran at 64 ms under load.
//!
//! [`TestBed::bound_tbf_queues`] replaces every shaper with one whose queue holds at
//! most `ms` at its rate (`limit` in bytes instead of `latency`), keeping the rate and
//! the burst: the bucket still lets a burst through at line rate after an idle spell,
//! but a standing queue is at most `ms` long. The limit never goes below
//! [`MIN_TBF_LIMIT`], so one 64 KiB GSO frame of the router's own devices still fits.
//!
//! The bucket's burst is a second departure from a real line: after an idle spell a
//! 128 KiB burst leaves at the veth's speed, and a sender that goes idle now and then
//! (an MPTCP subflow its scheduler does not feed) measures the burst as bandwidth. A
//! [`TbfShape::smooth`] shaper adds TBF's peak-rate bucket of [`PEAK_FRAMES`] frames at
//! 1 % above the rate, so nothing leaves faster than the line for more than a few frames,
//! whatever the bucket holds.
//!
//! **Why a few frames, not one.** With one frame, TBF sends a packet only when the
//! peak bucket has refilled to exactly one frame, and the qdisc watchdog that wakes it
//! always fires a little late. The peak bucket cannot hold more than that one frame, so
//! every packet's lateness is lost for good, and the line runs at 1514 B ÷ (a frame's
//! time + the lateness): at the 1 % headroom any lateness over 1 % of a frame's time
//! (2.4 µs at 50 Mbit/s) costs rate. Measured here (iperf3, cubic, a TBF of 25 ms on a
//! veth, no delay, one 4-second run each), goodput ÷ rate at 20 / 50 / 100 Mbit/s: 0.922 / 0.892 / 0.825 with
//! one frame, 0.963 / 0.959 / 0.956 with two, 0.965 / 0.959 / 0.957 with four, and
//! 0.956 with no peak bucket (headers allow 0.956). A bucket of a few frames lets a late
//! packet's successor leave at once, so the main bucket's rate holds, and a burst above
//! the rate is at most [`PEAK_FRAMES`] frames (6 KiB), not the main bucket's 128 KiB.

use crate::bed::TestBed;
use crate::error::BedError;
use crate::topology::{tbf_burst, Node};

/// The smallest queue limit in bytes: one 64 KiB GSO frame and one full-size packet.
pub const MIN_TBF_LIMIT: u64 = 64 * 1024 + 1514;

/// The smallest queue limit of a smooth shaper, which segments GSO frames (its largest
/// packet is [`PEAK_MTU`]): 8 full-size frames.
pub const MIN_SMOOTH_TBF_LIMIT: u64 = 8 * PEAK_MTU as u64;

/// The TBF queue limit in bytes that holds `ms` at `rate_mbit`.
pub fn tbf_limit(rate_mbit: u32, ms: u32) -> u64 {
    queue_bytes(rate_mbit, ms).max(MIN_TBF_LIMIT)
}

fn queue_bytes(rate_mbit: u32, ms: u32) -> u64 {
    u64::from(rate_mbit) * 1_000_000 / 8 * u64::from(ms) / 1000
}

/// The shaping of the link profiles ([`TestBed::apply_profile`]): 25 ms of queue, no
/// bursts above the rate.
pub const PROFILE_SHAPE: TbfShape = TbfShape {
    queue_ms: 25,
    smooth: true,
};

/// How [`TestBed::reshape_tbf`] shapes each WAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TbfShape {
    /// The queue holds at most this long at the rate.
    pub queue_ms: u32,
    /// No bursts above the rate: a second bucket of [`PEAK_FRAMES`] packets at
    /// [`PEAK_PERCENT`] of the rate (TBF `peakrate`/`mtu`), as a line's own bit rate, not a policer, sets it.
    pub smooth: bool,
}

/// The peak rate of a [`TbfShape::smooth`] shaper, in percent of its rate (TBF wants it
/// above the rate).
pub const PEAK_PERCENT: u32 = 101;

/// A full-size frame: the unit of a smooth shaper's peak bucket and its smallest queue.
pub const PEAK_MTU: u32 = 1514;

/// The peak bucket of a smooth shaper, in full-size frames (TBF `mtu`; larger GSO frames
/// are segmented by TBF). One frame loses the watchdog's lateness on every packet (4–14 %
/// of the rate here; module docs); four absorb it.
pub const PEAK_FRAMES: u32 = 4;

/// The `tc` command that shapes `dev` at `rate_mbit` as `shape` says.
pub fn bounded_tbf(dev: &str, rate_mbit: u32, shape: TbfShape) -> String {
    let limit = if shape.smooth {
        queue_bytes(rate_mbit, shape.queue_ms).max(MIN_SMOOTH_TBF_LIMIT)
    } else {
        tbf_limit(rate_mbit, shape.queue_ms)
    };
    let mut cmd = format!(
        "tc qdisc replace dev {dev} root tbf rate {rate_mbit}mbit burst {} limit {limit}",
        tbf_burst(rate_mbit),
    );
    if shape.smooth {
        let peak_kbit = u64::from(rate_mbit) * 10 * u64::from(PEAK_PERCENT);
        let peak_bucket = PEAK_FRAMES * PEAK_MTU;
        cmd.push_str(&format!(" peakrate {peak_kbit}kbit mtu {peak_bucket}"));
    }
    cmd
}

impl TestBed {
    /// Bound every shaped WAN's TBF queue to `ms` at its rate, both directions (see the
    /// module docs). Unshaped WANs stay unshaped.
    pub fn bound_tbf_queues(&self, ms: u32) -> Result<(), BedError> {
        self.reshape_tbf(TbfShape {
            queue_ms: ms,
            smooth: false,
        })
    }

    /// Replace every shaped WAN's TBF, both directions, with one shaped as `shape`.
    pub fn reshape_tbf(&self, shape: TbfShape) -> Result<(), BedError> {
        for (i, &rate) in self.plan.rates.iter().enumerate() {
            if rate == 0 {
                continue;
            }
            let wan = i + 1;
            self.exec(
                Node::Router,
                &bounded_tbf(&format!("wan{wan}"), rate, shape),
            )?;
            self.exec(Node::Isp(wan), &bounded_tbf("cust", rate, shape))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_queue_in_time_with_room_for_a_gso_frame() {
        assert_eq!(tbf_limit(20, 25), 62_500.max(MIN_TBF_LIMIT));
        assert_eq!(tbf_limit(50, 25), 156_250);
        assert_eq!(tbf_limit(100, 20), 250_000);
        assert_eq!(tbf_limit(5, 25), MIN_TBF_LIMIT);
    }

    #[test]
    fn the_command_keeps_rate_and_burst_and_sets_the_limit() {
        let shape = TbfShape {
            queue_ms: 25,
            smooth: false,
        };
        assert_eq!(
            bounded_tbf("cust", 50, shape),
            "tc qdisc replace dev cust root tbf rate 50mbit burst 131072 limit 156250"
        );
        let smooth = TbfShape {
            smooth: true,
            ..shape
        };
        assert_eq!(
            bounded_tbf("wan1", 20, smooth),
            "tc qdisc replace dev wan1 root tbf rate 20mbit burst 131072 limit 62500 \
             peakrate 20200kbit mtu 6056"
        );
        assert!(bounded_tbf("wan2", 5, smooth).contains(" limit 15625 "));
        assert!(bounded_tbf("wan2", 1, smooth).contains(" limit 12112 "));
    }
}
