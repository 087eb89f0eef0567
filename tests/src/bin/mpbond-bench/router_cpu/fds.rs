//! Case 19's descriptor count (issue 17): the agent's open descriptors per idle relayed
//! connection, `(open with N − open idle) ÷ N` from `/proc/PID/fd`, for the agent and,
//! with `MPBOND_BENCH_BASELINE`, the agent before a change, in the same bed. An idle
//! relay holds its two sockets and no pipe; before issue 17's third round the passive
//! check's registry held a duplicate of each upstream socket, a third.

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::loadgen::SwarmTarget;
use mpbond_tests::proc;
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::{Daemon, Node, TestBed};

use super::{baseline_dir, start_agent_from, CASE};
use crate::ctx::BenchError;
use crate::descriptors::Descriptors;
use crate::report::{Figure, Measurement, Target};
use crate::stat::Steal;

/// The holder's port on the server.
const HOLD_PORT: u16 = 5192;
/// Idle connections held through the agent.
const CONNS: usize = 100;
/// An idle relayed connection should cost the agent its two sockets and nothing more;
/// the slack is the agent's own descriptors that come and go (a probe's socket, a pooled
/// pipe), a few among the hundred connections.
pub const TARGET_FDS_PER_CONN: f64 = 2.2;

/// Descriptors per idle relayed connection, the agent (and the baseline agent).
pub fn figure() -> Result<Figure, BenchError> {
    let bed = TestBed::builder().wans(&[0, 0]).try_build()?;
    let hold_addr = SocketAddr::new(SERVER_V4.into(), HOLD_PORT);
    let steal = Steal::start();
    let mut ours = Vec::new();
    let mut baseline = None;
    let mut ways: Vec<Option<std::ffi::OsString>> = vec![None];
    ways.extend(baseline_dir().map(Some));
    for dir in ways {
        // A holder and a concentrator per agent, so the counts start from nothing.
        let _holder = bed.hold(Node::Server, hold_addr)?;
        let conc = bed.start_concentrator(&bed.concentrator_config())?;
        let agent = match &dir {
            Some(d) => start_agent_from(&bed, d)?,
            None => bed.start_agent(&bed.agent_config())?,
        };
        let per = per_connection(&bed, &agent, &conc, hold_addr)?;
        agent.stop(Duration::from_secs(5));
        match dir {
            Some(_) => baseline = Some(per),
            None => ours.push(per),
        }
    }
    let m = Measurement {
        case: CASE,
        steal_pct: steal.percent(),
        detail: format!(
            "{CONNS} idle connections, /proc/PID/fd; baseline agent: {}",
            baseline.map_or("not run".into(), |b| format!("{b:.2}"))
        ),
    };
    Ok(m.figure(
        "agent descriptors per idle relayed connection".into(),
        ours,
        "fds",
        Some(Target::AtMost(TARGET_FDS_PER_CONN)),
    ))
}

/// Open [`CONNS`] idle connections from the LAN through `agent` and count.
fn per_connection(
    bed: &TestBed,
    agent: &Daemon,
    conc: &Daemon,
    hold_addr: SocketAddr,
) -> Result<f64, BenchError> {
    let measure = |what: String| BenchError::measure(CASE, what);
    let agent_fds = Descriptors::before(CASE, agent.pid())?;
    let conc_fds = Descriptors::before(CASE, conc.pid())?;
    let swarm = bed.swarm(
        Node::Lan,
        &SwarmTarget::Plain(hold_addr),
        CONNS,
        Duration::from_secs(60),
    )?;
    if swarm.report.failed > 0 {
        return Err(measure(format!(
            "{} of {CONNS} connections failed: {}",
            swarm.report.failed,
            swarm.report.first_error.as_deref().unwrap_or("?")
        )));
    }
    // Every connection relayed at the concentrator (two sockets each), then the agent's
    // count steady: its relays start once the concentrator's reply is in.
    let relayed = proc::wait_until(Duration::from_secs(20), || {
        conc_fds
            .open()
            .is_ok_and(|n| n >= conc_fds.idle() + 2 * CONNS)
    });
    let steady = agent_fds.steady(Duration::from_secs(20));
    let Some(open) = steady.filter(|_| relayed) else {
        return Err(measure(format!(
            "the relays did not settle: concentrator {:?} (idle {}), agent {:?}",
            conc_fds.open().ok(),
            conc_fds.idle(),
            agent_fds.open().ok()
        )));
    };
    drop(swarm);
    Ok(agent_fds.per_conn(open, CONNS))
}
