//! Network namespaces owned by this process, deleted on drop.
//!
//! Names are `mpbt-<pid>-<counter>-<role>`, so tests running at the same time
//! never collide. Dropping a [`Netns`] kills every process still inside it and
//! deletes it; this also runs while a test panics. Namespaces left behind by a
//! process that died (SIGKILL) are swept by [`sweep_stale`] when the next test
//! bed is built. [`cleanup_registered`] removes every live namespace of this
//! process, for a Ctrl-C handler.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::BedError;
use crate::proc;

/// Prefix of every namespace the test bed creates.
pub const PREFIX: &str = "mpbt-";

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static REGISTRY: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

const CMD_LIMIT: Duration = Duration::from_secs(20);

/// A network namespace, deleted (with everything running in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create `mpbt-<pid>-<counter>-<role>`.
    pub fn new(role: &str) -> Result<Self, BedError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "add", &name]);
        proc::run(cmd, None, CMD_LIMIT)?;
        registry().insert(name.clone());
        Ok(Self { name })
    }

    /// The namespace's name, for `ip netns exec` and `ip -n`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Pids of processes inside the namespace.
    pub fn pids(&self) -> Vec<libc::pid_t> {
        pids_of(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove(&self.name);
        registry().remove(&self.name);
    }
}

fn registry() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn pids_of(name: &str) -> Vec<libc::pid_t> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "pids", name]);
    match proc::run(cmd, None, CMD_LIMIT) {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Kill what runs in `name`, then delete it. Never panics.
fn remove(name: &str) {
    let me = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    for round in 0..3 {
        let pids: Vec<_> = pids_of(name).into_iter().filter(|&p| p != me).collect();
        if pids.is_empty() {
            break;
        }
        for pid in &pids {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        // Our own children stay zombies until their guards reap them; others vanish.
        proc::wait_until(Duration::from_millis(500 * (round + 1)), || {
            pids.iter().all(|&p| !alive_not_zombie(p))
        });
    }
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "del", name]);
    if let Err(e) = proc::run(cmd, None, CMD_LIMIT) {
        eprintln!("mpbond-tests: cannot delete netns {name}: {e}");
    }
}

fn alive_not_zombie(pid: libc::pid_t) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Delete every namespace this process still owns (for a signal handler thread).
pub fn cleanup_registered() {
    let names: Vec<String> = registry().iter().cloned().collect();
    for name in names.iter().rev() {
        remove(name);
        registry().remove(name);
    }
}

/// Delete `mpbt-<pid>-...` namespaces whose process no longer exists.
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("mpbond-tests: removing stale netns {name}");
            remove(&name);
        }
    }
}
