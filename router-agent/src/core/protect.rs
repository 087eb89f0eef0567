//! Which WANs carry the legs of protected UDP flows (`[[udp.rule]] action = "protect"`,
//! `udp::protect`): the decision core ranks them from its per-WAN health, and publishes
//! the ranking with the other choices for new connections ([`super::UpstreamChoice`]).
//!
//! * **Usable**: mode not `off`, link up, not a metered WAN held back, probes say up or
//!   degraded (a WAN not probed yet or down carries no leg: a leg on it would be lost).
//! * **Order**: up before degraded (a degraded WAN loses probes), `on` before `backup`,
//!   then the lower smoothed RTT (the WAN probes' handshake time, as the hedge keeps it)
//!   in steps of [`RTT_STEP`], so a protected flow never waits for the slower line and
//!   jitter between two similar lines does not reorder them; unmeasured WANs go last.
//! * **Stall bound** of a leg on that WAN: `2 × srtt`, at least [`STALL_FLOOR`], at most
//!   [`STALL_CEILING`], [`STALL_UNMEASURED`] without an RTT. A leg whose WAN the merged
//!   stream has moved past for that long is replaced by one on the next WAN.
//!
//! Pure: the WANs and the RTTs are arguments.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::hedge::Hedging;
use crate::model::wan::{Health, Mode, Wan};

/// RTTs closer than this rank as equal.
pub const RTT_STEP: Duration = Duration::from_millis(10);
/// The shortest stall bound: below it ordinary jitter would re-leg.
pub const STALL_FLOOR: Duration = Duration::from_millis(100);
/// The longest stall bound.
pub const STALL_CEILING: Duration = Duration::from_millis(1000);
/// The stall bound of a WAN without a measured RTT.
pub const STALL_UNMEASURED: Duration = Duration::from_millis(300);

/// One WAN that can carry a leg, best first in [`leg_sources`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegSource {
    /// The WAN's name.
    pub wan: String,
    /// The address a leg binds to (the concentrator's family), so the WAN's policy rule
    /// routes it.
    pub addr: IpAddr,
    /// How long the merged stream may be ahead of a leg on this WAN before it counts as
    /// stalled (rounded to [`RTT_STEP`]).
    pub stall_after: Duration,
}

/// The WANs that can carry legs toward `concentrator`, best first (see the module docs).
pub fn leg_sources(wans: &[Wan], rtts: &Hedging, concentrator: SocketAddr) -> Vec<LegSource> {
    let step = |d: Duration| d.as_micros().div_ceil(RTT_STEP.as_micros()) as u32;
    let mut usable: Vec<(&Wan, Option<Duration>)> = wans
        .iter()
        .filter(|w| w.mode != Mode::Off && w.link_up && !w.standby)
        .filter(|w| matches!(w.health, Health::Up | Health::Degraded))
        .map(|w| (w, rtts.srtt(&w.name)))
        .collect();
    usable.sort_by_key(|(w, rtt)| {
        (
            w.health == Health::Degraded,
            w.mode == Mode::Backup,
            rtt.map_or(u32::MAX, step),
        )
    });
    usable
        .into_iter()
        .filter_map(|(w, rtt)| {
            let addr = w
                .addresses
                .iter()
                .map(|a| a.addr())
                .find(|a| a.is_ipv4() == concentrator.is_ipv4())?;
            Some(LegSource {
                wan: w.name.clone(),
                addr,
                stall_after: stall_bound(rtt),
            })
        })
        .collect()
}

/// `2 × srtt` within the floor and ceiling, rounded up to [`RTT_STEP`].
pub fn stall_bound(srtt: Option<Duration>) -> Duration {
    let bound = srtt.map_or(STALL_UNMEASURED, |rtt| {
        (rtt * 2).clamp(STALL_FLOOR, STALL_CEILING)
    });
    let step = RTT_STEP.as_micros();
    Duration::from_micros((bound.as_micros().div_ceil(step) * step) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wan(name: &str, addr: &str, health: Health, mode: Mode) -> Wan {
        Wan {
            name: name.into(),
            device: name.into(),
            ifindex: 1,
            addresses: vec![addr.parse().expect("net")],
            gateway4: None,
            gateway6: None,
            point_to_point: false,
            mode,
            health,
            link_up: true,
            ra_routes: Vec::new(),
            dev_default4: false,
            dev_default6: false,
            metered: false,
            standby: false,
        }
    }

    fn vps() -> SocketAddr {
        "192.0.2.1:4850".parse().expect("addr")
    }

    fn names(legs: &[LegSource]) -> Vec<&str> {
        legs.iter().map(|l| l.wan.as_str()).collect()
    }

    #[test]
    fn up_before_degraded_on_before_backup_then_faster_first() {
        let wans = vec![
            wan("slow", "10.0.1.2/24", Health::Up, Mode::On),
            wan("lossy", "10.0.2.2/24", Health::Degraded, Mode::On),
            wan("spare", "10.0.3.2/24", Health::Up, Mode::Backup),
            wan("fast", "10.0.4.2/24", Health::Up, Mode::On),
        ];
        let mut rtts = Hedging::default();
        rtts.record_rtt("slow", Duration::from_millis(80));
        rtts.record_rtt("fast", Duration::from_millis(12));
        rtts.record_rtt("lossy", Duration::from_millis(5));
        let legs = leg_sources(&wans, &rtts, vps());
        assert_eq!(names(&legs), ["fast", "slow", "spare", "lossy"]);
        assert_eq!(legs[0].addr, "10.0.4.2".parse::<IpAddr>().unwrap());
        assert_eq!(legs[0].stall_after, STALL_FLOOR);
        assert_eq!(legs[1].stall_after, Duration::from_millis(160));
        assert_eq!(legs[2].stall_after, STALL_UNMEASURED);
    }

    #[test]
    fn down_unknown_off_held_back_and_wrong_family_wans_carry_no_leg() {
        let mut held = wan("held", "10.0.5.2/24", Health::Up, Mode::On);
        held.standby = true;
        let mut unplugged = wan("unplugged", "10.0.6.2/24", Health::Up, Mode::On);
        unplugged.link_up = false;
        let wans = vec![
            wan("down", "10.0.1.2/24", Health::Down, Mode::On),
            wan("new", "10.0.2.2/24", Health::Unknown, Mode::On),
            wan("off", "10.0.3.2/24", Health::Up, Mode::Off),
            wan("v6", "2001:db8::2/64", Health::Up, Mode::On),
            held,
            unplugged,
            wan("good", "10.0.4.2/24", Health::Up, Mode::On),
        ];
        let legs = leg_sources(&wans, &Hedging::default(), vps());
        assert_eq!(names(&legs), ["good"]);
    }

    #[test]
    fn similar_rtts_keep_the_plan_order_and_the_bound_is_clamped() {
        let wans = vec![
            wan("a", "10.0.1.2/24", Health::Up, Mode::On),
            wan("b", "10.0.2.2/24", Health::Up, Mode::On),
        ];
        let mut rtts = Hedging::default();
        rtts.record_rtt("a", Duration::from_millis(21));
        rtts.record_rtt("b", Duration::from_millis(24));
        assert_eq!(names(&leg_sources(&wans, &rtts, vps())), ["a", "b"]);
        assert_eq!(stall_bound(Some(Duration::from_secs(5))), STALL_CEILING);
        assert_eq!(
            stall_bound(Some(Duration::from_micros(61_001))),
            Duration::from_millis(130)
        );
    }
}
