//! The measurements the path-quality policy ([`crate::core::path_quality`]) is fed, one
//! [`PathSample`] per WAN every counter tick (`COUNTERS_EVERY`, 2 s): the device's byte
//! counters from the snapshot the tick already takes, the probes' median RTT and loss
//! from the WAN's state machine, and the smallest smoothed RTT of its live subflows from
//! the last passive sample ([`SubflowRtts`]), if that is recent. No extra
//! syscall and no per-byte work: everything is read where it is already gathered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::core::path_quality::PathSample;
use crate::model::wan::{Snapshot, Wan};
use crate::model::wan_book::WanBook;
use crate::model::wan_health::PassiveSample;

/// A subflow RTT older than this is not used (the WAN's subflows are gone or idle).
pub const SUBFLOW_RTT_FRESH: Duration = Duration::from_secs(2);

/// The last subflow RTT seen of each WAN, with when.
#[derive(Debug, Default, Clone)]
pub struct SubflowRtts {
    seen: HashMap<String, (Instant, Duration)>,
}

impl SubflowRtts {
    /// Keep the RTT of an active passive sample (an idle subflow's RTT is old news).
    pub fn record(&mut self, wan: &str, sample: &PassiveSample, now: Instant) {
        if let (true, Some(rtt)) = (sample.active, sample.srtt) {
            self.seen.insert(wan.to_owned(), (now, rtt));
        }
    }

    /// WAN `wan`'s subflow RTT, if seen within [`SUBFLOW_RTT_FRESH`] of `now`.
    pub fn get(&self, wan: &str, now: Instant) -> Option<Duration> {
        let (at, rtt) = self.seen.get(wan)?;
        (now.saturating_duration_since(*at) <= SUBFLOW_RTT_FRESH).then_some(*rtt)
    }
}

/// One sample per WAN whose device is in `snapshot`.
pub fn samples(
    wans: &[Wan],
    snapshot: &Snapshot,
    book: &WanBook,
    rtts: &SubflowRtts,
    now: Instant,
) -> Vec<(String, PathSample)> {
    wans.iter()
        .filter_map(|wan| {
            let link = snapshot.links.iter().find(|l| l.name == wan.device)?;
            let probe = book.entries().get(&wan.name).map(|e| &e.probe);
            let sample = PathSample {
                bytes: link.rx_bytes.saturating_add(link.tx_bytes),
                subflow_rtt: rtts.get(&wan.name, now),
                probe_rtt: probe.and_then(|p| p.rtt()),
                loss: probe.map_or(0.0, |p| p.loss()),
                loss_window_full: probe.is_some_and(|p| p.sent() >= p.settings().window),
            };
            Some((wan.name.clone(), sample))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fresh_active_subflow_rtts_count() {
        let t0 = Instant::now();
        let mut rtts = SubflowRtts::default();
        let busy = PassiveSample {
            subflows: 1,
            active: true,
            srtt: Some(Duration::from_millis(310)),
            ..PassiveSample::default()
        };
        rtts.record("lte", &busy, t0);
        let idle = PassiveSample {
            active: false,
            srtt: Some(Duration::from_millis(900)),
            ..busy
        };
        rtts.record("lte", &idle, t0 + Duration::from_secs(1));
        assert_eq!(
            rtts.get("lte", t0 + Duration::from_secs(1)),
            Some(Duration::from_millis(310))
        );
        assert_eq!(rtts.get("lte", t0 + Duration::from_secs(3)), None);
        assert_eq!(rtts.get("dsl", t0), None);
    }
}
