//! Happy Eyeballs for the first subflow of new upstream connections: which WAN address
//! a new connection starts from, which one it tries next when that one stays silent, and
//! how long "silent" is.
//!
//! An MPTCP connection adds subflows only once its initial subflow is established, so a
//! SYN sent into a black-holed WAN (link up, ISP dead) would hold the LAN client until
//! the health probes give up on that WAN, seconds later. Instead the proxy races: it
//! starts from [`Hedging::primary`], and when no SYN-ACK has come back after
//! [`Hedge::after`] it opens a second connection from [`Hedge::source`] (a fresh sealed
//! request) and keeps whichever completes first (`proxy::hedge`).
//!
//! * **The bound** is `max(3 × the primary WAN's smoothed RTT, HEDGE_FLOOR)`, at most
//!   [`HEDGE_CEILING`] (the kernel retransmits a lost SYN after 1 s anyway), rounded up
//!   to [`HEDGE_STEP`], and [`HEDGE_UNMEASURED`] while that WAN has no RTT yet. The RTT
//!   is the WAN probes' handshake time ([`Input::WanRtt`](super::Input::WanRtt)),
//!   smoothed as TCP's SRTT.
//! * **The order** of candidates: WANs whose probes say up (or degraded), `on` before
//!   `backup`, then WANs not probed yet; one address per WAN, of the concentrator's
//!   family. A WAN a hedge won against is a *suspect* for [`SUSPECT_FOR`]: it goes last,
//!   so the next connections start from a WAN that answers and pay no bound at all,
//!   while the probes (asked for at once) decide whether it is really down.
//! * **Connections that must move** ([`abandoned`], [`must_move`]): a connection whose
//!   handshake completed just before its WAN went dark has no second subflow (the
//!   kernel adds subflows only once the connection is fully established, which needs
//!   the concentrator's first data ACK) and would wait until the LAN client gives up.
//!   The proxy moves a connection that still waits for its Convert reply (so has relayed
//!   no reply byte and holds every LAN byte it sent) to another WAN when every subflow
//!   it has starts from an abandoned address (a WAN that is down, without link, or off),
//!   or when every one starts from an abandoned or suspect address and is itself
//!   failing: stalled (unacknowledged data, a retransmission timeout fired), or silent
//!   with a keepalive probe unanswered. The proxy turns keepalive on (after
//!   [`PROBE_IDLE`] of silence) while a connection waits for its reply and some WAN is
//!   abandoned or suspect, because in a
//!   downstream-only black hole the request was acknowledged before the hole and only
//!   the reply is lost: nothing is unacknowledged, so nothing stalls, and only a probe
//!   that asks for an ACK shows the subflow hears nothing. A slow destination answers
//!   the probe, so it is never moved. Suspicion alone is not enough: moving may
//!   deliver the request to the destination twice (in a downstream-only black hole
//!   the first copy did arrive), which needs the WAN gone or the connection's own
//!   subflow failing as well.
//! * **The primary** is the first candidate among the live ones (up or degraded), as
//!   [`super::preferred_source`] picks it; none: the main route decides, and the hedge
//!   is then the first candidate of all.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::model::wan::{Health, Mode, Wan};

/// The shortest bound: below it a hedge would race ordinary SYN jitter.
pub const HEDGE_FLOOR: Duration = Duration::from_millis(150);
/// The longest bound: the kernel's first SYN retransmit comes after 1 s.
pub const HEDGE_CEILING: Duration = Duration::from_secs(1);
/// The bound while the primary WAN has no measured RTT.
pub const HEDGE_UNMEASURED: Duration = Duration::from_millis(400);
/// The bound is this many round trips of the primary WAN.
pub const HEDGE_RTTS: u32 = 3;
/// The bound's granularity.
pub const HEDGE_STEP: Duration = Duration::from_millis(10);
/// A WAN a hedge won against starts no new connection for this long.
pub const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// The second attempt of a new upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hedge {
    /// The WAN address it starts from.
    pub source: IpAddr,
    /// How long the first attempt may go without a SYN-ACK before it starts.
    pub after: Duration,
}

/// What a hedged connection found out (reported by the proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HedgeOutcome {
    /// Where the first attempt started from (`None`: the main route).
    pub primary: Option<IpAddr>,
    /// The hedge's source.
    pub hedge: IpAddr,
    /// The hedge completed first (or the first attempt failed): the primary WAN did not
    /// answer within the bound.
    pub hedge_won: bool,
}

