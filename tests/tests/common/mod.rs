//! Shared by the scenario files: starting mpbond in a bed and judging transfers.
#![allow(dead_code)] // each scenario file uses a different subset

pub mod control;

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::{proc, wan_delta, Daemon, Fetch, FetchReport, Node, TestBed};

/// Port of the internet server in the scenarios.
pub const PORT: u16 = 5001;

/// Build a bed with `rates` and start the concentrator and the agent in it.
pub fn mpbond(rates: &[u32]) -> (TestBed, Daemon, Daemon) {
    mpbond_with(rates, true)
}

/// [`mpbond`] with TCP Fast Open on or off in the router and the VPS.
pub fn mpbond_with(rates: &[u32], fast_open: bool) -> (TestBed, Daemon, Daemon) {
    let bed = TestBed::builder().wans(rates).fast_open(fast_open).build();
    let conc = bed
        .start_concentrator(&bed.concentrator_config())
        .expect("concentrator starts");
    let agent = bed.start_agent(&bed.agent_config()).expect("agent starts");
    (bed, conc, agent)
}

/// A bed of `rates` WANs the agent routes itself (policy tables, endpoints), with the
/// concentrator, and the agent started with its UDP section set to `udp` (TOML), once
/// every WAN is up.
pub fn routed_agent(rates: &[u32], udp: Option<String>) -> (TestBed, Daemon, Daemon) {
    let bed = TestBed::builder().wans(rates).agent_routing(true).build();
    let conc = bed
        .start_concentrator(&bed.concentrator_config())
        .expect("concentrator starts");
    let mut cfg = bed.agent_config();
    cfg.udp = udp;
    let agent = bed.start_agent(&cfg).expect("agent starts");
    let all_up = proc::wait_until(Duration::from_secs(30), || {
        bed.agent_status().is_ok_and(|s| {
            let wans = s["wans"].as_array().cloned().unwrap_or_default();
            wans.len() == rates.len() && wans.iter().all(|w| w["state"] == "up")
        })
    });
    assert!(all_up, "WANs not up: {}", agent.log_tail(20));
    (bed, conc, agent)
}

/// Assert a real-time stream's echo report: no gap over `max_gap_ms` and at most
/// `max_lost_pct` % of its datagrams lost (the agent's log tail explains a gap).
pub fn assert_stream(
    report: &mpbond_tests::UdpEchoReport,
    agent: &Daemon,
    max_gap_ms: f64,
    max_lost_pct: u32,
) {
    assert!(
        report.max_gap_ms <= max_gap_ms,
        "a gap of {} ms: {report:?}\n{}",
        report.max_gap_ms,
        agent.log_tail(30)
    );
    assert!(
        report.lost <= report.sent * max_lost_pct / 100,
        "more than {max_lost_pct} % lost: {report:?}"
    );
}

/// Whether the agent's table in the router holds the redirect rule.
pub fn redirect_active(bed: &TestBed) -> bool {
    bed.exec(Node::Router, "nft list table inet mpbond")
        .is_ok_and(|t| t.contains("redirect to"))
}

/// Poll [`redirect_active`] until it equals `want` (or `limit` passes).
pub fn wait_redirect(bed: &TestBed, want: bool, limit: Duration) -> bool {
    proc::wait_until(limit, || redirect_active(bed) == want)
}

/// Share of the bytes each WAN carried: rx for downloads, tx for uploads.
pub fn shares(delta: &[(u64, u64)], download: bool) -> Vec<f64> {
    let bytes: Vec<u64> = delta
        .iter()
        .map(|&(rx, tx)| if download { rx } else { tx })
        .collect();
    let total = bytes.iter().sum::<u64>().max(1) as f64;
    bytes.iter().map(|&b| b as f64 / total).collect()
}

/// Run `fetch` from the LAN client, measuring what each WAN carried.
pub fn measured(bed: &TestBed, fetch: &Fetch) -> (FetchReport, Vec<(u64, u64)>) {
    let before = bed.all_wan_bytes();
    let report = bed.fetch(Node::Lan, fetch).expect("fetch runs");
    let delta = wan_delta(&before, &bed.all_wan_bytes());
    (report, delta)
}

