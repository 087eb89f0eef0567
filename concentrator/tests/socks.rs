//! SOCKS5 over MPTCP end to end (issue 12, part 2), with a client nobody here wrote:
//! curl `--socks5-hostname` under `mptcpize run`, in a namespace with two paths to the
//! concentrator's namespace, which reaches an HTTP server in a third.
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
//! The concentrator runs as its own binary under `ip netns exec`, which mounts
//! `/etc/netns/<ns>/hosts` over `/etc/hosts`: that is where the test's names resolve. The
//! file is removed when the test ends. Needs root, `ip`, `tc`, `curl` and `mptcpize`
//! (Debian package `mptcpize`; tests/setup.sh installs it): `#[ignore = "needs root and
//! netns"]`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mpbond_testkit::{require_tools, Netns};

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

/// The concentrator process, killed on drop.
struct Concentrator {
    child: Child,
    socks: SocketAddr,
}

impl Drop for Concentrator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the concentrator binary in `ns` with `config`, and learn its SOCKS5 port from
/// its log.
fn start_concentrator(ns: &Netns, config: &str) -> Concentrator {
    let path = std::env::temp_dir().join(format!("{}-conc.toml", ns.name()));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .expect("create the config");
        file.write_all(config.as_bytes()).expect("write the config");
    }
    let mut child = ns
        .command(env!("CARGO_BIN_EXE_mpbond-concentrator"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the concentrator");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("conc: {line}");
            if line.contains("SOCKS5 listening") {
                let _ = tx.send(line);
            }
        }
    });
    let mut conc = Concentrator {
        child,
        socks: "0.0.0.0:0".parse().unwrap(),
    };
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the concentrator logs its SOCKS5 listener");
    let local = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("local="))
        .expect("local= in the log line");
    conc.socks = local.parse().expect("a socket address");
    let _ = std::fs::remove_file(&path);
    conc
}