/// Per-WAN RTT and suspects; see the module docs.
#[derive(Debug, Default)]
pub struct Hedging {
    /// Smoothed handshake RTT per WAN name.
    srtt: BTreeMap<String, Duration>,
    /// Source addresses a hedge won against, until when they stay suspects.
    suspects: BTreeMap<IpAddr, Instant>,
}

impl Hedging {
    /// Feed one RTT sample of WAN `wan`: `srtt = 7/8 srtt + 1/8 sample` (RFC 6298).
    pub fn record_rtt(&mut self, wan: &str, rtt: Duration) {
        let srtt = self.srtt.get(wan).map_or(rtt, |&old| (old * 7 + rtt) / 8);
        self.srtt.insert(wan.to_owned(), srtt);
    }

    /// The smoothed RTT of WAN `wan`, if measured.
    pub fn srtt(&self, wan: &str) -> Option<Duration> {
        self.srtt.get(wan).copied()
    }

    /// Learn from a hedged connection. Returns whether the suspects changed (the source
    /// choice must then be made again).
    pub fn on_outcome(&mut self, outcome: HedgeOutcome, now: Instant) -> bool {
        match (outcome.hedge_won, outcome.primary) {
            (true, Some(slow)) => {
                let fresh = !self.is_suspect(slow, now);
                self.suspects.insert(slow, now + SUSPECT_FOR);
                self.suspects.remove(&outcome.hedge);
                fresh
            }
            _ => false,
        }
    }

    /// Forget suspects whose time is up. Returns whether any was forgotten.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.suspects.len();
        self.suspects.retain(|_, until| *until > now);
        self.suspects.len() != before
    }

    /// The suspects at `now`, sorted.
    pub fn suspects(&self, now: Instant) -> Vec<IpAddr> {
        self.suspects
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(addr, _)| *addr)
            .collect()
    }

    /// When the next suspect expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.suspects.values().min().copied()
    }

    fn is_suspect(&self, addr: IpAddr, now: Instant) -> bool {
        self.suspects.get(&addr).is_some_and(|until| *until > now)
    }

    /// Forget the RTT of WANs no longer planned.
    pub fn retain_wans(&mut self, wans: &[Wan]) {
        self.srtt
            .retain(|name, _| wans.iter().any(|w| &w.name == name));
    }

    /// Where new connections start, and their hedge.
    pub fn choose(
        &self,
        wans: &[Wan],
        concentrator: SocketAddr,
        now: Instant,
    ) -> (Option<IpAddr>, Option<Hedge>) {
        let mut candidates = candidates(wans, concentrator);
        // Stable: suspects go last, the order among the others stays.
        candidates.sort_by_key(|c| (self.is_suspect(c.addr, now), !c.live));
        let primary = candidates.iter().position(|c| c.live);
        let hedge_at = match primary {
            Some(p) => candidates.iter().enumerate().position(|(i, _)| i != p),
            None => (!candidates.is_empty()).then_some(0),
        };
        let after = primary.map_or(HEDGE_UNMEASURED, |p| self.bound(candidates[p].wan));
        let hedge = hedge_at.map(|h| Hedge {
            source: candidates[h].addr,
            after,
        });
        (primary.map(|p| candidates[p].addr), hedge)
    }

    /// How long a first attempt from WAN `wan` may stay silent: rounded up to
    /// [`HEDGE_STEP`], so that every probe's RTT sample does not publish new parameters.
    pub fn bound(&self, wan: &str) -> Duration {
        let bound = self
            .srtt(wan)
            .map_or(HEDGE_UNMEASURED, |rtt| (rtt * HEDGE_RTTS).max(HEDGE_FLOOR))
            .min(HEDGE_CEILING);
        let step = HEDGE_STEP.as_micros();
        Duration::from_micros((bound.as_micros().div_ceil(step) * step) as u64)
    }
}

