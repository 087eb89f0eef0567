//! SOCKS5 over MPTCP end to end (issue 12, part 2), with a client nobody here wrote:
//! curl `--socks5-hostname` under `mptcpize run` (`mpbond_testkit::curl`), in a namespace
//! with two paths to the concentrator's namespace, which reaches an HTTP server in a
//! third.
//!
//! * a download of a name the concentrator resolves is intact and crosses both paths
//!   (the concentrator's per-interface transmit counters);
//! * a wrong password is refused (RFC 1929 status 1: curl says the user was rejected);
//! * a forbidden destination and a name that resolves to a private address are refused
//!   with reply 0x02, "connection not allowed by ruleset";
//! * over IPv6 only (no IPv4 address on any link): curl reaches the listener at the
//!   concentrator's IPv6 address over MPTCP, and a name that resolves only to an IPv6
//!   server is fetched intact from the concentrator's IPv6 address.
//!
//! The concentrator runs as its own binary (`common::daemon`) under `ip netns exec`,
//! which mounts `/etc/netns/<ns>/hosts` over `/etc/hosts`: that is where the test's names
//! resolve. The file is removed when the test ends. Needs root, `ip`, `tc`, `curl` and
//! `mptcpize` (Debian package `mptcpize`; tests/setup.sh installs it): `#[ignore = "needs
//! root and netns"]`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use common::daemon::Daemon;
use mpbond_testkit::curl::{fetch_through_socks5, CurlRun, Socks5, CURLE_PROXY};
use mpbond_testkit::{require_tools, Netns, TempDir, Xorshift};

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const PASSWORD: &str = "socks-test-password";
/// The concentrator's addresses on the two paths, the client's, and the server's.
const VPS_A: &str = "10.71.1.1";
const CLI_A: &str = "10.71.1.2";
const VPS_B: &str = "10.71.2.1";
const CLI_B: &str = "10.71.2.2";
const VPS_D: &str = "10.71.9.1";
const SERVER: &str = "10.71.9.2";
/// A private address no policy allows, and a name for it.
const PRIVATE: &str = "192.168.77.1";
/// What each path may carry towards the client.
const PATH_RATE: &str = "40mbit";
const BODY_LEN: usize = 12 << 20;
/// The IPv6 bed: the client's and the concentrator's link, the concentrator's and the
/// server's.
const CLI6: &str = "fd71:1::2";
const VPS6: &str = "fd71:1::1";
const VPS6_D: &str = "fd71:9::1";
const SERVER6: &str = "fd71:9::2";
/// Bound on one download (curl's `--max-time`).
const CURL_LIMIT: Duration = Duration::from_secs(60);

/// A namespace-specific hosts file, removed on drop.
struct HostsFile(PathBuf);

impl HostsFile {
    fn new(ns: &Netns, text: &str) -> HostsFile {
        let dir = PathBuf::from("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&dir).expect("create /etc/netns/<ns>");
        std::fs::write(dir.join("hosts"), text).expect("write hosts");
        HostsFile(dir)
    }
}

impl Drop for HostsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The concentrator binary and the address its SOCKS5 listener took. Field order is
/// drop order: the process before its directory.
struct Concentrator {
    _daemon: Daemon,
    _dir: TempDir,
    socks: SocketAddr,
}

/// Start the concentrator in `vps` with the Convert listener on `listen`, SOCKS5 on
/// `socks`, the prefix `allow` open and the client `phone` with [`PASSWORD`].
fn start_concentrator(vps: &Netns, listen: &str, socks: &str, allow: &str) -> Concentrator {
    let dir = TempDir::new(vps.name());
    let daemon = Daemon::start(
        vps,
        dir.path(),
        &format!(
            "listen = [\"{listen}\"]\nstate_dir = \"\"\n[socks]\nlisten = [\"{socks}\"]\n\
             [policy]\nallow = [\"{allow}\"]\n[[client]]\nid = \"phone\"\nkey = \"{KEY}\"\n\
             socks_password = \"{PASSWORD}\"\n"
        ),
    );
    let socks = daemon.logged_addr("SOCKS5 listening");
    Concentrator {
        _daemon: daemon,
        _dir: dir,
        socks,
    }
}

/// The body the server sends: deterministic bytes.
fn body() -> Vec<u8> {
    Xorshift::new(0x2545_f491).bytes(BODY_LEN)
}

/// Serve one HTTP/1.0 response of `body` on `listener`, then return the client's
/// address (None if the exchange failed).
fn serve_once(listener: TcpListener, body: Vec<u8>) -> Option<SocketAddr> {
    let (mut conn, peer) = listener.accept().ok()?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).ok()?;
    conn.write_all(&body).ok()?;
    Some(peer)
}

