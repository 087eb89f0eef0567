//! Case 15, mips: the relay's cost on a MIPS CPU. The bed's router is the MIPS
//! router VM (`mpbond_tests::vm`: qemu-system-mipsel, Malta, 24Kc, Linux 6.1, the
//! mipsel agent), the WANs unshaped, so the guest's CPU is what limits: the maximum
//! goodput of one and of eight downloads through it, with the guest's own CPU split
//! (`/proc/stat` in the guest: user, system, softirq + irq) over each, and the
//! agent's RSS in the guest idle and with 500 relayed connections. Each relay also
//! runs one download with the ISPs shaping to 40 + 60 Mbit/s ([`shaped`], issue 17 item
//! 4): the guest's busy share for mpbond and the peer's encrypting methods.
//!
//! The guest kernel is Debian's 6.1 unless `MPBOND_MIPS_KERNEL` names another
//! (`cross/mips-kernel.sh` builds 6.12, whose MPTCP honours the agent's receive
//! mark); the shaped figures say which. `MPBOND_BENCH_MIPS_NOMARK=1` adds, in each
//! run, a shaped download through the agent restarted with `MPBOND_RCVLOWAT=0` (the
//! mark off), and mpbond's busy per Mbit/s with ÷ without it (issue 17).
//!
//! Emulated time is not router time: the Mbit/s say what this host's TCG makes of a
//! 24Kc, so the figures to compare are ratios against the peer in the same run:
//! shadowsocks-rust's `sslocal`, cross-built for mipsel by `cross/peer.sh` and put in
//! the initramfs, runs in the guest with each method (2022-blake3-aes-256-gcm,
//! chacha20-ietf-poly1305, none) against the x86 `ssserver` in the VPS namespace,
//! over MPTCP on both WANs (the agent keeps running for its per-WAN routing and
//! endpoints, which the peer's subflows use).
//!
//! The peer runs in tunnel mode (`--protocol tunnel`, a fixed forward address: the
//! download server), not in redir mode: busybox has neither `nft` nor `iptables` for
//! redir's redirect rule. The per-byte work is the same as redir's (the same
//! `establish_tcp_tunnel` relay between the accepted socket and the encrypted MPTCP
//! stream); only where the destination comes from differs (the config instead of
//! `SO_ORIGINAL_DST`, once per connection). The LAN client connects to the router's
//! address, so the peer's connections skip the redirect's NAT that mpbond's pass
//! through: if anything, that favours the peer. Without the mipsel `sslocal` or the
//! x86 `ssserver` the case reports mpbond alone and says why.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use mpbond_tests::loadgen::SwarmTarget;
use mpbond_tests::proc::ChildGuard;
use mpbond_tests::topology::{LAN_ROUTER_V4, SERVER_V4, VPS_V4};
use mpbond_tests::vm::{self, CpuTimes, RouterVm};
use mpbond_tests::{Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::load::{self, LoadSpec};
use crate::peer::{self, Method, SERVER_PORT};
use crate::report::{median, Figure, Measurement, Target};

mod shaped;

const CASE: &str = "15 mips";
const PORT: u16 = 5001;
const HOLD_PORT: u16 = 5002;
/// The peer's tunnel port in the guest.
const PEER_PORT: u16 = 1100;
/// Relayed connections for the RSS figure (issue 10, item 5).
const CONNS_FOR_RSS: usize = 500;
/// Parallel downloads.
const CONNS: [usize; 2] = [1, 8];
/// mpbond ÷ the peer's encrypting methods must reach this (issue 10).
const TARGET_VS_ENCRYPTING: f64 = 3.0;
/// mpbond ÷ the peer's `none` must reach this.
const TARGET_VS_NONE: f64 = 1.0;
const PEER_READY_LIMIT: Duration = Duration::from_secs(30);
/// How long a restarted guest agent may take to bond both WANs.
const BOND_LIMIT: Duration = Duration::from_secs(60);

/// Who relays: mpbond or the peer with a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relay {
    Mpbond,
    /// The agent with `MPBOND_RCVLOWAT=0`: no receive mark.
    MpbondNoMark,
    Peer(Method),
}

