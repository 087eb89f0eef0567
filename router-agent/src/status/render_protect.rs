//! The human lines of protected UDP flows (`udp::protect`): one summary line, then one
//! line per live flow with its mode, its legs (WAN, state, downstream datagrams it
//! missed), its loss before protection and after, and what protection recovered. Pure.

use std::fmt::Write;

use super::render::bytes;
use crate::core::latency_guard::GuardView;
use crate::udp::protect::stats::pct;
use crate::udp::ProtectOrigin;
use crate::udp::ProtectSnapshot;

/// Append the lines of `p` to `out`; nothing while no flow was ever classed `protect`.
pub fn protected_lines(p: &ProtectSnapshot, out: &mut String) {
    if p.total == 0 && p.fallbacks == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "protected flows: {} active, {} total, {} bonded instead; downstream loss before \
         protection {} %, after merge {} % ({} of {}); protection {}; {} legs replaced",
        p.active,
        p.total,
        p.fallbacks,
        pct(p.lost_before_down, p.datagrams_down + p.lost_down),
        pct(p.lost_down, p.datagrams_down + p.lost_down),
        p.lost_down,
        p.datagrams_down + p.lost_down,
        bytes(p.protection_bytes),
        p.legs_replaced
    );
    for f in &p.flows {
        let legs: Vec<String> = f
            .legs
            .iter()
            .map(|l| {
                let seen = l.datagrams_down + l.missed_down;
                format!(
                    "{} {} (missed {} %)",
                    l.wan,
                    l.state,
                    pct(l.missed_down, seen)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "  {} -> {}{} ({}): {}; before {} % lost, after merge {} % lost, {} recovered; \
             protection {}",
            f.client,
            f.destination,
            match f.origin {
                ProtectOrigin::Rule => "",
                ProtectOrigin::Auto => " (auto)",
            },
            f.mode,
            if legs.is_empty() {
                "no legs".to_owned()
            } else {
                legs.join(", ")
            },
            pct(f.lost_before_down, f.datagrams_down + f.lost_down),
            f.loss_pct(),
            f.recovered_down,
            bytes(f.protection_bytes_up + f.protection_bytes_down)
        );
    }
}

/// One line for the latency guard (`core::latency_guard`): off, waiting for a protected
/// flow, or the clamp it holds.
pub fn latency_guard_line(g: &GuardView, out: &mut String) {
    let kib = |b: u32| format!("{} KiB", b >> 10);
    let window = g.window.map_or("not measured yet".to_owned(), kib);
    let line = match (g.enabled, g.clamp) {
        (false, _) => "off ([udp] latency_guard = false)".to_owned(),
        (true, Some(clamp)) => format!(
            "bulk receive buffers clamped to {} ({} protected flows; released to {}){}",
            kib(clamp),
            g.protected_flows,
            kib(g.release),
            g.pace.map_or(String::new(), |rate| format!(
                "; wider ones read at {:.1} Mbit/s",
                rate as f64 * 8.0 / 1e6
            ))
        ),
        (true, None) if g.protected_flows > 0 => format!(
            "{} protected flows, no clamp (the paths' window {window} is not below {})",
            g.protected_flows,
            kib(g.release)
        ),
        (true, None) => format!("on, no protected flow (the paths' window {window})"),
    };
    let _ = writeln!(out, "latency guard: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udp::protect::legs::LegStatus;
    use crate::udp::protect::stats::ProtectedFlowStatus;

    fn leg(wan: &str, state: &str, down: u64, missed: u64) -> LegStatus {
        LegStatus {
            leg: 0,
            wan: wan.into(),
            state: state.into(),
            datagrams_down: down,
            missed_down: missed,
        }
    }

    #[test]
    fn a_flow_shows_its_legs_and_its_loss_before_and_after_the_merge() {
        let p = ProtectSnapshot {
            active: 1,
            total: 2,
            fallbacks: 1,
            legs_replaced: 1,
            protection_bytes: 400_000,
            datagrams_down: 999,
            lost_down: 1,
            lost_before_down: 10,
            recovered_down: 9,
            flows: vec![ProtectedFlowStatus {
                client: "192.168.1.10:5000".into(),
                destination: "198.51.100.1:3478".into(),
                mode: "duplicate".into(),
                legs: vec![
                    leg("wan1", "open", 950, 50),
                    leg("wan2", "stalled", 990, 10),
                ],
                datagrams_down: 999,
                lost_down: 1,
                lost_before_down: 10,
                recovered_down: 9,
                protection_bytes_up: 200_000,
                protection_bytes_down: 190_000,
                ..ProtectedFlowStatus::default()
            }],
        };
        let mut out = String::new();
        protected_lines(&p, &mut out);
        assert!(
            out.starts_with(
                "protected flows: 1 active, 2 total, 1 bonded instead; downstream loss before \
                 protection 1 %, after merge 0.1 % (1 of 1000); protection 400 kB; \
                 1 legs replaced\n"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "  192.168.1.10:5000 -> 198.51.100.1:3478 (duplicate): wan1 open (missed 5 %), \
                 wan2 stalled (missed 1 %); before 1 % lost, after merge 0.1 % lost, \
                 9 recovered; protection 390 kB"
            ),
            "{out}"
        );
        let mut none = String::new();
        protected_lines(&ProtectSnapshot::default(), &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn a_flow_the_classifier_chose_says_auto() {
        let p = ProtectSnapshot {
            active: 1,
            total: 1,
            flows: vec![ProtectedFlowStatus {
                client: "192.168.1.10:5000".into(),
                destination: "198.51.100.1:5004".into(),
                mode: "duplicate".into(),
                origin: ProtectOrigin::Auto,
                ..ProtectedFlowStatus::default()
            }],
            ..ProtectSnapshot::default()
        };
        let mut out = String::new();
        protected_lines(&p, &mut out);
        assert!(
            out.contains("  192.168.1.10:5000 -> 198.51.100.1:5004 (auto) (duplicate): no legs;"),
            "{out}"
        );
    }

    #[test]
    fn the_latency_guard_line_says_what_it_clamps() {
        let line = |g: GuardView| {
            let mut out = String::new();
            latency_guard_line(&g, &mut out);
            out
        };
        let clamped = GuardView {
            enabled: true,
            protected_flows: 1,
            clamp: Some(360 << 10),
            release: 4 << 20,
            window: Some(360 << 10),
            pace: None,
            paced_bytes: 0,
        };
        assert_eq!(
            line(clamped),
            "latency guard: bulk receive buffers clamped to 360 KiB (1 protected flows; \
             released to 4096 KiB)\n"
        );
        let paced = GuardView {
            pace: Some(10_625_000),
            ..clamped
        };
        assert_eq!(
            line(paced),
            "latency guard: bulk receive buffers clamped to 360 KiB (1 protected flows; \
             released to 4096 KiB); wider ones read at 85.0 Mbit/s\n"
        );
        let idle = GuardView {
            protected_flows: 0,
            clamp: None,
            window: None,
            ..clamped
        };
        assert_eq!(
            line(idle),
            "latency guard: on, no protected flow (the paths' window not measured yet)\n"
        );
        let off = GuardView {
            enabled: false,
            ..idle
        };
        assert_eq!(
            line(off),
            "latency guard: off ([udp] latency_guard = false)\n"
        );
    }
}
