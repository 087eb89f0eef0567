//! [`TestBed`]: the namespaces of [`crate::topology`], built and torn down.
//!
//! ```no_run
//! use mpbond_tests::{Node, TestBed};
//! let bed = TestBed::builder().wans(&[40, 60]).build();
//! let route = bed.exec(Node::Router, "ip route get 192.0.2.1 from 10.200.2.2").unwrap();
//! assert!(route.contains("dev wan2"));
//! let (rx, tx) = bed.wan_bytes(1);
//! # let _ = (rx, tx);
//! ```
//! Test beds in one process run one at a time (a process-wide lock), so
//! throughput assertions do not compete with each other for the CPU.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use mpbond_testkit::TempDir;

use crate::error::BedError;
use crate::netns::{self, Netns};
use crate::proc::{self, ChildGuard};
use crate::topology::{Node, Plan, MAX_WANS};

const CMD_LIMIT: Duration = Duration::from_secs(30);
static SERIAL: Mutex<()> = Mutex::new(());

/// Builder for a [`TestBed`].
#[derive(Debug, Clone)]
pub struct TestBedBuilder {
    plan: Plan,
}

impl TestBedBuilder {
    /// One WAN per entry, shaped to that many Mbit/s in both directions (0 = unshaped).
    pub fn wans(mut self, rates_mbit: &[u32]) -> Self {
        self.plan.rates = rates_mbit.to_vec();
        self
    }

    /// TCP congestion control in every namespace (default `reno`).
    pub fn congestion_control(mut self, name: &str) -> Self {
        self.plan.congestion_control = name.to_owned();
        self
    }

    /// Queue length of the TBF shapers, as milliseconds at the WAN's rate (default 25).
    pub fn tbf_latency_ms(mut self, ms: u32) -> Self {
        self.plan.tbf_latency_ms = ms;
        self
    }

    /// TCP Fast Open (default on: the VPS has `tcp_fastopen=3`). Off sets
    /// `tcp_fastopen=0` in the router and the VPS, so the daemons' TFO
    /// requests become plain handshakes.
    pub fn fast_open(mut self, on: bool) -> Self {
        self.plan.fast_open = on;
        self
    }

    /// Leave per-WAN routing to the agent (default off): the router gets no
    /// per-WAN tables, rules, MPTCP endpoints or limits, only its addresses, a
    /// main-table default route per WAN (WAN 1's preferred, as netifd does),
    /// NAT and shaping. Start the agent with [`TestBed::agent_config`], which
    /// then lists the WANs as `[[wan]]` entries the agent manages.
    pub fn agent_routing(mut self, on: bool) -> Self {
        self.plan.agent_routing = on;
        self
    }

    /// Build it, or panic with the reason.
    pub fn build(self) -> TestBed {
        match self.try_build() {
            Ok(bed) => bed,
            Err(e) => panic!("cannot build the test bed: {e}"),
        }
    }

    /// Build it. Everything created so far is removed again on failure.
    pub fn try_build(self) -> Result<TestBed, BedError> {
        let n = self.plan.rates.len();
        if n == 0 || n > MAX_WANS {
            return Err(BedError::Usage(format!(
                "between 1 and {MAX_WANS} WANs, not {n}"
            )));
        }
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        netns::sweep_stale();
        let dir = TempDir::try_new("bed").map_err(|e| BedError::Io {
            what: "cannot create",
            path: e.path,
            source: e.source,
        })?;
        let mut nss = BTreeMap::new();
        for node in self.plan.nodes() {
            nss.insert(node, Netns::try_new(&node.role())?);
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| BedError::Usage(format!("no randomness for the key: {e}")))?;
        let key = crate::datagen::hex(&key);
        let bed = TestBed {
            nss,
            plan: self.plan,
            dir,
            key,
            wan_v4: BTreeMap::new(),
            _serial: serial,
        };
        bed.configure()?;
        Ok(bed)
    }
}

/// The running test bed. Dropping it kills everything in it and deletes it.
#[derive(Debug)]
pub struct TestBed {
    pub(crate) nss: BTreeMap<Node, Netns>,
    pub(crate) plan: Plan,
    dir: TempDir,
    key: String,
    /// Router IPv4 addresses changed by [`TestBed::change_wan_address`].
    pub(crate) wan_v4: BTreeMap<usize, std::net::Ipv4Addr>,
    _serial: MutexGuard<'static, ()>,
}

impl TestBed {
    /// Start describing a test bed (defaults: WANs 40 and 60 Mbit/s, reno).
    pub fn builder() -> TestBedBuilder {
        TestBedBuilder {
            plan: Plan {
                rates: vec![40, 60],
                congestion_control: "reno".into(),
                tbf_latency_ms: 25,
                fast_open: true,
                agent_routing: false,
            },
        }
    }

