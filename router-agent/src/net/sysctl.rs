//! The sysctls the agent sets: loose reverse-path filtering per WAN, and the CPE's MPTCP
//! knobs.
//!
//! * [`set_rp_filter_loose`]: `net.ipv4.conf.DEV.rp_filter = 2`. Strict mode (1) drops
//!   the replies of subflows that leave by one WAN and come back by another route.
//! * [`apply_cpe`]: `net.mptcp.enabled = 1`, and when configured `blackhole_timeout`,
//!   `syn_retrans_before_tcp_fallback` and `stale_loss_cnt`. The last two exist only on
//!   newer kernels: a missing file is reported in the [`CpeReport`], never fatal.
//!
//! `/proc/sys/net` shows the network namespace of the calling thread. Every function has
//! an `_at` twin that takes the sysctl root, for tests.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use tracing::info;

use crate::config::MptcpConfig;

use super::kernel_err;
use super::types::NetError;

/// Where sysctls live.
pub const PROC_SYS: &str = "/proc/sys";

/// `rp_filter` loose mode.
pub const RP_FILTER_LOOSE: u32 = 2;

/// Set `net.ipv4.conf.DEV.rp_filter` to loose (2), and log it.
pub fn set_rp_filter_loose(dev: &str) -> Result<(), NetError> {
    set_rp_filter_loose_at(Path::new(PROC_SYS), dev)
}

/// [`set_rp_filter_loose`] under `root` instead of `/proc/sys`.
pub fn set_rp_filter_loose_at(root: &Path, dev: &str) -> Result<(), NetError> {
    if dev.is_empty() || dev.contains('/') || dev == "." || dev == ".." {
        return Err(NetError::Other(format!("bad device name {dev:?}")));
    }
    let path = root.join(format!("net/ipv4/conf/{dev}/rp_filter"));
    let old = read(&path).ok();
    write(&path, RP_FILTER_LOOSE)
        .map_err(|e| kernel_err(&format!("setting {}", path.display()), e))?;
    info!(
        device = dev,
        old = old.as_deref().unwrap_or("?"),
        "rp_filter set to 2 (loose) so replies may come back over any WAN"
    );
    Ok(())
}

/// What happened to one sysctl.
#[derive(Debug)]
pub enum Outcome {
    /// Written (the previous value, if it could be read).
    Set { old: Option<String> },
    /// The file does not exist: this kernel lacks the knob.
    Missing,
    /// It exists but could not be written.
    Failed(io::Error),
}

/// One line of the report.
#[derive(Debug)]
pub struct SysctlResult {
    /// Dotted name, e.g. `net.mptcp.enabled`.
    pub key: String,
    pub value: u32,
    pub outcome: Outcome,
}

impl fmt::Display for SysctlResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (key, value) = (&self.key, self.value);
        match &self.outcome {
            Outcome::Set { old: Some(old) } => write!(f, "{key} = {value} (was {old})"),
            Outcome::Set { old: None } => write!(f, "{key} = {value}"),
            Outcome::Missing => write!(f, "{key}: not in this kernel, left alone"),
            Outcome::Failed(e) => write!(f, "{key} = {value} failed: {e}"),
        }
    }
}

/// Every CPE sysctl the agent tried, in order.
#[derive(Debug, Default)]
pub struct CpeReport {
    pub results: Vec<SysctlResult>,
}

impl CpeReport {
    /// Did every knob that exists get its value?
    pub fn all_set(&self) -> bool {
        self.results
            .iter()
            .all(|r| !matches!(r.outcome, Outcome::Failed(_)))
    }

    /// The keys this kernel does not have.
    pub fn missing(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Missing))
            .map(|r| r.key.as_str())
            .collect()
    }
}

/// Set the CPE's MPTCP sysctls from the config, logging each one.
pub fn apply_cpe(cfg: &MptcpConfig) -> CpeReport {
    apply_cpe_at(Path::new(PROC_SYS), cfg)
}

/// [`apply_cpe`] under `root` instead of `/proc/sys`.
pub fn apply_cpe_at(root: &Path, cfg: &MptcpConfig) -> CpeReport {
    let wanted = [
        ("enabled", Some(1)),
        ("blackhole_timeout", cfg.blackhole_timeout),
        (
            "syn_retrans_before_tcp_fallback",
            cfg.syn_retrans_before_tcp_fallback,
        ),
        ("stale_loss_cnt", cfg.stale_loss_cnt),
    ];
    let mut report = CpeReport::default();
    for (name, value) in wanted {
        let Some(value) = value else { continue };
        let path: PathBuf = root.join("net/mptcp").join(name);
        let outcome = if !path.exists() {
            Outcome::Missing
        } else {
            let old = read(&path).ok();
            match write(&path, value) {
                Ok(()) => Outcome::Set { old },
                Err(e) => Outcome::Failed(e),
            }
        };
        let result = SysctlResult {
            key: format!("net.mptcp.{name}"),
            value,
            outcome,
        };
        info!("sysctl {result}");
        report.results.push(result);
    }
    report
}

fn read(path: &Path) -> io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

fn write(path: &Path, value: u32) -> io::Result<()> {
    // Not `fs::write`: that would create the file, and a sysctl that does not exist must
    // stay missing.
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(format!("{value}\n").as_bytes())
}

#[cfg(test)]
#[path = "sysctl_tests.rs"]
mod tests;

/// The autotuning maxima, the third field of `net.ipv4.tcp_rmem` and `tcp_wmem`: what
/// the kernel lets a socket's buffers grow to on their own (read, never written).
pub fn buffer_limits() -> crate::core::KernelBufferLimits {
    buffer_limits_at(Path::new(PROC_SYS))
}

/// [`buffer_limits`] under `root` instead of `/proc/sys`.
pub fn buffer_limits_at(root: &Path) -> crate::core::KernelBufferLimits {
    let max = |name: &str| {
        let text = read(&root.join("net/ipv4").join(name)).ok()?;
        text.split_whitespace().nth(2)?.parse::<u32>().ok()
    };
    crate::core::KernelBufferLimits {
        rmem_max: max("tcp_rmem"),
        wmem_max: max("tcp_wmem"),
    }
}
