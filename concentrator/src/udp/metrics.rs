//! UDP flow counters and their Prometheus families. Hot counters are atomics, updated
//! by each flow in batches (once per read or write burst), never under a lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a datagram (or a flow's request) was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The downstream capsule queue was full (the MPTCP socket is behind).
    QueueFull,
    /// The client's datagram rate was exceeded.
    RateLimit,
    /// A DATAGRAM capsule with a context id other than 0.
    BadContext,
    /// A capsule of an unknown type, skipped.
    UnknownCapsule,
    /// The UDP socket's send buffer was full, or the send failed (ICMP error).
    SendError,
    /// A flow refused by the destination policy (counted once per flow).
    Policy,
    /// A flow refused by the per-client flow limit or a connection limit.
    FlowLimit,
    /// A sequenced datagram of a protected flow too far behind the newest to tell
    /// whether it is a duplicate.
    TooOld,
    /// A leg refused because its group has the most legs already, or names the group
    /// with another destination.
    GroupRefused,
}

impl DropReason {
    const ALL: [DropReason; 9] = [
        DropReason::QueueFull,
        DropReason::RateLimit,
        DropReason::BadContext,
        DropReason::UnknownCapsule,
        DropReason::SendError,
        DropReason::Policy,
        DropReason::FlowLimit,
        DropReason::TooOld,
        DropReason::GroupRefused,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::RateLimit => "rate_limit",
            DropReason::BadContext => "bad_context",
            DropReason::UnknownCapsule => "unknown_capsule",
            DropReason::SendError => "send_error",
            DropReason::Policy => "policy",
            DropReason::FlowLimit => "flow_limit",
            DropReason::TooOld => "too_old",
            DropReason::GroupRefused => "group_refused",
        }
    }
}

/// Datagrams and bytes one way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub datagrams: u64,
    pub bytes: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, bytes: usize) {
        self.datagrams += 1;
        self.bytes += bytes as u64;
    }
}

/// All UDP counters.
#[derive(Debug, Default)]
pub struct UdpMetrics {
    flows_active: AtomicU64,
    flows_total: AtomicU64,
    up_datagrams: AtomicU64,
    up_bytes: AtomicU64,
    down_datagrams: AtomicU64,
    down_bytes: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
    groups_active: AtomicU64,
    groups_total: AtomicU64,
    legs_attached: AtomicU64,
    /// Copies dropped by a group's upstream dedup.
    duplicates_up: AtomicU64,
    /// Copies beyond the first sent down a group's legs.
    duplicates_down: AtomicU64,
}

