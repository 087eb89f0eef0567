//! The concentrator binary in a namespace of the test's own: its config written with mode
//! 0600 into a scratch directory, started under `ip netns exec` with a notify socket, and
//! ready once it sends `READY=1`; its log is that directory's `concentrator.log`. The
//! process is killed on drop (its log printed first when the test is failing); the
//! directory is the test's [`mpbond_testkit::TempDir`].

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use mpbond_testkit::Netns;

/// Bound on the start-up; not a timing assertion.
pub const START_WAIT: Duration = Duration::from_secs(30);

/// A port the kernel hands out on 127.0.0.1 in `ns` (where nothing else binds), to
/// listen on across restarts.
pub fn free_port(ns: &Netns) -> SocketAddr {
    ns.run(|| {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
    })
}

/// The binary the tests run: the test profile's, or `MPBOND_CONCENTRATOR_BIN` (a
/// measurement may run an optimised build).
pub fn binary() -> String {
    std::env::var("MPBOND_CONCENTRATOR_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_mpbond-concentrator").to_owned())
}

/// A running concentrator process, killed on drop.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Write `config` to `dir/concentrator.toml` (mode 0600), start the binary in `ns`
    /// with `RUST_LOG=info`, its stderr appended to `dir/concentrator.log` (kept across
    /// restarts), and return once it says `READY=1`. Panics (and shows the log) if it
    /// exits or stays silent for [`START_WAIT`].
    pub fn start(ns: &Netns, dir: &Path, config: &str) -> Daemon {
        let path = dir.join("concentrator.toml");
        std::fs::write(&path, config).expect("write the config");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("config mode 0600");
        let notify_path = dir.join("notify");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("notify timeout");
        let log = dir.join("concentrator.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the log");
        let child = ns
            .command(&binary())
            .arg("--config")
            .arg(&path)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "info")
            .env_remove("STATE_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the concentrator");
        let mut daemon = Daemon { child, log };
        let mut buf = [0u8; 256];
        let ready = mpbond_testkit::wait_until(START_WAIT, Duration::ZERO, || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("the concentrator exited ({status})");
            }
            matches!(notify.recv(&mut buf),
                Ok(n) if buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1"))
        });
        assert!(ready, "no READY=1 within {START_WAIT:?}");
        daemon
    }

    /// Its log so far (all its runs in this directory).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address of the listener it logged as `what` (e.g. `"SOCKS5 listening"`), from
    /// the `local=` field of that line.
    pub fn logged_addr(&self, what: &str) -> SocketAddr {
        let log = self.log();
        let line = log
            .lines()
            .rfind(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in the log:\n{log}"));
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("local="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no local= address in {line:?}"))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` and wait for the process to end.
    pub fn signal(&mut self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        self.child.wait().expect("wait for the concentrator");
    }
}

impl Drop for Daemon {
    /// Kill the process; when the test is failing, show its log first.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("concentrator log:\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