impl Relay {
    fn name(self) -> String {
        match self {
            Relay::Mpbond => "mpbond".into(),
            Relay::MpbondNoMark => "mpbond without the mark (MPBOND_RCVLOWAT=0)".into(),
            Relay::Peer(m) => format!("peer {}", m.as_str()),
        }
    }
}

/// One relay and connection count: Mbit/s and the guest CPU split of each run.
#[derive(Debug)]
struct Series {
    relay: Relay,
    conns: usize,
    mbit: Vec<f64>,
    split: Vec<String>,
}

/// Run case 15.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let bed = TestBed::builder()
        .wans(&[0, 0])
        .agent_routing(true)
        .try_build()?;
    let _conc = bed.start_concentrator(&bed.concentrator_config())?;
    let server = SocketAddr::new(SERVER_V4.into(), PORT);
    let _serve = bed.serve(Node::Server, server, false)?;
    let peer_bin = peer_binaries(ctx);
    let vm = RouterVm::boot(&bed)?;
    vm.start_agent(&uci(&vm))?;
    let boot_s = vm.boot_time().as_secs_f64();
    // The kernel, with its clock source and whether the agent has a vDSO mapped: where
    // either is missing, every clock read of the relay is a system call.
    let kernel = vm
        .run(
            "echo \"$(uname -r), clock source \
             $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource), \
             agent vDSO $(grep -c vdso /proc/$(cat /tmp/mpbond-agent.pid)/maps)\"",
        )?
        .trim()
        .to_owned();
    let no_mark = std::env::var_os("MPBOND_BENCH_MIPS_NOMARK").is_some_and(|v| v == "1");

    let idle_kib = vm.agent_rss_kib()? as f64;
    let secs = ctx.pick(8.0, 20.0);
    let mut series: Vec<Series> = Vec::new();
    let mut shaped_runs = shaped::ShapedRuns::default();
    let mut record = |relay: Relay, conns: usize, mbit: f64, split: String| match series
        .iter_mut()
        .find(|s| s.relay == relay && s.conns == conns)
    {
        Some(s) => {
            s.mbit.push(mbit);
            s.split.push(split);
        }
        None => series.push(Series {
            relay,
            conns,
            mbit: vec![mbit],
            split: vec![split],
        }),
    };
    for _ in 0..ctx.runs() {
        for conns in CONNS {
            let (mbit, split) = measure(&bed, &vm, server, conns, secs)?;
            record(Relay::Mpbond, conns, mbit, split);
        }
        shaped_runs.measure(&bed, &vm, Relay::Mpbond, server, secs)?;
        if no_mark {
            restart_agent(&vm, "MPBOND_RCVLOWAT=0")?;
            shaped_runs.measure(&bed, &vm, Relay::MpbondNoMark, server, secs)?;
            restart_agent(&vm, "")?;
        }
        let Ok(ssserver) = &peer_bin else { continue };
        for method in Method::ALL {
            let _peer = GuestPeer::start(&bed, &vm, ctx, ssserver, method)?;
            let tunnel = SocketAddr::new(LAN_ROUTER_V4.into(), PEER_PORT);
            for conns in CONNS {
                let (mbit, split) = measure(&bed, &vm, tunnel, conns, secs)?;
                record(Relay::Peer(method), conns, mbit, split);
            }
            if shaped::METHODS.contains(&method) {
                shaped_runs.measure(&bed, &vm, Relay::Peer(method), tunnel, secs)?;
            }
        }
    }
    let mut figures = goodput_figures(&series, boot_s, peer_bin.as_ref().err());
    figures.extend(shaped_runs.figures(&kernel));
    figures.extend(rss_figures(&bed, &vm, idle_kib)?);
    Ok(figures)
}

/// Restart the guest's agent with `env` (empty: none) and wait until it bonds both WANs.
fn restart_agent(vm: &RouterVm<'_>, env: &str) -> Result<(), BenchError> {
    vm.stop_agent()?;
    vm.start_agent_with_env(&uci(vm), env)?;
    if !vm.wait_bonded(2, BOND_LIMIT) {
        return Err(BenchError::measure(
            CASE,
            format!(
                "the restarted agent ({env}) did not bond both WANs within {} s: {}",
                BOND_LIMIT.as_secs(),
                vm.agent_log()
            ),
        ));
    }
    Ok(())
}

