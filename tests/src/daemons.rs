//! Starting mpbond's daemons in the test bed and waiting for `READY=1`.
//!
//! Each start writes the config into the bed's scratch directory, binds a unix
//! datagram socket there, and spawns the binary inside its namespace with
//! `NOTIFY_SOCKET` pointing at that socket (a path socket works across network
//! namespaces). Stderr goes to a log file whose tail is printed when a test
//! fails while the daemon runs.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::bed::TestBed;
use crate::error::BedError;
use crate::proc::ChildGuard;
use crate::topology::{Node, ROUTER_LAN_IF, VPS_V4};

/// How long a daemon may take to send READY=1.
pub const READY_LIMIT: Duration = Duration::from_secs(10);
/// The client id the test bed configures.
pub const CLIENT_ID: &str = "home";
/// The concentrator's metrics address inside the VPS namespace.
pub const METRICS_ADDR: &str = "127.0.0.1:9850";

/// Directory of the binaries under test: `$MPBOND_BIN_DIR`, else the profile
/// directory of the running executable (`target/<profile>/`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MPBOND_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The path of binary `name`, or an error that says which `cargo build` to run.
pub fn bin_path(name: &str) -> Result<PathBuf, BedError> {
    let dir = bin_dir();
    let path = dir.join(name);
    if path.is_file() {
        return Ok(path);
    }
    let package = match name {
        "mpbond-agent" => "mpbond-agent",
        "mpbond-concentrator" => "mpbond-concentrator",
        _ => "mpbond-tests",
    };
    let profile = if dir.ends_with("release") {
        " --release"
    } else {
        ""
    };
    Err(BedError::MissingBinary {
        name: name.into(),
        dir,
        hint: format!("cargo build{profile} -p {package} --bins"),
    })
}

/// The concentrator's config file.
#[derive(Debug, Clone)]
pub struct ConcentratorConfig {
    /// Listening addresses.
    pub listen: Vec<SocketAddr>,
    /// Prometheus endpoint.
    pub metrics: Option<String>,
    /// `(id, hex key)` of every client.
    pub clients: Vec<(String, String)>,
    /// Extra prefixes to refuse.
    pub deny: Vec<String>,
    /// Exceptions to the built-in deny list.
    pub allow: Vec<String>,
    /// `quiet`, when set (the concentrator's default is on).
    pub quiet: Option<bool>,
    /// `[limits] connect_timeout_ms`.
    pub connect_timeout_ms: u64,
    /// `[limits] handshake_timeout_ms`.
    pub handshake_timeout_ms: u64,
    /// `[limits] auth_window_secs`.
    pub auth_window_secs: u64,
    /// `[limits]` per-source limits before authentication: the most unauthenticated
    /// connections, new connections a second and the burst (`None`: the defaults). A
    /// load generator that opens thousands of connections from one address needs more.
    pub per_source: Option<(u64, u64, u64)>,
    /// `[relay] congestion` (`"reno"`, `"bbr"`, `"system"`); `None`: the default.
    pub congestion: Option<String>,
}

/// `v` as the items of a TOML array of strings: `"a", "b"`.
fn toml_list(v: &[String]) -> String {
    v.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ConcentratorConfig {
    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let listen: Vec<String> = self.listen.iter().map(ToString::to_string).collect();
        let mut t = format!("listen = [{}]\n", toml_list(&listen));
        if let Some(m) = &self.metrics {
            let _ = writeln!(t, "metrics = {m:?}");
        }
        if let Some(quiet) = self.quiet {
            let _ = writeln!(t, "quiet = {quiet}");
        }
        let _ = write!(
            t,
            "\n[limits]\nmax_connections = 20000\nmax_connections_per_client = 4000\n\
             handshake_timeout_ms = {}\nconnect_timeout_ms = {}\nidle_timeout_secs = 7200\n\
             drain_timeout_secs = 2\nauth_window_secs = {}\n\n[policy]\ndeny = [{}]\nallow = [{}]\n",
            self.handshake_timeout_ms,
            self.connect_timeout_ms,
            self.auth_window_secs,
            toml_list(&self.deny),
            toml_list(&self.allow)
        );
        if let Some((unauthenticated, per_sec, burst)) = self.per_source {
            // Into [limits], which the text above left before [policy].
            t = t.replacen(
                "\n[policy]\n",
                &format!(
                    "max_unauthenticated_per_source = {unauthenticated}\n\
                     new_connections_per_source_per_sec = {per_sec}\n\
                     new_connections_per_source_burst = {burst}\n\n[policy]\n"
                ),
                1,
            );
        }
        if let Some(congestion) = &self.congestion {
            let _ = write!(t, "\n[relay]\ncongestion = {congestion:?}\n");
        }
        for (id, key) in &self.clients {
            let _ = write!(t, "\n[[client]]\nid = {id:?}\nkey = {key:?}\n");
        }
        t
    }
}

