//! Case 14, `udp`: UDP and QUIC through mpbond over 40 + 60 Mbit/s WANs, against the
//! router's plain NAT over one WAN in the same bed.
//!
//! * one QUIC download (`mpbond-tb quic-fetch`, quinn): goodput ÷ Σ rates, mpbond and
//!   direct NAT (which can use only WAN 1);
//! * the real-time flow (50 datagrams/s of 200 bytes, echoed): median and p99 round trip
//!   added by mpbond over direct NAT, and the longest gap between echoes when WAN 1's
//!   link goes down under it;
//! * CPU-seconds per GB of the agent and the concentrator for the QUIC download;
//! * the agent's and the concentrator's RSS per UDP flow and with 1,000 idle flows held
//!   open (`udp-hold`, opened 100 a second).
//!
//! The peer, shadowsocks-rust's UDP relay (`2022-blake3-aes-256-gcm`, as in the TCP
//! cases), runs in the same bed before mpbond: sslocal's `tunnel` protocol with UDP on the
//! router's LAN address, one tunnel to the QUIC server and one to the echo server, so the
//! LAN client writes to the router instead of needing tproxy rules for sslocal's redir
//! mode; the per-datagram work (encrypt, one UDP socket to ssserver) is the same.
//! shadowsocks carries UDP as plain UDP over the router's main route (WAN 1): it is
//! neither bonded nor failover-safe, and is measured on the WAN it takes.

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::loadgen::rss_kib;
use mpbond_tests::proc;
use mpbond_tests::tools::TB;
use mpbond_tests::topology::{LAN_ROUTER_V4, SERVER_V4};
use mpbond_tests::{Failure, Node, TestBed, UdpEchoReport};

use crate::ctx::{BenchError, Ctx};
use crate::peer::{Method, Peer, TUNNEL_PORT};
use crate::report::{Figure, Measurement, Target};
use crate::stat::{clock_ticks, process_ticks, Steal};

const CASE: &str = "14 udp";
const RATES: [u32; 2] = [40, 60];
const QUIC: u16 = 4433;
const ECHO: u16 = 7007;

fn at(port: u16) -> SocketAddr {
    SocketAddr::new(SERVER_V4.into(), port)
}

/// The peer's tunnel `i` on the router (0: QUIC, 1: echo).
fn tunnel(i: u16) -> SocketAddr {
    SocketAddr::new(LAN_ROUTER_V4.into(), TUNNEL_PORT + i)
}

fn quic(bed: &TestBed, to: SocketAddr, bytes: u64) -> Result<f64, BenchError> {
    let report = bed
        .spawn_quic_fetch(Node::Lan, to, bytes, Duration::from_secs(120))?
        .finish()?;
    if !report.ok {
        return Err(BenchError::measure(
            CASE,
            format!("QUIC download failed: {report:?}"),
        ));
    }
    Ok(report.mbit_per_s)
}

fn echo(bed: &TestBed, to: SocketAddr, count: u32) -> Result<UdpEchoReport, BenchError> {
    Ok(bed.udp_echo(Node::Lan, to, count)?)
}

