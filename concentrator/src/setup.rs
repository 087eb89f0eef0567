//! `mpbond-concentrator setup`: apply the server's kernel settings and report each change.
//!
//! * `net.mptcp.enabled = 1` and the TFO server bit (0x2) OR-ed into `net.ipv4.tcp_fastopen`
//!   with bit 0x200 (take SYN data without a cookie) cleared, written through `/proc/sys`
//!   (both are per network namespace);
//! * the Fast Open cookie key restored from the state directory, or made and saved there
//!   ([`crate::fastopen_key`]), so routers' cookies stay valid across reboots;
//! * MPTCP limits `subflows 8, add_addr_accepted 8` through the `mptcp_pm` generic netlink
//!   family (`mpbond_netlink::PmClient`, the agent's client too), or
//!   `ip mptcp limits set ...` if netlink fails.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use mpbond_netlink::mptcp::Limits;
use mpbond_netlink::PmClient;
use mpbond_relay::sys::tcp_fastopen;

use crate::fastopen_key::{self, Kept, TCP_FASTOPEN_KEY_SYSCTL};
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
/// (so a later failure does not hide what already changed). `state_dir` keeps the Fast
/// Open key; without one the kernel's key (new at each boot) stays, and a key that
/// cannot be kept is reported, not fatal.
pub fn apply(state_dir: Option<&Path>, mut report: impl FnMut(&str)) -> Result<(), SetupError> {
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
    report(&keep_fastopen_key(state_dir));
    report(&set_limits()?);
    Ok(())
}

/// Restore or make the Fast Open key, and say what happened.
fn keep_fastopen_key(state_dir: Option<&Path>) -> String {
    let Some(dir) = state_dir else {
        return "net.ipv4.tcp_fastopen_key: not kept (no state directory); routers' Fast Open cookies go stale at each reboot".into();
    };
    match fastopen_key::keep(dir, Path::new(TCP_FASTOPEN_KEY_SYSCTL)) {
        Ok(Kept::Restored(path)) => {
            format!("net.ipv4.tcp_fastopen_key: restored from {}", path.display())
        }
        Ok(Kept::Created(path)) => {
            format!("net.ipv4.tcp_fastopen_key: new key, saved to {}", path.display())
        }
        Err(e) => format!(
            "net.ipv4.tcp_fastopen_key: not kept ({e}); routers' Fast Open cookies go stale at each reboot"
        ),
    }
}

/// The state directory `setup` keeps the Fast Open key in: systemd's
/// `$STATE_DIRECTORY` (its first entry), else [`DEFAULT_STATE_DIR`] if it exists.
pub fn state_dir(env: Option<String>) -> Option<PathBuf> {
    if let Some(first) = env.as_deref().and_then(|v| v.split(':').next()) {
        if !first.is_empty() {
            return Some(PathBuf::from(first));
        }
    }
    let default = Path::new(DEFAULT_STATE_DIR);
    default.is_dir().then(|| default.to_owned())
}

/// The package's state directory (the unit's `StateDirectory=mpbond`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/mpbond";

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
    /// the MPTCP limits are the namespace's own) with a fresh state directory, collecting
    /// its lines and the key the kernel holds after each run.
    fn apply_in_new_netns() -> (Vec<String>, Vec<String>, [String; 2]) {
        std::thread::spawn(|| {
            // SAFETY: unshare affects only this thread, which nothing else uses.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare needs root: {}", io::Error::last_os_error());
            let mut n = [0u8; 8];
            getrandom::fill(&mut n).expect("random");
            let dir =
                std::env::temp_dir().join(format!("mpbond-setup-{:016x}", u64::from_ne_bytes(n)));
            std::fs::create_dir_all(&dir).expect("state dir");
            let key = || std::fs::read_to_string(TCP_FASTOPEN_KEY_SYSCTL).expect("key");
            let mut first = Vec::new();
            apply(Some(&dir), |line| first.push(line.to_owned())).expect("first setup");
            let first_key = key();
            let mut second = Vec::new();
            apply(Some(&dir), |line| second.push(line.to_owned())).expect("second setup");
            let keys = [first_key, key()];
            std::fs::remove_dir_all(&dir).expect("remove state dir");
            (first, second, keys)
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
        let (first, second, keys) = apply_in_new_netns();
        assert_eq!(first.len(), 4, "{first:?}");
        assert!(first[2].contains("new key, saved to"), "{first:?}");
        assert!(first[3].starts_with("mptcp limits: subflows"), "{first:?}");
        assert!(
            !first[3].contains("via `ip`"),
            "netlink, not the fallback: {first:?}"
        );
        assert!(second[2].contains("restored from"), "{second:?}");
        for i in [0, 1, 3] {
            assert!(second[i].contains("unchanged"), "{second:?}");
        }
        assert_eq!(keys[0], keys[1], "the same key after the second run");
        assert!(fastopen_key::parse(&keys[0]).is_some(), "{keys:?}");
    }
}
