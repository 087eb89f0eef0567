//! Live subflow counts per WAN, from the `mptcp_pm_events` stream.
//!
//! Each MPTCP connection (by token) holds a set of subflows, keyed by their 4-tuple:
//! `Established` adds the initial subflow, `SubEstablished` an extra one, `SubClosed`
//! removes one and `Closed` drops the connection. A subflow belongs to the WAN whose
//! ifindex it names, else to the WAN holding its source address. Pure; bounded: past
//! [`MAX_CONNECTIONS`] tracked connections (missed `Closed` events) it starts afresh.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::model::wan::Wan;
use crate::net::mptcp_pm::{PmEvent, PmEventKind};

/// Tracked connections before the table is cleared.
pub const MAX_CONNECTIONS: usize = 65_536;

/// One subflow: source, source port, destination, destination port, ifindex (0: unknown).
type Subflow = (
    Option<IpAddr>,
    Option<u16>,
    Option<IpAddr>,
    Option<u16>,
    u32,
);

/// The subflows of every live MPTCP connection.
#[derive(Debug, Default)]
pub struct SubflowCounter {
    conns: HashMap<u32, Vec<Subflow>>,
}

impl SubflowCounter {
    /// Forget everything (the event stream was lost and re-subscribed).
    pub fn clear(&mut self) {
        self.conns.clear();
    }

    /// Apply one event; true if a count may have changed.
    pub fn on_event(&mut self, ev: &PmEvent) -> bool {
        let sub = (
            ev.saddr,
            ev.sport,
            ev.daddr,
            ev.dport,
            ev.ifindex.unwrap_or(0),
        );
        match ev.kind {
            PmEventKind::Established | PmEventKind::SubEstablished => {
                if self.conns.len() >= MAX_CONNECTIONS && !self.conns.contains_key(&ev.token) {
                    self.conns.clear();
                }
                let subs = self.conns.entry(ev.token).or_default();
                if !subs.iter().any(|s| same(s, &sub)) {
                    subs.push(sub);
                }
                true
            }
            PmEventKind::SubClosed => {
                let Some(subs) = self.conns.get_mut(&ev.token) else {
                    return false;
                };
                let before = subs.len();
                subs.retain(|s| !same(s, &sub));
                before != subs.len()
            }
            PmEventKind::Closed => self.conns.remove(&ev.token).is_some(),
            _ => false,
        }
    }

    /// The live subflows of `wan`.
    pub fn count(&self, wan: &Wan) -> u64 {
        let mine = |s: &&Subflow| {
            (s.4 != 0 && s.4 == wan.ifindex)
                || (s.4 == 0
                    && s.0
                        .is_some_and(|a| wan.addresses.iter().any(|n| n.addr() == a)))
        };
        self.conns
            .values()
            .map(|subs| subs.iter().filter(mine).count() as u64)
            .sum()
    }
}

/// The same subflow: equal 4-tuples (the ifindex may be missing from one of the events).
fn same(a: &Subflow, b: &Subflow) -> bool {
    (a.0, a.1, a.2, a.3) == (b.0, b.1, b.2, b.3)
}
