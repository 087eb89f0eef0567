//! Case 4, connection setup: time to first byte of sequential small requests
//! (1000-byte answers, a new connection each) from the LAN client to the
//! internet server, through mpbond, through the router's plain NAT, and
//! through the peer, over two WANs with 10 ms one-way delay each (a userspace
//! delay line at each ISP: [`mpbond_tests::delay`]).
//!
//! One request per path is also captured on the router's WANs (tcpdump) and
//! counted: WAN round trips before the first byte (time from the first SYN to
//! the first answer packet, in WAN RTTs) and WAN packets before the first byte
//! and over the whole request. A direct MPTCP connection from the router to
//! the server is the round-trip reference: with TFO and the Convert message in
//! the SYN, mpbond adds none.
//!
//! The concentrator takes data in a SYN only with the kernel's Fast Open
//! cookie, which the router learns per WAN address (its health probe usually
//! does). The cost of a connection without one is measured on the mpbond path:
//! the first request after the agent starts, and one request right after the
//! router's cookie cache is flushed (`ip tcp_metrics flush all`), against the
//! median of the later ones.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use mpbond_tests::proc::{self, ChildGuard};
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{Daemon, Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::peer::{Method, Peer};
use crate::report::{median, Figure, Target};
use crate::stat::Steal;

const CASE: &str = "4 connection setup";
const PORT: u16 = 5401;
const MPTCP_PORT: u16 = 5402;
/// One-way delay added to each WAN.
pub const DELAY_MS: u64 = 10;
/// Bytes each answer carries.
const ANSWER: u64 = 1000;
/// An inbound packet with at least this much payload is the answer (the
/// Convert reply and protocol headers are smaller).
const ANSWER_PACKET: u64 = 200;
/// mpbond's median TTFB may be at most this multiple of direct NAT's.
pub const TARGET_VS_NAT: f64 = 1.5;

/// The ways a LAN request can cross the WANs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path4 {
    Nat,
    Mpbond,
    Peer,
}

impl Path4 {
    const ALL: [Path4; 3] = [Path4::Nat, Path4::Mpbond, Path4::Peer];
    fn name(self) -> &'static str {
        match self {
            Path4::Nat => "direct NAT",
            Path4::Mpbond => "mpbond",
            Path4::Peer => "peer",
        }
    }
}

/// What a capture of one request shows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Capture {
    /// WAN round trips from the first SYN to the first answer packet.
    pub round_trips: u32,
    /// WAN packets (both directions, every WAN) up to and including it.
    pub packets_to_first_byte: u32,
    /// WAN packets of the whole request, closing included.
    pub packets_total: u32,
}

/// Run case 4.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let count = ctx.pick(50, 500);
    let bed = TestBed::builder().wans(&[40, 60]).try_build()?;
    let _delays = bed.add_wan_delays(DELAY_MS)?;
    let server = SocketAddr::new(SERVER_V4.into(), PORT);
    let _plain = bed.serve(Node::Server, server, false)?;
    let mptcp_server = SocketAddr::new(SERVER_V4.into(), MPTCP_PORT);
    let _mptcp = bed.serve(Node::Server, mptcp_server, true)?;
    let _conc = bed.start_concentrator(&bed.concentrator_config())?;
    let mut agent_cfg = bed.agent_config();
    // No probe after the first (an hour apart), so none lands in a capture.
    agent_cfg.health_interval_ms = 3_600_000;
    agent_cfg.health_timeout_ms = 2000;

    // Without shadowsocks-rust the peer's figures are left out, the rest still runs.
    let peer_missing = ctx.ss("sslocal").and_then(|_| ctx.ss("ssserver")).err();
    let steal = Steal::start();
    let mut medians: [Vec<f64>; 3] = Default::default();
    let mut captures: [Option<Capture>; 3] = [None; 3];
    let mut failures = [0usize; 3];
    let mut cookies = Cookies::default();
    for run in 0..ctx.runs() {
        for (k, path) in Path4::ALL.into_iter().enumerate() {
            if path == Path4::Peer && peer_missing.is_some() {
                continue;
            }
            let (agent, peer) = start(&bed, ctx, &agent_cfg, path)?;
            // A first request warms up what each path learns (TFO, ARP, sslocal).
            let warm_up = bed.ttfb(Node::Lan, server, 1, ANSWER, false)?;
            let r = bed.ttfb(Node::Lan, server, count, ANSWER, false)?;
            if path == Path4::Mpbond {
                cookies.first.push(warm_up.median_ms);
                bed.exec(Node::Router, "ip tcp_metrics flush all")?;
                cookies
                    .cold
                    .push(bed.ttfb(Node::Lan, server, 1, ANSWER, false)?.median_ms);
            }
            // A failed request is reported, not fatal: the medians stand on the rest.
            failures[k] += r.failed;
            if r.ok == 0 {
                return Err(BenchError::measure(
                    CASE,
                    format!(
                        "{}: all {count} requests failed: {}",
                        path.name(),
                        r.first_error.unwrap_or_default()
                    ),
                ));
            }
            medians[k].push(r.median_ms);
            if run == 0 {
                let file = ctx.out(&format!("ttfb-{}.pcap", path.name().replace(' ', "-")));
                captures[k] = Some(capture(&bed, &file, || {
                    bed.ttfb(Node::Lan, server, 1, ANSWER, false).map(|_| ())
                })?);
            }
            drop(peer);
            drop(agent);
        }
    }
    let direct = capture(&bed, &ctx.out("ttfb-direct-mptcp.pcap"), || {
        bed.ttfb(Node::Router, mptcp_server, 1, ANSWER, true)
            .map(|_| ())
    })?;
    let steal_pct = steal.percent();
    let mut out = figures(&medians, &captures, direct, steal_pct);
    out.push(cookies.figure(&medians[1], steal_pct));
    let failed = format!(
        "failed requests: direct NAT {}, mpbond {}, peer {} (of {count} per run)",
        failures[0], failures[1], failures[2]
    );
    for f in &mut out {
        f.detail = format!("{}; {failed}", f.detail);
    }
    if let Some(e) = peer_missing {
        for f in &mut out {
            f.detail = format!("{}; peer not run: {e}", f.detail);
        }
    }
    Ok(out)
}

