//! The MIPS router VM: the bed's router as a full MIPS system, with the mipsel agent
//! on Debian's Malta kernel (Linux 6.1) under `qemu-system-mipsel -M malta -cpu 24Kc`,
//! or on the kernel `MPBOND_MIPS_KERNEL` names (one with everything built in, such as
//! `cross/mips-kernel.sh`'s 6.12; see [`packages`]).
//!
//! ```no_run
//! use mpbond_tests::{vm::RouterVm, TestBed};
//! let bed = TestBed::builder().wans(&[0, 0]).agent_routing(true).build();
//! let vm = RouterVm::boot(&bed).unwrap();
//! vm.start_agent(&vm.default_uci()).unwrap();
//! let status = vm.agent_status().unwrap();
//! # let _ = status;
//! ```
//!
//! Layout:
//! * [`packages`]: the kernel and busybox `.deb`s (fetched once, cached under
//!   `target/mips-vm/`) and the cross-built agent.
//! * [`cpio`], [`initramfs`]: the initramfs, built in Rust and cached by content.
//! * [`guest`]: the init script, the guest's network setup and the agent's UCI config.
//! * [`qemu`]: the command line and the console reader.
//! * [`plumbing`]: the router namespace as a switch: bridges and TAPs.
//! * [`shell`]: the command channel (a shell on the second serial port).
//! * [`monitor`]: qemu's monitor (a NIC's link down and up).
//! * [`cpu`]: the guest's `/proc/stat`.
//!
//! Teardown: dropping the [`RouterVm`] kills qemu; the TAPs and bridges live in the
//! router namespace and go with the bed. The VM borrows the bed, so it always goes
//! first. qemu runs inside the router namespace, so the namespace guard's kill of
//! every process in it (on drop, on Ctrl-C, and the next bed's sweep of a crashed
//! run's namespaces) ends it on every other exit path.

pub mod cpio;
pub mod cpu;
pub mod guest;
pub mod initramfs;
pub mod monitor;
pub mod packages;
pub mod plumbing;
pub mod qemu;
pub mod shell;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bed::TestBed;
use crate::error::BedError;
use crate::proc::{self, ChildGuard};
use crate::topology::Node;
pub use cpu::{CpuTimes, GuestCounters};
pub use shell::GuestOutput;

/// How long the guest may take from qemu's start to [`guest::READY_LINE`] (TCG on a
/// busy two-core host; an idle one boots in about 5 s).
pub const BOOT_LIMIT: Duration = Duration::from_secs(180);
/// The default limit of one guest command.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);
/// How long the guest agent may take to answer `status`.
pub const AGENT_READY_LIMIT: Duration = Duration::from_secs(60);
/// The qemu binary.
pub const QEMU: &str = "qemu-system-mipsel";

/// What can go wrong with the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A package, tool or binary the VM needs is not there.
    #[error("the MIPS router VM needs {what}: run `{hint}`")]
    Missing {
        /// What is missing.
        what: String,
        /// The command that provides it.
        hint: String,
    },
    /// The guest did something unexpected.
    #[error("MIPS VM: {what}: {detail}")]
    Guest {
        /// What was being done.
        what: String,
        /// What happened.
        detail: String,
    },
    /// The serial or monitor socket failed.
    #[error("MIPS VM: {what}")]
    Channel {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The running VM, the bed's router.
#[derive(Debug)]
pub struct RouterVm<'bed> {
    bed: &'bed TestBed,
    qemu: ChildGuard,
    console: qemu::Console,
    shell: Mutex<shell::Shell>,
    monitor: PathBuf,
    boot_time: Duration,
}

