//! The UDP tests' bed: the concentrator binary (`common::daemon`) in a namespace of its
//! own (only `lo`), a UDP echo server there, and the independent Python client
//! (`tests/independent/udp_client.py`) run in the namespace for each scenario.
//! Everything is removed on drop, also on a panic. A test file that uses it declares
//! `mod common;` too.

#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mpbond_testkit::{Netns, TempDir};

use crate::common::daemon::{free_port, Daemon};

pub const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
pub const OTHER_KEY_HEX: &str = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";
/// Bound on every wait; none is a timing assertion.
pub const WAIT: Duration = Duration::from_secs(30);

/// The client script, next to this file's test crate.
fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/independent/udp_client.py")
}

/// A UDP echo server in the namespace, stopped on drop.
pub struct Echo {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    /// An echo server on `addr` (port 0: any) in `ns`.
    pub fn start(ns: &Netns, addr: &str) -> Echo {
        let socket = ns.run(|| UdpSocket::bind(addr).unwrap());
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        Echo {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The concentrator, its echo target and its namespace. Field order is drop order: the
/// processes go before their directory and the namespace.
pub struct Bed {
    pub daemon: Daemon,
    pub echo: Echo,
    pub listen: SocketAddr,
    pub metrics: SocketAddr,
    pub dir: TempDir,
    pub ns: Netns,
}

impl Bed {
    /// Start a concentrator with clients `home` and `work`, quiet mode off (every refusal
    /// answered), loopback destinations allowed, and `extra` TOML appended (e.g. a
    /// `[udp]` table).
    pub fn start(name: &str, extra: &str) -> Bed {
        let ns = Netns::with_lo(name);
        let dir = TempDir::new(name);
        let listen = free_port(&ns);
        let metrics = free_port(&ns);
        let daemon = Daemon::start(
            &ns,
            dir.path(),
            &format!(
                "listen = [\"{listen}\"]\nmetrics = \"{metrics}\"\nquiet = false\nstate_dir = \"\"\n\
                 [policy]\nallow = [\"127.0.0.0/8\", \"::1\"]\n\
                 [[client]]\nid = \"home\"\nkey = \"{KEY_HEX}\"\n\
                 [[client]]\nid = \"work\"\nkey = \"{OTHER_KEY_HEX}\"\n{extra}\n"
            ),
        );
        let echo = Echo::start(&ns, "127.0.0.1:0");
        Bed {
            daemon,
            echo,
            listen,
            metrics,
            dir,
            ns,
        }
    }

    /// The concentrator's log so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// The arguments every scenario takes, towards `dest`, as client `home`.
    fn args(&self, scenario: &str, dest: SocketAddr, extra: &str) -> String {
        format!(
            "{{\"scenario\": \"{scenario}\", \"conc_ip\": \"{}\", \"conc_port\": {}, \
             \"dest_ip\": \"{}\", \"dest_port\": {}, \"client\": \"home\", \"key\": \"{KEY_HEX}\"{extra}}}",
            self.listen.ip(),
            self.listen.port(),
            dest.ip(),
            dest.port()
        )
    }

    /// A Python client command for `scenario` towards `dest`, in the namespace.
    pub fn client_command(&self, scenario: &str, dest: SocketAddr, extra: &str) -> Command {
        let mut command = self.ns.command("python3");
        command.arg(script()).arg(self.args(scenario, dest, extra));
        command
    }

    /// Run `scenario` towards `dest` (`extra` adds JSON fields, each starting with a
    /// comma) and return its JSON result (keys sorted by Python's `json.dumps`).
    pub fn client(&self, scenario: &str, dest: SocketAddr, extra: &str) -> String {
        let out = self
            .client_command(scenario, dest, extra)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "client {scenario} failed: {}\nconcentrator log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// GET /metrics.
    pub fn scrape(&self) -> String {
        self.ns.run(|| {
            let mut s = TcpStream::connect(self.metrics).unwrap();
            std::io::Write::write_all(&mut s, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
    }

    /// The value of the metric line starting with `name` (name and labels exactly).
    pub fn metric(&self, name: &str) -> u64 {
        let text = self.scrape();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    /// Wait (bounded by [`WAIT`]) until metric `name` is `value`: counters are updated as
    /// flows end, after the client has seen the end.
    pub fn wait_metric(&self, name: &str, value: u64) {
        let ok = mpbond_testkit::wait_until(WAIT, Duration::from_millis(20), || {
            self.metric(name) == value
        });
        assert!(
            ok,
            "{name} stayed {} (want {value})\n{}",
            self.metric(name),
            self.log()
        );
    }

    /// The concentrator's resident set, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.daemon.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// The concentrator's user + system CPU time so far, in seconds.
    pub fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.daemon.pid())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ")".
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks as f64 / hz
    }
}