/// TTFB of mpbond requests made without a Fast Open cookie, one of each per run.
#[derive(Debug, Default)]
struct Cookies {
    /// The first request after the agent started.
    first: Vec<f64>,
    /// The request right after the router's cookie cache was flushed.
    cold: Vec<f64>,
}

impl Cookies {
    fn figure(&self, later: &[f64], steal_pct: f64) -> Figure {
        Figure {
            case: CASE.into(),
            name: "TTFB ms: mpbond without a Fast Open cookie".into(),
            value: median(&self.cold),
            unit: "ms".into(),
            target: None,
            runs: self.cold.clone(),
            steal_pct,
            detail: format!(
                "cookie cache flushed: {:.2} ms; first request after agent start: {:.2} ms; \
                 later requests (median): {:.2} ms; WAN RTT {} ms",
                median(&self.cold),
                median(&self.first),
                median(later),
                2 * DELAY_MS
            ),
        }
    }
}

/// Start what `path` needs: the agent or the peer (NAT needs neither).
fn start<'a>(
    bed: &'a TestBed,
    ctx: &Ctx,
    cfg: &mpbond_tests::AgentConfig,
    path: Path4,
) -> Result<(Option<Daemon>, Option<Peer<'a>>), BenchError> {
    Ok(match path {
        Path4::Nat => (None, None),
        Path4::Mpbond => (Some(bed.start_agent(cfg)?), None),
        Path4::Peer => (None, Some(Peer::start(bed, ctx, Method::Aes2022)?)),
    })
}

