//! The status model against docs/STATUS.md: the documented example, rebuilt through the
//! updater API, is the same JSON value as the one in the document; every field of the
//! document's table is present; unknowns are `null`. `testdata/status.json` is the
//! golden text (`UPDATE_GOLDEN=1` rewrites it).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::proxy::Stats;

/// One protected flow: two legs, the first missed 55 of 995 downstream datagrams.
fn protected_example() -> Arc<crate::udp::ProtectStats> {
    use crate::udp::protect::legs::LegStatus;
    use crate::udp::protect::stats::ProtectedFlowStatus;
    let stats = Arc::new(crate::udp::ProtectStats::default());
    let client = "192.168.1.10:50000".parse().unwrap();
    let destination = "198.51.100.1:3478".parse().unwrap();
    let id = stats.open(client, destination);
    let leg = |leg: u8, wan: &str, down: u64, missed: u64| LegStatus {
        leg,
        wan: wan.into(),
        state: "open".into(),
        datagrams_down: down,
        missed_down: missed,
    };
    stats.publish(
        id,
        ProtectedFlowStatus {
            client: client.to_string(),
            destination: destination.to_string(),
            mode: "duplicate".into(),
            origin: crate::udp::ProtectOrigin::Rule,
            legs: vec![leg(0, "wan", 940, 55), leg(1, "lte", 995, 0)],
            datagrams_up: 1000,
            datagrams_down: 995,
            lost_down: 0,
            lost_before_down: 0,
            recovered_down: 0,
            duplicates_down: 940,
            protection_bytes_up: 200_000,
            protection_bytes_down: 192_000,
            legs_replaced: 0,
        },
    );
    stats
}

/// The model of the docs/STATUS.md example.
pub(crate) fn example(now: Instant) -> StatusModel {
    let started = now - Duration::from_secs(3605);
    let mut model = StatusModel::new("0.1.0", started, "vps.example.net");
    // One UDP flow that has carried one datagram each way.
    let udp = std::sync::Arc::new(crate::udp::UdpStats::default());
    let mut flow = udp.open();
    flow.bonded();
    std::mem::forget(flow);
    udp.up(200);
    udp.down(1400);
    // Its bytes on the WAN that holds the flow's local address.
    let ticket = udp.track_direct("100.64.12.7".parse().unwrap());
    ticket.sent(200);
    ticket.received(1400);
    std::mem::forget(ticket);
    model.set_udp_stats(udp);
    model.set_protect_stats(protected_example());
    model.set_latency_guard(crate::core::latency_guard::GuardView {
        enabled: true,
        protected_flows: 1,
        clamp: Some(401_408),
        release: 4_194_304,
        window: Some(401_408),
        pace: Some(10_625_000),
        paced_bytes: 52_428_800,
    });
    model.set_name_bypass(
        Some(crate::bypass_names::NameBypassStatus {
            domains: vec!["bank.example".into()],
            resolver: "dnsmasq".into(),
            resolver_active: true,
            resolver_problem: None,
            dnsmasq_conf: Some("/tmp/dnsmasq.d/mpbond-bypass.conf".into()),
            ipv4_addresses: Some(2),
            ipv6_addresses: Some(1),
        }),
        "mpbond",
    );
    model.set_kernel(KernelStatus {
        release: "6.6.73".into(),
        mptcp: true,
        tfo_mptcp: true,
        tcp_is_mptcp: true,
        mptcp_full_info: true,
        missing: vec![],
    });
    model.set_concentrator(ConcentratorStatus {
        host: "vps.example.net".into(),
        address: Some("192.0.2.1:4850".parse().unwrap()),
        reachable: true,
        redirect: true,
        rtt_ms: None,
        last_error: Some("stale".into()),
        congestion: Some("bbr".into()),
    });
    model.record_concentrator_probe(Ok(Duration::from_micros(23_400)));
    model.set_upstream_buffers(crate::core::SocketBuffers {
        rcvbuf: Some(2 << 20),
        sndbuf: Some(2 << 20),
    });
    let entry = |name: &str, address: &str, priority, state: &str, rtt_ms, connections| {
        super::super::concentrators::ConcentratorEntry {
            name: name.into(),
            address: address.parse().unwrap(),
            priority,
            state: state.into(),
            rtt_ms,
            connections,
        }
    };
    model.set_concentrators(vec![
        entry("vps", "192.0.2.1:4850", 1, "active", Some(23.4), 3),
        entry("vps2", "198.51.100.7:4850", 2, "standby", Some(41.0), 0),
    ]);
    model.set_connections(ConnectionCounts {
        active: 3,
        total: 1204,
        fallbacks: 0,
        direct: 2,
        refused: 0,
        moved: 0,
    });
    model.set_wans(vec![WanInfo {
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
    }]);
    assert!(model.set_probe_stats("wan", Some(Duration::from_micros(18_200)), Some(0.0)));
    assert!(model.set_subflows("wan", 3));
    let changed = now - Duration::from_secs(303);
    assert!(model.record_wan_change("wan", WanState::Up, "probe", changed));
    assert!(model.set_probe_cost("wan", Some(4_121_000)));
    assert!(model.set_quality("wan", None));
    let t0 = now - Duration::from_secs(1);
    assert!(model.record_counters("wan", 81_234_567 - 4_750_000, 1_234_567 - 112_500, t0));
    assert!(model.record_counters("wan", 81_234_567, 1_234_567, now));
    assert!(model.set_meter(
        "wan",
        MeterStatus {
            usage: Some(UsageStatus {
                day: "2026-12-06".into(),
                today_rx_bytes: 81_234_567,
                today_tx_bytes: 1_234_567,
                period_start: "2026-12-01".into(),
                month_rx_bytes: 4_200_000_000,
                month_tx_bytes: 120_000_000,
            }),
            ..MeterStatus::default()
        }
    ));
    assert!(!model.set_meter("nope", MeterStatus::default()));
    model
}

