//! curl as a device that speaks MPTCP itself: `curl --socks5-hostname` under
//! `mptcpize run` (which makes curl's TCP sockets MPTCP), inside a namespace.
//!
//! The concentrator's SOCKS5 tests and bench case 20 fetch through the concentrator's
//! SOCKS5 listener this way. curl writes the body to its stdout, which comes back as
//! [`CurlRun::body`]. Needs `ip`, `curl` and `mptcpize` (Debian package `mptcpize`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::Netns;

/// curl's exit code for a failed proxy handshake (CURLE_PROXY, curl 7.73 and later).
pub const CURLE_PROXY: i32 = 97;

/// The SOCKS5 proxy curl goes through, with the RFC 1929 user and password it gives.
#[derive(Debug, Clone, Copy)]
pub struct Socks5<'a> {
    /// The proxy's address (an IPv6 one is written in brackets for curl).
    pub at: SocketAddr,
    /// The user name.
    pub user: &'a str,
    /// The password.
    pub password: &'a str,
}

/// What one curl run gave.
#[derive(Debug)]
pub struct CurlRun {
    /// curl's exit code (-1 if a signal ended it).
    pub code: i32,
    /// What curl said on stderr (`-sS`: errors only).
    pub stderr: String,
    /// The body it received.
    pub body: Vec<u8>,
}

/// Fetch `url` in `ns` with curl under `mptcpize run`, through `proxy` with
/// `--socks5-hostname` (the proxy resolves the name), for at most `max_time` (curl's
/// `--max-time`, whole seconds, at least one). Err only if curl could not be run; a
/// failed fetch is a [`CurlRun`] with a non-zero `code`.
pub fn fetch_through_socks5(
    ns: &Netns,
    proxy: Socks5<'_>,
    url: &str,
    max_time: Duration,
) -> io::Result<CurlRun> {
    let out = ns
        .command("mptcpize")
        .args(["run", "curl", "-sS", "--max-time"])
        .arg(max_time.as_secs().max(1).to_string())
        .arg("--socks5-hostname")
        .arg(format!("{}:{}@{}", proxy.user, proxy.password, proxy.at))
        .arg(url)
        .output()?;
    Ok(CurlRun {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        body: out.stdout,
    })
}