/// Print and assert: intact, every WAN ≥ 15 % of the bytes, goodput ≥ `min_ratio` of the sum.
pub fn assert_aggregated(
    label: &str,
    bed: &TestBed,
    r: &FetchReport,
    delta: &[(u64, u64)],
    download: bool,
    min_ratio: f64,
) {
    let sum: u32 = bed.wan_rates().iter().sum();
    let sh = shares(delta, download);
    let ratio = r.mbit_per_s / f64::from(sum);
    println!(
        "{label}: {:.1} Mbit/s over {:.1} s = {ratio:.3} of {sum} Mbit/s; WAN shares {:?}; longest stall {:.0} ms; ok {}",
        r.mbit_per_s,
        r.seconds,
        sh.iter().map(|s| format!("{:.1}%", s * 100.0)).collect::<Vec<_>>(),
        r.longest_stall_ms,
        r.ok
    );
    println!(
        "{label}: per-second Mbit/s {:?}",
        per_second(&r.samples_mbit)
    );
    assert!(r.ok, "{label}: transfer not intact: {r:?}");
    for (i, s) in sh.iter().enumerate() {
        assert!(
            *s >= 0.15,
            "{label}: WAN {} carried only {:.1}% of the bytes",
            i + 1,
            s * 100.0
        );
    }
    assert!(
        ratio >= min_ratio,
        "{label}: goodput {:.1} Mbit/s is below {min_ratio} × {sum}",
        r.mbit_per_s
    );
}

/// Bytes that take `secs` seconds at the bed's summed WAN rate.
pub fn bytes_for(bed: &TestBed, secs: u64) -> u64 {
    let sum: u64 = bed.wan_rates().iter().map(|&r| u64::from(r)).sum();
    sum * 1_000_000 / 8 * secs
}

/// The server address for `ip` on [`PORT`].
pub fn at(ip: impl Into<std::net::IpAddr>) -> SocketAddr {
    SocketAddr::new(ip.into(), PORT)
}

/// The value of a concentrator metric (summed over labels), 0 if absent.
pub fn metric(bed: &TestBed, name: &str) -> f64 {
    let text = bed
        .concentrator_metrics()
        .expect("metrics endpoint answers");
    mpbond_tests::metric_sum(&text, name).unwrap_or(0.0)
}

/// Average 100 ms samples into whole seconds, rounded.
pub fn per_second(samples: &[f64]) -> Vec<u32> {
    samples
        .chunks(10)
        .map(|c| (c.iter().sum::<f64>() / c.len() as f64).round() as u32)
        .collect()
}

/// [`measured`] then [`assert_aggregated`]. The shared 2-core CPU makes single
/// runs noisy, so one intact, aggregated run below `min_ratio` gets one more
/// try; the better goodput is judged (both are printed).
pub fn aggregated_transfer(
    bed: &TestBed,
    label: &str,
    fetch: &Fetch,
    download: bool,
    min_ratio: f64,
) -> FetchReport {
    let sum = f64::from(bed.wan_rates().iter().sum::<u32>());
    let (first, first_delta) = measured(bed, fetch);
    let aggregated = shares(&first_delta, download).iter().all(|&s| s >= 0.15);
    if first.ok && aggregated && first.mbit_per_s < min_ratio * sum {
        println!(
            "{label}: first try {:.1} Mbit/s ({:?} per second), trying once more",
            first.mbit_per_s,
            per_second(&first.samples_mbit)
        );
        let (second, second_delta) = measured(bed, fetch);
        println!("{label}: second try {:.1} Mbit/s", second.mbit_per_s);
        if second.mbit_per_s > first.mbit_per_s || !second.ok {
            assert_aggregated(label, bed, &second, &second_delta, download, min_ratio);
            return second;
        }
    }
    assert_aggregated(label, bed, &first, &first_delta, download, min_ratio);
    first
}