impl UdpMetrics {
    /// A flow started relaying.
    pub fn flow_opened(&self) {
        self.flows_active.fetch_add(1, Ordering::Relaxed);
        self.flows_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A relaying flow ended.
    pub fn flow_closed(&self) {
        self.flows_active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Datagrams relayed: `up` client → destination, `down` back.
    pub fn relayed(&self, up: Tally, down: Tally) {
        for (value, counter) in [
            (up.datagrams, &self.up_datagrams),
            (up.bytes, &self.up_bytes),
            (down.datagrams, &self.down_datagrams),
            (down.bytes, &self.down_bytes),
        ] {
            if value > 0 {
                counter.fetch_add(value, Ordering::Relaxed);
            }
        }
    }

    /// `n` datagrams dropped for `reason`.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.drops[reason as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A flow group (a protected flow) was created. A group counts as one flow too
    /// ([`flow_opened`](Self::flow_opened)).
    pub fn group_opened(&self) {
        self.groups_active.fetch_add(1, Ordering::Relaxed);
        self.groups_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A flow group ended.
    pub fn group_closed(&self) {
        self.groups_active.fetch_sub(1, Ordering::Relaxed);
    }

    /// A leg attached to its group.
    pub fn leg_attached(&self) {
        self.legs_attached.fetch_add(1, Ordering::Relaxed);
    }

    /// A leg left its group.
    pub fn leg_detached(&self) {
        self.legs_attached.fetch_sub(1, Ordering::Relaxed);
    }

    /// Duplicate copies: `up` dropped by a group's dedup, `down` sent beyond the first
    /// copy of a datagram.
    pub fn duplicates(&self, up: u64, down: u64) {
        for (value, counter) in [(up, &self.duplicates_up), (down, &self.duplicates_down)] {
            if value > 0 {
                counter.fetch_add(value, Ordering::Relaxed);
            }
        }
    }

    /// Flow groups relaying now.
    pub fn groups_active(&self) -> u64 {
        self.groups_active.load(Ordering::Relaxed)
    }

    /// Legs attached to a group now.
    pub fn legs_attached(&self) -> u64 {
        self.legs_attached.load(Ordering::Relaxed)
    }

    /// Drops so far for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
    }

    /// Flows relaying now.
    pub fn flows_active(&self) -> u64 {
        self.flows_active.load(Ordering::Relaxed)
    }

    /// Append the `mpbond_udp_*` families in the text exposition format.
    pub fn render(&self, out: &mut String) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        family(
            out,
            "mpbond_udp_flows_active",
            "gauge",
            "UDP flows relaying now.",
        );
        let _ = writeln!(out, "mpbond_udp_flows_active {}", load(&self.flows_active));
        family(
            out,
            "mpbond_udp_flows_total",
            "counter",
            "UDP flows that started relaying.",
        );
        let _ = writeln!(out, "mpbond_udp_flows_total {}", load(&self.flows_total));
        for (name, help, up, down) in [
            (
                "mpbond_udp_datagrams_total",
                "UDP datagrams relayed; up is client to destination.",
                &self.up_datagrams,
                &self.down_datagrams,
            ),
            (
                "mpbond_udp_bytes_total",
                "UDP payload bytes relayed; up is client to destination.",
                &self.up_bytes,
                &self.down_bytes,
            ),
        ] {
            family(out, name, "counter", help);
            let _ = writeln!(out, "{name}{{direction=\"up\"}} {}", load(up));
            let _ = writeln!(out, "{name}{{direction=\"down\"}} {}", load(down));
        }
        for (name, kind, help, value) in [
            (
                "mpbond_udp_groups_active",
                "gauge",
                "Protected UDP flows (flow groups) relaying now; each is also one flow.",
                &self.groups_active,
            ),
            (
                "mpbond_udp_groups_total",
                "counter",
                "Protected UDP flows (flow groups) created.",
                &self.groups_total,
            ),
            (
                "mpbond_udp_legs_attached",
                "gauge",
                "Legs attached to the flow groups now.",
                &self.legs_attached,
            ),
        ] {
            family(out, name, kind, help);
            let _ = writeln!(out, "{name} {}", load(value));
        }
        family(
            out,
            "mpbond_udp_duplicates_total",
            "counter",
            "Duplicate copies of protected flows' datagrams: up, dropped by the dedup; down, sent beyond the first copy.",
        );
        let _ = writeln!(
            out,
            "mpbond_udp_duplicates_total{{direction=\"up\"}} {}",
            load(&self.duplicates_up)
        );
        let _ = writeln!(
            out,
            "mpbond_udp_duplicates_total{{direction=\"down\"}} {}",
            load(&self.duplicates_down)
        );
        family(
            out,
            "mpbond_udp_drops_total",
            "counter",
            "UDP datagrams dropped (and flows refused), by reason.",
        );
        for reason in DropReason::ALL {
            let _ = writeln!(
                out,
                "mpbond_udp_drops_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.drops(reason)
            );
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_and_reason() {
        let m = UdpMetrics::default();
        m.flow_opened();
        m.flow_opened();
        m.flow_closed();
        m.relayed(
            Tally {
                datagrams: 3,
                bytes: 300,
            },
            Tally {
                datagrams: 1,
                bytes: 1400,
            },
        );
        m.dropped(DropReason::QueueFull, 4);
        m.dropped(DropReason::BadContext, 1);
        m.group_opened();
        m.leg_attached();
        m.leg_attached();
        m.duplicates(5, 7);
        let mut text = String::new();
        m.render(&mut text);
        for line in [
            "mpbond_udp_flows_active 1",
            "mpbond_udp_flows_total 2",
            "mpbond_udp_datagrams_total{direction=\"up\"} 3",
            "mpbond_udp_datagrams_total{direction=\"down\"} 1",
            "mpbond_udp_bytes_total{direction=\"up\"} 300",
            "mpbond_udp_bytes_total{direction=\"down\"} 1400",
            "mpbond_udp_drops_total{reason=\"queue_full\"} 4",
            "mpbond_udp_drops_total{reason=\"bad_context\"} 1",
            "mpbond_udp_drops_total{reason=\"rate_limit\"} 0",
            "# TYPE mpbond_udp_flows_active gauge",
            "mpbond_udp_groups_active 1",
            "mpbond_udp_groups_total 1",
            "mpbond_udp_legs_attached 2",
            "mpbond_udp_duplicates_total{direction=\"up\"} 5",
            "mpbond_udp_duplicates_total{direction=\"down\"} 7",
            "mpbond_udp_drops_total{reason=\"too_old\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