/// The agent's config file.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Concentrator address (IP literal or name).
    pub host: String,
    /// Concentrator port.
    pub port: u16,
    /// Our client id.
    pub client_id: String,
    /// Our key, 64 hex characters.
    pub key: String,
    /// Transparent listener port.
    pub listen_port: u16,
    /// Interfaces whose TCP is redirected.
    pub lan_interfaces: Vec<String>,
    /// Destinations never redirected.
    pub bypass_destinations: Vec<String>,
    /// LAN sources never redirected.
    pub bypass_sources: Vec<String>,
    /// `[health] interval_ms`.
    pub health_interval_ms: u64,
    /// `[health] timeout_ms`.
    pub health_timeout_ms: u64,
    /// `[health] down_after`.
    pub down_after: u32,
    /// `[health] up_after`.
    pub up_after: u32,
    /// `[[wan]]` entries (none: the agent auto-detects its WANs).
    pub wans: Vec<WanEntry>,
    /// `[status] socket`: the control socket.
    pub status_socket: PathBuf,
    /// `state_dir` (the data usage file); None: `state_dir = ""`, nothing kept. Never
    /// the agent's default `/etc/mpbond`: a test must not write outside its bed.
    pub state_dir: Option<PathBuf>,
    /// `[mptcp] down_reaction` (`keep`, `backup`, `delete`); `None`: the default.
    pub down_reaction: Option<String>,
    /// The body of `[udp]` (TOML lines, `[[udp.rule]]` tables may follow); `None`: the
    /// agent's defaults.
    pub udp: Option<String>,
    /// `[mptcp] congestion` (`"reno"`, `"bbr"`, `"system"`); `None`: the default.
    pub congestion: Option<String>,
    /// `[mptcp] buffers` (`"auto"`, `"kernel"`); `None`: the default.
    pub buffers: Option<String>,
    /// The body of a `[path_quality]` section (`enabled = false`, ...); `None`: none.
    pub path_quality: Option<String>,
}

/// One `[[wan]]` entry of the agent's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WanEntry {
    /// Logical name.
    pub name: String,
    /// Kernel device.
    pub device: String,
    /// `on`, `backup` or `off`.
    pub mode: String,
    /// Probe interval (while the WAN is suspicious).
    pub probe_interval_ms: u64,
    /// Probe interval while the WAN is healthy and idle (`None`: the agent's default).
    pub probe_idle_interval_ms: Option<u64>,
    /// Probe timeout.
    pub probe_timeout_ms: u64,
    /// Failed probes in a row before the WAN is down.
    pub down: u32,
    /// Good probes in a row before it is up again.
    pub up: u32,
    /// `metered = true`.
    pub metered: bool,
    /// `allowance` (`"20GB"`), if any.
    pub allowance: Option<String>,
}

impl WanEntry {
    /// WAN `device` (also its name) in `mode`, probed every 200 ms with a
    /// 300 ms timeout, down after 3 failures and up after 2 successes.
    pub fn new(device: &str, mode: &str) -> Self {
        Self {
            name: device.into(),
            device: device.into(),
            mode: mode.into(),
            probe_interval_ms: 200,
            probe_idle_interval_ms: None,
            probe_timeout_ms: 300,
            down: 3,
            up: 2,
            metered: false,
            allowance: None,
        }
    }
}

