//! Bypass by domain name, the resolver side: the agent writes dnsmasq's `nftset=` lines
//! for `[bypass] domains` (`snippet.rs`, pure) to `bypass.dnsmasq_conf`, runs
//! `bypass.dnsmasq_restart` when the file changed, and removes the file (and restarts
//! dnsmasq again) at stop. dnsmasq then adds every address it resolves for those names to
//! the sets of the companion nft table (`nft/name_sets.rs`), whose rules let them leave by
//! NAT like the prefix bypass list.
//!
//! The status shows the domains, whether the integration is active (and why not) and how
//! many addresses each set holds ([`NameBypassStatus`]).

pub mod snippet;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::config::bypass_names::NameBypass;
use snippet::{dnsmasq_snippet, integration, Integration};

/// Bypass by name in the status document (absent without domains).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameBypassStatus {
    pub domains: Vec<String>,
    /// `dnsmasq` when the agent writes dnsmasq's config, else `none`.
    pub resolver: String,
    /// True when a resolver fills the sets as far as the agent can tell.
    pub resolver_active: bool,
    /// Why the integration is not active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver_problem: Option<String>,
    /// The dnsmasq config file the agent wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnsmasq_conf: Option<PathBuf>,
    /// Addresses in the IPv4 and IPv6 sets now (absent when they cannot be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_addresses: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_addresses: Option<u64>,
}

/// The dnsmasq file the agent owns, if it wrote one, and how to make dnsmasq re-read it.
#[derive(Debug, Default)]
pub struct ResolverFile {
    written: Option<(PathBuf, Vec<String>)>,
}

impl ResolverFile {
    /// Bring the file in line with `names` (for the owner table `table`): write it when
    /// its contents differ, remove one the config no longer names, restart dnsmasq after
    /// either. Returns the status (without the set counts); `None` without domains.
    pub fn sync(&mut self, names: &NameBypass, table: &str) -> Option<NameBypassStatus> {
        let version = dnsmasq_version();
        let integ = integration(names, version.as_deref());
        let want = match &integ {
            Integration::Dnsmasq => names.dnsmasq_conf.clone(),
            _ => None,
        };
        if let Some((old, restart)) = self.written.take() {
            if want.as_ref() != Some(&old) {
                remove_file(&old);
                restart_dnsmasq(&restart, false);
            } else {
                self.written = Some((old, restart));
            }
        }
        let mut status = NameBypassStatus {
            domains: names.domains.clone(),
            resolver: "none".to_owned(),
            ..NameBypassStatus::default()
        };
        match integ {
            Integration::Off => return None,
            Integration::Inactive(why) => {
                warn!(domains = names.domains.len(), "bypass by name: {why}");
                status.resolver_problem = Some(why);
            }
            Integration::Dnsmasq => {
                status.resolver = "dnsmasq".to_owned();
                status.dnsmasq_conf = want.clone();
            }
        }
        let Some(path) = want else {
            return Some(status);
        };
        let text = dnsmasq_snippet(&names.domains, table);
        let unchanged = std::fs::read_to_string(&path).is_ok_and(|t| t == text);
        self.written = Some((path.clone(), names.dnsmasq_restart.clone()));
        if unchanged {
            status.resolver_active = true;
            return Some(status);
        }
        match write_file(&path, &text) {
            Ok(()) => {
                info!(file = %path.display(), domains = names.domains.len(), "bypass by name: dnsmasq config written");
                restart_dnsmasq(&names.dnsmasq_restart, false);
                status.resolver_active = true;
            }
            Err(err) => {
                error!(%err, file = %path.display(), "bypass by name: cannot write dnsmasq's config");
                status.resolver_problem = Some(format!("cannot write {}: {err}", path.display()));
            }
        }
        Some(status)
    }

    /// Remove the file and restart dnsmasq, waiting for it (the agent is stopping).
    pub fn remove(&mut self) {
        if let Some((path, restart)) = self.written.take() {
            remove_file(&path);
            restart_dnsmasq(&restart, true);
        }
    }
}

/// The status table's line, e.g. `bypass by name: 2 domains, resolver dnsmasq (active),
/// sets hold 5 IPv4 and 1 IPv6 addresses`.
pub fn status_line(b: &NameBypassStatus) -> String {
    let state = match (&b.resolver_problem, b.resolver_active) {
        (_, true) => "active".to_owned(),
        (Some(why), false) => format!("NOT ACTIVE: {why}"),
        (None, false) => "NOT ACTIVE".to_owned(),
    };
    let count = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
    format!(
        "bypass by name: {} domains ({}), resolver {} ({state}), sets hold {} IPv4 and {} IPv6 \
         addresses\n",
        b.domains.len(),
        b.domains.join(", "),
        b.resolver,
        count(b.ipv4_addresses),
        count(b.ipv6_addresses)
    )
}