impl<'bed> RouterVm<'bed> {
    /// Turn `bed`'s router namespace into a switch, boot the guest on it and give it
    /// the router's addresses and routes. The bed must have been built with
    /// `agent_routing(true)`: the guest's agent does the per-WAN routing.
    pub fn boot(bed: &'bed TestBed) -> Result<Self, BedError> {
        if !bed.agent_routing() {
            return Err(BedError::Usage(
                "the MIPS router VM needs a bed built with agent_routing(true)".into(),
            ));
        }
        require_qemu()?;
        let parts = packages::guest_parts()?;
        let initrd = initramfs::build(&parts, &packages::cache_dir())?;
        let wans = bed.wan_rates().len();
        plumb(bed, wans)?;
        let spec = qemu::QemuSpec {
            kernel: parts.kernel.clone(),
            initrd,
            taps: (0..=wans).map(plumbing::tap_name).collect(),
            shell_socket: bed.dir().join("vm-shell.sock"),
            monitor_socket: bed.dir().join("vm-monitor.sock"),
        };
        let qemu_log = bed.dir().join("vm-qemu.log");
        let err_file = std::fs::File::create(&qemu_log).map_err(|source| BedError::Io {
            what: "cannot create",
            path: qemu_log.clone(),
            source,
        })?;
        let mut cmd = bed.netns(Node::Router)?.command(QEMU);
        cmd.args(qemu::args(&spec))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err_file);
        let started = Instant::now();
        let mut child = ChildGuard::spawn(cmd)?;
        let console: qemu::Console = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.child_mut().stdout.take() {
            qemu::read_console(out, console.clone(), &bed.dir().join("vm-console.log"));
        }
        let ready = proc::wait_until(BOOT_LIMIT, || {
            child.try_wait().is_some() || text(&console).contains(guest::READY_LINE)
        });
        if !ready || child.try_wait().is_some() {
            let qemu_err = std::fs::read_to_string(&qemu_log).unwrap_or_default();
            return Err(VmError::Guest {
                what: "boot".into(),
                detail: format!(
                    "no `{}` within {} s (qemu {}); qemu: {qemu_err}\nconsole tail:\n{}",
                    guest::READY_LINE,
                    BOOT_LIMIT.as_secs(),
                    child.try_wait().map_or("running".into(), |s| s.to_string()),
                    tail(&text(&console), 40)
                ),
            }
            .into());
        }
        let boot_time = started.elapsed();
        let shell = shell::Shell::connect(&spec.shell_socket)?;
        let vm = Self {
            bed,
            qemu: child,
            console,
            shell: Mutex::new(shell),
            monitor: spec.monitor_socket,
            boot_time,
        };
        for line in guest::network_script(&bed.plan).lines() {
            vm.run(line)?;
        }
        Ok(vm)
    }

    /// From qemu's start to the guest's ready line.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// The bed the VM is the router of.
    pub fn bed(&self) -> &'bed TestBed {
        self.bed
    }

    /// The guest console so far.
    pub fn console(&self) -> String {
        text(&self.console)
    }

    /// Run `cmd` in the guest; its output, or an error on a non-zero exit.
    pub fn run(&self, cmd: &str) -> Result<String, BedError> {
        let out = self.run_status(cmd, COMMAND_LIMIT)?;
        if out.status != 0 {
            return Err(VmError::Guest {
                what: format!("`{cmd}`"),
                detail: format!("exit {}: {}", out.status, out.output.trim()),
            }
            .into());
        }
        Ok(out.output)
    }

    /// Run `cmd` in the guest within `limit`, whatever its exit status.
    pub fn run_status(&self, cmd: &str, limit: Duration) -> Result<GuestOutput, BedError> {
        let mut shell = self.shell.lock().unwrap_or_else(|p| p.into_inner());
        Ok(shell.run(cmd, limit)?)
    }

    /// Write `text` to `path` in the guest.
    pub fn write_file(&self, path: &str, text: &str) -> Result<(), BedError> {
        let body = text.trim_end_matches('\n');
        let out = self.run_status(
            &format!("cat >{path} <<'MPBOND_EOF'\n{body}\nMPBOND_EOF"),
            COMMAND_LIMIT,
        )?;
        if out.status != 0 {
            return Err(VmError::Guest {
                what: format!("writing {path}"),
                detail: out.output,
            }
            .into());
        }
        Ok(())
    }

    /// Pull the cable of the guest's NIC `n` (0: LAN, `i`: WAN `i`) or plug it back:
    /// the guest sees its carrier go down or up.
    pub fn set_link(&self, n: usize, up: bool) -> Result<(), BedError> {
        let state = if up { "on" } else { "off" };
        monitor::command(
            &self.monitor,
            &format!("set_link {} {state}", qemu::netdev_id(n)),
        )?;
        Ok(())
    }

    /// The UCI config [`guest::agent_uci`] gives for this bed.
    pub fn default_uci(&self) -> String {
        guest::agent_uci(&self.bed.key_hex(), "info")
    }

    /// Write `uci` to `/etc/config/mpbond`, start the agent with it (and procd's open
    /// file limit, 65536, from `openwrt/mpbond/files/mpbond.init`) and wait until it
    /// answers `status`.
    pub fn start_agent(&self, uci: &str) -> Result<(), BedError> {
        self.start_agent_with_env(uci, "")
    }

    /// [`Self::start_agent`] with `env` (`NAME=value ...`, for measurements such as
    /// `MPBOND_RCVLOWAT=0`) in the agent's environment.
    pub fn start_agent_with_env(&self, uci: &str, env: &str) -> Result<(), BedError> {
        self.write_file(guest::AGENT_UCI, uci)?;
        let env = if env.is_empty() {
            String::new()
        } else {
            format!("env {env} ")
        };
        self.run(&format!(
            "ulimit -n 65536; {env}mpbond-agent --uci {} >{} 2>&1 & echo $! >/tmp/mpbond-agent.pid",
            guest::AGENT_UCI,
            guest::AGENT_LOG
        ))?;
        let deadline = Instant::now() + AGENT_READY_LIMIT;
        loop {
            if self.agent_status().is_ok() {
                return Ok(());
            }
            if !self.agent_running()? || Instant::now() >= deadline {
                return Err(VmError::Guest {
                    what: "the agent".into(),
                    detail: format!(
                        "no status answer within {} s; log:\n{}",
                        AGENT_READY_LIMIT.as_secs(),
                        self.agent_log()
                    ),
                }
                .into());
            }
            std::thread::sleep(proc::POLL);
        }
    }

    /// SIGTERM the agent and wait (up to [`AGENT_READY_LIMIT`]) until it has exited.
    pub fn stop_agent(&self) -> Result<(), BedError> {
        self.signal_agent("TERM")?;
        if proc::wait_until(AGENT_READY_LIMIT, || !self.agent_running().unwrap_or(true)) {
            Ok(())
        } else {
            Err(VmError::Guest {
                what: "the agent".into(),
                detail: format!(
                    "still running {} s after SIGTERM",
                    AGENT_READY_LIMIT.as_secs()
                ),
            }
            .into())
        }
    }

    /// Wait (up to `limit`) until the agent redirects and has a routing table and an
    /// MPTCP endpoint on each of WANs `1..=wans`; whether it did.
    pub fn wait_bonded(&self, wans: usize, limit: Duration) -> bool {
        proc::wait_until(limit, || {
            let Ok(doc) = self.agent_status() else {
                return false;
            };
            doc["concentrator"]["redirect"].as_bool() == Some(true)
                && (1..=wans).all(|i| {
                    crate::status_wan(&doc, &format!("wan{i}"))
                        .is_some_and(|w| w["table"].is_u64() && w["endpoint_id"].is_u64())
                })
        })
    }

    /// Voluntary context switches (the times it blocked, so its wake-ups) summed over
    /// the threads of the guest process whose pid is in `pid_file`.
    pub fn wakeups(&self, pid_file: &str) -> Result<u64, BedError> {
        let out = self.run(&format!(
            "for f in /proc/$(cat {pid_file})/task/*/status; do \
             grep '^voluntary_ctxt_switches' $f; done"
        ))?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum())
    }

    /// The agent's pid in the guest.
    pub fn agent_pid(&self) -> Result<u32, BedError> {
        let pid = self.run("cat /tmp/mpbond-agent.pid")?;
        pid.trim().parse().map_err(|_| {
            VmError::Guest {
                what: "the agent's pid".into(),
                detail: pid.clone(),
            }
            .into()
        })
    }

    /// Whether the agent process is alive (and not a zombie).
    pub fn agent_running(&self) -> Result<bool, BedError> {
        let pid = self.agent_pid()?;
        let out = self.run_status(&format!("grep State /proc/{pid}/status"), COMMAND_LIMIT)?;
        Ok(out.status == 0 && !out.output.contains("zombie"))
    }

    /// Send `signal` (a name: `TERM`, `KILL`) to the agent.
    pub fn signal_agent(&self, signal: &str) -> Result<(), BedError> {
        let pid = self.agent_pid()?;
        self.run(&format!("kill -{signal} {pid}"))?;
        Ok(())
    }

    /// `mpbond-agent status --json` in the guest, parsed.
    pub fn agent_status(&self) -> Result<serde_json::Value, BedError> {
        let out = self.run("mpbond-agent status --json")?;
        serde_json::from_str(&out).map_err(|source| BedError::BadOutput {
            cmd: "mpbond-agent status --json (guest)".into(),
            output: out,
            source,
        })
    }

    /// `mpbond-agent status` (the table) in the guest.
    pub fn agent_status_table(&self) -> Result<String, BedError> {
        self.run("mpbond-agent status")
    }

    /// The agent's log in the guest.
    pub fn agent_log(&self) -> String {
        self.run(&format!("cat {}", guest::AGENT_LOG))
            .unwrap_or_else(|e| format!("(cannot read the agent log: {e})"))
    }

    /// The agent's resident set in KiB (`VmRSS` from the guest's `/proc`).
    pub fn agent_rss_kib(&self) -> Result<u64, BedError> {
        let pid = self.agent_pid()?;
        let out = self.run(&format!("grep VmRSS /proc/{pid}/status"))?;
        out.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                VmError::Guest {
                    what: "VmRSS".into(),
                    detail: out.clone(),
                }
                .into()
            })
    }

    /// The relay process's ticks (`pid_file` holds its pid), the network softirqs and
    /// the interrupts of the guest ([`GuestCounters`]).
    pub fn counters(&self, pid_file: &str) -> Result<GuestCounters, BedError> {
        let cmd = GuestCounters::COMMAND.replace("{pid}", &format!("$(cat {pid_file})"));
        Ok(GuestCounters::parse(&self.run(&cmd)?))
    }

    /// The guest's CPU counters now (first line of `/proc/stat`).
    pub fn cpu_times(&self) -> Result<CpuTimes, BedError> {
        let out = self.run("head -n 1 /proc/stat")?;
        CpuTimes::parse(&out).ok_or_else(|| {
            VmError::Guest {
                what: "/proc/stat".into(),
                detail: out.clone(),
            }
            .into()
        })
    }
}

