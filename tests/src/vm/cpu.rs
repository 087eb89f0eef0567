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

#[cfg(test)]
mod tests {
    use super::*;

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
