//! The human rendering of a status document: three header lines (agent, concentrator,
//! connections; with several concentrators, a row for each after the second), a table with one row per WAN, a data-usage table (bytes today and this
//! billing month, the data plan), a line for each WAN demoted by the path-quality
//! control, and the kernel's missing features as warnings.
//! Unknown values print as `-`. Pure: document in, text out.

use std::fmt::Write as _;

use super::state::{StatusDoc, WanStatus};

/// The document as text for a person, ending with a newline.
pub fn render(doc: &StatusDoc) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mpbond-agent {}, up {}, kernel {}",
        doc.version,
        duration(doc.uptime_secs),
        or_dash(&doc.kernel.release)
    );
    let c = &doc.concentrator;
    let address = c
        .address
        .map_or_else(|| "unresolved".to_owned(), |a| a.to_string());
    let mut line = format!("concentrator {} ({address}): ", c.host);
    if c.reachable {
        line.push_str("reachable");
        if let Some(rtt) = c.rtt_ms {
            let _ = write!(line, " in {rtt:.1} ms");
        }
    } else {
        line.push_str("UNREACHABLE");
        if let Some(error) = &c.last_error {
            let _ = write!(line, " ({error})");
        }
    }
    line.push_str(if c.redirect {
        ", redirect on"
    } else {
        ", redirect off (failing open)"
    });
    if let Some(congestion) = &c.congestion {
        let _ = write!(line, ", congestion control {congestion}");
    }
    let _ = writeln!(out, "{line}");
    out.push_str(&super::concentrators::table(&doc.concentrators));
    let n = &doc.connections;
    let _ = writeln!(
        out,
        "connections: {} active, {} total, {} fallbacks to TCP, {} direct, {} refused",
        n.active, n.total, n.fallbacks, n.direct, n.refused
    );
    let _ = writeln!(out, "{}", upstream_buffers(&doc.upstream_buffers));
    if let Some(u) = &doc.udp {
        let _ = writeln!(
            out,
            "udp flows: {} active ({} bonded), {} total, {} direct, {} refused; {} up, {} down; \
             dropped: {} queue full, {} flow limit",
            u.active,
            u.bonded_active,
            u.total,
            u.direct,
            u.refused,
            bytes(u.bytes_up),
            bytes(u.bytes_down),
            u.drops_queue_full,
            u.drops_flow_limit
        );
        let _ = writeln!(out, "{}", udp_by_wan(u, &doc.wans));
    }
    if let Some(b) = &doc.bypass_names {
        out.push_str(&crate::bypass_names::status_line(b));
    }
    if let Some(p) = &doc.protected {
        super::render_protect::protected_lines(p, &mut out);
    }
    if let Some(g) = &doc.latency_guard {
        super::render_protect::latency_guard_line(g, &mut out);
    }
    out.push('\n');
    if doc.wans.is_empty() {
        out.push_str("no WANs\n");
    } else {
        out.push_str(&table(&doc.wans));
        for wan in doc
            .wans
            .iter()
            .filter(|w| w.quality.as_deref() == Some("demoted"))
        {
            let why = wan.quality_reason.as_deref().unwrap_or("-");
            let _ = writeln!(
                out,
                "{}: demoted to backup, it hurt the bond ({why})",
                wan.name
            );
        }
        if doc.wans.iter().any(|w| w.usage.is_some() || w.metered) {
            out.push('\n');
            out.push_str(&usage_table(&doc.wans));
        }
    }
    if !doc.kernel.missing.is_empty() {
        out.push('\n');
    }
    for missing in &doc.kernel.missing {
        let _ = writeln!(out, "warning: {missing}");
    }
    out
}

const COLUMNS: usize = 13;

const HEADER: [&str; COLUMNS] = [
    "NAME",
    "DEVICE",
    "STATE",
    "MODE",
    "ADDRESSES",
    "GATEWAY",
    "RTT",
    "LOSS",
    "RX",
    "TX",
    "SUBFLOWS",
    "CHANGED",
    "PROBES",
];

