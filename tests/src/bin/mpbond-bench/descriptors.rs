//! Descriptors a process holds per connection (case 6 for the concentrator, case 19 for
//! the agent): its open descriptors (`/proc/PID/fd`) with N connections, less its count
//! before them, ÷ N.

use std::time::Duration;

use mpbond_tests::loadgen::fd_count;
use mpbond_tests::proc;

use crate::ctx::BenchError;

/// Reads in a row that must agree before a count is taken as steady.
const STEADY_READS: u32 = 5;

/// A process's descriptor count before its connections were opened.
#[derive(Debug, Clone, Copy)]
pub struct Descriptors {
    case: &'static str,
    pid: u32,
    idle: usize,
}

impl Descriptors {
    /// Count `pid`'s open descriptors now, before the connections.
    pub fn before(case: &'static str, pid: u32) -> Result<Self, BenchError> {
        let idle = fd_count(pid).ok_or_else(|| gone(case, pid))?;
        Ok(Descriptors { case, pid, idle })
    }

    /// The count before the connections.
    pub fn idle(&self) -> usize {
        self.idle
    }

    /// The count now.
    pub fn open(&self) -> Result<usize, BenchError> {
        fd_count(self.pid).ok_or_else(|| gone(self.case, self.pid))
    }

    /// The count once it has held still for a few reads in a row, within `limit`.
    pub fn steady(&self, limit: Duration) -> Option<usize> {
        let mut last = (0, 0);
        proc::wait_until(limit, || {
            let n = fd_count(self.pid).unwrap_or(0);
            last = if n == last.0 { (n, last.1 + 1) } else { (n, 0) };
            last.1 >= STEADY_READS
        })
        .then_some(last.0)
    }

    /// Descriptors per connection with `open` open at `conns` connections.
    pub fn per_conn(&self, open: usize, conns: usize) -> f64 {
        open.saturating_sub(self.idle) as f64 / conns.max(1) as f64
    }
}

fn gone(case: &'static str, pid: u32) -> BenchError {
    BenchError::measure(case, format!("process {pid} is gone (no /proc/{pid}/fd)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_this_process_opens() {
        let before = Descriptors::before("test", std::process::id()).expect("own fds");
        let files: Vec<std::fs::File> = (0..4)
            .map(|_| std::fs::File::open("/proc/self/stat").expect("open"))
            .collect();
        let open = before.open().expect("own fds");
        assert!(open >= before.idle() + files.len());
        assert_eq!(before.per_conn(before.idle() + 8, 4), 2.0);
        assert_eq!(before.per_conn(0, 0), 0.0);
        assert!(Descriptors::before("test", u32::MAX).is_err());
    }
}