fn docs_example() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/STATUS.md");
    let text = std::fs::read_to_string(&path).expect("docs/STATUS.md");
    let start = text.find("```json").expect("a json block") + "```json".len();
    let len = text[start..].find("```").expect("end of the json block");
    serde_json::from_str(&text[start..start + len]).expect("the example parses")
}

#[test]
fn example_matches_the_documented_document() {
    let now = Instant::now();
    let doc = serde_json::to_value(example(now).render(now)).unwrap();
    assert_eq!(doc, docs_example());
}

#[test]
fn golden_text() {
    let now = Instant::now();
    let text = serde_json::to_string_pretty(&example(now).render(now)).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/status/testdata/status.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(text, golden);
    let back: StatusDoc = serde_json::from_str(&golden).unwrap();
    assert_eq!(back, example(now).render(now));
}

/// Every field named in the docs' table is in the rendered document.
#[test]
fn every_documented_field_is_present() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/STATUS.md");
    let text = std::fs::read_to_string(path).unwrap();
    let now = Instant::now();
    let doc = serde_json::to_value(example(now).render(now)).unwrap();
    let mut checked = 0;
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('|').nth(1).unwrap_or_default();
        let fields: Vec<&str> = cell
            .split(',')
            .map(|f| f.trim().trim_matches('`'))
            .collect();
        // "`wans[].rx_bytes`, `tx_bytes`": later names share the first one's parent.
        let parent = fields[0].rsplit_once('.').map(|(p, _)| p);
        for (i, field) in fields.iter().enumerate() {
            let full = match parent {
                Some(parent) if i > 0 => format!("{parent}.{field}"),
                _ => (*field).to_owned(),
            };
            assert!(
                lookup(&doc, &full).is_some(),
                "documented field {full} missing"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} documented fields found");
}

/// `a.b[].c` in `doc`, looking into the first element of arrays.
fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(doc, |value, part| match part.strip_suffix("[]") {
            Some(key) => value.get(key)?.get(0),
            None => value.get(part),
        })
}

#[test]
fn unknowns_are_null() {
    let now = Instant::now();
    let mut model = StatusModel::new("0.1.0", now, "vps.example.net");
    model.set_wans(vec![WanInfo {
        name: "lte".into(),
        device: "wwan0".into(),
        addresses: vec![],
        gateway: None,
        table: None,
        endpoint_id: None,
        mode: WanMode::Backup,
        state: WanState::Unknown,
    }]);
    let doc = serde_json::to_value(model.render(now)).unwrap();
    for path in [
        "concentrator.address",
        "concentrator.rtt_ms",
        "concentrator.last_error",
        "wans[].gateway",
        "wans[].table",
        "wans[].endpoint_id",
        "wans[].rtt_ms",
        "wans[].loss_pct",
        // No UDP service: no UDP bytes, not zero of them.
        "wans[].udp_rx_bytes",
        "wans[].udp_tx_bytes",
    ] {
        assert_eq!(lookup(&doc, path), Some(&Value::Null), "{path}");
    }
    assert_eq!(doc["wans"][0]["mode"], "backup");
    assert_eq!(doc["wans"][0]["state"], "unknown");
    assert_eq!(doc["schema"], SCHEMA);
}