fn ticks(pid: u32) -> f64 {
    process_ticks(pid).unwrap_or(0) as f64 / clock_ticks()
}

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let bytes: u64 = ctx.pick(40_000_000, 200_000_000);
    let echoes: u32 = ctx.pick(250, 1000);
    let steal = Steal::start();
    let bed = TestBed::builder().wans(&RATES).build();
    let _quic_server = bed.quic_server(Node::Server, at(QUIC))?;
    let _echo_server = bed.udp_echo_server(Node::Server, at(ECHO))?;
    let sum = f64::from(RATES.iter().sum::<u32>());

    // Direct NAT first: no agent, the router's masquerade over its main route (WAN 1).
    let mut direct_goodput = Vec::new();
    let mut direct_echo = Vec::new();
    for _ in 0..ctx.runs() {
        direct_goodput.push(quic(&bed, at(QUIC), bytes)? / sum);
        direct_echo.push(echo(&bed, at(ECHO), echoes)?);
    }

    // The peer: sslocal (router) and ssserver (VPS), UDP tunnels on the router.
    let gb = bytes as f64 / 1e9;
    let mut peer_goodput = Vec::new();
    let mut peer_cpu_local = Vec::new();
    let mut peer_cpu_server = Vec::new();
    let mut peer_echo = Vec::new();
    {
        let peer = Peer::start_udp(&bed, ctx, Method::Aes2022, &[at(QUIC), at(ECHO)])?;
        let [local_pid, server_pid] = peer.pids();
        for _ in 0..ctx.runs() {
            let (l0, s0) = (ticks(local_pid), ticks(server_pid));
            let goodput = quic(&bed, tunnel(0), bytes).map_err(|e| {
                BenchError::measure(CASE, format!("peer: {e}; logs:\n{}", peer.log_tail()))
            })?;
            peer_goodput.push(goodput / sum);
            peer_cpu_local.push((ticks(local_pid) - l0) / gb);
            peer_cpu_server.push((ticks(server_pid) - s0) / gb);
            peer_echo.push(echo(&bed, tunnel(1), echoes)?);
        }
    }

    let conc = bed.start_concentrator(&bed.concentrator_config())?;
    let agent = bed.start_agent(&bed.agent_config())?;
    let (agent_pid, conc_pid) = (agent.pid(), conc.pid());
    let mut goodput = Vec::new();
    let mut cpu_agent = Vec::new();
    let mut cpu_conc = Vec::new();
    let mut bonded_echo = Vec::new();
    for _ in 0..ctx.runs() {
        let (a0, c0) = (ticks(agent_pid), ticks(conc_pid));
        goodput.push(quic(&bed, at(QUIC), bytes)? / sum);
        cpu_agent.push((ticks(agent_pid) - a0) / gb);
        cpu_conc.push((ticks(conc_pid) - c0) / gb);
        bonded_echo.push(echo(&bed, at(ECHO), echoes)?);
    }

    // The longest gap while WAN 1's link goes down under the real-time flow.
    let mut gaps = Vec::new();
    for _ in 0..ctx.runs() {
        // The counter is cumulative: wait for 50 echoes of this flow (one second), so its
        // MPTCP connection is established and has its subflow on WAN 2 before WAN 1 fails.
        let down = |s: &serde_json::Value| s["udp"]["datagrams_down"].as_u64().unwrap_or(0);
        let base = bed.agent_status().map(|s| down(&s)).unwrap_or(0);
        let run = bed.spawn_udp_echo(Node::Lan, at(ECHO), 300)?;
        let flowing = proc::wait_until(Duration::from_secs(10), || {
            bed.agent_status().is_ok_and(|s| down(&s) >= base + 50)
        });
        if !flowing {
            return Err(BenchError::measure(
                CASE,
                "the real-time flow did not start",
            ));
        }
        bed.fail_wan(1, Failure::LinkDown, true)?;
        let report = run.finish();
        bed.fail_wan(1, Failure::LinkDown, false)?;
        gaps.push(report?.max_gap_ms);
        // Let WAN 1 come back before the next run.
        proc::wait_until(Duration::from_secs(15), || {
            bed.agent_status().is_ok_and(|s| {
                s["wans"]
                    .as_array()
                    .is_some_and(|w| w.iter().all(|w| w["state"] == "up"))
            })
        });
    }

    // RSS per flow: 1,000 idle flows held open, opened 100 a second (a household opens
    // its flows over time; a burst meets the concentrator's per-source limit on new
    // connections, which is right to keep).
    let flows: u32 = 1000;
    let (agent_before, conc_before) = (
        rss_kib(agent_pid).unwrap_or(0),
        rss_kib(conc_pid).unwrap_or(0),
    );
    let bin = ctx.bin(TB)?;
    let (bin, to, n) = (
        bin.to_string_lossy().into_owned(),
        at(ECHO).to_string(),
        flows.to_string(),
    );
    let _hold = bed.spawn(
        Node::Lan,
        &[
            &bin,
            "udp-hold",
            "--to",
            &to,
            "--flows",
            &n,
            "--per-sec",
            "100",
        ],
    )?;
    let held = proc::wait_until(Duration::from_secs(60), || {
        bed.agent_status()
            .is_ok_and(|s| s["udp"]["bonded_active"].as_u64().unwrap_or(0) >= u64::from(flows))
    });
    let (agent_held, conc_held) = (
        rss_kib(agent_pid).unwrap_or(0),
        rss_kib(conc_pid).unwrap_or(0),
    );
    let udp_status = bed
        .agent_status()
        .map(|s| s["udp"].clone())
        .unwrap_or_default();
    eprintln!("mpbond-bench: case 14: agent udp status with the flows held: {udp_status}");
    let active = udp_status["active"].as_u64().unwrap_or(0);
    let bonded = udp_status["bonded_active"].as_u64().unwrap_or(0);
    let per_flow = |before: u64, after: u64, n: u64| -> f64 {
        after.saturating_sub(before) as f64 / (n.max(1) as f64)
    };
    let agent_per_flow = per_flow(agent_before, agent_held, active);
    let conc_per_flow = per_flow(conc_before, conc_held, bonded);

    let p = |reports: &[UdpEchoReport], f: fn(&UdpEchoReport) -> f64| -> Vec<f64> {
        reports.iter().map(f).collect()
    };
    let added = |over: &[UdpEchoReport], f: fn(&UdpEchoReport) -> f64| -> Vec<f64> {
        bonded_echo
            .iter()
            .zip(over)
            .map(|(b, d)| f(b) - f(d))
            .collect()
    };
    let ratio = |a: &[f64], b: &[f64]| -> Vec<f64> {
        a.iter().zip(b).map(|(a, b)| a / b.max(1e-9)).collect()
    };
    let detail = format!(
        "direct p50/p99 {:?}/{:?} ms, peer p50/p99 {:?}/{:?} ms, mpbond p50/p99 {:?}/{:?} ms; peer echoes {:?}; idle flows held {held} ({active} active, {bonded} bonded), agent RSS {agent_before} -> {agent_held} KiB, concentrator RSS {conc_before} -> {conc_held} KiB",
        p(&direct_echo, |r| r.rtt_p50_ms),
        p(&direct_echo, |r| r.rtt_p99_ms),
        p(&peer_echo, |r| r.rtt_p50_ms),
        p(&peer_echo, |r| r.rtt_p99_ms),
        p(&bonded_echo, |r| r.rtt_p50_ms),
        p(&bonded_echo, |r| r.rtt_p99_ms),
        peer_echo.iter().map(|r| r.received).collect::<Vec<_>>(),
    );
    let m = Measurement {
        case: CASE,
        steal_pct: steal.percent(),
        detail,
    };
    let over_peer = ratio(&goodput, &peer_goodput);
    Ok(vec![
        m.figure(
            "QUIC download 40+60: mpbond goodput / sum of rates".into(),
            goodput,
            "ratio",
            Some(Target::AtLeast(0.85)),
        ),
        m.figure(
            "QUIC download: peer (shadowsocks UDP, one WAN) goodput / sum of rates".into(),
            peer_goodput.clone(),
            "ratio",
            None,
        ),
        m.figure(
            "QUIC download: mpbond goodput / peer goodput".into(),
            over_peer,
            "ratio",
            Some(Target::AtLeast(1.0)),
        ),
        m.figure(
            "QUIC download: direct NAT (one WAN) goodput / sum of rates".into(),
            direct_goodput,
            "ratio",
            None,
        ),
        m.figure(
            "real-time flow: median RTT added over direct NAT".into(),
            added(&direct_echo, |r| r.rtt_p50_ms),
            "ms",
            Some(Target::AtMost(2.0)),
        ),
        m.figure(
            "real-time flow: p99 RTT added over direct NAT".into(),
            added(&direct_echo, |r| r.rtt_p99_ms),
            "ms",
            Some(Target::AtMost(10.0)),
        ),
        m.figure(
            "real-time flow: median RTT added over the peer".into(),
            added(&peer_echo, |r| r.rtt_p50_ms),
            "ms",
            None,
        ),
        m.figure(
            "real-time flow: p99 RTT added over the peer".into(),
            added(&peer_echo, |r| r.rtt_p99_ms),
            "ms",
            None,
        ),
        m.figure(
            "real-time flow: longest gap when WAN 1 goes down".into(),
            gaps,
            "ms",
            Some(Target::AtMost(500.0)),
        ),
        m.figure("QUIC download: agent CPU".into(), cpu_agent, "s/GB", None),
        m.figure(
            "QUIC download: concentrator CPU".into(),
            cpu_conc,
            "s/GB",
            None,
        ),
        m.figure(
            "QUIC download: peer sslocal (router) CPU".into(),
            peer_cpu_local,
            "s/GB",
            None,
        ),
        m.figure(
            "QUIC download: peer ssserver (VPS) CPU".into(),
            peer_cpu_server,
            "s/GB",
            None,
        ),
        m.figure(
            format!("agent RSS per idle UDP flow ({active} held)"),
            vec![agent_per_flow],
            "KiB",
            None,
        ),
        m.figure(
            format!("agent RSS with {active} idle UDP flows"),
            vec![agent_held as f64 / 1024.0],
            "MiB",
            None,
        ),
        m.figure(
            format!("concentrator RSS per idle UDP flow ({bonded} held)"),
            vec![conc_per_flow],
            "KiB",
            None,
        ),
        m.figure(
            format!("concentrator RSS with {bonded} idle UDP flows"),
            vec![conc_held as f64 / 1024.0],
            "MiB",
            None,
        ),
    ])
}
