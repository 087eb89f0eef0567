//! Driving the benchmark tools of `mpbond-tb` in the test bed: idle
//! connection swarms and their holder (`hold` / `swarm`), sequential
//! time-to-first-byte requests (`ttfb`), and a process's resident memory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

use crate::bed::TestBed;
use crate::daemons::bin_path;
use crate::error::BedError;
use crate::proc::ChildGuard;
use crate::tools::TB;
use crate::topology::Node;

pub use crate::wire::{SwarmReport, TtfbReport};

/// A swarm of held connections; dropping it closes them all.
#[derive(Debug)]
pub struct Swarm {
    /// Its report.
    pub report: SwarmReport,
    _child: ChildGuard,
}

/// Which connections a swarm opens.
#[derive(Debug, Clone)]
pub enum SwarmTarget {
    /// Plain TCP to this address (e.g. through the agent's redirect).
    Plain(SocketAddr),
    /// MPTCP + TFO to the concentrator at `concentrator`, with a Convert for
    /// `dest` sealed as `client` with `key_hex`.
    Convert {
        /// The concentrator.
        concentrator: SocketAddr,
        /// The relayed destination.
        dest: SocketAddr,
        /// Client id.
        client: String,
        /// Its key, hex.
        key_hex: String,
    },
}

impl TestBed {
    /// Start `mpbond-tb hold` in `node` on `listen` and wait until it listens.
    pub fn hold(&self, node: Node, listen: SocketAddr) -> Result<ChildGuard, BedError> {
        let mut child = self.tb_spawn(
            node,
            &["hold".into(), "--listen".into(), listen.to_string()],
        )?;
        first_line(&mut child, Duration::from_secs(10))?;
        Ok(child)
    }

    /// Open `count` idle connections from `node` and hold them; returns once
    /// all are open (or failed), within `limit`.
    pub fn swarm(
        &self,
        node: Node,
        target: &SwarmTarget,
        count: usize,
        limit: Duration,
    ) -> Result<Swarm, BedError> {
        let mut args = vec!["swarm".to_string(), "--count".into(), count.to_string()];
        match target {
            SwarmTarget::Plain(to) => args.extend(["--connect".into(), to.to_string()]),
            SwarmTarget::Convert {
                concentrator,
                dest,
                client,
                key_hex,
            } => args.extend([
                "--connect".into(),
                concentrator.to_string(),
                "--dest".into(),
                dest.to_string(),
                "--client".into(),
                client.clone(),
                "--key".into(),
                key_hex.clone(),
            ]),
        }
        let mut child = self.tb_spawn(node, &args)?;
        let line = first_line(&mut child, limit)?;
        let report = parse(&child, &line)?;
        Ok(Swarm {
            report,
            _child: child,
        })
    }

    /// Run `mpbond-tb ttfb` in `node`: `count` sequential requests for `bytes`.
    pub fn ttfb(
        &self,
        node: Node,
        to: SocketAddr,
        count: usize,
        bytes: u64,
        mptcp: bool,
    ) -> Result<TtfbReport, BedError> {
        let mut args = ttfb_args(to, count, bytes);
        if mptcp {
            args.push("--mptcp".into());
        }
        let mut child = self.tb_spawn(node, &args)?;
        // ~50 ms a request at the bed's delays; a hung one gives up after 10 s.
        let limit = Duration::from_secs(30 + count as u64 / 2);
        let line = first_line(&mut child, limit)?;
        parse(&child, &line)
    }

    /// Start `mpbond-tb ARGS` in `node`.
    pub(crate) fn tb_spawn(&self, node: Node, args: &[String]) -> Result<ChildGuard, BedError> {
        let bin = bin_path(TB)?.to_string_lossy().into_owned();
        let mut all = vec![bin.as_str()];
        all.extend(args.iter().map(String::as_str));
        self.spawn(node, &all)
    }
}

/// `mpbond-tb ttfb`'s arguments for `count` requests of `bytes` each to `to`.
pub(crate) fn ttfb_args(to: SocketAddr, count: usize, bytes: u64) -> Vec<String> {
    vec![
        "ttfb".to_string(),
        "--connect".into(),
        to.to_string(),
        "--count".into(),
        count.to_string(),
        "--bytes".into(),
        bytes.to_string(),
    ]
}

/// `child`'s JSON report line.
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(
    child: &ChildGuard,
    line: &str,
) -> Result<T, BedError> {
    serde_json::from_str(line).map_err(|source| BedError::BadOutput {
        cmd: child.cmd().to_owned(),
        output: line.to_owned(),
        source,
    })
}

/// The first line `child` prints on stdout, within `limit`. Later output is
/// drained in the background, so the child never blocks on a full pipe.
pub fn first_line(child: &mut ChildGuard, limit: Duration) -> Result<String, BedError> {
    let timeout = |child: &ChildGuard| BedError::Timeout {
        cmd: child.cmd().to_owned(),
        secs: limit.as_secs(),
    };
    let Some(stdout) = child.child_mut().stdout.take() else {
        return Err(timeout(child));
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    match rx.recv_timeout(limit) {
        Ok(Some(line)) => Ok(line),
        _ => Err(timeout(child)),
    }
}

/// Resident set size of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Raise this process's RLIMIT_NOFILE to `n` (soft and hard) for itself and
/// the children it starts. Without CAP_SYS_RESOURCE the hard limit cannot
/// grow, and the soft limit is raised to the hard one instead. Returns the
/// soft limit now in force.
pub fn raise_nofile(n: u64) -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write exactly one rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let want = libc::rlimit {
            rlim_cur: lim.rlim_cur.max(n),
            rlim_max: lim.rlim_max.max(n),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
            return Ok(want.rlim_cur);
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Open descriptors of `pid` (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_of_this_process_is_known() {
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
        assert_eq!(rss_kib(u32::MAX), None);
        assert!(fd_count(std::process::id()).is_some_and(|n| n >= 3));
    }

    #[test]
    fn reports_parse_with_missing_fields() {
        let r: SwarmReport = serde_json::from_str(r#"{"opened":3}"#).unwrap();
        assert_eq!((r.opened, r.failed), (3, 0));
        let t: TtfbReport = serde_json::from_str(r#"{"ok":1,"ttfb_ms":[2.5]}"#).unwrap();
        assert_eq!(t.ttfb_ms, vec![2.5]);
    }
}