/// Fill in how many addresses the name sets of `table`'s companion hold (a netlink
/// dump, so the control socket does it outside the status lock). Left absent when they
/// cannot be read.
pub fn count_sets(doc: &mut crate::status::StatusDoc, table: Option<&str>) {
    let (Some(names), Some(table)) = (doc.bypass_names.as_mut(), table) else {
        return;
    };
    match crate::nft::count_name_sets(table) {
        Ok((v4, v6)) => {
            names.ipv4_addresses = Some(v4);
            names.ipv6_addresses = Some(v6);
        }
        Err(err) => tracing::debug!(%err, "cannot count the name sets"),
    }
}

/// `dnsmasq --version`'s output, or `None` when no dnsmasq runs from `PATH`.
fn dnsmasq_version() -> Option<String> {
    let out = Command::new("dnsmasq").arg("--version").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Write through a temporary file and a rename, so dnsmasq never reads half a file.
fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp-mpbond");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn remove_file(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => info!(file = %path.display(), "bypass by name: dnsmasq config removed"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => warn!(%err, file = %path.display(), "cannot remove dnsmasq's config"),
    }
}

/// Run `command` (nothing if empty): in a thread of its own, or here with `wait`.
fn restart_dnsmasq(command: &[String], wait: bool) {
    let Some((program, args)) = command.split_first() else {
        return;
    };
    let (program, args) = (program.clone(), args.to_vec());
    let run = move || match Command::new(&program).args(&args).output() {
        Ok(out) if out.status.success() => info!(command = %program, "dnsmasq restarted"),
        Ok(out) => warn!(
            command = %program,
            status = %out.status,
            stderr = %String::from_utf8_lossy(&out.stderr).trim(),
            "restarting dnsmasq failed"
        ),
        Err(err) => warn!(%err, command = %program, "cannot run the dnsmasq restart command"),
    };
    if wait {
        run();
    } else {
        std::thread::spawn(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path, domains: &[&str]) -> NameBypass {
        NameBypass {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            dnsmasq_conf: Some(dir.join("conf.d").join("mpbond-bypass.conf")),
            dnsmasq_restart: Vec::new(),
        }
    }

    #[test]
    fn the_status_line_says_when_nothing_fills_the_sets() {
        let mut b = NameBypassStatus {
            domains: vec!["a.test".into()],
            resolver: "dnsmasq".into(),
            resolver_active: true,
            ipv4_addresses: Some(2),
            ipv6_addresses: Some(0),
            ..NameBypassStatus::default()
        };
        assert_eq!(
            status_line(&b),
            "bypass by name: 1 domains (a.test), resolver dnsmasq (active), sets hold 2 IPv4 \
             and 0 IPv6 addresses\n"
        );
        b.resolver_active = false;
        b.resolver_problem = Some("no dnsmasq".into());
        assert!(status_line(&b).contains("(NOT ACTIVE: no dnsmasq)"));
    }

    /// Needs Debian's dnsmasq (built with nftset), which the namespace bed installs.
    #[test]
    #[ignore = "needs dnsmasq with nftset"]
    fn the_file_follows_the_domains_and_goes_at_stop() {
        let dir = std::env::temp_dir().join(format!("mpbond-names-{}", std::process::id()));
        let mut file = ResolverFile::default();
        let status = file
            .sync(&names(&dir, &["a.test"]), "mpbond")
            .expect("domains");
        assert!(status.resolver_active, "{status:?}");
        let path = dir.join("conf.d").join("mpbond-bypass.conf");
        let text = std::fs::read_to_string(&path).expect("written");
        assert!(text.contains("nftset=/a.test/"), "{text}");
        file.sync(&names(&dir, &["a.test", "b.test"]), "mpbond");
        let text = std::fs::read_to_string(&path).expect("rewritten");
        assert!(text.contains("nftset=/b.test/"), "{text}");
        assert_eq!(file.sync(&names(&dir, &[]), "mpbond"), None);
        assert!(!path.exists(), "no domains: no file");
        file.sync(&names(&dir, &["a.test"]), "mpbond");
        file.remove();
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