fn figures(
    medians: &[Vec<f64>; 3],
    captures: &[Option<Capture>; 3],
    direct: Capture,
    steal_pct: f64,
) -> Vec<Figure> {
    let [nat, mp, peer] = medians;
    let ratios = |a: &[f64]| -> Vec<f64> {
        a.iter()
            .zip(nat)
            .map(|(x, n)| (x / n * 1000.0).round() / 1000.0)
            .collect()
    };
    let abs = format!(
        "median TTFB ms: mpbond {:.2}, direct NAT {:.2}, peer {:.2} (WAN RTT {} ms)",
        median(mp),
        median(nat),
        median(peer),
        2 * DELAY_MS
    );
    let fig = |name: &str, runs: Vec<f64>, unit: &str, target, detail: String| Figure {
        case: CASE.into(),
        name: name.into(),
        value: median(&runs),
        unit: unit.into(),
        target,
        runs,
        steal_pct,
        detail,
    };
    let mut out = vec![fig(
        "TTFB median: mpbond / direct NAT",
        ratios(mp),
        "ratio",
        Some(Target::AtMost(TARGET_VS_NAT)),
        abs.clone(),
    )];
    if !peer.is_empty() {
        out.push(fig(
            "TTFB median: peer / direct NAT",
            ratios(peer),
            "ratio",
            None,
            abs,
        ));
    }
    let [_, Some(c_mp), _] = *captures else {
        return out;
    };
    let c_nat = captures[0].unwrap_or_default();
    let c_peer = captures[2].unwrap_or_default();
    let vs_peer = |n: u32| captures[2].map(|_| Target::AtMost(f64::from(n)));
    let detail = format!(
        "round trips / packets to first byte / packets per request: mpbond {}/{}/{}, \
         direct MPTCP {}/{}/{}, direct NAT {}/{}/{}, peer {}/{}/{}",
        c_mp.round_trips,
        c_mp.packets_to_first_byte,
        c_mp.packets_total,
        direct.round_trips,
        direct.packets_to_first_byte,
        direct.packets_total,
        c_nat.round_trips,
        c_nat.packets_to_first_byte,
        c_nat.packets_total,
        c_peer.round_trips,
        c_peer.packets_to_first_byte,
        c_peer.packets_total
    );
    out.push(fig(
        "WAN round trips before first byte: mpbond − direct MPTCP",
        vec![f64::from(c_mp.round_trips) - f64::from(direct.round_trips)],
        "round trips",
        Some(Target::AtMost(0.0)),
        detail.clone(),
    ));
    out.push(fig(
        "WAN packets before first byte: mpbond (target: ≤ peer's)",
        vec![f64::from(c_mp.packets_to_first_byte)],
        "packets",
        vs_peer(c_peer.packets_to_first_byte),
        detail.clone(),
    ));
    out.push(fig(
        "WAN packets per small request: mpbond (target: ≤ peer's)",
        vec![f64::from(c_mp.packets_total)],
        "packets",
        vs_peer(c_peer.packets_total),
        detail,
    ));
    out
}

/// Capture the router's WAN traffic while `request` runs, then analyse it.
fn capture(
    bed: &TestBed,
    file: &Path,
    request: impl FnOnce() -> Result<(), mpbond_tests::BedError>,
) -> Result<Capture, BenchError> {
    let file_s = file.to_string_lossy().into_owned();
    let mut dump = bed.spawn(
        Node::Router,
        &[
            "tcpdump",
            "-i",
            "any",
            "-nn",
            "--immediate-mode",
            "-U",
            "-Z",
            "root",
            "-s",
            "128",
            "-w",
            &file_s,
            "tcp and not net 192.168.50.0/24",
        ],
    )?;
    wait_listening(&mut dump)?;
    request()?;
    // The close takes a round trip or two more: wait until the capture stops growing.
    let mut last = (0, std::time::Instant::now());
    proc::wait_until(Duration::from_secs(3), || {
        let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        if len != last.0 {
            last = (len, std::time::Instant::now());
        }
        last.1.elapsed() >= Duration::from_millis(300)
    });
    dump.terminate(Duration::from_secs(3));
    let out = Command::new("tcpdump")
        .args(["-r", &file_s, "-nn", "-tt"])
        .output()
        .map_err(|source| BenchError::Io {
            what: "cannot run tcpdump -r on",
            path: file.to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    analyse(&text, 2 * DELAY_MS).ok_or_else(|| {
        BenchError::measure(
            CASE,
            format!("no request and answer in {}:\n{text}", file.display()),
        )
    })
}

/// Wait for tcpdump's "listening on" line on stderr.
fn wait_listening(dump: &mut ChildGuard) -> Result<(), BenchError> {
    let Some(stderr) = dump.child_mut().stderr.take() else {
        return Err(BenchError::measure(CASE, "tcpdump has no stderr"));
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
        let listening = lines.by_ref().any(|l| l.contains("listening on"));
        let _ = tx.send(listening);
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(true) => Ok(()),
        _ => Err(BenchError::measure(CASE, "tcpdump did not start listening")),
    }
}

/// One packet of `tcpdump -nn -tt` output.
#[derive(Debug, Clone, PartialEq)]
struct Packet {
    time: f64,
    /// The two endpoints, ordered, so both directions share it.
    flow: (String, String),
    outbound: bool,
    syn: bool,
    payload: u64,
}

fn parse_line(line: &str) -> Option<Packet> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let time = words.first()?.parse().ok()?;
    let ip = words.iter().position(|w| *w == "IP" || *w == "IP6")?;
    let src = words.get(ip + 1)?;
    let dst = words.get(ip + 3)?.trim_end_matches(':');
    let flow = if *src < dst {
        (src.to_string(), dst.to_string())
    } else {
        (dst.to_string(), src.to_string())
    };
    let flags = line.split("Flags [").nth(1)?.split(']').next()?;
    let payload = line
        .rsplit(", length ")
        .next()
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0);
    Some(Packet {
        time,
        flow,
        // The router's WAN addresses are 10.200.i.2.
        outbound: src.starts_with("10.200."),
        syn: flags.contains('S') && !flags.contains('.'),
        payload,
    })
}