/// The addresses (of the concentrator's family) of WANs no connection should wait on:
/// `down`, without link, or `off`. Sorted, so that the published value only changes
/// when the set does.
pub fn abandoned(wans: &[Wan], concentrator: SocketAddr) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = wans
        .iter()
        .filter(|w| w.mode == Mode::Off || !w.link_up || w.health == Health::Down)
        .flat_map(|w| w.addresses.iter().map(|a| a.addr()))
        .filter(|a| a.is_ipv4() == concentrator.is_ipv4())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// How long a subflow of a connection waiting for its reply may receive nothing before
/// the kernel sends it a keepalive probe (`TCP_KEEPIDLE`, whole seconds: 1 is the least
/// the kernel takes). The probe asks the concentrator for an ACK and carries no byte.
pub const PROBE_IDLE: Duration = Duration::from_secs(1);

/// One subflow of a connection waiting for its Convert reply, as the proxy reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitingSubflow {
    /// Its source address.
    pub source: IpAddr,
    /// It has unacknowledged data and a retransmission timeout fired since its last ACK.
    pub stalled: bool,
    /// Keepalive probes sent since its last ACK and not answered (`tcpi_probes`).
    pub probes: u8,
    /// Since it last received anything (an ACK or data).
    pub silent: Duration,
    /// Its smoothed RTT (`tcpi_rtt`).
    pub rtt: Duration,
}

impl WaitingSubflow {
    /// The subflow itself fails: it is stalled, or a keepalive probe it sent went
    /// unanswered for longer than [`answer_bound`] of its RTT. The probe leaves after
    /// [`PROBE_IDLE`] of silence, so the second case needs `silent` past both. It is how
    /// a downstream-only black hole shows on a connection whose bytes were all
    /// acknowledged before the hole: nothing unacknowledged to stall, and a reply (or
    /// the probe's ACK) that never comes.
    pub fn failing(&self) -> bool {
        self.stalled || (self.probes > 0 && self.silent >= PROBE_IDLE + answer_bound(self.rtt))
    }
}

/// How long an answer may take on a subflow with smoothed RTT `rtt`: as the hedge's
/// bound, `3 × rtt` within [`HEDGE_FLOOR`] and [`HEDGE_CEILING`].
pub fn answer_bound(rtt: Duration) -> Duration {
    (rtt * HEDGE_RTTS).clamp(HEDGE_FLOOR, HEDGE_CEILING)
}

/// Whether a connection still waiting for its Convert reply, with `subflows`, must move
/// to another WAN, given the `abandoned` and `suspect` addresses and where new
/// connections start now (`to`, [`Hedging::choose`]'s primary). It has a subflow, `to`
/// is neither abandoned nor suspect, and every subflow starts from an abandoned
/// address, or every one starts from an abandoned or suspect address and is failing
/// ([`WaitingSubflow::failing`]: stalled, or its keepalive probe unanswered).
/// A subflow on a live WAN (a join already made) carries the reply there, so that
/// connection stays; with no good WAN to go to, moving gains nothing.
pub fn must_move(
    subflows: &[WaitingSubflow],
    abandoned: &[IpAddr],
    suspects: &[IpAddr],
    to: Option<IpAddr>,
) -> bool {
    let gone = |s: &WaitingSubflow| abandoned.contains(&s.source);
    let failing = |s: &WaitingSubflow| s.failing() && (gone(s) || suspects.contains(&s.source));
    !subflows.is_empty()
        && to.is_some_and(|to| !abandoned.contains(&to) && !suspects.contains(&to))
        && (subflows.iter().all(gone) || subflows.iter().all(failing))
}

/// One WAN that could start a connection.
struct Candidate<'a> {
    wan: &'a str,
    addr: IpAddr,
    /// Its probes say up or degraded (else: not probed yet).
    live: bool,
}

