//! UDP bytes per WAN (pure): what each flow carried, by the router's local address, and
//! which WAN that address belongs to.
//!
//! * A bonded flow is one MPTCP connection: its bytes per WAN are its subflows' TCP
//!   counters (`tcpi_bytes_acked` sent, `tcpi_bytes_received` received: capsule framing
//!   and the Convert handshake included, retransmissions not), read by
//!   [`super::subflows::read`]. A [`SubflowTally`] keeps every subflow the flow ever had
//!   at its highest reading, so a subflow that closed (its WAN died) keeps the bytes last
//!   read of it.
//! * A direct flow leaves from the router's own socket: its UDP payload bytes go to the
//!   source address the kernel chose for it.
//! * [`attribute`] maps local addresses to WANs the way the passive health check maps
//!   subflows (`control::passive`): the WAN that holds the address. Bytes of an address no
//!   WAN holds (a WAN gone since) are counted apart, as `unattributed`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Bytes one way and the other, from the router's side: `rx` came from the internet
/// (toward the LAN), `tx` went to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bytes {
    pub rx: u64,
    pub tx: u64,
}

impl Bytes {
    pub fn add(&mut self, other: Bytes) {
        self.rx = self.rx.saturating_add(other.rx);
        self.tx = self.tx.saturating_add(other.tx);
    }
}

/// One subflow's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubflowSample {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Bytes sent and acknowledged.
    pub sent: u64,
    pub received: u64,
}

/// Every subflow a bonded flow has had, at its highest reading (counters only grow).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubflowTally {
    seen: Vec<SubflowSample>,
}

impl SubflowTally {
    /// Take a reading of the flow's live subflows.
    pub fn update(&mut self, samples: &[SubflowSample]) {
        for s in samples {
            match self
                .seen
                .iter_mut()
                .find(|k| k.local == s.local && k.remote == s.remote)
            {
                Some(known) => {
                    known.sent = known.sent.max(s.sent);
                    known.received = known.received.max(s.received);
                }
                None => self.seen.push(*s),
            }
        }
    }

    /// The flow's bytes by local address.
    pub fn add_to(&self, by_address: &mut HashMap<IpAddr, Bytes>) {
        for s in &self.seen {
            by_address.entry(s.local.ip()).or_default().add(Bytes {
                rx: s.received,
                tx: s.sent,
            });
        }
    }
}

/// One WAN's UDP bytes (the `udp.wans` array of `status --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpWanBytes {
    pub name: String,
    /// Bytes received from the internet for LAN UDP flows.
    pub rx_bytes: u64,
    /// Bytes sent to the internet for LAN UDP flows.
    pub tx_bytes: u64,
}

/// Split `by_address` over `wans` (name, addresses), in the WANs' order, every WAN listed;
/// the second value is what no WAN holds an address for.
pub fn attribute(
    by_address: &HashMap<IpAddr, Bytes>,
    wans: &[(&str, &[IpAddr])],
) -> (Vec<UdpWanBytes>, Bytes) {
    let mut unattributed = Bytes::default();
    let mut per_wan = vec![Bytes::default(); wans.len()];
    for (addr, bytes) in by_address {
        match wans.iter().position(|(_, addrs)| addrs.contains(addr)) {
            Some(i) => per_wan[i].add(*bytes),
            None => unattributed.add(*bytes),
        }
    }
    let wans = wans
        .iter()
        .zip(per_wan)
        .map(|((name, _), b)| UdpWanBytes {
            name: (*name).to_owned(),
            rx_bytes: b.rx,
            tx_bytes: b.tx,
        })
        .collect();
    (wans, unattributed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(local: &str, sent: u64, received: u64) -> SubflowSample {
        SubflowSample {
            local: local.parse().unwrap(),
            remote: "192.0.2.1:4850".parse().unwrap(),
            sent,
            received,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_bonded_flow_counts_each_subflow_on_its_wan() {
        let mut tally = SubflowTally::default();
        tally.update(&[sub("10.1.0.2:40000", 100, 4_000)]);
        tally.update(&[
            sub("10.1.0.2:40000", 300, 40_000),
            sub("10.2.0.2:40001", 200, 60_000),
        ]);
        let mut by_address = HashMap::new();
        tally.add_to(&mut by_address);
        let (w1, w2) = ([ip("10.1.0.2")], [ip("10.2.0.2"), ip("2001:db8:2::2")]);
        let (wans, unattributed) = attribute(&by_address, &[("wan1", &w1), ("wan2", &w2)]);
        assert_eq!(
            wans,
            vec![
                UdpWanBytes {
                    name: "wan1".into(),
                    rx_bytes: 40_000,
                    tx_bytes: 300
                },
                UdpWanBytes {
                    name: "wan2".into(),
                    rx_bytes: 60_000,
                    tx_bytes: 200
                },
            ]
        );
        assert_eq!(unattributed, Bytes::default());
    }

    #[test]
    fn a_subflow_that_closed_keeps_its_last_reading() {
        let mut tally = SubflowTally::default();
        tally.update(&[
            sub("10.1.0.2:40000", 10, 5_000),
            sub("10.2.0.2:40001", 10, 7_000),
        ]);
        // WAN 1 died: its subflow is gone from the next reading.
        tally.update(&[sub("10.2.0.2:40001", 20, 9_000)]);
        let mut by_address = HashMap::new();
        tally.add_to(&mut by_address);
        assert_eq!(by_address[&ip("10.1.0.2")], Bytes { rx: 5_000, tx: 10 });
        assert_eq!(by_address[&ip("10.2.0.2")], Bytes { rx: 9_000, tx: 20 });
    }

    #[test]
    fn a_reading_never_lowers_a_count() {
        let mut tally = SubflowTally::default();
        tally.update(&[sub("10.1.0.2:40000", 500, 900)]);
        tally.update(&[sub("10.1.0.2:40000", 400, 800)]);
        let mut by_address = HashMap::new();
        tally.add_to(&mut by_address);
        assert_eq!(by_address[&ip("10.1.0.2")], Bytes { rx: 900, tx: 500 });
    }

    #[test]
    fn flows_add_up_and_unknown_addresses_are_apart() {
        let mut by_address = HashMap::new();
        by_address.insert(ip("10.1.0.2"), Bytes { rx: 1, tx: 2 });
        let mut tally = SubflowTally::default();
        tally.update(&[sub("10.1.0.2:40002", 10, 20)]);
        tally.add_to(&mut by_address);
        by_address.insert(ip("10.9.0.2"), Bytes { rx: 7, tx: 8 });
        let w1 = [ip("10.1.0.2")];
        let w2: [IpAddr; 0] = [];
        let (wans, unattributed) = attribute(&by_address, &[("wan1", &w1), ("wan2", &w2)]);
        assert_eq!((wans[0].rx_bytes, wans[0].tx_bytes), (21, 12));
        assert_eq!((wans[1].rx_bytes, wans[1].tx_bytes), (0, 0));
        assert_eq!(unattributed, Bytes { rx: 7, tx: 8 });
    }
}