/// Round trips and packet counts of one request in a capture; `rtt_ms` is a WAN's RTT.
/// Only flows that open (SYN from the router) at or after the request's first SYN
/// count, so the tail of an earlier connection does not.
pub fn analyse(text: &str, rtt_ms: u64) -> Option<Capture> {
    let all: Vec<Packet> = text.lines().filter_map(parse_line).collect();
    let first_syn = all.iter().position(|p| p.outbound && p.syn)?;
    let opened: std::collections::BTreeSet<&(String, String)> = all[first_syn..]
        .iter()
        .filter(|p| p.outbound && p.syn)
        .map(|p| &p.flow)
        .collect();
    let packets: Vec<&Packet> = all[first_syn..]
        .iter()
        .filter(|p| opened.contains(&p.flow))
        .collect();
    let first = packets
        .iter()
        .position(|p| !p.outbound && p.payload >= ANSWER_PACKET)?;
    let elapsed_ms = (packets[first].time - packets[0].time) * 1000.0;
    Some(Capture {
        round_trips: (elapsed_ms / rtt_ms as f64).round() as u32,
        packets_to_first_byte: (first + 1) as u32,
        packets_total: packets.len() as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAT: &str = "\
1700000000.000000 wan1  Out IP 10.200.1.2.40000 > 203.0.113.10.5401: Flags [S], seq 1, win 64240, options [mss 1460], length 0
1700000000.020100 wan1  In  IP 203.0.113.10.5401 > 10.200.1.2.40000: Flags [S.], seq 9, ack 2, win 65160, length 0
1700000000.020200 wan1  Out IP 10.200.1.2.40000 > 203.0.113.10.5401: Flags [.], ack 1, win 502, length 0
1700000000.020300 wan1  Out IP 10.200.1.2.40000 > 203.0.113.10.5401: Flags [P.], seq 1:16, ack 1, win 502, length 15
1700000000.040400 wan1  In  IP 203.0.113.10.5401 > 10.200.1.2.40000: Flags [P.], seq 1:1001, ack 16, win 509, length 1000
1700000000.040500 wan1  In  IP 203.0.113.10.5401 > 10.200.1.2.40000: Flags [F.], seq 1001, ack 16, win 509, length 0
";

    #[test]
    fn a_plain_request_takes_two_round_trips() {
        let c = analyse(NAT, 20).unwrap();
        assert_eq!(
            c,
            Capture {
                round_trips: 2,
                packets_to_first_byte: 5,
                packets_total: 6
            }
        );
    }

    #[test]
    fn the_convert_reply_is_not_the_first_byte_and_no_answer_is_none() {
        let text = "\
1.000000 wan1 Out IP 10.200.1.2.1 > 192.0.2.1.4850: Flags [S], seq 1, length 30
1.020000 wan1 In IP 192.0.2.1.4850 > 10.200.1.2.1: Flags [S.], seq 1, length 0
1.040000 wan1 In IP 192.0.2.1.4850 > 10.200.1.2.1: Flags [P.], seq 1:5, length 4
";
        assert_eq!(analyse(text, 20), None);
        assert_eq!(analyse("garbage\n", 20), None);
        let p =
            parse_line("1.5 wan2 In IP 1.2.3.4.5 > 10.200.2.2.6: Flags [.], ack 1, length 1448")
                .unwrap();
        assert!(!p.outbound && !p.syn && p.payload == 1448);
        assert_eq!(
            p.flow,
            ("1.2.3.4.5".to_string(), "10.200.2.2.6".to_string())
        );
    }

    #[test]
    fn an_earlier_connection_closing_does_not_count() {
        let (syn, rest) = NAT.split_at(NAT.find('\n').unwrap() + 1);
        let stray = "1700000000.010000 wan1 In IP 203.0.113.10.5401 > 10.200.1.2.39999: \
                     Flags [F.], seq 1, ack 2, length 0\n";
        let text = format!("{syn}{stray}{rest}");
        assert_eq!(analyse(&text, 20), analyse(NAT, 20));
        assert!(analyse(NAT, 20).is_some());
    }
}
