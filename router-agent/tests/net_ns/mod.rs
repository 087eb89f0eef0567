//! Network-namespace helpers for the `net_*` tests (root only).
//!
//! [`Netns::new`] creates `mpbhh-<pid>-<n>` and deletes it on drop, even when the test
//! panics. [`Netns::run`] runs an async body on a thread of its own that first enters
//! the namespace with `setns(2)`, then builds a current-thread tokio runtime, so every
//! netlink socket and task of the body lives in the namespace. Nothing here touches the
//! root namespace: links are created with `ip -n NS`.

#![allow(dead_code)]

use std::fs::File;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A namespace deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Create a fresh namespace, or `None` (with a note on stderr) when not root.
    pub fn new() -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root for network namespaces");
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("mpbhh-{}-{n}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("skipped: `ip netns add {name}` failed");
            return None;
        }
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        Some(ns)
    }

    /// `ip -n NS ARGS…`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip -n {} {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A veth pair `a`–`b` inside the namespace (no dummy module needed), both up.
    pub fn veth(&self, a: &str, b: &str) {
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        self.ip(&["link", "set", a, "up"]);
        self.ip(&["link", "set", b, "up"]);
    }

    /// A veth pair from `a` here to `b` in `peer`, created straight into both namespaces
    /// (never in the root one), both up.
    pub fn veth_to(&self, a: &str, peer: &Netns, b: &str) {
        let out = Command::new("ip")
            .args(["link", "add", a, "netns", &self.name, "type", "veth"])
            .args(["peer", "name", b, "netns", &peer.name])
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.ip(&["link", "set", a, "up"]);
        peer.ip(&["link", "set", b, "up"]);
    }

    /// `ip -n NS ARGS…` and its stdout.
    pub fn ip_out(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("run ip");
        assert!(out.status.success(), "ip {}", args.join(" "));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run `body` inside the namespace on its own thread and runtime, bounded by `limit`.
    pub fn run<T, F, Fut>(&self, limit: Duration, body: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        let path = format!("/var/run/netns/{}", self.name);
        let thread = std::thread::spawn(move || {
            enter(&path);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                tokio::time::timeout(limit, body())
                    .await
                    .expect("test body timed out")
            })
        });
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Run a blocking `body` on a thread inside the namespace (e.g. a server).
    pub fn spawn<T, F>(&self, body: F) -> std::thread::JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter(&path);
            body()
        })
    }
}

/// Move the calling thread into the namespace at `path`.
pub fn enter(path: &str) {
    let file = File::open(path).expect("open the netns file");
    // SAFETY: setns on a valid namespace fd; it affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The interface index of `dev` in the calling thread's namespace.
pub fn ifindex(dev: &str) -> u32 {
    let name = std::ffi::CString::new(dev).expect("no NUL");
    // SAFETY: `name` is a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "no interface {dev}");
    index
}

/// The ownership every test uses (the defaults).
pub fn ownership() -> mpbond_agent::model::netops::Ownership {
    mpbond_agent::model::netops::Ownership::default()
}
