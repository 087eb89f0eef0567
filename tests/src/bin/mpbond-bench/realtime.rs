//! Case 18, `realtime`: a real-time UDP stream (50 datagrams/s of 200 bytes, echoed by
//! the server) protected over two WANs (`[[udp.rule]] action = "protect"`), in both
//! modes: `duplicate` (every datagram on a leg per WAN, the first copy wins) and `fec`
//! (each datagram once, spread over the legs, an XOR repair per block of up to 16, a
//! source its leg is late with sent again on the other), against the same stream bonded
//! without protection (one MPTCP connection) and over one WAN by the router's NAT (its
//! main route, WAN 1: the impaired one), on 40 + 60 Mbit/s WANs with 10 ms each way.
//!
//! * with 1 % random loss, 5 % random loss and bursty loss (a 60 ms outage every
//!   second) on WAN 1: the stream's residual loss and its p50/p99 round trip added over
//!   the clean link by NAT;
//! * protection's overhead: the bytes of the extra copies or repairs (the agent's
//!   status) over the stream's payload bytes both ways, per mode;
//! * the longest gap between echoes when WAN 1's link goes down, and when it is
//!   black-holed, under the protected stream (each mode);
//! * the protected stream's p99 added while a bulk TCP download fills both WANs.
//!
//! The peer (shadowsocks-rust's UDP relay, `2022-blake3-aes-256-gcm`, sslocal's UDP
//! tunnel on the router as in case 14) carries UDP over the router's main route only,
//! like the NAT row: it runs under each loss condition (full mode also on the clean
//! link; short mode skips that, whose figures are not reported, and streams 250
//! datagrams instead of 350, to keep its length: the peer adds under 30 s to short
//! mode). Without shadowsocks-rust (`sslocal`, `ssserver`) the peer's rows are left
//! out and the rest still runs. The best single WAN under loss on WAN 1 is WAN 2,
//! clean and with the same delay: its figures are the clean NAT row's.

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::profiles::{LinkSpec, Outage};
use mpbond_tests::topology::{LAN_ROUTER_V4, SERVER_V4};
use mpbond_tests::{proc, Failure, Fetch, Node, TestBed, UdpEchoReport, WanDelays};

use crate::ctx::{BenchError, Ctx};
use crate::peer::{Method, Peer, TUNNEL_PORT};
use crate::report::{Figure, Measurement, Mode, Target};
use crate::stat::Steal;

const CASE: &str = "18 realtime";
const RATES: [u32; 2] = [40, 60];
/// The protected ports (STUN/WebRTC ports: `duplicate`, `fec`) and the plain bonded one.
const PROTECTED: u16 = 3478;
const PROTECTED_FEC: u16 = 3479;
const BONDED: u16 = 7007;
const FETCH_PORT: u16 = 5001;
/// One way delay of both WANs.
const ONE_WAY_MS: u32 = 10;
/// Payload bytes of one stream datagram.
const DATAGRAM: u64 = 200;

fn at(port: u16) -> SocketAddr {
    SocketAddr::new(SERVER_V4.into(), port)
}

/// The loss conditions on WAN 1: name and link.
fn conditions() -> Vec<(&'static str, LinkSpec)> {
    let clean = LinkSpec::clean(RATES[0], 2 * ONE_WAY_MS);
    vec![
        ("clean", clean),
        (
            "1 % loss",
            LinkSpec {
                loss_pct: 1.0,
                ..clean
            },
        ),
        (
            "5 % loss",
            LinkSpec {
                loss_pct: 5.0,
                ..clean
            },
        ),
        (
            "bursty loss",
            LinkSpec {
                outage: Some(Outage {
                    every: Duration::from_secs(1),
                    length: Duration::from_millis(60),
                }),
                ..clean
            },
        ),
    ]
}

/// One stream's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Stream {
    loss_pct: f64,
    p50: f64,
    p99: f64,
    max_gap: f64,
}