/// The body the server sends: deterministic bytes.
fn body() -> Vec<u8> {
    let mut x = 0x2545_f491_u32;
    (0..BODY_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
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

struct Bed {
    cli: Netns,
    vps: Netns,
    // Kept alive for the test's length.
    _dst: Netns,
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
    cli.ip(&[
        "mptcp",
        "limits",
        "set",
        "subflow",
        "2",
        "add_addr_accepted",
        "2",
    ]);
    cli.ip(&["mptcp", "endpoint", "add", CLI_B, "dev", "c1", "subflow"]);
    vps.ip(&[
        "mptcp",
        "limits",
        "set",
        "subflow",
        "2",
        "add_addr_accepted",
        "2",
    ]);
    for ns in [&cli, &vps] {
        ns.sysctl("net/ipv4/conf/all/rp_filter", "0");
    }
    for dev in ["v0", "v1"] {
        vps.exec(&[
            "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", PATH_RATE, "burst", "32kb",
            "latency", "50ms",
        ]);
    }
    Bed {
        cli,
        vps,
        _dst: dst,
    }
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

/// curl's exit code, stderr and the file it wrote.
struct Curl {
    code: i32,
    stderr: String,
    output: Vec<u8>,
}

/// Run curl under `mptcpize run` in `cli` through the SOCKS5 proxy at `proxy`.
fn curl(cli: &Netns, proxy: SocketAddr, user: &str, password: &str, url: &str) -> Curl {
    let proxy = format!("{user}:{password}@{}:{}", VPS_A, proxy.port());
    curl_via(cli, &proxy, url)
}

/// Run curl under `mptcpize run` in `cli` with `--socks5-hostname proxy`.
fn curl_via(cli: &Netns, proxy: &str, url: &str) -> Curl {
    let out_path = std::env::temp_dir().join(format!("{}-curl.out", cli.name()));
    let _ = std::fs::remove_file(&out_path);
    let out = cli
        .command("mptcpize")
        .args([
            "run",
            "curl",
            "-sS",
            "--max-time",
            "60",
            "--socks5-hostname",
        ])
        .arg(proxy)
        .arg("-o")
        .arg(&out_path)
        .arg(url)
        .output()
        .expect("run curl");
    let output = std::fs::read(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    Curl {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        output,
    }
}

/// curl's exit code for a proxy handshake error (CURLE_PROXY, curl ≥ 7.73).
const CURLE_PROXY: i32 = 97;

#[test]
#[ignore = "needs root and netns"]
fn curl_over_mptcp_is_bonded_and_refusals_carry_their_codes() {
    require_tools(&["ip", "tc", "curl", "mptcpize"]);
    let bed = bed();
    let _hosts = HostsFile::new(
        &bed.vps,
        &format!("127.0.0.1 localhost\n{SERVER} files.test\n{PRIVATE} private.test\n"),
    );
    let listener = bed
        ._dst
        .run(|| TcpListener::bind((SERVER, 0)).expect("bind the server"));
    let port = listener.local_addr().unwrap().port();
    let want = body();
    let server = std::thread::spawn({
        let want = want.clone();
        move || serve_once(listener, want)
    });
    let conc = start_concentrator(
        &bed.vps,
        &format!(
            "listen = [\"{VPS_A}:0\"]\nstate_dir = \"\"\n[socks]\nlisten = [\"0.0.0.0:0\"]\n[policy]\nallow = [\"{SERVER}/32\"]\n[[client]]\nid = \"phone\"\nkey = \"{KEY}\"\nsocks_password = \"{PASSWORD}\"\n"
        ),
    );

    // Intact, and over both paths.
    let before = (tx_bytes(&bed.vps, "v0"), tx_bytes(&bed.vps, "v1"));
    let got = curl(
        &bed.cli,
        conc.socks,
        "phone",
        PASSWORD,
        &format!("http://files.test:{port}/blob"),
    );
    assert_eq!(got.code, 0, "download failed: {}", got.stderr);
    assert!(
        got.output == want,
        "the body differs ({} bytes)",
        got.output.len()
    );
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
    let got = curl(
        &bed.cli,
        conc.socks,
        "phone",
        "wrong-password",
        &format!("http://files.test:{port}/blob"),
    );
    assert_eq!(got.code, CURLE_PROXY, "{}", got.stderr);
    assert!(got.stderr.contains("User was rejected"), "{}", got.stderr);

    // A forbidden destination, and a name that resolves to a private address: 0x02.
    for url in [
        format!("http://{VPS_D}:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://private.test:{port}/"),
    ] {
        let got = curl(&bed.cli, conc.socks, "phone", PASSWORD, &url);
        assert_eq!(got.code, CURLE_PROXY, "{url}: {}", got.stderr);
        // curl 7.88 names the reply code in parentheses at the end of its message.
        let message = got.stderr.trim_end();
        assert!(
            message.contains("Can't complete SOCKS5 connection") && message.ends_with("(2)"),
            "{url}: not reply 0x02: {message}"
        );
    }
    drop(bed.cli);
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
    let listener = dst.run(|| TcpListener::bind((SERVER6, 0)).expect("bind the server"));
    let port = listener.local_addr().unwrap().port();
    let want = body();
    let server = std::thread::spawn({
        let want = want.clone();
        move || serve_once(listener, want)
    });
    let conc = start_concentrator(
        &vps,
        &format!(
            "listen = [\"[{VPS6}]:0\"]\nstate_dir = \"\"\n[socks]\nlisten = [\"[{VPS6}]:0\"]\n[policy]\nallow = [\"{SERVER6}/128\"]\n[[client]]\nid = \"phone\"\nkey = \"{KEY}\"\nsocks_password = \"{PASSWORD}\"\n"
        ),
    );
    assert!(conc.socks.is_ipv6(), "SOCKS5 listens on {}", conc.socks);
    let mptcp_before = mptcp_counter(&vps, "MPCapableSYNRX");
    let proxy = format!("phone:{PASSWORD}@[{VPS6}]:{}", conc.socks.port());
    let got = curl_via(&cli, &proxy, &format!("http://files6.test:{port}/blob"));
    assert_eq!(got.code, 0, "download failed: {}", got.stderr);
    assert!(
        got.output == want,
        "the body differs ({} bytes)",
        got.output.len()
    );
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