fn row(wan: &WanStatus) -> [String; COLUMNS] {
    let addresses: Vec<String> = wan.addresses.iter().map(ToString::to_string).collect();
    [
        wan.name.clone(),
        wan.device.clone(),
        wan.state.as_str().to_owned(),
        wan.mode.as_str().to_owned(),
        if addresses.is_empty() {
            "-".into()
        } else {
            addresses.join(",")
        },
        wan.gateway.map_or_else(|| "-".into(), |g| g.to_string()),
        wan.rtt_ms
            .map_or_else(|| "-".into(), |r| format!("{r:.1} ms")),
        wan.loss_pct
            .map_or_else(|| "-".into(), |l| format!("{l:.0}%")),
        rate(wan.rx_bps),
        rate(wan.tx_bps),
        wan.subflows.to_string(),
        wan.last_change.as_ref().map_or_else(
            || "-".into(),
            |c| format!("{} ago ({})", duration(c.secs_ago), c.cause),
        ),
        wan.probe_bytes_per_day
            .map_or_else(|| "-".into(), |b| format!("{}/day", bytes(b))),
    ]
}

const USAGE_HEADER: [&str; 8] = [
    "NAME",
    "PLAN",
    "TODAY RX",
    "TODAY TX",
    "MONTH RX",
    "MONTH TX",
    "MONTH FROM",
    "ALLOWANCE",
];

/// What the data plan does to the WAN now.
pub fn plan_text(wan: &WanStatus) -> &'static str {
    match (wan.metered, wan.over_allowance, wan.standby) {
        (false, _, _) => "unmetered",
        (true, false, false) => "metered, in use",
        (true, false, true) => "metered, standby",
        (true, true, false) => "over allowance, in use",
        (true, true, true) => "over allowance, standby",
    }
}

fn usage_row(wan: &WanStatus) -> [String; 8] {
    let bytes = |b: Option<u64>| b.map_or_else(|| "-".into(), self::bytes);
    let u = wan.usage.as_ref();
    [
        wan.name.clone(),
        plan_text(wan).to_owned(),
        bytes(u.map(|u| u.today_rx_bytes)),
        bytes(u.map(|u| u.today_tx_bytes)),
        bytes(u.map(|u| u.month_rx_bytes)),
        bytes(u.map(|u| u.month_tx_bytes)),
        u.map_or_else(|| "-".into(), |u| u.period_start.clone()),
        bytes(wan.allowance_bytes),
    ]
}

fn usage_table(wans: &[WanStatus]) -> String {
    grid(
        std::iter::once(USAGE_HEADER.map(str::to_owned))
            .chain(wans.iter().map(usage_row))
            .collect(),
    )
}

/// Bytes in decimal units, as carriers count them: `512 B`, `3.4 kB`, `81 MB`, `1.2 GB`.
/// The socket buffers of new upstream connections, one line.
fn upstream_buffers(b: &super::state::UpstreamBuffersStatus) -> String {
    let size = |v: Option<u32>| match v {
        None => "kernel autotuning".to_owned(),
        Some(v) if v >= 1 << 20 => format!("{:.1} MiB", f64::from(v) / f64::from(1u32 << 20)),
        Some(v) => format!("{} KiB", v >> 10),
    };
    format!(
        "upstream buffers: receive {} ({} with Fast Open), send {}",
        size(b.rcvbuf_bytes),
        size(b.fastopen_rcvbuf_bytes),
        size(b.sndbuf_bytes)
    )
}

pub fn bytes(n: u64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")];
    let v = n as f64;
    for (scale, unit) in UNITS {
        if v >= scale {
            let x = v / scale;
            return if x < 10.0 {
                format!("{x:.1} {unit}")
            } else {
                format!("{x:.0} {unit}")
            };
        }
    }
    format!("{n} B")
}