#[test]
fn measurements_follow_the_wan_by_name() {
    let now = Instant::now();
    let mut model = example(now);
    let info = |name: &str| WanInfo {
        name: name.into(),
        device: format!("dev-{name}"),
        addresses: vec![],
        gateway: None,
        table: None,
        endpoint_id: None,
        mode: WanMode::On,
        state: WanState::Up,
    };
    let (wan, lte) = (info("wan"), info("lte"));
    model.set_wans(vec![lte.clone(), wan.clone()]);
    let doc = model.render(now);
    assert_eq!(doc.wans[0].name, "lte");
    assert_eq!(doc.wans[0].rtt_ms, None);
    assert_eq!(doc.wans[1].subflows, 3, "kept across set_wans");
    model.set_wans(vec![lte]);
    model.set_wans(vec![wan]);
    assert_eq!(
        model.render(now).wans[0].subflows,
        0,
        "dropped when the WAN went away"
    );
    assert!(!model.set_subflows("gone", 1));
    assert!(!model.set_wan_state("gone", WanState::Down));
    assert!(model.set_wan_state("wan", WanState::Down));
    assert_eq!(model.render(now).wans[0].state, WanState::Down);
}

#[test]
fn counters_going_backwards_give_rate_zero() {
    let now = Instant::now();
    let mut model = example(now);
    model.record_counters("wan", 10, 10, now + Duration::from_secs(1));
    let wan = &model.render(now).wans[0];
    assert_eq!((wan.rx_bps, wan.tx_bps, wan.rx_bytes), (0, 0, 10));
}

#[test]
fn live_stats_are_read_at_render_time() {
    let now = Instant::now();
    let mut model = example(now);
    let stats = Arc::new(Stats::default());
    model.set_stats(stats.clone());
    let guard = stats.open();
    stats.direct();
    let c = model.render(now).connections;
    assert_eq!((c.active, c.total, c.direct), (1, 1, 1));
    drop(guard);
    assert_eq!(model.render(now).connections.active, 0);
}

#[test]
fn failed_probe_keeps_the_last_rtt() {
    let now = Instant::now();
    let mut model = example(now);
    model.record_concentrator_probe(Err("timeout".into()));
    let c = model.render(now).concentrator;
    assert!(!c.reachable);
    assert_eq!(c.rtt_ms, Some(23.4));
    assert_eq!(c.last_error.as_deref(), Some("timeout"));
}

/// A model with one WAN and no counters yet.
fn one_wan(now: Instant) -> StatusModel {
    let mut model = StatusModel::new("0.1.0", now, "vps.example.net");
    model.set_wans(vec![WanInfo {
        name: "wan".into(),
        device: "eth1".into(),
        addresses: vec![],
        gateway: None,
        table: None,
        endpoint_id: None,
        mode: WanMode::On,
        state: WanState::Up,
    }]);
    model
}

fn rates(model: &StatusModel, now: Instant) -> (u64, u64) {
    let wan = &model.render(now).wans[0];
    (wan.rx_bps, wan.tx_bps)
}

#[test]
fn a_packet_right_after_a_sample_is_no_spike() {
    // An idle link at 7 kbit/s (875 B/s each way), sampled every 2 s; a second recorder
    // 5 ms after a sample sees one more 1500-byte packet. Over 5 ms that read as
    // 2.4 Mbit/s; the rate now stays the one over the last interval of a second or more.
    let t0 = Instant::now();
    let mut model = one_wan(t0);
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    assert!(model.record_counters("wan", 0, 0, at(0)));
    assert!(model.record_counters("wan", 1750, 1750, at(2000)));
    assert_eq!(rates(&model, at(2000)), (7000, 7000));
    assert!(model.record_counters("wan", 3250, 3250, at(2005)));
    assert_eq!(rates(&model, at(2005)), (7000, 7000), "no spike");
    assert_eq!(
        model.render(at(2005)).wans[0].rx_bytes,
        3250,
        "totals follow"
    );
    // The next rate is over the 2 s since the baseline, with the packet in it.
    assert!(model.record_counters("wan", 5000, 5000, at(4000)));
    assert_eq!(rates(&model, at(4000)), (13_000, 13_000));
}

#[test]
fn interleaved_recorders_give_the_true_rate() {
    // Two recorders 0.5 s apart, each reading the same steady 1 Mbit/s link: every rate
    // is computed over at least a second and is exact.
    let t0 = Instant::now();
    let mut model = one_wan(t0);
    for step in 0..20u64 {
        let now = t0 + Duration::from_millis(step * 500 + (step % 2) * 3);
        let bytes = (now - t0).as_millis() as u64 * 125;
        assert!(model.record_counters("wan", bytes, bytes / 2, now));
        if step >= 2 {
            assert_eq!(rates(&model, now), (1_000_000, 500_000), "step {step}");
        }
    }
}

#[test]
fn a_sample_older_than_the_baseline_is_ignored_for_the_rate() {
    let t0 = Instant::now();
    let mut model = one_wan(t0 + Duration::from_secs(5));
    let late = t0 + Duration::from_secs(5);
    assert!(model.record_counters("wan", 1000, 1000, late));
    assert!(model.record_counters("wan", 1000, 1000, t0));
    assert!(model.record_counters("wan", 2000, 2000, late + Duration::from_secs(1)));
    assert_eq!(rates(&model, late), (8000, 8000));
}