/// The x86 `ssserver`, or why the peer cannot run (no mipsel `sslocal` in the guest).
fn peer_binaries(ctx: &Ctx) -> Result<PathBuf, String> {
    if vm::packages::peer_path().is_none() {
        return Err("no mipsel sslocal at target/ss-mipsel/sslocal (run cross/peer.sh)".into());
    }
    ctx.ss("ssserver").map_err(|e| e.to_string())
}

/// One download measurement through the guest to `connect`: Mbit/s and the guest's
/// CPU split over it.
fn measure(
    bed: &TestBed,
    vm: &RouterVm<'_>,
    connect: SocketAddr,
    conns: usize,
    secs: f64,
) -> Result<(f64, String), BenchError> {
    let before = vm.cpu_times()?;
    let spec = LoadSpec {
        connect,
        conns,
        secs,
        mptcp: false,
        rcvbuf: None,
    };
    let m = load::parallel(bed, Node::Lan, &spec, &[], CASE)?;
    let cpu = vm.cpu_times()?.since(&before);
    Ok((m.mbit, describe(&cpu, &m.shares())))
}

/// The goodput rows: each relay's Mbit/s, then mpbond ÷ each peer method against
/// the targets.
fn goodput_figures(series: &[Series], boot_s: f64, missing: Option<&String>) -> Vec<Figure> {
    let get =
        |relay: Relay, conns: usize| series.iter().find(|s| s.relay == relay && s.conns == conns);
    let mut figures = Vec::new();
    for conns in CONNS {
        let Some(mp) = get(Relay::Mpbond, conns) else {
            continue;
        };
        let mut relays = vec![Relay::Mpbond];
        relays.extend(Method::ALL.map(Relay::Peer));
        for relay in relays {
            let Some(s) = get(relay, conns) else { continue };
            let peer_note = match (relay, missing) {
                (Relay::Mpbond, Some(why)) => format!("; peer missing: {why}"),
                _ => String::new(),
            };
            let meas = Measurement {
                case: CASE,
                steal_pct: 0.0,
                detail: format!(
                    "guest CPU {}; VM boot {boot_s:.1} s; emulated 24Kc, not router time{peer_note}",
                    s.split.join("; ")
                ),
            };
            figures.push(meas.figure(
                format!(
                    "{conns} download(s) through the MIPS VM, unshaped: {}",
                    relay.name()
                ),
                s.mbit.clone(),
                "Mbit/s",
                None,
            ));
        }
        for method in Method::ALL {
            let Some(p) = get(Relay::Peer(method), conns) else {
                continue;
            };
            let target = if method == Method::Plain {
                TARGET_VS_NONE
            } else {
                TARGET_VS_ENCRYPTING
            };
            let meas = Measurement {
                case: CASE,
                steal_pct: 0.0,
                detail: format!(
                    "Mbit/s: mpbond {:.1}, {} {:.1} (same run, same guest)",
                    median(&mp.mbit),
                    Relay::Peer(method).name(),
                    median(&p.mbit)
                ),
            };
            figures.push(meas.figure(
                format!(
                    "{conns} download(s) through the MIPS VM: mpbond / peer {}",
                    method.as_str()
                ),
                mp.mbit.iter().zip(&p.mbit).map(|(a, b)| a / b).collect(),
                "ratio",
                Some(Target::AtLeast(target)),
            ));
        }
    }
    figures
}

/// The agent's RSS in the guest, idle (`idle_kib`) and with 500 relayed connections.
fn rss_figures(bed: &TestBed, vm: &RouterVm<'_>, idle_kib: f64) -> Result<Vec<Figure>, BenchError> {
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
    Ok(vec![
        meas.figure(
            "agent RSS in the MIPS VM, idle".into(),
            vec![idle_kib],
            "KiB",
            None,
        ),
        meas.figure(
            format!("agent RSS in the MIPS VM, {CONNS_FOR_RSS} relayed connections"),
            vec![busy_kib],
            "KiB",
            None,
        ),
    ])
}

/// The peer for one method: `ssserver` in the VPS namespace, `sslocal` in the guest
/// (tunnel to the download server). Dropping it stops both.
struct GuestPeer<'a> {
    vm: &'a RouterVm<'a>,
    _server: ChildGuard,
}

