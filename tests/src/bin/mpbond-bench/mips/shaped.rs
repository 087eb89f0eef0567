//! Case 15's shaped part (issue 17, item 4): one download through the MIPS VM with the
//! WANs' ISPs shaping the downstream to 40 + 60 Mbit/s (a TBF on each ISP's `cust`, as
//! the x86 bed shapes; only while the download runs), through mpbond and through the
//! peer with each encrypting method. Reported for each: the goodput, the guest's CPU
//! busy share (user + system + softirq + irq, from the guest's `/proc/stat`) and that
//! share per Mbit/s (the comparable figure when the emulated guest cannot reach the
//! shaped rate), and the relay process's wake-ups per MB (its threads' voluntary
//! context switches in the guest's `/proc`; a lower bound: a thread that exits during
//! the run takes its count with it, since `/proc` keeps no per-process sum of them; the
//! runtime's worker threads live as long as the process, only blocking-pool threads come
//! and go); the detail adds the guest's busy share and the relay process's in the
//! [`IDLE_WINDOW`] after the download (what the relay's background work costs when idle);
//! then mpbond's busy share ÷ the peer's cheapest method's, against the
//! issue's target [`TARGET_VS_PEER`], and, when the agent also ran without its receive
//! mark, mpbond's busy share per Mbit/s with ÷ without the mark. Each figure names the
//! guest kernel.

use std::net::SocketAddr;

use mpbond_tests::topology::tbf_burst;
use mpbond_tests::vm::{GuestCounters, RouterVm};
use mpbond_tests::{Node, TestBed};

use super::{describe, Relay, CASE};
use crate::ctx::BenchError;
use crate::load::{self, LoadSpec};
use crate::peer::Method;
use crate::report::{median, Figure, Measurement, Target};

/// How long the guest is watched idle after each download (the relay's background).
const IDLE_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);
/// The ISPs' downstream rates, Mbit/s.
pub const RATES: [u32; 2] = [40, 60];
/// mpbond's guest busy share ÷ the peer's cheapest encrypting method's must stay below.
pub const TARGET_VS_PEER: f64 = 0.33;
/// The peer's encrypting methods, measured shaped.
pub const METHODS: [Method; 2] = [Method::Aes2022, Method::Chacha20];

/// One relay's shaped downloads: goodput and guest busy share of each run.
#[derive(Debug)]
pub struct Shaped {
    relay: Relay,
    mbit: Vec<f64>,
    busy: Vec<f64>,
    /// The relay process's wake-ups (voluntary context switches) per MB.
    wakes: Vec<f64>,
    split: Vec<String>,
}

/// The shaped runs of every relay.
#[derive(Debug, Default)]
pub struct ShapedRuns(Vec<Shaped>);

impl ShapedRuns {
    /// One shaped download of `relay` to `connect`, `secs` long.
    pub fn measure(
        &mut self,
        bed: &TestBed,
        vm: &RouterVm<'_>,
        relay: Relay,
        connect: SocketAddr,
        secs: f64,
    ) -> Result<(), BenchError> {
        shape(bed, true)?;
        let pid_file = match relay {
            Relay::Peer(_) => super::GUEST_PEER_PID,
            Relay::Mpbond | Relay::MpbondNoMark => super::GUEST_AGENT_PID,
        };
        let result = download(bed, vm, connect, secs, pid_file);
        // Unshape even when the download failed: the unshaped runs follow.
        shape(bed, false)?;
        let (mbit, busy, wakes, split) = result?;
        match self.0.iter_mut().find(|s| s.relay == relay) {
            Some(s) => {
                s.mbit.push(mbit);
                s.busy.push(busy);
                s.wakes.push(wakes);
                s.split.push(split);
            }
            None => self.0.push(Shaped {
                relay,
                mbit: vec![mbit],
                busy: vec![busy],
                wakes: vec![wakes],
                split: vec![split],
            }),
        }
        Ok(())
    }

    /// The figures (see the module docs); `kernel` is the guest's `uname -r`.
    pub fn figures(&self, kernel: &str) -> Vec<Figure> {
        let rates = format!("{}+{} Mbit/s", RATES[0], RATES[1]);
        let mut out = Vec::new();
        for s in &self.0 {
            let meas = Measurement {
                case: CASE,
                steal_pct: 0.0,
                detail: format!(
                    "guest kernel {kernel}; guest CPU {}; Mbit/s {:?}; emulated 24Kc, not router time",
                    s.split.join("; "),
                    s.mbit
                        .iter()
                        .map(|m| (m * 10.0).round() / 10.0)
                        .collect::<Vec<_>>()
                ),
            };
            let name = s.relay.name();
            out.push(meas.figure(
                format!("1 download through the MIPS VM at {rates}: {name}"),
                s.mbit.clone(),
                "Mbit/s",
                None,
            ));
            out.push(meas.figure(
                format!("guest CPU busy through the MIPS VM at {rates}: {name}"),
                s.busy.iter().map(|b| b * 100.0).collect(),
                "%",
                None,
            ));
            out.push(meas.figure(
                format!("guest CPU busy per Mbit/s through the MIPS VM at {rates}: {name}"),
                per_mbit(s),
                "%/(Mbit/s)",
                None,
            ));
            out.push(meas.figure(
                format!("relay wake-ups per MB in the MIPS VM at {rates}: {name}"),
                s.wakes.clone(),
                "/MB",
                None,
            ));
        }
        out.extend(self.vs_cheapest_peer(kernel));
        out.extend(self.mark_effect(kernel));
        out
    }