/// The HTTP server in `dst` on `ip`: its port, and the thread that serves `body` once
/// and returns the client's address.
fn http_server(dst: &Netns, ip: &str, body: Vec<u8>) -> (u16, JoinHandle<Option<SocketAddr>>) {
    let listener = dst.run(|| TcpListener::bind((ip, 0)).expect("bind the server"));
    let port = listener.local_addr().expect("server address").port();
    (port, std::thread::spawn(move || serve_once(listener, body)))
}

/// Fetch `url` in `cli` through the concentrator's SOCKS5 listener, reached at `at`.
fn curl(cli: &Netns, at: SocketAddr, password: &str, url: &str) -> CurlRun {
    let proxy = Socks5 {
        at,
        user: "phone",
        password,
    };
    fetch_through_socks5(cli, proxy, url, CURL_LIMIT).expect("run curl")
}

/// A download that succeeded with `want`, byte for byte.
fn assert_intact(got: &CurlRun, want: &[u8]) {
    assert_eq!(got.code, 0, "download failed: {}", got.stderr);
    assert!(
        got.body == want,
        "the body differs ({} bytes)",
        got.body.len()
    );
}

struct Bed {
    cli: Netns,
    vps: Netns,
    dst: Netns,
}

/// Three namespaces: the client with two paths to the VPS (each shaped to
/// [`PATH_RATE`] towards the client), and the server behind the VPS.
fn bed() -> Bed {
    let cli = Netns::with_lo("socks-cli");
    let vps = Netns::with_lo("socks-vps");
    let dst = Netns::with_lo("socks-dst");
    cli.veth("c0", &vps, "v0");
    cli.veth("c1", &vps, "v1");
    vps.veth("vd", &dst, "d0");
    cli.ip(&["addr", "add", &format!("{CLI_A}/24"), "dev", "c0"]);
    cli.ip(&["addr", "add", &format!("{CLI_B}/24"), "dev", "c1"]);
    vps.ip(&["addr", "add", &format!("{VPS_A}/24"), "dev", "v0"]);
    vps.ip(&["addr", "add", &format!("{VPS_B}/24"), "dev", "v1"]);
    vps.ip(&["addr", "add", &format!("{VPS_D}/24"), "dev", "vd"]);
    dst.ip(&["addr", "add", &format!("{SERVER}/24"), "dev", "d0"]);
    // The second subflow (from CLI_B) leaves through c1 towards the concentrator's
    // first address, by a source rule; everything else takes path A.
    cli.ip(&[
        "rule", "add", "from", CLI_B, "table", "100", "priority", "100",
    ]);
    cli.ip(&[
        "route", "add", "default", "via", VPS_B, "dev", "c1", "table", "100",
    ]);
    for ns in [&cli, &vps] {
        ns.ip(&[
            "mptcp",
            "limits",
            "set",
            "subflow",
            "2",
            "add_addr_accepted",
            "2",
        ]);
        ns.sysctl("net/ipv4/conf/all/rp_filter", "0");
    }
    cli.ip(&["mptcp", "endpoint", "add", CLI_B, "dev", "c1", "subflow"]);
    for dev in ["v0", "v1"] {
        vps.exec(&[
            "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", PATH_RATE, "burst", "32kb",
            "latency", "50ms",
        ]);
    }
    Bed { cli, vps, dst }
}

