//! The guest's CPU accounting: the `cpu` line of `/proc/stat`, in clock ticks.

/// The counters of the `cpu` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// user + nice.
    pub user: u64,
    /// system.
    pub system: u64,
    /// idle + iowait.
    pub idle: u64,
    /// irq.
    pub irq: u64,
    /// softirq.
    pub softirq: u64,
}

impl CpuTimes {
    /// Parse `cpu  user nice system idle iowait irq softirq ...`.
    pub fn parse(line: &str) -> Option<Self> {
        let mut f = line.split_whitespace();
        if f.next()? != "cpu" {
            return None;
        }
        let v: Vec<u64> = f.take(7).map(|x| x.parse().ok()).collect::<Option<_>>()?;
        (v.len() == 7).then(|| Self {
            user: v[0] + v[1],
            system: v[2],
            idle: v[3] + v[4],
            irq: v[5],
            softirq: v[6],
        })
    }

    /// Every tick counted.
    pub fn total(&self) -> u64 {
        self.user + self.system + self.idle + self.irq + self.softirq
    }

    /// `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            idle: self.idle.saturating_sub(earlier.idle),
            irq: self.irq.saturating_sub(earlier.irq),
            softirq: self.softirq.saturating_sub(earlier.softirq),
        }
    }

    /// `(user, system, softirq + irq, busy)` as shares of all ticks (0..=1).
    pub fn shares(&self) -> (f64, f64, f64, f64) {
        let t = self.total().max(1) as f64;
        let soft = (self.softirq + self.irq) as f64 / t;
        let (u, s) = (self.user as f64 / t, self.system as f64 / t);
        (u, s, soft, u + s + soft)
    }
}

/// Where a guest's busy time goes beyond the `cpu` line: the relay process's own ticks
/// (its threads' user and system time, `/proc/PID/stat`), the network softirqs raised
/// (`/proc/softirqs`) and the interrupts taken (`/proc/interrupts`), all CPUs summed.
/// Read with [`GuestCounters::parse`] from the text of [`GuestCounters::COMMAND`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestCounters {
    /// The process's `utime` (clock ticks).
    pub proc_user: u64,
    /// The process's `stime` (clock ticks).
    pub proc_system: u64,
    /// `NET_RX` softirqs raised.
    pub net_rx: u64,
    /// `NET_TX` softirqs raised.
    pub net_tx: u64,
    /// Interrupts taken (every line of `/proc/interrupts` that counts per CPU).
    pub interrupts: u64,
}

impl GuestCounters {
    /// The guest shell command whose output [`Self::parse`] reads; `{pid}` is replaced
    /// by a shell expression for the process id.
    pub const COMMAND: &'static str = "echo @stat; cat /proc/{pid}/stat; echo @softirqs; \
         cat /proc/softirqs; echo @interrupts; cat /proc/interrupts";

    /// Parse the sections of [`Self::COMMAND`]'s output (missing ones count 0).
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        let mut section = "";
        let mut cpus = 1;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('@') {
                section = name.trim();
                continue;
            }
            match section {
                "stat" => {
                    // After the command name, which may hold spaces and parentheses:
                    // state (field 3) … utime (14), stime (15).
                    if let Some((_, rest)) = line.rsplit_once(')') {
                        let f: Vec<&str> = rest.split_whitespace().collect();
                        let num = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
                        out.proc_user = num(11);
                        out.proc_system = num(12);
                    }
                }
                "softirqs" => {
                    let sum = per_cpu_sum(line, usize::MAX);
                    match line.split(':').next().map(str::trim) {
                        Some("NET_RX") => out.net_rx = sum,
                        Some("NET_TX") => out.net_tx = sum,
                        _ => {}
                    }
                }
                "interrupts" => {
                    if line.trim_start().starts_with("CPU") {
                        cpus = line.split_whitespace().count().max(1);
                    } else {
                        out.interrupts += per_cpu_sum(line, cpus);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            proc_user: self.proc_user.saturating_sub(earlier.proc_user),
            proc_system: self.proc_system.saturating_sub(earlier.proc_system),
            net_rx: self.net_rx.saturating_sub(earlier.net_rx),
            net_tx: self.net_tx.saturating_sub(earlier.net_tx),
            interrupts: self.interrupts.saturating_sub(earlier.interrupts),
        }
    }
}

/// The sum of the first `cpus` numbers after a line's `NAME:` (stopping at the first
/// word that is not a number: the interrupt's chip and name).
fn per_cpu_sum(line: &str, cpus: usize) -> u64 {
    let Some((_, rest)) = line.split_once(':') else {
        return 0;
    };
    rest.split_whitespace()
        .take(cpus)
        .map_while(|v| v.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_process_ticks_softirqs_and_interrupts() {
        let text = "@stat\n\
            42 (mpbond (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 37 58 0 0 20 0 2 0 9 1 2\n\
            @softirqs\n                    CPU0\n          HI:          0\n\
            \x20     TIMER:       1200\n      NET_TX:         17\n      NET_RX:       4242\n\
            @interrupts\n           CPU0\n  2:        150      XT-PIC  i8259\n\
            \x2018:       9000   IO-APIC  18-fasteoi   virtio0\nERR:          3\n";
        let c = GuestCounters::parse(text);
        assert_eq!((c.proc_user, c.proc_system), (37, 58));
        assert_eq!((c.net_rx, c.net_tx), (4242, 17));
        assert_eq!(c.interrupts, 150 + 9000 + 3);
        let later = GuestCounters { net_rx: 5000, ..c };
        assert_eq!(later.since(&c).net_rx, 758);
        assert_eq!(GuestCounters::parse(""), GuestCounters::default());
    }

    #[test]
    fn parses_and_splits_the_cpu_line() {
        let a = CpuTimes::parse("cpu  10 2 30 100 4 1 13 0 0 0\n").expect("a cpu line");
        assert_eq!(a.user, 12);
        assert_eq!(a.idle, 104);
        let b = CpuTimes::parse("cpu  20 2 50 120 4 1 23 0 0 0").expect("a cpu line");
        let d = b.since(&a);
        assert_eq!(d.total(), 10 + 20 + 20 + 10);
        let (u, s, soft, busy) = d.shares();
        assert!((u - 10.0 / 60.0).abs() < 1e-9 && (s - 20.0 / 60.0).abs() < 1e-9);
        assert!((soft - 10.0 / 60.0).abs() < 1e-9 && (busy - 40.0 / 60.0).abs() < 1e-9);
        assert!(CpuTimes::parse("cpu0 1 2 3").is_none());
    }
}