    /// mpbond's busy share per Mbit/s with ÷ without the receive mark (per run).
    fn mark_effect(&self, kernel: &str) -> Option<Figure> {
        let get = |relay: Relay| self.0.iter().find(|s| s.relay == relay);
        let (with, without) = (get(Relay::Mpbond)?, get(Relay::MpbondNoMark)?);
        let runs: Vec<f64> = per_mbit(with)
            .iter()
            .zip(per_mbit(without))
            .map(|(a, b)| a / b)
            .collect();
        let meas = Measurement {
            case: CASE,
            steal_pct: 0.0,
            detail: format!(
                "guest kernel {kernel}; guest busy % per Mbit/s: with the mark {:.3}, \
                 without {:.3}",
                median(&per_mbit(with)),
                median(&per_mbit(without)),
            ),
        };
        Some(meas.figure(
            format!(
                "guest CPU per Mbit/s through the MIPS VM at {}+{} Mbit/s: mpbond with / without the mark",
                RATES[0], RATES[1]
            ),
            runs,
            "ratio",
            None,
        ))
    }

    /// mpbond's busy share per Mbit/s ÷ the cheapest peer method's (per run), so a guest
    /// that cannot carry the shaped rate through one relay does not flatter it.
    fn vs_cheapest_peer(&self, kernel: &str) -> Option<Figure> {
        let get = |relay: Relay| self.0.iter().find(|s| s.relay == relay);
        let mp = get(Relay::Mpbond)?;
        let peers: Vec<&Shaped> = METHODS
            .iter()
            .filter_map(|&m| get(Relay::Peer(m)))
            .collect();
        let cheapest = peers
            .iter()
            .min_by(|a, b| median(&per_mbit(a)).total_cmp(&median(&per_mbit(b))))?;
        let runs: Vec<f64> = per_mbit(mp)
            .iter()
            .zip(per_mbit(cheapest))
            .map(|(m, p)| m / p)
            .collect();
        let meas = Measurement {
            case: CASE,
            steal_pct: 0.0,
            detail: format!(
                "guest kernel {kernel}; guest busy % per Mbit/s: mpbond {:.3}, {} {:.3} \
                 (the cheapest); busy %: mpbond {:.0}, peer {:.0}",
                median(&per_mbit(mp)),
                cheapest.relay.name(),
                median(&per_mbit(cheapest)),
                median(&mp.busy) * 100.0,
                median(&cheapest.busy) * 100.0,
            ),
        };
        Some(meas.figure(
            format!(
                "guest CPU per Mbit/s through the MIPS VM at {}+{} Mbit/s: mpbond / peer's cheapest",
                RATES[0], RATES[1]
            ),
            runs,
            "ratio",
            Some(Target::AtMost(TARGET_VS_PEER)),
        ))
    }
}

/// Busy % per Mbit/s of each run.
fn per_mbit(s: &Shaped) -> Vec<f64> {
    s.busy
        .iter()
        .zip(&s.mbit)
        .map(|(b, m)| b * 100.0 / m.max(0.001))
        .collect()
}

/// One download: Mbit/s, the guest's busy share, the wake-ups per MB of the relay
/// whose pid is in `pid_file`, and the CPU split.
fn download(
    bed: &TestBed,
    vm: &RouterVm<'_>,
    connect: SocketAddr,
    secs: f64,
    pid_file: &str,
) -> Result<(f64, f64, f64, String), BenchError> {
    let wakes_before = vm.wakeups(pid_file)?;
    let counted = vm.counters(pid_file)?;
    let before = vm.cpu_times()?;
    let spec = LoadSpec {
        connect,
        conns: 1,
        secs,
        mptcp: false,
        rcvbuf: None,
    };
    let m = load::parallel(bed, Node::Lan, &spec, &[], CASE)?;
    let cpu = vm.cpu_times()?.since(&before);
    let counts = vm.counters(pid_file)?.since(&counted);
    // The sum over the threads alive at each end: a thread that exited during the run
    // lost its count (the sum may even fall, hence saturating); a lower bound, as the
    // module docs say.
    let wakes = vm.wakeups(pid_file)?.saturating_sub(wakes_before);
    let mb = (m.bytes as f64 / 1e6).max(0.001);
    // The same relay idle just after: what its background work keeps busy anyway.
    let (idle_before, idle_counted) = (vm.cpu_times()?, vm.counters(pid_file)?);
    std::thread::sleep(IDLE_WINDOW);
    let idle = vm.cpu_times()?.since(&idle_before);
    let idle_counts = vm.counters(pid_file)?.since(&idle_counted);
    let t = idle.total().max(1) as f64 / 100.0;
    let split = format!(
        "{}; {}; idle for {} s after: busy {:.1}%, relay process {:.1}%",
        describe(&cpu, &m.shares()),
        describe_counts(&counts, cpu.total(), mb),
        IDLE_WINDOW.as_secs(),
        idle.shares().3 * 100.0,
        (idle_counts.proc_user + idle_counts.proc_system) as f64 / t,
    );
    Ok((m.mbit, cpu.shares().3, wakes as f64 / mb, split))
}

