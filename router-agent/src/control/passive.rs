//! Passive WAN health: the TCP state of the MPTCP subflows each WAN holds to the
//! concentrator, as [`PassiveSample`]s for the state machine (`model::wan_health`).
//!
//! The control loop reads the subflows ([`subflows`]) every [`PASSIVE_EVERY`] while some
//! WAN has live subflows (from the `mptcp_pm` events), and never on an idle router. The
//! evidence is the `tcp_info` of the relays' own upstream sockets
//! ([`LiveUpstreams::sample`], `getsockopt(SOL_MPTCP)`, O(subflows)); only when those
//! cannot be read (a kernel before 5.17, or no registry) or are too many to read one by
//! one (more than `proxy::upstreams::MAX_READ`) is it a `sock_diag` dump of
//! every TCP socket to the concentrator ([`crate::net::sock_diag::dump_to`]), which walks
//! the kernel's whole TCP hash table (issue 17). Bonded UDP flows register their MPTCP
//! connections too; a protected flow's legs (plain TCP) watch their own stalls.
//! [`samples`] (pure) groups them by WAN, by source address:
//! a subflow that sent or received data within [`ACTIVE_WITHIN`] makes its WAN
//! active; among the subflows with unacknowledged data, the longest wait for an ACK and
//! whether that subflow is retransmitting is the stall evidence. The state machine
//! decides what it means.
//!
//! [`vouches`] (pure) says whether a WAN's subflows show the concentrator reachable, which
//! lets the decision core skip its periodic TCP probe of the concentrator while relayed
//! traffic already answers that question (`Input::WanReached`): a probed WAN's active,
//! non-retransmitting subflows while its probes hold it up or degraded; on a WAN the
//! agent does not probe (mode `off`: the operator's own routing carries the subflows),
//! data received from the concentrator within [`ACTIVE_WITHIN`] on a subflow that is not
//! retransmitting (issue 17: without it such a router opened a probe connection every
//! `health.interval` through every download and the seconds after it).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tracing::debug;

use crate::model::wan::{Health, Mode, Wan};
use crate::model::wan_health::PassiveSample;
use crate::net::sock_diag::TcpSample;
use crate::proxy::upstreams::LiveUpstreams;

/// How often a busy router's subflows are sampled.
pub const PASSIVE_EVERY: Duration = Duration::from_millis(250);
/// Data sent or received within this makes a subflow active.
pub const ACTIVE_WITHIN: Duration = Duration::from_millis(500);

/// The subflows to sample: those of the relays' sockets in `live`, else (no registry, a
/// socket the kernel cannot describe, too many sockets) a dump of the TCP sockets to
/// `concentrator`.
pub fn subflows(
    live: Option<&LiveUpstreams>,
    concentrator: SocketAddr,
) -> io::Result<Vec<TcpSample>> {
    if let Some(live) = live {
        match live.sample() {
            Ok(tcp) => return Ok(tcp),
            Err(error) => debug!(%error, "reading the upstream sockets failed, dumping"),
        }
    }
    crate::net::sock_diag::dump_to(concentrator)
}

/// One sample per WAN with a link (WANs without subflows get an empty, inactive one, so
/// that their busy spell ends).
pub fn samples(tcp: &[TcpSample], wans: &[Wan]) -> Vec<(String, PassiveSample)> {
    wans.iter()
        .filter(|w| w.link_up)
        .map(|wan| {
            let subs: Vec<&TcpSample> = tcp
                .iter()
                .filter(|s| wan.addresses.iter().any(|a| a.addr() == s.src))
                .collect();
            let stalled = subs
                .iter()
                .filter(|s| s.unacked > 0)
                .max_by_key(|s| s.since_ack_recv);
            let sample = PassiveSample {
                subflows: u32::try_from(subs.len()).unwrap_or(u32::MAX),
                active: subs
                    .iter()
                    .any(|s| s.since_data_sent.min(s.since_data_recv) < ACTIVE_WITHIN),
                ack_wait: stalled.map(|s| s.since_ack_recv),
                retransmitting: stalled.is_some_and(|s| s.retransmits > 0 || s.backoff > 0),
                srtt: subs
                    .iter()
                    .map(|s| s.rtt)
                    .filter(|rtt| !rtt.is_zero())
                    .min(),
            };
            (wan.name.clone(), sample)
        })
        .collect()
}