impl<'a> GuestPeer<'a> {
    fn start(
        bed: &TestBed,
        vm: &'a RouterVm<'a>,
        ctx: &Ctx,
        ssserver: &std::path::Path,
        method: Method,
    ) -> Result<Self, BenchError> {
        let password = method.password()?;
        let (_, server_cfg) = peer::configs(method, &password);
        let tag = method.as_str();
        let (server, server_log) = peer::spawn(
            bed,
            ctx,
            Node::Vps,
            ssserver,
            &format!("ssserver-mips-{tag}"),
            &server_cfg,
        )?;
        let peer = GuestPeer {
            vm,
            _server: server,
        };
        let listening = format!("ss -Hltn sport = :{SERVER_PORT}");
        if !mpbond_tests::proc::wait_until(PEER_READY_LIMIT, || {
            bed.exec(Node::Vps, &listening)
                .is_ok_and(|out| !out.trim().is_empty())
        }) {
            let log = std::fs::read_to_string(&server_log).unwrap_or_default();
            return Err(BenchError::measure(
                CASE,
                format!("ssserver did not listen on {SERVER_PORT}: {log}"),
            ));
        }
        vm.write_file(GUEST_PEER_CFG, &tunnel_config(method, &password))?;
        vm.run(&format!(
            "ulimit -n 65536; sslocal -c {GUEST_PEER_CFG} >{GUEST_PEER_LOG} 2>&1 & echo $! >/tmp/sslocal.pid"
        ))?;
        // /proc/net/tcp: 0.0.0.0:PEER_PORT in state LISTEN (0A).
        let probe = format!("grep -q ' 00000000:{PEER_PORT:04X} 00000000:0000 0A ' /proc/net/tcp");
        if !mpbond_tests::proc::wait_until(PEER_READY_LIMIT, || {
            vm.run_status(&probe, vm::COMMAND_LIMIT)
                .is_ok_and(|o| o.status == 0)
        }) {
            let log = vm.run(&format!("cat {GUEST_PEER_LOG}")).unwrap_or_default();
            return Err(BenchError::measure(
                CASE,
                format!("sslocal ({tag}) did not listen on {PEER_PORT} in the guest: {log}"),
            ));
        }
        Ok(peer)
    }
}

impl Drop for GuestPeer<'_> {
    fn drop(&mut self) {
        let _ = self
            .vm
            .run("kill $(cat /tmp/sslocal.pid) 2>/dev/null; rm -f /tmp/sslocal.pid");
    }
}

const GUEST_PEER_CFG: &str = "/tmp/sslocal.json";
/// Where the guest keeps the peer's pid (and [`vm::RouterVm::start_agent`] the agent's).
const GUEST_PEER_PID: &str = "/tmp/sslocal.pid";
const GUEST_AGENT_PID: &str = "/tmp/mpbond-agent.pid";
const GUEST_PEER_LOG: &str = "/tmp/sslocal.log";

/// The guest's sslocal config: a tunnel from the LAN side to the download server
/// through `ssserver` over MPTCP, as OpenMPTCProuter's redir setup but for the source
/// of the destination.
fn tunnel_config(method: Method, password: &str) -> String {
    serde_json::json!({
        "server": VPS_V4.to_string(),
        "server_port": SERVER_PORT,
        "password": password,
        "method": method.as_str(),
        "mode": "tcp_only",
        "mptcp": true,
        "locals": [{
            "local_address": "0.0.0.0",
            "local_port": PEER_PORT,
            "protocol": "tunnel",
            "mode": "tcp_only",
            "forward_address": IpAddr::from(SERVER_V4).to_string(),
            "forward_port": PORT,
        }],
    })
    .to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_peer_tunnels_to_the_server_over_mptcp() {
        let cfg: serde_json::Value =
            serde_json::from_str(&tunnel_config(Method::Chacha20, "pw")).unwrap();
        assert_eq!(cfg["method"], "chacha20-ietf-poly1305");
        assert_eq!(cfg["server"], "192.0.2.1");
        assert_eq!(cfg["mptcp"], true);
        let local = &cfg["locals"][0];
        assert_eq!(local["protocol"], "tunnel");
        assert_eq!(local["forward_address"], "203.0.113.10");
        assert_eq!(local["forward_port"], PORT);
        assert_eq!(format!("{PEER_PORT:04X}"), "044C");
    }
}
