//! A throw-away "fresh VPS" for the install test, built from namespaces so that nothing on
//! the host changes:
//!
//! * a network namespace ([`mpbond_testkit::Netns`], role `vps<n>`) with `lo` and a veth
//!   `vps0` (its peer in the same namespace) holding 192.0.2.1/24 and a default route (so the installer can
//!   guess its public address);
//!   the sysctls, MPTCP limits and nft rules the installer sets are all per namespace;
//! * inside it, a mount namespace whose `/etc` and `/usr/local` (and for the package
//!   test `/usr` and `/var`) are overlays with a tmpfs upper layer, so users, configs,
//!   units and binaries written there vanish with it.
//!
//! A holder process (`sleep`) keeps both namespaces; every command enters them with
//! `nsenter`, with a `systemctl` stand-in (`systemctl-shim.sh`) first in `PATH`. Dropping
//! the [`Vps`] kills the daemon and the holder, deletes the namespace and the state dir.
//!
//! The tests are `#[ignore]`d and call [`require`] first: without root or one of the
//! tools they fail, they never skip.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mpbond_protocol::auth::{ClientId, Key};
use mpbond_protocol::{ClientHandshake, ErrorCode, Message, ReplyError, Step};
use mpbond_testkit::{require_root, require_tools, Netns};
use socket2::{Domain, Protocol, Socket, Type};

/// The concentrator's address in the namespace (on `vps0`).
pub const VPS_ADDR: &str = "192.0.2.1";
/// The unit name.
pub const UNIT: &str = "mpbond-concentrator";

const SHIM: &str = include_str!("systemctl-shim.sh");
const TOOLS: [&str; 5] = ["ip", "unshare", "nsenter", "setpriv", "ss"];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Which host directories get a throw-away overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlays {
    /// `/etc` and `/usr/local`: enough for `install.sh --binary`.
    Binary,
    /// Also `/usr` and `/var`: for `dpkg -i`.
    Package,
}

/// One namespace "VPS".
#[derive(Debug)]
pub struct Vps {
    pub netns: Netns,
    /// Host directory for the shim's state (calls, pid, daemon log) and the overlay tmpfs.
    pub state: PathBuf,
    holder: Option<Child>,
}

/// Fail the calling test unless it runs as root with every tool the harness uses.
pub fn require() {
    require_root("network and mount namespaces");
    require_tools(&TOOLS);
}

