//! Case 21, `latency`: what a bulk TCP download through mpbond adds to a small real-time
//! stream's round trip (50 datagrams/s of 200 bytes, echoed), on 40 + 60 Mbit/s WANs
//! with 10 ms each way (issue 18 item 2). The stream runs bonded (its own MPTCP
//! connection) and protected (two legs, `[[udp.rule]] action = "protect"`, which is also
//! where `[udp] auto_protect` moves a flow classed real-time), interleaved run by run
//! against the same download, each against its own idle figure measured first.
//!
//! This is the measurement before any change of the agent's own (pacing its upstream
//! connections below the WAN's rate, small flows first): see docs/PERFORMANCE.md case 21.

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{proc, Fetch, Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::report::{Figure, Measurement, Target};
use crate::stat::Steal;

const CASE: &str = "21 latency";
const RATES: [u32; 2] = [40, 60];
const PROTECTED: u16 = 3478;
const BONDED: u16 = 7007;
const FETCH_PORT: u16 = 5001;
const ONE_WAY_MS: u64 = 10;

fn at(port: u16) -> SocketAddr {
    SocketAddr::new(SERVER_V4.into(), port)
}

/// The stream's p99 round trip to `port`, `count` datagrams.
fn p99(bed: &TestBed, port: u16, count: u32) -> Result<f64, BenchError> {
    Ok(bed.udp_echo(Node::Lan, at(port), count)?.rtt_p99_ms)
}

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let steal = Steal::start();
    let bed = TestBed::builder().wans(&RATES).agent_routing(true).build();
    let _delays = bed.add_wan_delays(ONE_WAY_MS)?;
    let _protected_server = bed.udp_echo_server(Node::Server, at(PROTECTED))?;
    let _bonded_server = bed.udp_echo_server(Node::Server, at(BONDED))?;
    let _fetch_server = bed.serve(Node::Server, at(FETCH_PORT), false)?;
    let _conc = bed.start_concentrator(&bed.concentrator_config())?;
    let mut cfg = bed.agent_config();
    cfg.udp = Some(format!(
        "[[udp.rule]]\nports = \"{PROTECTED}\"\naction = \"protect\"\n"
    ));
    let agent = bed.start_agent(&cfg)?;
    let up = proc::wait_until(Duration::from_secs(30), || {
        bed.agent_status().is_ok_and(|s| {
            s["wans"]
                .as_array()
                .is_some_and(|w| w.len() == RATES.len() && w.iter().all(|w| w["state"] == "up"))
        })
    });
    if !up {
        return Err(BenchError::measure(
            CASE,
            format!("WANs not up:\n{}", agent.log_tail(20)),
        ));
    }
    let idle_count: u32 = ctx.pick(200, 500);
    let loaded_count: u32 = ctx.pick(200, 750);
    let idle_bonded = p99(&bed, BONDED, idle_count)?;
    let idle_protected = p99(&bed, PROTECTED, idle_count)?;
    let mut bonded = Vec::new();
    let mut protected = Vec::new();
    for _ in 0..ctx.runs() {
        for (port, idle, rows) in [
            (BONDED, idle_bonded, &mut bonded),
            (PROTECTED, idle_protected, &mut protected),
        ] {
            let fetch = Fetch::get(at(FETCH_PORT), ctx.pick(60_000_000, 300_000_000))
                .timeout(Duration::from_secs(120));
            let download = bed.spawn_fetch(Node::Lan, &fetch)?;
            // The download's slow start is over (and its queue built) after a second.
            std::thread::sleep(Duration::from_secs(1));
            let loaded = p99(&bed, port, loaded_count)?;
            let _ = download.finish();
            rows.push(loaded - idle);
        }
    }
    let m = Measurement {
        case: CASE,
        steal_pct: steal.percent(),
        detail: format!(
            "idle p99: bonded {idle_bonded:.1} ms, protected {idle_protected:.1} ms; \
             added under a bulk TCP download: bonded {bonded:?}, protected {protected:?}"
        ),
    };
    Ok(vec![
        m.figure(
            "stream p99 added by a bulk TCP download, bonded".into(),
            bonded,
            "ms",
            None,
        ),
        m.figure(
            "stream p99 added by a bulk TCP download, protected".into(),
            protected,
            "ms",
            Some(Target::AtMost(30.0)),
        ),
    ])
}