/// Bytes `dev` in `ns` has sent.
fn tx_bytes(ns: &Netns, dev: &str) -> u64 {
    let path = format!("/sys/class/net/{dev}/statistics/tx_bytes");
    // sysfs shows the namespace of the process that mounted it: read it from inside.
    ns.exec(&["cat", &path])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
#[ignore = "needs root and netns"]
fn curl_over_mptcp_is_bonded_and_refusals_carry_their_codes() {
    require_tools(&["ip", "tc", "curl", "mptcpize"]);
    let bed = bed();
    let _hosts = HostsFile::new(
        &bed.vps,
        &format!("127.0.0.1 localhost\n{SERVER} files.test\n{PRIVATE} private.test\n"),
    );
    let want = body();
    let (port, server) = http_server(&bed.dst, SERVER, want.clone());
    let conc = start_concentrator(
        &bed.vps,
        &format!("{VPS_A}:0"),
        "0.0.0.0:0",
        &format!("{SERVER}/32"),
    );
    let proxy = SocketAddr::new(VPS_A.parse().unwrap(), conc.socks.port());
    let url = format!("http://files.test:{port}/blob");

    // Intact, and over both paths.
    let before = (tx_bytes(&bed.vps, "v0"), tx_bytes(&bed.vps, "v1"));
    assert_intact(&curl(&bed.cli, proxy, PASSWORD, &url), &want);
    server.join().expect("server thread");
    let sent = (
        tx_bytes(&bed.vps, "v0") - before.0,
        tx_bytes(&bed.vps, "v1") - before.1,
    );
    eprintln!(
        "bytes towards the client: path A {}, path B {}",
        sent.0, sent.1
    );
    let fifth = (BODY_LEN / 5) as u64;
    assert!(
        sent.0 > fifth && sent.1 > fifth,
        "not bonded: path A carried {}, path B {} of {BODY_LEN}",
        sent.0,
        sent.1
    );

    // A wrong password: RFC 1929 status 1.
    let got = curl(&bed.cli, proxy, "wrong-password", &url);
    assert_eq!(got.code, CURLE_PROXY, "{}", got.stderr);
    assert!(got.stderr.contains("User was rejected"), "{}", got.stderr);

    // A forbidden destination, and a name that resolves to a private address: 0x02.
    for url in [
        format!("http://{VPS_D}:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://private.test:{port}/"),
    ] {
        let got = curl(&bed.cli, proxy, PASSWORD, &url);
        assert_eq!(got.code, CURLE_PROXY, "{url}: {}", got.stderr);
        // curl 7.88 names the reply code in parentheses at the end of its message.
        let message = got.stderr.trim_end();
        assert!(
            message.contains("Can't complete SOCKS5 connection") && message.ends_with("(2)"),
            "{url}: not reply 0x02: {message}"
        );
    }
}

/// `MPTcpExt` counter `name` of the namespace `ns` (`/proc/net/netstat`).
fn mptcp_counter(ns: &Netns, name: &str) -> u64 {
    let text = ns.exec(&["cat", "/proc/net/netstat"]);
    let mut lines = text.lines().filter(|l| l.starts_with("MPTcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        panic!("no MPTcpExt in /proc/net/netstat of {}", ns.name());
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no MPTcpExt {name}"))
}

/// IPv6 end to end, with no IPv4 address on any link: curl in the client namespace
/// reaches the SOCKS5 listener at the concentrator's IPv6 address over MPTCP, asks for a
/// name that resolves only to an IPv6 server, and gets the body intact; the server sees
/// the concentrator's IPv6 address.
#[test]
#[ignore = "needs root and netns"]
fn curl_reaches_an_ipv6_destination_over_an_ipv6_path() {
    require_tools(&["ip", "curl", "mptcpize"]);
    let cli = Netns::with_lo("socks6-cli");
    let vps = Netns::with_lo("socks6-vps");
    let dst = Netns::with_lo("socks6-dst");
    for ns in [&cli, &vps, &dst] {
        ns.sysctl("net/ipv6/conf/all/disable_ipv6", "0");
        ns.sysctl("net/ipv6/conf/default/disable_ipv6", "0");
    }
    cli.veth("c0", &vps, "v0");
    vps.veth("vd", &dst, "d0");
    // nodad: usable at once, so binding and connecting need no wait for DAD.
    for (ns, addr, dev) in [
        (&cli, CLI6, "c0"),
        (&vps, VPS6, "v0"),
        (&vps, VPS6_D, "vd"),
        (&dst, SERVER6, "d0"),
    ] {
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{addr}/64"),
            "dev",
            dev,
            "nodad",
        ]);
    }
    let _hosts = HostsFile::new(
        &vps,
        &format!("127.0.0.1 localhost\n{SERVER6} files6.test\n"),
    );
    let want = body();
    let (port, server) = http_server(&dst, SERVER6, want.clone());
    let listen = format!("[{VPS6}]:0");
    let conc = start_concentrator(&vps, &listen, &listen, &format!("{SERVER6}/128"));
    assert!(conc.socks.is_ipv6(), "SOCKS5 listens on {}", conc.socks);
    let mptcp_before = mptcp_counter(&vps, "MPCapableSYNRX");
    let url = format!("http://files6.test:{port}/blob");
    assert_intact(&curl(&cli, conc.socks, PASSWORD, &url), &want);
    let peer = server.join().expect("server thread").expect("served");
    assert_eq!(
        peer.ip().to_string(),
        VPS6_D,
        "the server saw {peer}, not the concentrator's IPv6 address"
    );
    assert!(
        mptcp_counter(&vps, "MPCapableSYNRX") > mptcp_before,
        "the SOCKS5 connection did not arrive over MPTCP"
    );
}
