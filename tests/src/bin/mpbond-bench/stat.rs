//! CPU accounting from `/proc`: the host's steal over a measurement
//! ([`Steal`]) and the CPU seconds a set of processes used ([`CpuMeter`]).
//!
//! ```no_run
//! # use std::time::Duration;
//! let steal = Steal::start();
//! let cpu = CpuMeter::start(&[agent_pid, conc_pid]);
//! // ... the transfer ...
//! let secs = cpu.seconds();        // utime + stime of both, summed
//! let pct = steal.percent();       // steal ÷ all CPU time, percent
//! ```

use std::fs;

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Every field summed (user … guest_nice, without double-counting guest).
    pub total: u64,
    /// The steal field.
    pub steal: u64,
}

impl CpuTimes {
    /// Read `/proc/stat` now (zeros if it cannot be read).
    pub fn now() -> Self {
        fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_proc_stat(&s))
            .unwrap_or_default()
    }
}

/// Parse the first (`cpu `) line of `/proc/stat`.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal guest guest_nice; guest
    // time is already included in user and nice.
    let total = fields.iter().take(8).sum();
    let steal = fields.get(7).copied().unwrap_or(0);
    Some(CpuTimes { total, steal })
}

/// Steal over an interval: start it before the measurement.
#[derive(Debug, Clone, Copy)]
pub struct Steal {
    start: CpuTimes,
}

impl Steal {
    /// Take the starting snapshot.
    pub fn start() -> Self {
        Self {
            start: CpuTimes::now(),
        }
    }

    /// Steal since [`Steal::start`], percent of all CPU time (0 if nothing passed).
    pub fn percent(&self) -> f64 {
        steal_percent(self.start, CpuTimes::now())
    }
}

/// Steal between two snapshots, percent of all CPU time.
pub fn steal_percent(a: CpuTimes, b: CpuTimes) -> f64 {
    let total = b.total.saturating_sub(a.total);
    if total == 0 {
        return 0.0;
    }
    b.steal.saturating_sub(a.steal) as f64 * 100.0 / total as f64
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, normally 100).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// `utime + stime` of `pid` (all its threads) in clock ticks, if it exists.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_pid_stat(&text)
}

/// `utime + stime` from the text of `/proc/PID/stat`. The command name may
/// hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_pid_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state(3) ppid(4) ... utime(14) stime(15): indexes 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds used by a set of processes since [`CpuMeter::start`].
#[derive(Debug, Clone)]
pub struct CpuMeter {
    pids: Vec<u32>,
    start: u64,
}

impl CpuMeter {
    /// Snapshot `pids` now.
    pub fn start(pids: &[u32]) -> Self {
        Self {
            pids: pids.to_vec(),
            start: Self::ticks(pids),
        }
    }

    fn ticks(pids: &[u32]) -> u64 {
        pids.iter().filter_map(|&p| process_ticks(p)).sum()
    }

    /// CPU seconds (user + system) used since the start, summed over the pids.
    pub fn seconds(&self) -> f64 {
        Self::ticks(&self.pids).saturating_sub(self.start) as f64 / clock_ticks()
    }
}

/// The host's TCP memory: `(pages allocated, under pressure)` from the `TCP` line
/// of `/proc/net/protocols`. The count is global (all namespaces share
/// `net.ipv4.tcp_mem`), so a host under pressure throttles every flow of the bed.
pub fn tcp_memory() -> Option<(u64, bool)> {
    let text = fs::read_to_string("/proc/net/protocols").ok()?;
    parse_protocols(&text)
}

/// Parse the `TCP` line of `/proc/net/protocols`: protocol size sockets memory press ...
pub fn parse_protocols(text: &str) -> Option<(u64, bool)> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some("TCP"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let pages = f.get(3)?.parse().ok()?;
    Some((pages, *f.get(4)? == "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_totals_and_steal() {
        let a = parse_proc_stat("cpu  10 0 10 70 0 0 0 10 5 0\ncpu0 1 2 3\n").unwrap();
        assert_eq!(
            a,
            CpuTimes {
                total: 100,
                steal: 10
            }
        );
        let b = CpuTimes {
            total: 300,
            steal: 30,
        };
        assert!((steal_percent(a, b) - 10.0).abs() < 1e-9);
        assert_eq!(steal_percent(a, a), 0.0);
        assert!(parse_proc_stat("intr 1 2\n").is_none());
    }

    #[test]
    fn protocols_memory_and_pressure() {
        let text = "protocol  size sockets  memory press maxhdr\n\
                    MPTCP     1936      0  554943   yes    192\n\
                    TCP       2304      1  554943   yes    192\n";
        assert_eq!(parse_protocols(text), Some((554943, true)));
        assert_eq!(parse_protocols("TCP 1 2 3 no 5\n"), Some((3, false)));
        assert_eq!(parse_protocols("UDP 1 2 3 no\n"), None);
    }

    #[test]
    fn pid_stat_with_awkward_comm() {
        let text = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 0 0\n";
        assert_eq!(parse_pid_stat(text), Some(10));
        assert_eq!(parse_pid_stat("garbage"), None);
        assert!(process_ticks(std::process::id()).is_some());
    }
}