/// Whether `wan`'s subflows show the concentrator reachable: `sample` is its sample,
/// `health` its probes' verdict, `tcp` the subflows it was made from. A WAN the agent does
/// not probe counts only on data it received, not on data it sent: sent data proves
/// nothing about the path back.
pub fn vouches(wan: &Wan, health: Health, sample: &PassiveSample, tcp: &[TcpSample]) -> bool {
    if wan.mode == Mode::Off {
        return tcp.iter().any(|s| {
            wan.addresses.iter().any(|a| a.addr() == s.src)
                && s.since_data_recv < ACTIVE_WITHIN
                && s.retransmits == 0
                && s.backoff == 0
        });
    }
    sample.active && !sample.retransmitting && matches!(health, Health::Up | Health::Degraded)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::model::wan::{Health, Mode};

    fn wan(name: &str, addr: &str) -> Wan {
        Wan {
            name: name.into(),
            device: name.into(),
            ifindex: 2,
            addresses: vec![format!("{addr}/24").parse().unwrap()],
            gateway4: None,
            gateway6: None,
            point_to_point: false,
            mode: Mode::On,
            health: Health::Up,
            link_up: true,
            ra_routes: vec![],
            dev_default4: false,
            dev_default6: false,
            metered: false,
            standby: false,
        }
    }

    fn sub(src: &str, unacked: u32, ack_ms: u64, retransmits: u8, data_ms: u64) -> TcpSample {
        let dst: SocketAddr = "192.0.2.1:4850".parse().unwrap();
        TcpSample {
            src: src.parse().unwrap(),
            dst,
            retransmits,
            probes: 0,
            backoff: 0,
            unacked,
            rtt: Duration::from_millis(20),
            since_data_sent: Duration::from_millis(data_ms),
            since_data_recv: Duration::from_millis(data_ms),
            since_ack_recv: Duration::from_millis(ack_ms),
        }
    }

    #[test]
    fn subflows_are_grouped_by_source_and_the_worst_stall_is_kept() {
        let wans = [wan("wan1", "10.0.1.2"), wan("wan2", "10.0.2.2")];
        let tcp = [
            sub("10.0.1.2", 0, 10_000, 0, 5),
            sub("10.0.1.2", 4, 900, 2, 100),
            sub("10.0.1.2", 1, 300, 0, 100),
            sub("10.0.3.2", 9, 9_000, 9, 0),
        ];
        let got = samples(&tcp, &wans);
        assert_eq!(got.len(), 2);
        let (name, one) = &got[0];
        assert_eq!(name, "wan1");
        assert_eq!(one.subflows, 3);
        assert!(one.active);
        assert_eq!(one.ack_wait, Some(Duration::from_millis(900)));
        assert!(one.retransmitting);
        assert_eq!(one.srtt, Some(Duration::from_millis(20)));
        let (name, two) = &got[1];
        assert_eq!(name, "wan2");
        assert_eq!(*two, PassiveSample::default(), "no subflows: idle");
    }

    fn recv(src: &str, recv_ms: u64, retransmits: u8) -> TcpSample {
        TcpSample {
            since_data_sent: Duration::from_secs(10),
            since_data_recv: Duration::from_millis(recv_ms),
            ..sub(src, 0, 10, retransmits, 0)
        }
    }

    #[test]
    fn an_unprobed_wan_vouches_only_for_data_it_received() {
        let mut off = wan("wan1", "10.0.1.2");
        off.mode = Mode::Off;
        off.health = Health::Unknown;
        let vouch = |tcp: &[TcpSample]| {
            let sample = &samples(tcp, std::slice::from_ref(&off))[0].1;
            vouches(&off, Health::Unknown, sample, tcp)
        };
        assert!(vouch(&[recv("10.0.1.2", 100, 0)]), "data just received");
        assert!(
            !vouch(&[recv("10.0.1.2", 600, 0)]),
            "nothing received lately"
        );
        assert!(!vouch(&[recv("10.0.1.2", 100, 1)]), "retransmitting");
        assert!(!vouch(&[recv("10.0.2.2", 100, 0)]), "another WAN's subflow");
        let sent_only = sub("10.0.1.2", 0, 10, 0, 5_000);
        let sent_only = TcpSample {
            since_data_sent: Duration::from_millis(5),
            ..sent_only
        };
        assert!(
            !vouch(&[sent_only]),
            "sent data says nothing about the way back"
        );
        assert!(!vouch(&[]), "no subflows");
    }

    #[test]
    fn a_probed_wan_vouches_while_its_probes_hold_it_up() {
        let on = wan("wan1", "10.0.1.2");
        let tcp = [sub("10.0.1.2", 0, 10, 0, 5)];
        let sample = &samples(&tcp, std::slice::from_ref(&on))[0].1;
        assert!(vouches(&on, Health::Up, sample, &tcp));
        assert!(vouches(&on, Health::Degraded, sample, &tcp));
        assert!(!vouches(&on, Health::Down, sample, &tcp));
        assert!(
            !vouches(&on, Health::Unknown, sample, &tcp),
            "not judged yet"
        );
        let stalled = [sub("10.0.1.2", 3, 900, 2, 5)];
        let sample = &samples(&stalled, std::slice::from_ref(&on))[0].1;
        assert!(
            !vouches(&on, Health::Up, sample, &stalled),
            "retransmitting"
        );
    }

    #[test]
    fn old_traffic_is_not_active() {
        let wans = [wan("wan1", "10.0.1.2")];
        let got = samples(&[sub("10.0.1.2", 0, 5_000, 0, 5_000)], &wans);
        assert!(!got[0].1.active);
        assert_eq!(got[0].1.ack_wait, None);
    }
}
