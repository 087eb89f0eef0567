//! [`Netns`]: a network namespace owned by this test process, deleted on drop.
//!
//! Names are `mpbt-<pid>-<counter>-<role>`, so tests running at the same time (in one
//! process or in several) never collide. Dropping a [`Netns`] kills every process still
//! inside it and deletes it; drop also runs while a test panics. [`sweep_stale`] removes
//! the namespaces of a test process that died without unwinding (SIGKILL), and
//! [`cleanup_registered`] removes every live one of this process (for a Ctrl-C handler).
//!
//! Code runs inside with [`Netns::run`] (a scoped thread that `setns(2)`s first, so its
//! sockets, netlink sockets and `/proc/sys/net` writes stay in the namespace) or
//! [`Netns::spawn`]; programs run inside with [`Netns::command`] / [`Netns::exec`], and
//! links are set up with `ip -n` ([`Netns::ip`]). Nothing here touches the root namespace.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::require::require_root;

/// Prefix of every namespace the tests create.
pub const PREFIX: &str = "mpbt-";

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static REGISTRY: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Why a namespace could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command could not be started.
    #[error("cannot run {cmd}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A command ran and failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The namespace file could not be opened or entered.
    #[error("cannot enter netns {name}")]
    Enter {
        /// The namespace.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A network namespace, deleted (with everything running in it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create `mpbt-<pid>-<counter>-<role>`; panics (after the root check, with a message
    /// that says so) when that is not possible.
    #[track_caller]
    pub fn new(role: &str) -> Netns {
        Self::try_new(role).unwrap_or_else(|e| panic!("cannot create a test netns: {e}"))
    }

    /// Like [`Netns::new`], with `lo` up.
    #[track_caller]
    pub fn with_lo(role: &str) -> Netns {
        let ns = Self::new(role);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Create `mpbt-<pid>-<counter>-<role>`. Fails the test at once if not root.
    #[track_caller]
    pub fn try_new(role: &str) -> Result<Netns, NetnsError> {
        require_root("network namespaces");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        registry().insert(name.clone());
        Ok(Netns { name })
    }

    /// The namespace's name, for `ip netns exec` and `ip -n`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, the file `setns(2)` opens.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Run `args` inside the namespace; panics unless it succeeds. Returns its stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let (program, rest) = args.split_first().expect("a program to run");
        let out = run(self.command(program).args(rest)).unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run `args` inside the namespace with `input` on stdin; panics unless it succeeds.
    pub fn exec_with_input(&self, args: &[&str], input: &str) {
        let (program, rest) = args.split_first().expect("a program to run");
        let mut cmd = self.command(program);
        cmd.args(rest);
        run_with_input(&mut cmd, input).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `ip -n <name> ARGS`; panics unless it succeeds. Returns its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = run(Command::new("ip").args(["-n", &self.name]).args(args))
            .unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Load an nft ruleset (`nft -f -`) inside the namespace; panics unless it succeeds.
    pub fn nft(&self, ruleset: &str) {
        self.exec_with_input(&["nft", "-f", "-"], ruleset);
    }

    /// A veth pair `a` here and `b` in `peer` (which may be `self`), created straight into
    /// both namespaces (never in the root one), both up.
    pub fn veth(&self, a: &str, peer: &Netns, b: &str) {
        let mut cmd = Command::new("ip");
        cmd.args(["link", "add", a, "netns", &self.name, "type", "veth"])
            .args(["peer", "name", b, "netns", &peer.name]);
        run(&mut cmd).unwrap_or_else(|e| panic!("{e}"));
        self.ip(&["link", "set", a, "up"]);
        peer.ip(&["link", "set", b, "up"]);
    }

    /// Write `value` to `/proc/sys/<key>` (slashes) inside the namespace, for the
    /// per-namespace sysctls such as `net/ipv4/tcp_fastopen`.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{key}");
        self.run(|| std::fs::write(&path, value))
            .unwrap_or_else(|e| panic!("write {path} in {}: {e}", self.name));
    }

    /// Run `f` on a thread inside the namespace and return its result; a panic in `f` is
    /// passed on. Sockets `f` opens stay in the namespace after it returns.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                self.enter().unwrap_or_else(|e| panic!("{e}"));
                f()
            });
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Start `f` on a thread of its own inside the namespace (a server, say).
    pub fn spawn<T, F>(&self, f: F) -> std::thread::JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let name = self.name.clone();
        std::thread::spawn(move || {
            enter(&name).unwrap_or_else(|e| panic!("{e}"));
            f()
        })
    }

    /// Move the calling thread into the namespace.
    pub fn enter(&self) -> Result<(), NetnsError> {
        enter(&self.name)
    }

    /// Pids of the processes inside the namespace.
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