/// The relay process's own share of the guest's ticks (user, system) and the network
/// softirqs and interrupts per MB: what the relay pays against what the guest's network
/// stack pays for everyone in interrupt context.
fn describe_counts(c: &GuestCounters, ticks: u64, mb: f64) -> String {
    let t = ticks.max(1) as f64 / 100.0;
    format!(
        "relay process user {:.1}% sys {:.1}%; NET_RX {:.0}/MB, NET_TX {:.0}/MB, interrupts {:.0}/MB",
        c.proc_user as f64 / t,
        c.proc_system as f64 / t,
        c.net_rx as f64 / mb,
        c.net_tx as f64 / mb,
        c.interrupts as f64 / mb
    )
}

/// Shape (or stop shaping) each ISP's downstream to the router.
fn shape(bed: &TestBed, on: bool) -> Result<(), BenchError> {
    for (i, rate) in RATES.into_iter().enumerate() {
        let cmd = tc_command(rate, on);
        bed.exec(Node::Isp(i + 1), &cmd)?;
    }
    Ok(())
}

/// The `tc` command line that shapes `cust` to `rate` Mbit/s, or removes the shaping.
fn tc_command(rate: u32, on: bool) -> String {
    if on {
        format!(
            "tc qdisc replace dev cust root tbf rate {rate}mbit burst {} latency 25ms",
            tbf_burst(rate)
        )
    } else {
        "tc qdisc del dev cust root".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaped(relay: Relay, mbit: f64, busy: f64) -> Shaped {
        Shaped {
            relay,
            mbit: vec![mbit],
            busy: vec![busy],
            wakes: vec![1.0],
            split: vec![String::new()],
        }
    }

    #[test]
    fn mpbond_is_compared_per_mbit_with_the_cheapest_peer() {
        let runs = ShapedRuns(vec![
            shaped(Relay::Mpbond, 100.0, 0.2),
            shaped(Relay::Peer(Method::Aes2022), 50.0, 1.0),
            shaped(Relay::Peer(Method::Chacha20), 40.0, 1.0),
        ]);
        let ratio = runs.vs_cheapest_peer("6.12").unwrap();
        // mpbond 0.2 %/Mbit/s, aes 2 %/Mbit/s (cheaper than chacha's 2.5).
        assert!((ratio.value - 0.1).abs() < 1e-9, "{}", ratio.value);
        assert_eq!(runs.figures("6.12").len(), 3 * 4 + 1);
        assert!(runs.mark_effect("6.12").is_none());
    }

    #[test]
    fn without_the_peer_there_is_no_ratio() {
        let runs = ShapedRuns(vec![shaped(Relay::Mpbond, 100.0, 0.2)]);
        assert!(runs.vs_cheapest_peer("6.1").is_none());
    }

    #[test]
    fn the_mark_is_compared_per_mbit_with_the_agent_without_it() {
        let runs = ShapedRuns(vec![
            shaped(Relay::Mpbond, 80.0, 0.4),
            shaped(Relay::MpbondNoMark, 100.0, 1.0),
        ]);
        // 0.5 %/Mbit/s with the mark, 1 %/Mbit/s without.
        let effect = runs.mark_effect("6.12").unwrap();
        assert!((effect.value - 0.5).abs() < 1e-9, "{}", effect.value);
        assert!(effect.detail.contains("6.12"), "{}", effect.detail);
        assert_eq!(runs.figures("6.12").len(), 2 * 4 + 1);
    }

    #[test]
    fn the_shaping_is_a_tbf_on_the_isps_customer_side() {
        assert_eq!(
            tc_command(40, true),
            format!(
                "tc qdisc replace dev cust root tbf rate 40mbit burst {} latency 25ms",
                tbf_burst(40)
            )
        );
        assert_eq!(tc_command(40, false), "tc qdisc del dev cust root");
    }
}