impl Drop for RouterVm<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- MIPS VM console (tail) ----\n{}\n---- guest agent log (tail) ----\n{}\n---- end ----",
                tail(&self.console(), 30),
                tail(&self.agent_log(), 60)
            );
        }
        self.qemu.kill();
    }
}

fn require_qemu() -> Result<(), BedError> {
    let found = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        Ok(())
    } else {
        Err(VmError::Missing {
            what: format!("{QEMU} (Debian package qemu-system-mips)"),
            hint: "sh tests/setup.sh".into(),
        }
        .into())
    }
}

/// Make the router namespace a switch and give the ISPs and the core the way back.
fn plumb(bed: &TestBed, wans: usize) -> Result<(), BedError> {
    bed.exec_args(
        Node::Router,
        &["ip", "-batch", "-"],
        Some(&plumbing::router_switch_script(wans)),
    )?;
    bed.exec(
        Node::Router,
        "sysctl -q -w net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0",
    )?;
    bed.exec(Node::Router, "nft delete table inet mpbt_nat")?;
    for i in 1..=wans {
        bed.exec(
            Node::Isp(i),
            &format!("ip {}", plumbing::isp_return_route(i)),
        )?;
    }
    bed.exec(Node::Core, &format!("ip {}", plumbing::core_return_route()))?;
    Ok(())
}

fn text(console: &qemu::Console) -> String {
    console.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
