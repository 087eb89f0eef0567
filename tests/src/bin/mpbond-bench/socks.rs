//! Case 20, SOCKS5 over MPTCP: a device that speaks MPTCP itself (curl under
//! `mptcpize run` in the router namespace, which has a path over each shaped WAN;
//! `mpbond_testkit::curl`, as in the concentrator's SOCKS5 tests) downloads from the
//! internet server through the concentrator's SOCKS5 listener (issue 12, part 2). The
//! figure is the goodput as a ratio to the sum of the WAN rates, with each WAN's share
//! of the download bytes; the body is checked byte for byte.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mpbond_testkit::curl::{fetch_through_socks5, Socks5};
use mpbond_testkit::{wait_until, Xorshift};
use mpbond_tests::topology::{SERVER_V4, VPS_V4};
use mpbond_tests::{wan_delta, Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::report::{median, Figure};

const CASE: &str = "20 socks";
const HTTP_PORT: u16 = 5020;
const SOCKS_PORT: u16 = 1080;
const PASSWORD: &str = "bench-socks-password";
const RATES: [u32; 2] = [40, 60];

/// Run case 20.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let bed = TestBed::builder().wans(&RATES).try_build()?;
    let sum: u32 = RATES.iter().sum();
    // Short: ~1.5 s at the summed rate; full: ~6 s.
    let bytes = (u64::from(sum) * 1_000_000 / 8 * ctx.pick(3, 12) / 2) as usize;
    let body = Xorshift::new(0x9e37_79b9).bytes(bytes);
    let blob = bed.dir().join("blob");
    std::fs::write(&blob, &body).map_err(|source| BenchError::Io {
        what: "write",
        path: blob.clone(),
        source,
    })?;
    let dir = bed.dir().to_string_lossy().into_owned();
    let http = SocketAddr::new(SERVER_V4.into(), HTTP_PORT);
    let port = HTTP_PORT.to_string();
    let bind = SERVER_V4.to_string();
    let _http = bed.spawn(
        Node::Server,
        &[
            "python3",
            "-m",
            "http.server",
            "--bind",
            &bind,
            "--directory",
            &dir,
            &port,
        ],
    )?;
    let mut text = bed.concentrator_config().to_toml();
    // The bed's client is the last table: its password goes right after it.
    text.push_str(&format!(
        "socks_password = {PASSWORD:?}\n\n[socks]\nlisten = [\"0.0.0.0:{SOCKS_PORT}\"]\n"
    ));
    let config = bed.dir().join("socks-concentrator.toml");
    std::fs::write(&config, text).map_err(|source| BenchError::Io {
        what: "write",
        path: config.clone(),
        source,
    })?;
    let bin = ctx
        .bin("mpbond-concentrator")?
        .to_string_lossy()
        .into_owned();
    let config = config.to_string_lossy().into_owned();
    let _conc = bed.spawn(Node::Vps, &[&bin, "--config", &config])?;
    for (node, port) in [(Node::Vps, SOCKS_PORT), (Node::Server, HTTP_PORT)] {
        let listening = || {
            bed.exec(node, &format!("ss -Hltn sport = :{port}"))
                .is_ok_and(|out| !out.trim().is_empty())
        };
        if !wait_until(
            Duration::from_secs(20),
            Duration::from_millis(20),
            listening,
        ) {
            return Err(BenchError::measure(
                CASE,
                format!("nothing listens on port {port}"),
            ));
        }
    }
    let bed_client = bed.concentrator_config().clients[0].0.clone();
    let proxy = Socks5 {
        at: SocketAddr::new(VPS_V4.into(), SOCKS_PORT),
        user: &bed_client,
        password: PASSWORD,
    };
    let url = format!("http://{http}/blob");
    let router = bed.netns(Node::Router)?;
    let mut values = Vec::new();
    let mut shares = Vec::new();
    let mut mbits = Vec::new();
    for _ in 0..ctx.runs() {
        let before = bed.all_wan_bytes();
        let start = Instant::now();
        let got = fetch_through_socks5(router, proxy, &url, Duration::from_secs(120)).map_err(
            |source| BenchError::Io {
                what: "run curl under mptcpize in",
                path: router.path(),
                source,
            },
        )?;
        let secs = start.elapsed().as_secs_f64();
        let delta = wan_delta(&before, &bed.all_wan_bytes());
        if got.code != 0 {
            return Err(BenchError::measure(
                CASE,
                format!("curl exited with {}: {}", got.code, got.stderr.trim()),
            ));
        }
        if got.body != body {
            return Err(BenchError::measure(
                CASE,
                format!("the body differs ({} of {bytes} bytes)", got.body.len()),
            ));
        }
        let mbit = bytes as f64 * 8.0 / secs / 1e6;
        let down: u64 = delta.iter().map(|d| d.0).sum::<u64>().max(1);
        shares.push(
            delta
                .iter()
                .map(|d| format!("{:.0}", d.0 as f64 * 100.0 / down as f64))
                .collect::<Vec<_>>()
                .join("/"),
        );
        values.push(mbit / f64::from(sum));
        mbits.push(mbit);
    }
    let _ = std::fs::remove_file(&blob);
    Ok(vec![Figure {
        case: CASE.into(),
        name: format!("SOCKS5 over MPTCP, download over 2 WANs {}+{}: goodput / Σ rates", RATES[0], RATES[1]),
        value: median(&values),
        unit: "ratio".into(),
        target: None,
        runs: values,
        steal_pct: 0.0,
        detail: format!(
            "{:.1} Mbit/s (median, curl under mptcpize, {bytes} bytes, body checked); WAN shares % {}",
            median(&mbits),
            shares.join(", ")
        ),
    }])
}