/// Usable WANs in preference order (see the module docs), one address each.
fn candidates(wans: &[Wan], concentrator: SocketAddr) -> Vec<Candidate<'_>> {
    let rank = |w: &Wan| {
        let live = matches!(w.health, Health::Up | Health::Degraded);
        (!live, w.mode == Mode::Backup)
    };
    let mut usable: Vec<&Wan> = wans
        .iter()
        .filter(|w| w.mode != Mode::Off && w.link_up)
        // A metered WAN held back carries nothing, hedges included: a download that
        // fills a link's queue can delay a SYN-ACK past the bound on a healthy WAN.
        .filter(|w| !w.standby)
        .filter(|w| matches!(w.health, Health::Up | Health::Degraded | Health::Unknown))
        .collect();
    usable.sort_by_key(|w| rank(w));
    usable
        .into_iter()
        .filter_map(|w| {
            let addr = w
                .addresses
                .iter()
                .map(|a| a.addr())
                .find(|a| a.is_ipv4() == concentrator.is_ipv4())?;
            Some(Candidate {
                wan: &w.name,
                addr,
                live: matches!(w.health, Health::Up | Health::Degraded),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tests::wan;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const VPS: &str = "192.0.2.1:4850";

    fn two() -> Vec<Wan> {
        vec![
            wan("wan1", "10.200.1.2", Mode::On, Health::Up),
            wan("wan2", "10.200.2.2", Mode::On, Health::Up),
        ]
    }

    #[test]
    fn the_bound_is_three_rtts_of_the_primary_within_floor_and_ceiling() {
        let mut h = Hedging::default();
        let vps = VPS.parse().expect("addr");
        let t0 = Instant::now();
        assert_eq!(
            h.choose(&two(), vps, t0).1.map(|h| h.after),
            Some(HEDGE_UNMEASURED)
        );
        h.record_rtt("wan1", ms(80));
        h.record_rtt("wan2", ms(5));
        let (primary, hedge) = h.choose(&two(), vps, t0);
        assert_eq!(primary, Some(ip("10.200.1.2")));
        assert_eq!(
            hedge,
            Some(Hedge {
                source: ip("10.200.2.2"),
                after: ms(240)
            })
        );
        // Smoothed: one slow sample moves it by an eighth.
        h.record_rtt("wan1", ms(160));
        assert_eq!(h.srtt("wan1"), Some(ms(90)));
        assert_eq!(h.bound("wan1"), ms(270));
        h.record_rtt("wan1", ms(91));
        assert_eq!(h.bound("wan1"), ms(280), "270.375 ms rounds up to 280");
        h.record_rtt("wan1", ms(1));
        for _ in 0..40 {
            h.record_rtt("wan1", ms(1));
        }
        assert_eq!(h.bound("wan1"), HEDGE_FLOOR);
        for _ in 0..40 {
            h.record_rtt("wan1", ms(900));
        }
        assert_eq!(h.bound("wan1"), HEDGE_CEILING);
    }

    #[test]
    fn a_wan_a_hedge_won_against_goes_last_until_its_time_is_up() {
        let mut h = Hedging::default();
        let vps = VPS.parse().expect("addr");
        let t0 = Instant::now();
        let outcome = HedgeOutcome {
            primary: Some(ip("10.200.1.2")),
            hedge: ip("10.200.2.2"),
            hedge_won: true,
        };
        assert!(h.on_outcome(outcome, t0));
        assert!(!h.on_outcome(outcome, t0 + ms(100)), "already a suspect");
        assert_eq!(h.suspects(t0 + ms(100)), vec![ip("10.200.1.2")]);
        let (primary, hedge) = h.choose(&two(), vps, t0 + ms(100));
        assert_eq!(primary, Some(ip("10.200.2.2")));
        assert_eq!(hedge.map(|h| h.source), Some(ip("10.200.1.2")));
        assert_eq!(h.next_expiry(), Some(t0 + ms(100) + SUSPECT_FOR));
        assert!(!h.expire(t0 + SUSPECT_FOR));
        assert!(h.expire(t0 + ms(100) + SUSPECT_FOR));
        assert!(h.suspects(t0 + ms(100) + SUSPECT_FOR).is_empty());
        assert_eq!(
            h.choose(&two(), vps, t0 + SUSPECT_FOR * 2).0,
            Some(ip("10.200.1.2"))
        );
    }

    #[test]
    fn a_late_primary_is_no_suspect() {
        let mut h = Hedging::default();
        let t0 = Instant::now();
        let outcome = HedgeOutcome {
            primary: Some(ip("10.200.1.2")),
            hedge: ip("10.200.2.2"),
            hedge_won: false,
        };
        assert!(!h.on_outcome(outcome, t0));
        assert_eq!(h.next_expiry(), None);
    }

    #[test]
    fn down_off_and_linkless_wans_never_start_a_connection_unprobed_ones_only_as_hedge() {
        let vps = VPS.parse().expect("addr");
        let t0 = Instant::now();
        let mut wans = vec![
            wan("wan1", "10.200.1.2", Mode::On, Health::Down),
            wan("wan2", "10.200.2.2", Mode::Off, Health::Up),
            wan("wan3", "10.200.3.2", Mode::On, Health::Up),
            wan("wan4", "10.200.4.2", Mode::On, Health::Unknown),
            wan("wan5", "10.200.5.2", Mode::On, Health::Up),
        ];
        wans[4].link_up = false;
        let h = Hedging::default();
        let (primary, hedge) = h.choose(&wans, vps, t0);
        assert_eq!(primary, Some(ip("10.200.3.2")));
        assert_eq!(hedge.map(|h| h.source), Some(ip("10.200.4.2")));
        // Nothing live: the main route starts, the unprobed WAN hedges.
        wans[2].health = Health::Down;
        let (primary, hedge) = h.choose(&wans, vps, t0);
        assert_eq!(primary, None);
        assert_eq!(hedge.map(|h| h.source), Some(ip("10.200.4.2")));
        assert_eq!(hedge.map(|h| h.after), Some(HEDGE_UNMEASURED));
    }

    #[test]
    fn on_wans_come_before_backup_ones_and_one_wan_gives_no_hedge() {
        let vps = VPS.parse().expect("addr");
        let t0 = Instant::now();
        let wans = vec![
            wan("lte", "10.200.9.2", Mode::Backup, Health::Up),
            wan("dsl", "10.200.1.2", Mode::On, Health::Up),
        ];
        let h = Hedging::default();
        let (primary, hedge) = h.choose(&wans, vps, t0);
        assert_eq!(primary, Some(ip("10.200.1.2")));
        assert_eq!(hedge.map(|h| h.source), Some(ip("10.200.9.2")));
        assert_eq!(h.choose(&wans[1..], vps, t0).1, None);
    }

    #[test]
    fn a_metered_wan_held_back_is_neither_primary_nor_hedge() {
        let vps = VPS.parse().expect("addr");
        let t0 = Instant::now();
        let mut lte = wan("lte", "10.200.9.2", Mode::On, Health::Up);
        lte.metered = true;
        lte.standby = true;
        let wans = vec![lte, wan("dsl", "10.200.1.2", Mode::On, Health::Up)];
        let h = Hedging::default();
        assert_eq!(h.choose(&wans, vps, t0), (Some(ip("10.200.1.2")), None));
        // Promoted (the policy cleared `standby`), it is a hedge again.
        let mut promoted = wans.clone();
        promoted[0].standby = false;
        let (primary, hedge) = h.choose(&promoted, vps, t0);
        assert_eq!(primary, Some(ip("10.200.9.2")));
        assert_eq!(hedge.map(|h| h.source), Some(ip("10.200.1.2")));
    }

    #[test]
    fn down_linkless_and_off_wans_are_abandoned_degraded_and_unprobed_ones_not() {
        let vps = VPS.parse().expect("addr");
        let mut wans = vec![
            wan("wan1", "10.200.1.2", Mode::On, Health::Down),
            wan("wan2", "10.200.2.2", Mode::Off, Health::Up),
            wan("wan3", "10.200.3.2", Mode::On, Health::Degraded),
            wan("wan4", "10.200.4.2", Mode::Backup, Health::Unknown),
            wan("wan5", "10.200.5.2", Mode::On, Health::Up),
        ];
        wans[4].link_up = false;
        assert_eq!(
            abandoned(&wans, vps),
            vec![ip("10.200.1.2"), ip("10.200.2.2"), ip("10.200.5.2")]
        );
        let v6: SocketAddr = "[2001:db8::1]:4850".parse().expect("addr");
        assert!(
            abandoned(&wans, v6).is_empty(),
            "only the concentrator's family"
        );
    }

    #[test]
    fn a_connection_moves_when_its_wan_is_gone_or_suspect_with_its_subflow_stalled() {
        let (one, two) = (ip("10.200.1.2"), ip("10.200.2.2"));
        let sub = |source, stalled| WaitingSubflow {
            source,
            stalled,
            ..quiet(source)
        };
        let dead = [one];
        let to = Some(two);
        assert!(must_move(&[sub(one, false)], &dead, &[], to));
        assert!(
            !must_move(&[sub(one, true), sub(two, false)], &dead, &[], to),
            "a join on a live WAN carries the reply"
        );
        assert!(!must_move(&[sub(two, true)], &dead, &[], to));
        assert!(!must_move(&[], &dead, &[], to), "nothing known: stay");
        assert!(!must_move(&[sub(one, true)], &[], &[], to));
        assert!(
            !must_move(&[sub(one, false)], &dead, &[], None),
            "no live WAN to go to"
        );
        assert!(!must_move(&[sub(one, false)], &dead, &[], Some(one)));
        // A suspect WAN: only a stalled subflow moves, and only to a WAN no suspect.
        let suspect = [one];
        assert!(!must_move(&[sub(one, false)], &[], &suspect, to));
        assert!(must_move(&[sub(one, true)], &[], &suspect, to));
        assert!(!must_move(&[sub(one, true)], &[], &[one, two], to));
        assert!(
            !must_move(&[sub(one, true), sub(two, true)], &[], &suspect, to),
            "a stalled subflow on a WAN no suspect keeps it"
        );
    }

    /// A subflow that received something just now, 10 ms RTT.
    fn quiet(source: IpAddr) -> WaitingSubflow {
        WaitingSubflow {
            source,
            stalled: false,
            probes: 0,
            silent: Duration::ZERO,
            rtt: ms(10),
        }
    }

    /// The subflow of a connection whose request was acknowledged at 0 and which then
    /// hears nothing (a downstream-only black hole from 0), at `t`, with the kernel's
    /// keepalive: a probe after [`PROBE_IDLE`] of silence, another every second.
    fn unheard(source: IpAddr, t: Duration) -> WaitingSubflow {
        let probes = (t.as_secs()).min(u64::from(u8::MAX)) as u8;
        WaitingSubflow {
            probes,
            silent: t,
            ..quiet(source)
        }
    }

    #[test]
    fn an_unanswered_keepalive_probe_moves_a_connection_off_a_suspect_wan_after_its_bound() {
        let (one, two) = (ip("10.200.1.2"), ip("10.200.2.2"));
        let to = Some(two);
        let bound = answer_bound(ms(10));
        assert_eq!(bound, HEDGE_FLOOR);
        // WAN 1 is a suspect from 0.3 s (a new connection's hedge won): silence alone
        // does not move the waiting connection, before or after its probe leaves.
        for t in [ms(300), ms(999), PROBE_IDLE, PROBE_IDLE + bound - ms(1)] {
            assert!(
                !must_move(&[unheard(one, t)], &[], &[one], to),
                "at {t:?}: no probe out yet, or not unanswered for long enough"
            );
        }
        let t = PROBE_IDLE + bound;
        assert!(must_move(&[unheard(one, t)], &[], &[one], to));
        // The same silence on a WAN no suspect: never (a slow destination, and its probe
        // was lost once), nor with nowhere good to go.
        assert!(!must_move(&[unheard(one, ms(5000))], &[], &[], to));
        assert!(!must_move(&[unheard(one, t)], &[], &[one, two], to));
        // A slow destination on a suspect WAN: each probe is answered (the counter and
        // the silence start again), so it waits for its reply however long that takes.
        for t in (0..20).map(|i| ms(300 + i * 500)) {
            let answered = WaitingSubflow {
                probes: 0,
                silent: Duration::from_millis(t.as_millis() as u64 % 1000),
                ..quiet(one)
            };
            assert!(!must_move(&[answered], &[], &[one], to), "at {t:?}");
        }
        // A long-RTT WAN waits longer for its probe's answer.
        let slow = |t| WaitingSubflow {
            rtt: ms(200),
            ..unheard(one, t)
        };
        assert!(!must_move(&[slow(PROBE_IDLE + ms(599))], &[], &[one], to));
        assert!(must_move(&[slow(PROBE_IDLE + ms(600))], &[], &[one], to));
        assert_eq!(answer_bound(Duration::from_secs(2)), HEDGE_CEILING);
    }

    #[test]
    fn an_ipv6_concentrator_takes_ipv6_sources_only() {
        let vps: SocketAddr = "[2001:db8::1]:4850".parse().expect("addr");
        let h = Hedging::default();
        assert_eq!(h.choose(&two(), vps, Instant::now()), (None, None));
    }
}