    /// Whether the agent owns per-WAN routing ([`TestBedBuilder::agent_routing`]).
    pub fn agent_routing(&self) -> bool {
        self.plan.agent_routing
    }

    fn configure(&self) -> Result<(), BedError> {
        for node in self.plan.nodes() {
            let mut cmd = self.netns(node)?.command("sysctl");
            cmd.arg("-q").arg("-w").args(self.plan.sysctls(node));
            proc::run(cmd, None, CMD_LIMIT)?;
        }
        for link in self.plan.links() {
            let (a, b) = (self.netns(link.a)?.name(), self.netns(link.b)?.name());
            let mut cmd = Command::new("ip");
            cmd.args([
                "-n", a, "link", "add", &link.a_if, "type", "veth", "peer", "name",
            ]);
            cmd.args([link.b_if.as_str(), "netns", b]);
            proc::run(cmd, None, CMD_LIMIT)?;
        }
        for node in self.plan.nodes() {
            let ns = self.netns(node)?.name();
            let mut cmd = Command::new("ip");
            cmd.args(["-n", ns, "-batch", "-"]);
            proc::run(cmd, Some(&self.plan.ip_script(node)), CMD_LIMIT)?;
            let ip6 = self.plan.ip6_script(node);
            if !ip6.is_empty() {
                let mut cmd = Command::new("ip");
                cmd.args(["-6", "-n", ns, "-batch", "-"]);
                proc::run(cmd, Some(&ip6), CMD_LIMIT)?;
            }
            let tc = self.plan.tc_script(node);
            if !tc.is_empty() {
                let mut cmd = Command::new("tc");
                cmd.args(["-n", ns, "-batch", "-"]);
                proc::run(cmd, Some(&tc), CMD_LIMIT)?;
            }
            if let Some(rules) = self.plan.nft_ruleset(node) {
                self.nft(node, &rules)?;
            }
        }
        Ok(())
    }

    /// The namespace of `node`.
    pub fn netns(&self, node: Node) -> Result<&Netns, BedError> {
        self.nss
            .get(&node)
            .ok_or_else(|| BedError::Usage(format!("no {node:?} in this test bed")))
    }

    /// The namespace name of `node` (panics if the bed has no such node).
    pub fn ns_name(&self, node: Node) -> &str {
        self.nss
            .get(&node)
            .map(Netns::name)
            .unwrap_or_else(|| panic!("no {node:?} in this test bed"))
    }

    /// WAN rates in Mbit/s, WAN 1 first.
    pub fn wan_rates(&self) -> &[u32] {
        &self.plan.rates
    }

    /// The client key shared by the agent and concentrator configs, as hex.
    pub fn key_hex(&self) -> String {
        self.key.clone()
    }

    /// A scratch directory that lives as long as the bed.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Run `cmd` (split on whitespace) in `node`; its stdout on success.
    pub fn exec(&self, node: Node, cmd: &str) -> Result<String, BedError> {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        let out = self.exec_args(node, &args, None)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run `args` in `node`, feeding `stdin`; fail on a non-zero exit.
    pub fn exec_args(
        &self,
        node: Node,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<Output, BedError> {
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| BedError::Usage("empty command".into()))?;
        let mut cmd = self.netns(node)?.command(program);
        cmd.args(rest);
        proc::run(cmd, stdin, CMD_LIMIT)
    }

    /// Load an nft ruleset (`nft -f -`) in `node`.
    pub fn nft(&self, node: Node, ruleset: &str) -> Result<(), BedError> {
        self.exec_args(node, &["nft", "-f", "-"], Some(ruleset))
            .map(|_| ())
    }

    /// Spawn `args` in `node` with stdout and stderr piped; killed when the guard drops.
    pub fn spawn(&self, node: Node, args: &[&str]) -> Result<ChildGuard, BedError> {
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| BedError::Usage("empty command".into()))?;
        let mut cmd = self.netns(node)?.command(program);
        cmd.args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        ChildGuard::spawn(cmd)
    }

    /// `(rx, tx)` byte counters of the router's `wan<i>`: rx is download, tx upload.
    pub fn wan_bytes(&self, i: usize) -> (u64, u64) {
        let read = |what: &str| -> u64 {
            let path = format!("/sys/class/net/wan{i}/statistics/{what}_bytes");
            self.exec(Node::Router, &format!("cat {path}"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or_else(|| panic!("cannot read {path} in the router namespace"))
        };
        (read("rx"), read("tx"))
    }

    /// [`Self::wan_bytes`] of every WAN, WAN 1 first.
    pub fn all_wan_bytes(&self) -> Vec<(u64, u64)> {
        (1..=self.plan.rates.len())
            .map(|i| self.wan_bytes(i))
            .collect()
    }
}

/// Deltas of two [`TestBed::all_wan_bytes`] snapshots: `(rx, tx)` per WAN.
pub fn wan_delta(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<(u64, u64)> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1)))
        .collect()
}