impl From<&UdpEchoReport> for Stream {
    fn from(r: &UdpEchoReport) -> Self {
        Stream {
            loss_pct: f64::from(r.lost) * 100.0 / f64::from(r.sent.max(1)),
            p50: r.rtt_p50_ms,
            p99: r.rtt_p99_ms,
            max_gap: r.max_gap_ms,
        }
    }
}

fn echo(bed: &TestBed, port: u16, count: u32) -> Result<Stream, BenchError> {
    let report = bed.udp_echo(Node::Lan, at(port), count)?;
    Ok(Stream::from(&report))
}

/// A number of the agent's `protected` status object (0 if absent).
fn protected_count(bed: &TestBed, key: &str) -> u64 {
    bed.agent_status()
        .ok()
        .and_then(|s| s["protected"][key].as_u64())
        .unwrap_or(0)
}

fn all_up(bed: &TestBed) -> bool {
    proc::wait_until(Duration::from_secs(30), || {
        bed.agent_status().is_ok_and(|s| {
            s["wans"]
                .as_array()
                .is_some_and(|w| w.len() == RATES.len() && w.iter().all(|w| w["state"] == "up"))
        })
    })
}

/// One protected stream of `echoes` to `port`: its figures, and the bytes protection
/// spent on it (the agent's status) in percent of its payload bytes both ways.
fn protected_stream(
    bed: &TestBed,
    port: u16,
    echoes: u32,
    name: &str,
) -> Result<(Stream, f64), BenchError> {
    let before = protected_count(bed, "protection_bytes");
    let delivered = protected_count(bed, "datagrams_down");
    let report = bed.udp_echo(Node::Lan, at(port), echoes)?;
    // The flow publishes its entry once a second: wait until it has counted every
    // datagram the client got.
    let counted = proc::wait_until(Duration::from_secs(5), || {
        protected_count(bed, "datagrams_down") >= delivered + u64::from(report.received)
    });
    if !counted {
        eprintln!("mpbond-bench: case 18: {name}, port {port}: the status lags the stream");
    }
    let extra = protected_count(bed, "protection_bytes").saturating_sub(before) as f64;
    let payload = (u64::from(report.sent) + u64::from(report.received)) * DATAGRAM;
    Ok((Stream::from(&report), extra * 100.0 / payload.max(1) as f64))
}