impl AgentConfig {
    /// The TOML text.
    pub fn to_toml(&self) -> String {
        let state_dir = self
            .state_dir
            .as_deref()
            .map_or("".into(), Path::to_string_lossy);
        let mut t = format!(
            "state_dir = {state_dir:?}\n\n[concentrator]\nhost = {:?}\nport = {}\nclient_id = {:?}\nkey = {:?}\n\n\
             [proxy]\nlisten_port = {}\nlan_interfaces = [{}]\n\n\
             [bypass]\ndestinations = [{}]\nsources = [{}]\n\n\
             [health]\ninterval_ms = {}\ntimeout_ms = {}\ndown_after = {}\nup_after = {}\n",
            self.host,
            self.port,
            self.client_id,
            self.key,
            self.listen_port,
            toml_list(&self.lan_interfaces),
            toml_list(&self.bypass_destinations),
            toml_list(&self.bypass_sources),
            self.health_interval_ms,
            self.health_timeout_ms,
            self.down_after,
            self.up_after
        );
        let _ = write!(t, "\n[status]\nsocket = {:?}\n", self.status_socket);
        if self.down_reaction.is_some() || self.congestion.is_some() || self.buffers.is_some() {
            t.push_str("\n[mptcp]\n");
        }
        if let Some(reaction) = &self.down_reaction {
            let _ = writeln!(t, "down_reaction = {reaction:?}");
        }
        if let Some(congestion) = &self.congestion {
            let _ = writeln!(t, "congestion = {congestion:?}");
        }
        if let Some(buffers) = &self.buffers {
            let _ = writeln!(t, "buffers = {buffers:?}");
        }
        if let Some(body) = &self.path_quality {
            let _ = write!(t, "\n[path_quality]\n{body}\n");
        }
        for w in &self.wans {
            let _ = write!(
                t,
                "\n[[wan]]\nname = {:?}\ndevice = {:?}\nmode = {:?}\nprobe_interval_ms = {}\n\
                 probe_timeout_ms = {}\ndown = {}\nup = {}\n",
                w.name, w.device, w.mode, w.probe_interval_ms, w.probe_timeout_ms, w.down, w.up
            );
            if w.metered {
                t.push_str("metered = true\n");
            }
            if let Some(allowance) = &w.allowance {
                let _ = writeln!(t, "allowance = {allowance:?}");
            }
            if let Some(idle) = w.probe_idle_interval_ms {
                let _ = writeln!(t, "probe_idle_interval_ms = {idle}");
            }
        }
        if let Some(udp) = &self.udp {
            let _ = write!(t, "\n[udp]\n{udp}\n");
        }
        t
    }
}

/// A running daemon. Dropping it sends SIGTERM (SIGKILL after 5 s) and, if
/// the thread is panicking, prints the tail of its log.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: ChildGuard,
    /// The config file it was started with (see `agentreload` for rewriting it).
    pub(crate) config: PathBuf,
    log: PathBuf,
    _notify: UnixDatagram,
}

