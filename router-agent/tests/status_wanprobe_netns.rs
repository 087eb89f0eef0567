//! WAN probes through real WANs to a real concentrator. Root only: the test is
//! `#[ignore = "needs root and netns"]` and fails without root, `ip`, `nft` or the
//! concentrator binary.
//!
//! Topology, in two namespaces of `mpbond-testkit` (deleted on drop):
//!
//! ```text
//!  router ns                                   vps ns (mpbond-concentrator on 192.0.2.1:4850)
//!  wan1 10.200.1.2/24 ----- veth ----- isp1 10.200.1.1/24
//!  wan2 10.200.2.2/24 ----- veth ----- isp2 10.200.2.1/24      lo: 192.0.2.1/32
//!  from 10.200.1.2 lookup 101 (default via 10.200.1.1 dev wan1)
//!  from 10.200.2.2 lookup 102 (default via 10.200.2.1 dev wan2), main default via wan2
//! ```
//!
//! The concentrator binary comes from the target dir (`cargo build -p
//! mpbond-concentrator`); it runs under `ip netns exec` and the test waits for its
//! `READY=1` on a `NOTIFY_SOCKET` it binds. Then, with probe datagrams over UDP: both
//! WANs answer with a round trip (printed, not judged: timings belong to the benchmark);
//! a wrong key gets silence (a timeout); a closed port is Refused; an address the router
//! does not have is Unreachable. One-direction blackholes: with an nft rule in the vps
//! dropping what arrives from wan1's address (upstream only), then one dropping what the
//! vps sends to it (downstream only), wan1's probe times out while wan2 still answers,
//! and once the rule is gone wan1 answers again.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use mpbond_testkit::{require_tools, Netns, TempDir};

use mpbond_agent::upstream::Upstream;
use mpbond_agent::wan_probe::{next_stamp, probe_once, ProbeError};
use mpbond_protocol::auth::Key;

const READY_LIMIT: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
const KEY: [u8; 32] = [0x42; 32];
const VPS: &str = "192.0.2.1";

/// The concentrator process, killed and reaped on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- concentrator log ----\n{log}\n---- end ----");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The concentrator binary next to this test's target dir; fails the test when it is
/// missing (`tests/run.sh` builds every binary first).
fn concentrator_bin() -> PathBuf {
    // target/<profile>/deps/<test> -> target/<profile>/mpbond-concentrator
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("mpbond-concentrator");
    assert!(
        bin.is_file(),
        "{} not built; run `cargo build -p mpbond-concentrator` first",
        bin.display()
    );
    bin
}

/// Two namespaces and two WANs between them, as in the module docs.
fn topology() -> (Netns, Netns) {
    let r = Netns::new("r");
    let v = Netns::new("v");
    let ip = |ns: &Netns, args: &str| {
        ns.ip(&args.split_whitespace().collect::<Vec<_>>());
    };
    for i in 1..=2 {
        r.veth(&format!("wan{i}"), &v, &format!("isp{i}"));
        ip(&r, &format!("addr add 10.200.{i}.2/24 dev wan{i}"));
        ip(&v, &format!("addr add 10.200.{i}.1/24 dev isp{i}"));
        ip(
            &r,
            &format!("route add default via 10.200.{i}.1 dev wan{i} table 10{i}"),
        );
        ip(
            &r,
            &format!("rule add from 10.200.{i}.2 lookup 10{i} priority 10{i}"),
        );
    }
    ip(&r, "route add default via 10.200.2.1 dev wan2");
    ip(&r, "link set lo up");
    ip(&v, "link set lo up");
    ip(&v, &format!("addr add {VPS}/32 dev lo"));
    (r, v)
}

