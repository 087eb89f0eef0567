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
}

impl DropReason {
    const ALL: [DropReason; 7] = [
        DropReason::QueueFull,
        DropReason::RateLimit,
        DropReason::BadContext,
        DropReason::UnknownCapsule,
        DropReason::SendError,
        DropReason::Policy,
        DropReason::FlowLimit,
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
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