/// Move the calling thread into the namespace `name` (under `/run/netns`).
pub fn enter(name: &str) -> Result<(), NetnsError> {
    let failed = |source| NetnsError::Enter {
        name: name.to_owned(),
        source,
    };
    let file = File::open(format!("/run/netns/{name}")).map_err(failed)?;
    // SAFETY: `file` is an open namespace descriptor; setns affects this thread only.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    Ok(())
}

fn registry() -> MutexGuard<'static, BTreeSet<String>> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Run `cmd` to completion; an error unless it exits with 0.
fn run(cmd: &mut Command) -> Result<Output, NetnsError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetnsError::Spawn {
            cmd: describe(cmd),
            source,
        })?;
    check(cmd, out)
}

fn run_with_input(cmd: &mut Command, input: &str) -> Result<Output, NetnsError> {
    use std::io::Write;
    let line = describe(cmd);
    let spawn_failed = |source| NetnsError::Spawn {
        cmd: line.clone(),
        source,
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_failed)?;
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(spawn_failed)?;
    if let Some(Err(source)) = written {
        return Err(spawn_failed(source));
    }
    check(cmd, out)
}

fn check(cmd: &Command, out: Output) -> Result<Output, NetnsError> {
    if out.status.success() {
        return Ok(out);
    }
    Err(NetnsError::Failed {
        cmd: describe(cmd),
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

fn pids_of(name: &str) -> Vec<libc::pid_t> {
    match run(Command::new("ip").args(["netns", "pids", name])) {
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
    for round in 1..=3 {
        let pids: Vec<_> = pids_of(name).into_iter().filter(|&p| p != me).collect();
        if pids.is_empty() {
            break;
        }
        for pid in &pids {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        // Our own children stay zombies until their guards reap them; others vanish.
        let deadline = Instant::now() + Duration::from_millis(500 * round);
        while pids.iter().any(|&p| alive_not_zombie(p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Err(e) = run(Command::new("ip").args(["netns", "del", name])) {
        eprintln!("mpbond-testkit: cannot delete netns {name}: {e}");
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
            eprintln!("mpbond-testkit: removing stale netns {name}");
            remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exists(name: &str) -> bool {
        std::path::Path::new(&format!("/run/netns/{name}")).exists()
    }

    #[test]
    #[ignore = "needs root and netns"]
    fn a_namespace_is_deleted_on_drop_and_on_panic() {
        let ns = Netns::with_lo("kit");
        let name = ns.name().to_owned();
        assert!(name.starts_with(PREFIX) && name.ends_with("-kit"), "{name}");
        assert!(exists(&name));
        assert!(ns.ip(&["link", "show", "lo"]).contains("UP"));
        drop(ns);
        assert!(!exists(&name));

        let panicked = std::panic::catch_unwind(|| {
            let ns = Netns::new("kitpanic");
            let name = ns.name().to_owned();
            ns.run(|| panic!("{name}"));
        });
        let message = panicked.expect_err("the panic is passed on");
        let name = message.downcast_ref::<String>().expect("the name");
        assert!(!exists(name), "{name} left behind");
    }

    #[test]
    #[ignore = "needs root and netns"]
    fn run_and_sysctl_act_inside_and_leave_the_root_namespace_alone() {
        let host = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fastopen").expect("read");
        let ns = Netns::new("kitsys");
        let other = if host.trim() == "3" { "1" } else { "3" };
        ns.sysctl("net/ipv4/tcp_fastopen", other);
        let inside = ns.run(|| std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fastopen"));
        assert_eq!(inside.expect("read inside").trim(), other);
        let after = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_fastopen").expect("read");
        assert_eq!(after, host);
        assert_eq!(
            ns.exec(&["cat", "/proc/sys/net/ipv4/tcp_fastopen"]).trim(),
            other
        );
        let peer = Netns::new("kitpeer");
        ns.veth("a0", &peer, "b0");
        assert!(peer.ip(&["link", "show", "b0"]).contains("b0"));
    }
}