/// `udp by WAN: wan1 12 MB down / 300 kB up, wan2 ...`, and what no WAN holds.
fn udp_by_wan(u: &crate::udp::UdpSnapshot, wans: &[WanStatus]) -> String {
    let mut parts: Vec<String> = wans
        .iter()
        .map(|w| {
            let b = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), bytes);
            format!(
                "{} {} down / {} up",
                w.name,
                b(w.udp_rx_bytes),
                b(w.udp_tx_bytes)
            )
        })
        .collect();
    if u.unattributed_rx_bytes + u.unattributed_tx_bytes > 0 {
        parts.push(format!(
            "no WAN now {} down / {} up",
            bytes(u.unattributed_rx_bytes),
            bytes(u.unattributed_tx_bytes)
        ));
    }
    if parts.is_empty() {
        parts.push("no WANs".to_owned());
    }
    format!("udp by WAN: {}", parts.join(", "))
}

fn table(wans: &[WanStatus]) -> String {
    grid(
        std::iter::once(HEADER.map(str::to_owned))
            .chain(wans.iter().map(row))
            .collect(),
    )
}

fn grid<const N: usize>(rows: Vec<[String; N]>) -> String {
    let mut widths = [0usize; N];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (cell, w) in r.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// `42s`, `5m03s`, `1h00m05s`, `3d04h`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m{s:02}s"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// Bits per second in human units: `0 bit/s`, `900 kbit/s`, `1.5 Mbit/s`, `38 Mbit/s`.
pub fn rate(bps: u64) -> String {
    const UNITS: [(f64, &str); 3] = [(1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")];
    let v = bps as f64;
    for (scale, unit) in UNITS {
        if v >= scale {
            let x = v / scale;
            return if x < 10.0 {
                format!("{x:.1} {unit}")
            } else {
                format!("{x:.0} {unit}")
            };
        }
    }
    format!("{bps} bit/s")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Instant;

    use super::*;
    use crate::status::state::tests::example;
    use crate::status::state::{MeterStatus, UsageStatus, WanInfo, WanMode, WanState};

    #[test]
    fn golden_human_output() {
        let now = Instant::now();
        let mut model = example(now);
        let mut wans = vec![WanInfo {
            name: "wan".into(),
            device: "eth1".into(),
            addresses: vec![
                "100.64.12.7".parse().unwrap(),
                "2001:db8:7::2".parse().unwrap(),
            ],
            gateway: Some("100.64.12.1".parse().unwrap()),
            table: Some(2001),
            endpoint_id: Some(1),
            mode: WanMode::On,
            state: WanState::Up,
        }];
        wans.push(WanInfo {
            name: "lte".into(),
            device: "wwan0".into(),
            addresses: vec!["10.64.3.9".parse().unwrap()],
            gateway: None,
            table: Some(2002),
            endpoint_id: Some(2),
            mode: WanMode::Backup,
            state: WanState::Down,
        });
        model.set_wans(wans);
        model.set_meter(
            "lte",
            MeterStatus {
                metered: true,
                standby: true,
                over_allowance: true,
                allowance_bytes: Some(20_000_000_000),
                usage: Some(UsageStatus {
                    day: "2026-12-06".into(),
                    today_rx_bytes: 1_234,
                    today_tx_bytes: 56,
                    period_start: "2026-12-01".into(),
                    month_rx_bytes: 19_500_000_000,
                    month_tx_bytes: 600_000_000,
                }),
            },
        );
        let mut doc = model.render(now);
        doc.kernel.missing = vec![
            "TCP Fast Open on MPTCP (kernel < 6.2): one more round trip per connection".into(),
        ];
        let text = render(&doc);
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/status/testdata/status.txt");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        assert_eq!(text, std::fs::read_to_string(&path).expect("golden file"));
    }

    #[test]
    fn unreachable_and_empty() {
        let now = Instant::now();
        let mut model = example(now);
        model.set_wans(vec![]);
        model.record_concentrator_probe(Err("timeout".into()));
        model.concentrator_mut().redirect = false;
        let text = render(&model.render(now));
        assert!(
            text.contains("UNREACHABLE (timeout), redirect off (failing open)"),
            "{text}"
        );
        assert!(text.contains("no WANs"), "{text}");
    }

    #[test]
    fn udp_flows_get_a_line_and_a_json_object() {
        let now = Instant::now();
        let mut model = example(now);
        let stats = std::sync::Arc::new(crate::udp::UdpStats::default());
        let _flow = stats.open();
        stats.up(1200);
        stats.drops_queue_full();
        model.set_udp_stats(stats.clone());
        let doc = model.render(now);
        let text = render(&doc);
        assert!(
            text.contains("udp flows: 1 active (0 bonded), 1 total, 0 direct, 0 refused;"),
            "{text}"
        );
        assert!(
            text.contains("dropped: 1 queue full, 0 flow limit"),
            "{text}"
        );
        let json = serde_json::to_value(&doc).expect("json");
        assert_eq!(json["udp"]["bytes_up"], 1200);
        assert!(text.contains("udp by WAN: wan 0 B down / 0 B up"), "{text}");
        let mut without = example(now).render(now);
        without.udp = None;
        let without = render(&without);
        assert!(!without.contains("udp flows"), "{without}");
    }

    #[test]
    fn udp_bytes_are_shown_on_the_wan_that_carried_them() {
        let now = Instant::now();
        let mut model = example(now);
        let stats = std::sync::Arc::new(crate::udp::UdpStats::default());
        {
            // A direct flow from the WAN's address, ended; one from an address no WAN
            // holds, live.
            let ended = stats.track_direct("100.64.12.7".parse().unwrap());
            ended.sent(300);
            ended.received(5_000);
            let gone = stats.track_direct("10.99.0.2".parse().unwrap());
            gone.received(70);
            std::mem::forget(gone);
        }
        model.set_udp_stats(stats);
        let doc = model.render(now);
        let text = render(&doc);
        assert!(
            text.contains("udp by WAN: wan 5.0 kB down / 300 B up, no WAN now 70 B down / 0 B up"),
            "{text}"
        );
        let json = serde_json::to_value(&doc).expect("json");
        assert_eq!(json["wans"][0]["udp_rx_bytes"], 5_000);
        assert_eq!(json["wans"][0]["udp_tx_bytes"], 300);
        assert_eq!(json["udp"]["unattributed_rx_bytes"], 70);
    }

    #[test]
    fn a_demoted_wan_gets_a_line_with_its_reason() {
        let now = Instant::now();
        let mut model = example(now);
        assert!(model.set_quality(
            "wan",
            Some("rtt 300 ms vs 16 ms, 0.4 vs 24.5 Mbit/s".into())
        ));
        let text = render(&model.render(now));
        assert!(
            text.contains("wan: demoted to backup, it hurt the bond (rtt 300 ms vs 16 ms, 0.4 vs 24.5 Mbit/s)"),
            "{text}"
        );
        assert!(model.set_quality("wan", None));
        assert!(!render(&model.render(now)).contains("demoted"));
    }

    #[test]
    fn units() {
        assert_eq!(rate(0), "0 bit/s");
        assert_eq!(rate(900_000), "900 kbit/s");
        assert_eq!(rate(1_500_000), "1.5 Mbit/s");
        assert_eq!(rate(38_000_000), "38 Mbit/s");
        assert_eq!(rate(2_500_000_000), "2.5 Gbit/s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3_400), "3.4 kB");
        assert_eq!(bytes(81_000_000), "81 MB");
        assert_eq!(bytes(20_100_000_000), "20 GB");
        assert_eq!(bytes(900), "900 B");
        assert_eq!(bytes(4_121_000), "4.1 MB");
        assert_eq!(bytes(363_000_000), "363 MB");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(303), "5m03s");
        assert_eq!(duration(3605), "1h00m05s");
        assert_eq!(duration(3 * 86_400 + 4 * 3600), "3d04h");
    }
}
