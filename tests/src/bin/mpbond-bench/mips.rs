//! Case 15, mips: the relay's cost on a MIPS CPU. The bed's router is the MIPS
//! router VM (`mpbond_tests::vm`: qemu-system-mipsel, Malta, 24Kc, Linux 6.1, the
//! mipsel agent), the WANs unshaped, so the guest's CPU is what limits: the maximum
//! goodput of one and of eight downloads through it, with the guest's own CPU split
//! (`/proc/stat` in the guest: user, system, softirq + irq) over each, and the
//! agent's RSS in the guest idle and with 500 relayed connections.
//!
//! Emulated time is not router time: the Mbit/s say what this host's TCG makes of a
//! 24Kc, so the figures to compare are ratios against the peer in the same run. The
//! peer (shadowsocks-rust `sslocal` in redir mode, cross-built for mipsel) is not
//! built yet: no mipsel sslocal exists in the tree or in `MPBOND_SS_BIN`, so the
//! ratio figures are absent and the detail says so.

use std::net::SocketAddr;
use std::time::Duration;

use mpbond_tests::loadgen::SwarmTarget;
use mpbond_tests::topology::SERVER_V4;
use mpbond_tests::vm::{CpuTimes, RouterVm};
use mpbond_tests::{Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::load::{self, LoadSpec};
use crate::report::{Figure, Measurement};

const CASE: &str = "15 mips";
const PORT: u16 = 5001;
const HOLD_PORT: u16 = 5002;
/// Relayed connections for the RSS figure (issue 10, item 5).
const CONNS_FOR_RSS: usize = 500;

/// Run case 15.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let bed = TestBed::builder()
        .wans(&[0, 0])
        .agent_routing(true)
        .try_build()?;
    let _conc = bed.start_concentrator(&bed.concentrator_config())?;
    let server = SocketAddr::new(SERVER_V4.into(), PORT);
    let _serve = bed.serve(Node::Server, server, false)?;
    let vm = RouterVm::boot(&bed)?;
    vm.start_agent(&uci(&vm))?;
    let boot_s = vm.boot_time().as_secs_f64();

    let mut figures = Vec::new();
    let idle_kib = vm.agent_rss_kib()? as f64;
    let secs = ctx.pick(8.0, 20.0);
    for conns in [1usize, 8] {
        let mut runs = Vec::new();
        let mut split = Vec::new();
        for _ in 0..ctx.runs() {
            let before = vm.cpu_times()?;
            let spec = LoadSpec {
                connect: server,
                conns,
                secs,
                mptcp: false,
                rcvbuf: None,
            };
            let m = load::parallel(&bed, Node::Lan, &spec, &[], CASE)?;
            let cpu = vm.cpu_times()?.since(&before);
            runs.push(m.mbit);
            split.push(describe(&cpu, &m.shares()));
        }
        let cpu_note = split.join("; ");
        let meas = Measurement {
            case: CASE,
            steal_pct: 0.0,
            detail: format!(
                "guest CPU {cpu_note}; VM boot {boot_s:.1} s; emulated 24Kc, not router \
                 time; peer ratio missing: no mipsel sslocal"
            ),
        };
        figures.push(meas.figure(
            format!("{conns} download(s) through the MIPS VM, unshaped: mpbond"),
            runs,
            "Mbit/s",
            None,
        ));
    }

    let _hold = bed.hold(Node::Server, SocketAddr::new(SERVER_V4.into(), HOLD_PORT))?;
    let swarm = bed.swarm(
        Node::Lan,
        &SwarmTarget::Plain(SocketAddr::new(SERVER_V4.into(), HOLD_PORT)),
        CONNS_FOR_RSS,
        Duration::from_secs(180),
    )?;
    let busy_kib = vm.agent_rss_kib()? as f64;
    // The status socket may time out while the emulated CPU is busy: ask again.
    let mut active = None;
    mpbond_tests::proc::wait_until(Duration::from_secs(60), || {
        active = vm
            .agent_status()
            .ok()
            .and_then(|d| d["connections"]["active"].as_u64());
        active.is_some()
    });
    let active = active.map_or("unknown".into(), |n| n.to_string());
    let meas = Measurement {
        case: CASE,
        steal_pct: 0.0,
        detail: format!(
            "VmRSS in the guest; {} of {CONNS_FOR_RSS} opened, {active} active in the agent's status",
            swarm.report.opened
        ),
    };
    figures.push(meas.figure(
        "agent RSS in the MIPS VM, idle".into(),
        vec![idle_kib],
        "KiB",
        None,
    ));
    figures.push(meas.figure(
        format!("agent RSS in the MIPS VM, {CONNS_FOR_RSS} relayed connections"),
        vec![busy_kib],
        "KiB",
        None,
    ));
    Ok(figures)
}

/// The agent's UCI config: the VM's default with WAN sections whose probes allow for
/// a saturated emulated CPU (a late probe answer is the guest's CPU, not the WAN).
fn uci(vm: &RouterVm<'_>) -> String {
    let mut text = vm.default_uci();
    for i in 1..=2 {
        text.push_str(&format!(
            "\nconfig wan 'wan{i}'\n\toption device 'wan{i}'\n\toption mode 'on'\n\
             \toption timeout_ms '3000'\n\toption down_after '10'\n"
        ));
    }
    text
}

/// "user 12% sys 30% soft 50% busy 92% (WAN shares 50.1/49.9)".
fn describe(cpu: &CpuTimes, shares: &str) -> String {
    let (u, s, soft, busy) = cpu.shares();
    format!(
        "user {:.0}% sys {:.0}% softirq {:.0}% busy {:.0}% (WAN shares {shares})",
        u * 100.0,
        s * 100.0,
        soft * 100.0,
        busy * 100.0
    )
}