impl Daemon {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().is_none()
    }

    /// SIGTERM and wait (SIGKILL after `grace`).
    pub fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        self.child.terminate(grace)
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) -> Option<ExitStatus> {
        self.child.kill()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} log (tail) ----\n{}\n---- end ----",
                self.name,
                self.log_tail(60)
            );
        }
        self.child.terminate(Duration::from_secs(5));
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl TestBed {
    /// The concentrator config this bed's defaults describe (client `home`).
    pub fn concentrator_config(&self) -> ConcentratorConfig {
        ConcentratorConfig {
            listen: vec![
                "0.0.0.0:4850".parse().expect("literal"),
                "[::]:4850".parse().expect("literal"),
            ],
            metrics: Some(METRICS_ADDR.into()),
            clients: vec![(CLIENT_ID.into(), self.key_hex())],
            deny: Vec::new(),
            // The bed's "internet" server sits in documentation ranges, which the
            // concentrator refuses by default.
            allow: vec!["203.0.113.0/24".into(), "2001:db8:200::/48".into()],
            quiet: None,
            connect_timeout_ms: 5000,
            handshake_timeout_ms: 5000,
            auth_window_secs: 60,
            per_source: None,
            congestion: None,
        }
    }

    /// The agent config matching [`Self::concentrator_config`], with quick health probes
    /// and the control socket [`Self::agent_socket`]. Every WAN of the bed is a
    /// `[[wan]]` entry: mode `on` with [`TestBedBuilder::agent_routing`], else `off`,
    /// so the agent leaves the bed's own per-WAN routing alone.
    ///
    /// [`TestBedBuilder::agent_routing`]: crate::TestBedBuilder::agent_routing
    pub fn agent_config(&self) -> AgentConfig {
        let mode = if self.agent_routing() { "on" } else { "off" };
        AgentConfig {
            host: VPS_V4.to_string(),
            port: mpbond_protocol::DEFAULT_PORT,
            client_id: CLIENT_ID.into(),
            key: self.key_hex(),
            listen_port: 4851,
            lan_interfaces: vec![ROUTER_LAN_IF.into()],
            bypass_destinations: Vec::new(),
            bypass_sources: Vec::new(),
            health_interval_ms: 300,
            health_timeout_ms: 1000,
            down_after: 2,
            up_after: 1,
            wans: (1..=self.wan_rates().len())
                .map(|i| WanEntry::new(&format!("wan{i}"), mode))
                .collect(),
            status_socket: self.agent_socket(),
            state_dir: Some(self.dir().join("agent-state")),
            down_reaction: None,
            udp: None,
            congestion: None,
            buffers: None,
            path_quality: None,
        }
    }

    /// The agent's control socket in the bed's scratch directory.
    pub fn agent_socket(&self) -> PathBuf {
        self.dir().join("agent.sock")
    }

    /// Start the concentrator in the VPS namespace and wait for READY=1.
    pub fn start_concentrator(&self, cfg: &ConcentratorConfig) -> Result<Daemon, BedError> {
        self.start_daemon(
            Node::Vps,
            "mpbond-concentrator",
            "toml",
            &cfg.to_toml(),
            true,
        )
    }

    /// Start the agent in the router namespace and wait for READY=1.
    pub fn start_agent(&self, cfg: &AgentConfig) -> Result<Daemon, BedError> {
        self.start_daemon(Node::Router, "mpbond-agent", "toml", &cfg.to_toml(), true)
    }

    /// [`Self::start_agent`] without `RUST_LOG` in the agent's environment, so
    /// its log level is the one its config gives.
    pub fn start_agent_without_rust_log(&self, cfg: &AgentConfig) -> Result<Daemon, BedError> {
        self.start_daemon(Node::Router, "mpbond-agent", "toml", &cfg.to_toml(), false)
    }

    fn start_daemon(
        &self,
        node: Node,
        name: &str,
        ext: &str,
        config: &str,
        rust_log: bool,
    ) -> Result<Daemon, BedError> {
        self.start_daemon_in(self.netns(node)?, name, ext, config, rust_log)
    }

    /// [`Self::start_daemon`] in any namespace (a second VPS's, `second_vps`).
    pub(crate) fn start_daemon_in(
        &self,
        ns: &crate::Netns,
        name: &str,
        ext: &str,
        config: &str,
        rust_log: bool,
    ) -> Result<Daemon, BedError> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let bin = bin_path(name)?;
        let n = N.fetch_add(1, Ordering::Relaxed);
        let io_err = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| BedError::Io { what, path, source }
        };
        let cfg_path = self.dir().join(format!("{name}-{n}.{ext}"));
        std::fs::write(&cfg_path, config).map_err(io_err("cannot write", &cfg_path))?;
        let sock_path = self.dir().join(format!("{name}-{n}.notify"));
        let notify = UnixDatagram::bind(&sock_path).map_err(io_err("cannot bind", &sock_path))?;
        let log = self.dir().join(format!("{name}-{n}.log"));
        let log_file = std::fs::File::create(&log).map_err(io_err("cannot create", &log))?;
        let mut cmd = ns.command(&bin.to_string_lossy());
        cmd.arg("--config")
            .arg(&cfg_path)
            .env("NOTIFY_SOCKET", &sock_path)
            .env_remove("RUST_LOG");
        if rust_log {
            cmd.env(
                "RUST_LOG",
                std::env::var("MPBOND_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        }
        // The agent logs info and debug on stdout, warnings and errors on stderr (as procd
        // files them): both go to one log, in order.
        let out_file = log_file.try_clone().map_err(io_err("cannot dup", &log))?;
        cmd.stdin(Stdio::null()).stdout(out_file).stderr(log_file);
        let child = ChildGuard::spawn(cmd)?;
        let mut daemon = Daemon {
            name: name.into(),
            child,
            config: cfg_path,
            log,
            _notify: notify,
        };
        wait_ready(&mut daemon)?;
        Ok(daemon)
    }
}

fn wait_ready(d: &mut Daemon) -> Result<(), BedError> {
    let deadline = Instant::now() + READY_LIMIT;
    let mut buf = [0u8; 4096];
    let _ = d._notify.set_read_timeout(Some(Duration::from_millis(100)));
    loop {
        if let Ok(n) = d._notify.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]);
            if msg.lines().any(|l| l.trim() == "READY=1") {
                return Ok(());
            }
        }
        if let Some(status) = d.child.try_wait() {
            return Err(BedError::DaemonExited {
                name: d.name.clone(),
                status,
                log: d.log_tail(40),
            });
        }
        if Instant::now() >= deadline {
            return Err(BedError::NotReady {
                name: d.name.clone(),
                secs: READY_LIMIT.as_secs(),
                log: d.log_tail(40),
            });
        }
    }
}
