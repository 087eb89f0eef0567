//! A second VPS, for tests of an agent with several concentrators: its own namespace
//! behind the core, with its public address on `lo` like the first VPS.
//!
//! ```text
//!  core ──vps2── eth0  vps2   (192.0.2.2 on lo; transit 10.250.101.0/30)
//! ```
//! The core routes 192.0.2.2/32 to it (more specific than the first VPS's /24), and its
//! default route uses 192.0.2.2 as the source, so a server sees which VPS a connection
//! came through. Additive: the bed's plan and its other namespaces are unchanged, and the
//! namespace goes away when the [`SecondVps`] is dropped (taking the core's end of the
//! link and its route with it).

use std::net::Ipv4Addr;
use std::process::Command;

use crate::daemons::{ConcentratorConfig, Daemon};
use crate::{proc, BedError, Netns, Node, TestBed};
use std::time::Duration;

/// How long one setup command may take.
const CMD_LIMIT: Duration = Duration::from_secs(30);

/// The second VPS's public address.
pub const VPS2_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// The second VPS's namespace (removed on drop).
#[derive(Debug)]
pub struct SecondVps {
    ns: Netns,
}

impl SecondVps {
    /// Its namespace.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }
}

impl TestBed {
    /// Add a second VPS behind the core (see the module docs).
    pub fn add_second_vps(&self) -> Result<SecondVps, BedError> {
        let ns = Netns::try_new("vps2")?;
        let mut sysctls = vec![
            "net.mptcp.enabled=1".to_owned(),
            "net.ipv4.conf.all.rp_filter=0".to_owned(),
            "net.ipv4.conf.default.rp_filter=0".to_owned(),
        ];
        sysctls.extend(
            self.plan
                .sysctls(Node::Vps)
                .into_iter()
                .filter(|s| s.starts_with("net.ipv4.tcp_")),
        );
        let mut cmd = ns.command("sysctl");
        cmd.arg("-q").arg("-w").args(&sysctls);
        proc::run(cmd, None, CMD_LIMIT)?;
        let core = self.netns(Node::Core)?.name().to_owned();
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &core, "link", "add", "vps2", "type", "veth", "peer"]);
        cmd.args(["name", "eth0", "netns", ns.name()]);
        proc::run(cmd, None, CMD_LIMIT)?;
        let batch = |ns: &str, script: String| {
            let mut cmd = Command::new("ip");
            cmd.args(["-n", ns, "-batch", "-"]);
            proc::run(cmd, Some(&script), CMD_LIMIT).map(drop)
        };
        batch(
            &core,
            format!(
                "link set vps2 up\naddr add 10.250.101.1/30 dev vps2\n\
                 route add {VPS2_V4}/32 via 10.250.101.2\n"
            ),
        )?;
        batch(
            ns.name(),
            format!(
                "link set lo up\naddr add {VPS2_V4}/32 dev lo\nlink set eth0 up\n\
                 addr add 10.250.101.2/30 dev eth0\n\
                 route add default via 10.250.101.1 src {VPS2_V4}\n\
                 mptcp limits set subflows 8 add_addr_accepted 8\n"
            ),
        )?;
        Ok(SecondVps { ns })
    }

    /// Start a concentrator in the second VPS and wait for READY=1.
    pub fn start_concentrator_in(
        &self,
        vps: &SecondVps,
        cfg: &ConcentratorConfig,
    ) -> Result<Daemon, BedError> {
        self.start_daemon_in(&vps.ns, "mpbond-concentrator", "toml", &cfg.to_toml(), true)
    }

    /// Start the agent in the router namespace with this TOML config text (several
    /// concentrators, which [`crate::AgentConfig`] does not write) and wait for READY=1.
    pub fn start_agent_toml(&self, toml: &str) -> Result<Daemon, BedError> {
        self.start_daemon_in(
            self.netns(Node::Router)?,
            "mpbond-agent",
            "toml",
            toml,
            true,
        )
    }
}
