//! Network-namespace helpers for the `net_*` and `ubus_netns` tests (root only: each test
//! is `#[ignore = "needs root and netns"]` and fails without root), on
//! [`mpbond_testkit::Netns`].
//!
//! [`Netns::new`] creates a uniquely named namespace with `lo` up and deletes it on drop,
//! even when the test panics. [`Netns::run`] runs an async body on a thread of its own
//! that first enters the namespace with `setns(2)`, then builds a current-thread tokio
//! runtime, so every netlink socket and task of the body lives in the namespace. Nothing
//! here touches the root namespace: links are created with `ip -n NS`.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use mpbond_testkit::block_on_bounded;

/// A namespace deleted on drop.
#[derive(Debug)]
pub struct Netns {
    inner: mpbond_testkit::Netns,
    pub name: String,
}

impl Netns {
    /// A fresh namespace with `lo` up; fails the test when not root.
    pub fn new() -> Netns {
        let inner = mpbond_testkit::Netns::with_lo("agent");
        let name = inner.name().to_owned();
        Netns { inner, name }
    }

    /// `ip -n NS ARGS…`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        self.inner.ip(args);
    }

    /// A veth pair `a`–`b` inside the namespace (no dummy module needed), both up.
    pub fn veth(&self, a: &str, b: &str) {
        self.inner.veth(a, &self.inner, b);
    }

    /// A veth pair from `a` here to `b` in `peer`, created straight into both namespaces
    /// (never in the root one), both up.
    pub fn veth_to(&self, a: &str, peer: &Netns, b: &str) {
        self.inner.veth(a, &peer.inner, b);
    }

    /// `ip -n NS ARGS…` and its stdout.
    pub fn ip_out(&self, args: &[&str]) -> String {
        self.inner.ip(args)
    }

    /// Run `body` inside the namespace on its own thread and runtime, bounded by `limit`.
    pub fn run<T, F, Fut>(&self, limit: Duration, body: F) -> T
    where
        T: Send,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = T>,
    {
        self.inner.run(move || block_on_bounded(limit, body()))
    }

    /// Run a blocking `body` on a thread inside the namespace (e.g. a server).
    pub fn spawn<T, F>(&self, body: F) -> std::thread::JoinHandle<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.inner.spawn(body)
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