fn checked(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Vps {
    /// Build the namespaces. `nft` is an optional ruleset loaded first (a firewall).
    pub fn create(overlays: Overlays, nft: Option<&str>) -> Vps {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let state = std::env::temp_dir().join(format!("mpbhc-install-{pid}-{n}"));
        std::fs::create_dir_all(state.join("bin")).expect("state dir");
        std::fs::create_dir_all(state.join("ovl")).expect("overlay dir");
        let shim = state.join("bin/systemctl");
        std::fs::write(&shim, SHIM).expect("write shim");
        checked(Command::new("chmod").arg("0755").arg(&shim));

        // From here on a panic must still clean up: build the guard first.
        let mut vps = Vps {
            netns: Netns::new(&format!("vps{n}")),
            state,
            holder: None,
        };
        vps.setup_network(nft);
        vps.holder = Some(vps.spawn_holder(overlays));
        vps
    }

    fn setup_network(&self, nft: Option<&str>) {
        for args in [
            vec!["link", "set", "lo", "up"],
            // Both ends in the namespace (no dummy module on every host).
            vec![
                "link", "add", "vps0", "type", "veth", "peer", "name", "vps0p",
            ],
            vec!["addr", "add", "192.0.2.1/24", "dev", "vps0"],
            vec!["link", "set", "vps0p", "up"],
            vec!["link", "set", "vps0", "up"],
            vec![
                "route",
                "add",
                "default",
                "via",
                "192.0.2.254",
                "dev",
                "vps0",
            ],
        ] {
            self.netns.ip(&args);
        }
        if let Some(ruleset) = nft {
            self.netns.nft(ruleset);
        }
    }

    fn spawn_holder(&self, overlays: Overlays) -> Child {
        let dirs = match overlays {
            Overlays::Binary => "etc usr/local",
            Overlays::Package => "etc usr var",
        };
        let script = format!(
            r#"set -e
ovl="$1"
mount -t tmpfs mpbhc "$ovl"
for d in {dirs}; do
    n=$(printf %s "$d" | tr / _)
    mkdir -p "$ovl/$n.u" "$ovl/$n.w"
    mount -t overlay mpbhc -o "lowerdir=/$d,upperdir=$ovl/$n.u,workdir=$ovl/$n.w" "/$d"
done
echo ready
exec sleep 900"#
        );
        let mut holder = self
            .netns
            .command("unshare")
            .args(["--mount", "--propagation", "private"])
            .args(["sh", "-c", &script, "holder"])
            .arg(self.state.join("ovl"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the namespace holder");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("holder stdout");
        // Blocks until the overlays are mounted (or the holder died: EOF).
        let _ = BufReader::new(stdout).read_line(&mut line);
        assert_eq!(line.trim(), "ready", "the mount namespace holder failed");
        holder
    }

    /// Put an executable `name` with `script` first in the commands' PATH (a stand-in
    /// for a tool the host lacks, such as ufw).
    pub fn add_tool(&self, name: &str, script: &str) {
        let path = self.state.join("bin").join(name);
        std::fs::write(&path, script).expect("write tool");
        checked(Command::new("chmod").arg("0755").arg(&path));
    }

    fn holder_pid(&self) -> u32 {
        self.holder.as_ref().map_or(0, Child::id)
    }

    /// Run `script` with `sh -c` inside both namespaces as root, bounded at 180 s.
    pub fn sh(&self, script: &str, env: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.state.join("bin").display()
        );
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.holder_pid()))
            .args([
                "--mount", "--net", "--", "timeout", "180", "sh", "-c", script,
            ])
            .env_clear()
            .env("PATH", path)
            .env("MPBOND_SHIM_STATE", &self.state)
            .env("LANG", "C");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("nsenter")
    }

    /// A file as seen inside the mount namespace.
    pub fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.holder_pid()))
    }

    pub fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.path(path)).ok()
    }

    /// The lines the shim logged, one per systemctl call.
    pub fn systemctl_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The running daemon's pid, as the shim recorded it.
    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.state.join(format!("{UNIT}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.state.join(format!("{UNIT}.log"))).unwrap_or_default()
    }

    /// Run `f` on a thread that has entered the network namespace.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.netns.run(f)
    }

    /// Send an authenticated Info probe over MPTCP from inside the namespace.
    pub fn probe(&self, port: u16, client: &str, key: &Key) -> io::Result<Probe> {
        let addr: SocketAddr = format!("{VPS_ADDR}:{port}").parse().expect("addr");
        let client: ClientId = client.parse().expect("client id");
        self.in_netns(|| probe(addr, &client, key))
    }

    /// Probe until the reply is ok, for at most `within` (a SIGHUP reload is
    /// asynchronous). Returns the last reply.
    pub fn probe_until_ok(&self, port: u16, client: &str, key: &Key, within: Duration) -> Probe {
        let deadline = Instant::now() + within;
        loop {
            let reply = self.probe(port, client, key).expect("probe");
            if reply.answer == Answer::Ok || Instant::now() > deadline {
                return reply;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Vps {
    fn drop(&mut self) {
        if let Some(pid) = self.daemon_pid() {
            // SAFETY: kill(2) has no memory effects; the pid is our daemon's.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        // The namespace itself goes when the `netns` field drops, after this.
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// How the concentrator answered a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The Info reply.
    Ok,
    /// An Error TLV with this code.
    Refused(ErrorCode),
    /// Closed (or reset) without a byte: quiet mode's answer to a failed authentication.
    Silence,
}

/// What one probe got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The answer.
    pub answer: Answer,
    /// TCP_IS_MPTCP of the client socket.
    pub mptcp: bool,
}

fn probe(addr: SocketAddr, client: &ClientId, key: &Key) -> io::Result<Probe> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(io::Error::other)?;
    let (mut handshake, wire) = ClientHandshake::seal(&Message::info(), client, key, now, nonce)
        .map_err(io::Error::other)?;
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP))?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    let mut stream: std::net::TcpStream = socket.into();
    stream.write_all(&wire)?;
    // Read exactly what the reply still needs until the handshake has it whole.
    let mut piece = Vec::new();
    let mut first = true;
    let outcome = loop {
        match handshake.receive(&piece).step {
            Step::Done(outcome) => break outcome,
            Step::NeedMore { needed } => {
                piece.resize(needed, 0);
                match stream.read_exact(&mut piece) {
                    Ok(()) => first = false,
                    Err(e) if first && closed(&e) => {
                        return Ok(Probe {
                            answer: Answer::Silence,
                            mptcp: is_mptcp(&stream),
                        })
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    };
    let answer = match outcome {
        Ok(_) => Answer::Ok,
        Err(ReplyError::Refused(code)) => Answer::Refused(code),
        Err(other) => return Err(io::Error::other(format!("bad reply: {other}"))),
    };
    Ok(Probe {
        answer,
        mptcp: is_mptcp(&stream),
    })
}

/// A close or reset before a whole reply (a read timeout is not one).
fn closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    )
}

fn is_mptcp(stream: &std::net::TcpStream) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_TCP,
            43, // TCP_IS_MPTCP
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && value == 1
}

/// The value of `uci set mpbond.globals.OPTION='VALUE'` in the installer's output.
pub fn uci_value(output: &str, option: &str) -> Option<String> {
    let prefix = format!("uci set mpbond.globals.{option}='");
    output.lines().find_map(|line| {
        line.strip_prefix(&prefix)?
            .strip_suffix('\'')
            .map(str::to_owned)
    })
}