fn start_concentrator(bin: &Path, vps: &Netns, dir: &Path) -> Daemon {
    let config = dir.join("concentrator.toml");
    let key = Key::from_bytes(KEY).to_hex();
    std::fs::write(
        &config,
        format!("listen = [\"{VPS}:4850\"]\n\n[[client]]\nid = \"home\"\nkey = \"{key}\"\n"),
    )
    .unwrap();
    let notify_path = dir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let log = dir.join("concentrator.log");
    let child = vps
        .command(&bin.to_string_lossy())
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Daemon { child, log };
    let deadline = Instant::now() + READY_LIMIT;
    let mut buf = [0u8; 512];
    loop {
        if let Ok(n) = notify.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return daemon;
            }
        }
        assert!(
            daemon.child.try_wait().unwrap().is_none(),
            "concentrator exited early"
        );
        assert!(
            Instant::now() < deadline,
            "no READY=1 within {READY_LIMIT:?}"
        );
    }
}

/// Run `f` on a current-thread runtime in a thread inside namespace `ns`.
fn in_ns<T: Send>(ns: &Netns, f: impl std::future::Future<Output = T> + Send) -> T {
    ns.run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
}

fn upstream(port: u16, key: [u8; 32]) -> Upstream {
    Upstream {
        addr: SocketAddr::new(VPS.parse().unwrap(), port),
        client_id: "home".parse().unwrap(),
        key: Key::from_bytes(key),
        connect_timeout: PROBE_TIMEOUT,
        fastopen: false,
        source: None,
        hedge: None,
        congestion: None,
        buffers: Default::default(),
    }
}

fn wan(i: u8) -> (String, IpAddr) {
    (format!("wan{i}"), format!("10.200.{i}.2").parse().unwrap())
}

#[test]
#[ignore = "needs root and netns"]
fn probes_go_through_their_own_wan() {
    require_tools(&["ip", "nft"]);
    let bin = concentrator_bin();
    let scratch = TempDir::new("wanprobe");
    let (router, vps) = topology();
    let _concentrator = start_concentrator(&bin, &vps, scratch.path());
    let good = upstream(4850, KEY);
    let probe = |i: u8, up: &Upstream| {
        let (dev, src) = wan(i);
        in_ns(&router, async move {
            probe_once(&dev, src, up, next_stamp(0), PROBE_TIMEOUT)
                .await
                .result
        })
    };

    for i in 1..=2 {
        let rtt = probe(i, &good).unwrap_or_else(|e| panic!("wan{i}: {e}"));
        eprintln!("wan{i} probe round trip {rtt:?}");
        assert!(rtt > Duration::ZERO, "wan{i}: {rtt:?}");
    }

    // A wrong key: the concentrator does not answer.
    let err = probe(1, &upstream(4850, [0x43; 32])).unwrap_err();
    assert!(matches!(err, ProbeError::Timeout(_)), "{err:?}");

    let err = probe(2, &upstream(4999, KEY)).unwrap_err();
    assert!(matches!(err, ProbeError::Refused(_)), "{err:?}");

    let err = in_ns(&router, async {
        let src = "10.200.9.2".parse().unwrap();
        probe_once("wan1", src, &good, next_stamp(0), PROBE_TIMEOUT)
            .await
            .result
    })
    .unwrap_err();
    assert!(matches!(err, ProbeError::Unreachable(_)), "{err:?}");

    // One direction at a time: the vps drops what arrives from wan1 (upstream only), then
    // its answers to wan1 (downstream only, the request arrives). Only wan1's probe fails,
    // and it answers again once the rule is gone.
    for (direction, hook, rule) in [
        ("upstream only", "input", "ip saddr 10.200.1.2 drop"),
        ("downstream only", "output", "ip daddr 10.200.1.2 drop"),
    ] {
        let ruleset = format!(
            "add table inet mpbh; \
             add chain inet mpbh c {{ type filter hook {hook} priority 0; policy accept; }}; \
             add rule inet mpbh c {rule}"
        );
        vps.exec(&["nft", &ruleset]);
        let err = probe(1, &good).unwrap_err();
        assert!(
            matches!(err, ProbeError::Timeout(_)),
            "{direction}: {err:?}"
        );
        probe(2, &good).expect("wan2 still answers");
        vps.exec(&["nft", "delete table inet mpbh"]);
        probe(1, &good).expect("wan1 answers again");
    }
}
