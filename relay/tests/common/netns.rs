//! Throw-away network namespaces for the root-only tests, on [`mpbond_testkit::Netns`].
//!
//! [`in_new_netns`] makes a uniquely named namespace (deleted when it returns, also on a
//! panic), brings `lo` up, sets `net.ipv4.tcp_fastopen`, and runs a closure on a thread
//! inside it: the sockets it makes and the processes it starts live there, and the root
//! namespace is never touched. Without root it fails the test with a clear message.

use mpbond_testkit::Netns;

/// Run `f` on a thread in a new network namespace with `lo` up and
/// `net.ipv4.tcp_fastopen` set to `tcp_fastopen`, then delete the namespace. A panic in
/// `f` is passed on.
pub fn in_new_netns<T: Send>(tcp_fastopen: u32, f: impl FnOnce() -> T + Send) -> T {
    let ns = Netns::with_lo("relay");
    ns.sysctl("net/ipv4/tcp_fastopen", &tcp_fastopen.to_string());
    ns.run(f)
}

/// Run `ip ARGS` in this thread's network namespace.
pub fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// Load an nft ruleset (`nft -f -`) in this thread's network namespace.
pub fn nft(ruleset: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .expect("nft stdin")
        .write_all(ruleset.as_bytes())
        .expect("write ruleset");
    let status = child.wait().expect("wait for nft");
    assert!(status.success(), "nft -f failed for:\n{ruleset}");
}
