//! `mpbond-concentrator setup`: apply the server's kernel settings and report each change.
//!
//! * `net.mptcp.enabled = 1` and the TFO server bit (0x2) OR-ed into `net.ipv4.tcp_fastopen`
//!   with bit 0x200 (take SYN data without a cookie) cleared, written through `/proc/sys`
//!   (both are per network namespace);
//! * MPTCP limits `subflows 8, add_addr_accepted 8` through the `mptcp_pm` generic netlink
//!   family (`mpbond_netlink::PmClient`, the agent's client too), or
//!   `ip mptcp limits set ...` if netlink fails.

use std::io;
use std::path::Path;
use std::process::Command;

use mpbond_netlink::mptcp::Limits;
use mpbond_netlink::PmClient;
use mpbond_relay::sys::tcp_fastopen;

use crate::host::{
    parse_sysctl, MPTCP_ENABLED, TCP_FASTOPEN_SYSCTL, TFO_SERVER, TFO_SERVER_COOKIE_NOT_REQD,
};

/// The limits `setup` applies.
pub const WANTED_LIMITS: Limits = Limits {
    subflows: 8,
    add_addr_accepted: 8,
};

/// Why setup failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path} does not hold a number")]
    NotANumber { path: &'static str },
    #[error("cannot write {path} (run as root): {source}")]
    Write {
        path: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("setting MPTCP limits over netlink failed ({netlink}), and `ip` is not installed to try instead")]
    NoIp {
        netlink: io::Error,
        #[source]
        source: io::Error,
    },
    #[error("setting MPTCP limits failed: netlink: {netlink}; `ip mptcp limits set` exited with {status}")]
    IpFailed {
        netlink: io::Error,
        status: std::process::ExitStatus,
    },
}

/// Apply every setting, calling `report` with one human line per setting as it is done
/// (so a later failure does not hide what already changed).
pub fn apply(mut report: impl FnMut(&str)) -> Result<(), SetupError> {
    let path = MPTCP_ENABLED;
    let text = std::fs::read_to_string(path).map_err(|source| SetupError::Read { path, source })?;
    let old = parse_sysctl(&text).ok_or(SetupError::NotANumber { path })?;
    report(&set_sysctl(path, "net.mptcp.enabled", old, 1)?);
    let path = TCP_FASTOPEN_SYSCTL;
    let old = tcp_fastopen().map_err(|source| SetupError::Read { path, source })?;
    report(&set_sysctl(
        path,
        "net.ipv4.tcp_fastopen",
        old,
        wanted_tcp_fastopen(old),
    )?);
    report(&set_limits()?);
    Ok(())
}

/// `net.ipv4.tcp_fastopen` as setup leaves it: the server bit on, cookies required, the
/// other bits as found.
pub fn wanted_tcp_fastopen(old: u32) -> u32 {
    (old | TFO_SERVER) & !TFO_SERVER_COOKIE_NOT_REQD
}

/// Write `new` to `path` unless it holds it already (`old`), and say what happened.
fn set_sysctl(path: &'static str, name: &str, old: u32, new: u32) -> Result<String, SetupError> {
    if new == old {
        return Ok(format!("{name} = {old} (unchanged)"));
    }
    write_proc(Path::new(path), new).map_err(|source| SetupError::Write { path, source })?;
    Ok(format!("{name}: {old} -> {new}"))
}

fn write_proc(path: &Path, value: u32) -> io::Result<()> {
    std::fs::write(path, format!("{value}\n"))
}

fn set_limits() -> Result<String, SetupError> {
    match set_limits_netlink() {
        Ok(line) => Ok(line),
        Err(netlink) => {
            let status = Command::new("ip")
                .args([
                    "mptcp",
                    "limits",
                    "set",
                    "subflows",
                    "8",
                    "add_addr_accepted",
                    "8",
                ])
                .status();
            match status {
                Ok(s) if s.success() => Ok(format!(
                    "mptcp limits: subflows 8, add_addr_accepted 8 (via `ip`, netlink failed: {netlink})"
                )),
                Ok(status) => Err(SetupError::IpFailed { netlink, status }),
                Err(source) => Err(SetupError::NoIp { netlink, source }),
            }
        }
    }
}

/// Read the limits and set them if they differ, on a current-thread runtime of its own
/// (`setup` runs before and without the server's runtime).
fn set_limits_netlink() -> io::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let line = runtime.block_on(async {
        let pm = PmClient::connect().await?;
        let old = pm.get_limits().await?;
        if old == WANTED_LIMITS {
            return Ok::<_, mpbond_netlink::Error>(format!(
                "mptcp limits: subflows {}, add_addr_accepted {} (unchanged)",
                old.subflows, old.add_addr_accepted
            ));
        }
        pm.set_limits(WANTED_LIMITS).await?;
        let new = pm.get_limits().await?;
        Ok(format!(
            "mptcp limits: subflows {} -> {}, add_addr_accepted {} -> {}",
            old.subflows, new.subflows, old.add_addr_accepted, new.add_addr_accepted
        ))
    })?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apply` twice on a thread in a fresh network namespace (where `/proc/sys/net` and
    /// the MPTCP limits are the namespace's own), collecting its lines.
    fn apply_in_new_netns() -> (Vec<String>, Vec<String>) {
        std::thread::spawn(|| {
            // SAFETY: unshare affects only this thread, which nothing else uses.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare needs root: {}", io::Error::last_os_error());
            let mut first = Vec::new();
            apply(|line| first.push(line.to_owned())).expect("first setup");
            let mut second = Vec::new();
            apply(|line| second.push(line.to_owned())).expect("second setup");
            (first, second)
        })
        .join()
        .expect("namespace thread")
    }

    #[test]
    fn setup_turns_fast_open_on_and_requires_cookies() {
        assert_eq!(wanted_tcp_fastopen(1), 3);
        assert_eq!(wanted_tcp_fastopen(3), 3);
        assert_eq!(wanted_tcp_fastopen(0x201), 3);
        assert_eq!(wanted_tcp_fastopen(0x407), 0x407);
    }

    #[test]
    #[ignore = "needs root and netns"]
    fn setup_sets_limits_over_netlink_and_a_second_run_changes_nothing() {
        let (first, second) = apply_in_new_netns();
        assert_eq!(first.len(), 3, "{first:?}");
        assert!(first[2].starts_with("mptcp limits: subflows"), "{first:?}");
        assert!(
            !first[2].contains("via `ip`"),
            "netlink, not the fallback: {first:?}"
        );
        assert!(second.iter().all(|l| l.contains("unchanged")), "{second:?}");
    }
}
