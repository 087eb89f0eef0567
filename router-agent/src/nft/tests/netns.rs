//! Throw-away network namespaces for the kernel tests. Each [`NetNs`] is named
//! `mpbhe-<pid>-<n>` (the prefix can be set with `$MPBOND_TEST_NETNS_PREFIX`) and deleted
//! on drop, also when the test fails. Nothing here touches the root namespace: commands
//! run through `ip netns exec`, and code runs in a scoped thread that has `setns()`-ed
//! into the namespace (sockets opened there stay there).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// True when the kernel tests can run (root, `ip` and `nft` present); says why not.
pub(super) fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: nft kernel tests need root");
        return false;
    }
    for tool in ["ip", "nft"] {
        if Command::new(tool).arg("-V").output().is_err() {
            eprintln!("skipping: `{tool}` not found");
            return false;
        }
    }
    true
}

/// A network namespace that exists until this value is dropped.
#[derive(Debug)]
pub(super) struct NetNs {
    name: String,
}

impl NetNs {
    pub(super) fn new() -> NetNs {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // A runner may set its own prefix so that concurrent runs never share names.
        let prefix = std::env::var("MPBOND_TEST_NETNS_PREFIX").unwrap_or_else(|_| "mpbhe".into());
        let name = format!("{prefix}-{}-{n}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        NetNs { name }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Run `f` in a thread inside the namespace and return its result (panics propagate).
    pub(super) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                enter(&self.name).expect("setns into the test namespace");
                f()
            });
            match handle.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// `ip netns exec <ns> <args>`, which must succeed; returns its stdout.
    pub(super) fn ok(&self, args: &[&str]) -> String {
        run_ok(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(args),
        )
    }

    /// `nft list tables` in the namespace.
    pub(super) fn tables(&self) -> String {
        self.ok(&["nft", "list", "tables"])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Move the calling thread into the named namespace.
pub(super) fn enter(name: &str) -> io::Result<()> {
    let file = File::open(format!("/run/netns/{name}"))?;
    // SAFETY: `file` is an open namespace descriptor; setns only affects this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn command");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub(super) fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ruleset text with comments, indentation and blank lines removed, for comparing
/// `nft list` output with [`render`](crate::nft::render).
pub(super) fn normalize(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}
