//! Throw-away network namespaces for the kernel tests, on [`mpbond_testkit::Netns`]: each
//! [`NetNs`] is uniquely named and deleted on drop, also when the test fails. Nothing here
//! touches the root namespace: commands run through `ip netns exec`, and code runs in a
//! scoped thread that has `setns()`-ed into the namespace (sockets opened there stay
//! there). The kernel tests are `#[ignore = "needs root, ip and nft"]` and call
//! [`require_root_and_nft`] first, so without them they fail rather than skip.

use std::time::Duration;

use mpbond_testkit::{require_root, require_tools, Netns, NetnsError};

/// Fail the calling test unless it runs as root with `ip` and `nft` on `PATH`.
pub(super) fn require_root_and_nft() {
    require_root("nft kernel tests in network namespaces");
    require_tools(&["ip", "nft"]);
}

/// A network namespace that exists until this value is dropped.
#[derive(Debug)]
pub(super) struct NetNs(Netns);

impl NetNs {
    pub(super) fn new() -> NetNs {
        NetNs(Netns::new("nft"))
    }

    pub(super) fn name(&self) -> &str {
        self.0.name()
    }

    /// Run `f` in a thread inside the namespace and return its result (panics propagate).
    pub(super) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.0.run(f)
    }

    /// `ip netns exec <ns> <args>`, which must succeed; returns its stdout.
    pub(super) fn ok(&self, args: &[&str]) -> String {
        self.0.exec(args)
    }

    /// `nft list tables` in the namespace.
    pub(super) fn tables(&self) -> String {
        self.ok(&["nft", "list", "tables"])
    }
}

/// Move the calling thread into the named namespace.
pub(super) fn enter(name: &str) -> Result<(), NetnsError> {
    mpbond_testkit::netns::enter(name)
}

/// Poll `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub(super) fn wait_until(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    mpbond_testkit::wait_until(limit, Duration::from_millis(20), cond)
}

/// The ruleset text with comments, indentation and blank lines removed, for comparing
/// `nft list` output with [`render`](crate::nft::render).
pub(super) fn normalize(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}