/// Set WAN 1's emulation to `link`.
fn impair(bed: &TestBed, delays: &mut WanDelays, link: &LinkSpec) -> Result<(), BenchError> {
    bed.replace_wan_emulation(delays, 1, link, Some(18))?;
    Ok(())
}

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let echoes: u32 = ctx.pick(350, 1500);
    // The peer's stream in short mode is shorter (5 s), to keep what it adds near 25 s.
    let peer_echoes: u32 = ctx.pick(250, 1500);
    let gap_stream: u32 = ctx.pick(200, 300);
    let steal = Steal::start();
    let bed = TestBed::builder().wans(&RATES).agent_routing(true).build();
    let mut delays = bed.add_wan_delays(u64::from(ONE_WAY_MS))?;
    let _protected_server = bed.udp_echo_server(Node::Server, at(PROTECTED))?;
    let _fec_server = bed.udp_echo_server(Node::Server, at(PROTECTED_FEC))?;
    let _bonded_server = bed.udp_echo_server(Node::Server, at(BONDED))?;
    let _fetch_server = bed.serve(Node::Server, at(FETCH_PORT), false)?;
    let conditions = conditions();

    // One WAN by NAT first (no agent: the router's main route, WAN 1), and the peer
    // beside it (short mode: not on the clean link, whose figures are not reported).
    // Without shadowsocks-rust the peer's rows are left out, the rest still runs.
    let peer_missing = ctx.ss("sslocal").and_then(|_| ctx.ss("ssserver")).err();
    let peer = match peer_missing {
        None => Some(Peer::start_udp(&bed, ctx, Method::Aes2022, &[at(BONDED)])?),
        Some(_) => None,
    };
    let mut nat = Vec::new();
    let mut peer_rows = Vec::new();
    for (i, (_, link)) in conditions.iter().enumerate() {
        impair(&bed, &mut delays, link)?;
        nat.push(echo(&bed, BONDED, echoes)?);
        if peer.is_none() || (i == 0 && ctx.mode == Mode::Short) {
            peer_rows.push(None);
            continue;
        }
        let tunnel = SocketAddr::new(LAN_ROUTER_V4.into(), TUNNEL_PORT);
        let report = bed.udp_echo(Node::Lan, tunnel, peer_echoes)?;
        peer_rows.push(Some(Stream::from(&report)));
    }
    drop(peer);

    let _conc = bed.start_concentrator(&bed.concentrator_config())?;
    let mut cfg = bed.agent_config();
    cfg.udp = Some(format!(
        "[[udp.rule]]\nports = \"{PROTECTED}\"\naction = \"protect\"\n\
         [[udp.rule]]\nports = \"{PROTECTED_FEC}\"\naction = \"protect\"\nmode = \"fec\"\n"
    ));
    let agent = bed.start_agent(&cfg)?;
    let mut bonded = Vec::new();
    let mut protected = Vec::new();
    let mut overhead = Vec::new();
    let mut fec = Vec::new();
    let mut fec_overhead = Vec::new();
    for (name, link) in &conditions {
        impair(&bed, &mut delays, link)?;
        if !all_up(&bed) {
            eprintln!("mpbond-bench: case 18: {name}: not every WAN is up");
        }
        bonded.push(echo(&bed, BONDED, echoes)?);
        let (stream, extra) = protected_stream(&bed, PROTECTED, echoes, name)?;
        protected.push(stream);
        overhead.push(extra);
        let (stream, extra) = protected_stream(&bed, PROTECTED_FEC, echoes, name)?;
        fec.push(stream);
        fec_overhead.push(extra);
    }
    impair(&bed, &mut delays, &conditions[0].1)?;

    // Gaps when WAN 1 dies under the protected stream.
    let mut gap_down = Vec::new();
    let mut gap_blackhole = Vec::new();
    let mut fec_gap_down = Vec::new();
    let mut fec_gap_blackhole = Vec::new();
    for _ in 0..ctx.runs() {
        for (how, port, gaps) in [
            (Failure::LinkDown, PROTECTED, &mut gap_down),
            (Failure::Blackhole, PROTECTED, &mut gap_blackhole),
            (Failure::LinkDown, PROTECTED_FEC, &mut fec_gap_down),
            (Failure::Blackhole, PROTECTED_FEC, &mut fec_gap_blackhole),
        ] {
            if !all_up(&bed) {
                return Err(BenchError::measure(CASE, "WANs not up before a failure"));
            }
            let run = bed.spawn_udp_echo(Node::Lan, at(port), gap_stream)?;
            let two_legs = proc::wait_until(Duration::from_secs(10), || {
                bed.agent_status().is_ok_and(|s| {
                    // The newest flow is this run's (entries are in order of opening).
                    let flows = s["protected"]["flows"].as_array().cloned();
                    flows.and_then(|f| f.last().cloned()).is_some_and(|f| {
                        f["legs"]
                            .as_array()
                            .is_some_and(|l| l.iter().filter(|l| l["state"] == "open").count() == 2)
                    })
                })
            });
            if !two_legs {
                return Err(BenchError::measure(
                    CASE,
                    format!("no protected flow with two legs:\n{}", agent.log_tail(20)),
                ));
            }
            bed.fail_wan(1, how, true)?;
            let report = run.finish();
            bed.fail_wan(1, how, false)?;
            gaps.push(report?.max_gap_ms);
        }
    }

    // Added p99 while a bulk download fills the WANs.
    let mut loaded_p99 = Vec::new();
    for _ in 0..ctx.runs() {
        let fetch = Fetch::get(at(FETCH_PORT), ctx.pick(100_000_000, 300_000_000))
            .timeout(Duration::from_secs(120));
        let download = bed.spawn_fetch(Node::Lan, &fetch)?;
        std::thread::sleep(Duration::from_secs(2));
        let stream = echo(&bed, PROTECTED, ctx.pick(250, 750))?;
        let _ = download.finish();
        loaded_p99.push(stream.p99 - protected[0].p99);
    }

    let base = nat[0];
    let mut figures = Vec::new();
    let m = Measurement {
        case: CASE,
        steal_pct: steal.percent(),
        detail: format!(
            "p50/p99/loss/max gap per condition {:?}: NAT {:?}, peer {:?}, bonded {:?}, \
             protected (duplicate) {:?}, protected (fec) {:?}",
            conditions.iter().map(|c| c.0).collect::<Vec<_>>(),
            nat,
            peer_rows,
            bonded,
            protected,
            fec
        ) + &peer_missing
            .map(|e| format!("; peer not run: {e}"))
            .unwrap_or_default(),
    };
    let some = |rows: &[Stream]| rows.iter().copied().map(Some).collect::<Vec<_>>();
    for (i, (name, _)) in conditions.iter().enumerate().skip(1) {
        let target = (*name == "5 % loss").then_some(Target::AtMost(0.5));
        for (how, rows, t) in [
            ("protected", some(&protected), target),
            ("protected by FEC", some(&fec), target),
            ("bonded unprotected", some(&bonded), None),
            ("one WAN by NAT", some(&nat), None),
            ("the peer (shadowsocks UDP, WAN 1)", peer_rows.clone(), None),
        ] {
            let Some(row) = rows.get(i).copied().flatten() else {
                continue;
            };
            figures.push(m.figure(
                format!("{name} on WAN 1: residual loss, {how}"),
                vec![row.loss_pct],
                "%",
                t,
            ));
            figures.push(m.figure(
                format!("{name} on WAN 1: added p50, {how}"),
                vec![row.p50 - base.p50],
                "ms",
                None,
            ));
            figures.push(m.figure(
                format!("{name} on WAN 1: added p99, {how}"),
                vec![row.p99 - base.p99],
                "ms",
                None,
            ));
            figures.push(m.figure(
                format!("{name} on WAN 1: longest gap, {how}"),
                vec![row.max_gap],
                "ms",
                None,
            ));
        }
    }
    figures.push(m.figure(
        "protection overhead (extra copies / stream payload, both ways)".into(),
        overhead,
        "%",
        None,
    ));
    figures.push(m.figure(
        "FEC protection overhead (repair capsules / stream payload, both ways)".into(),
        fec_overhead,
        "%",
        Some(Target::AtMost(13.0)),
    ));
    figures.push(m.figure(
        "FEC-protected stream: longest gap when WAN 1 goes down".into(),
        fec_gap_down,
        "ms",
        Some(Target::AtMost(150.0)),
    ));
    figures.push(m.figure(
        "FEC-protected stream: longest gap when WAN 1 is black-holed".into(),
        fec_gap_blackhole,
        "ms",
        Some(Target::AtMost(150.0)),
    ));
    figures.push(m.figure(
        "protected stream: longest gap when WAN 1 goes down".into(),
        gap_down,
        "ms",
        Some(Target::AtMost(150.0)),
    ));
    figures.push(m.figure(
        "protected stream: longest gap when WAN 1 is black-holed".into(),
        gap_blackhole,
        "ms",
        Some(Target::AtMost(150.0)),
    ));
    figures.push(m.figure(
        "protected stream: p99 added by a bulk download".into(),
        loaded_p99,
        "ms",
        Some(Target::AtMost(30.0)),
    ));
    Ok(figures)
}
