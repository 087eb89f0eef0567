//! The peer: shadowsocks-rust as OpenMPTCProuter runs it. `ssserver` with
//! `"mptcp": true` in the VPS namespace, `sslocal` in redir mode with
//! `"mptcp": true` in the router, and an nft table that redirects the LAN's
//! TCP to the internet to sslocal: the role the mpbond agent plays.
//!
//! ```no_run
//! let bed = TestBed::builder().wans(&[40, 60]).build();   // agent_routing(false)
//! let peer = Peer::start(&bed, &ctx, Method::Aes2022)?;    // the agent must not run
//! // LAN TCP to 203.0.113.10 now goes sslocal → MPTCP over both WANs → ssserver.
//! let cpu = CpuMeter::start(&peer.pids());
//! drop(peer);                                               // table deleted, both killed
//! ```
//! The peer's MPTCP subflows use the bed's own per-WAN endpoints and policy
//! routing, so build the bed with `agent_routing(false)` (the default). Stop
//! the agent before starting the peer: both redirect the same traffic.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mpbond_tests::proc::{self, ChildGuard};
use mpbond_tests::topology::{LAN_ROUTER_V4, ROUTER_LAN_IF, VPS_V4};
use mpbond_tests::{Node, TestBed};

use crate::ctx::{BenchError, Ctx};

/// ssserver's port on the VPS.
pub const SERVER_PORT: u16 = 8388;
/// sslocal's redir port on the router (OpenMPTCProuter's).
pub const LOCAL_PORT: u16 = 1100;
/// The router's nft table that redirects LAN TCP to sslocal.
pub const NFT_TABLE: &str = "mpbench_peer";
const READY_LIMIT: Duration = Duration::from_secs(15);

/// The cipher the peer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `2022-blake3-aes-256-gcm`: OpenMPTCProuter's current default.
    Aes2022,
    /// `chacha20-ietf-poly1305`.
    Chacha20,
    /// `none`: no encryption, the relay alone.
    Plain,
}

impl Method {
    /// Every method, in the order the suite reports them.
    pub const ALL: [Method; 3] = [Method::Aes2022, Method::Chacha20, Method::Plain];

    /// shadowsocks' name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Aes2022 => "2022-blake3-aes-256-gcm",
            Method::Chacha20 => "chacha20-ietf-poly1305",
            Method::Plain => "none",
        }
    }

    /// A fresh password: base64 of 32 random bytes for the 2022 cipher (its
    /// key), a random string for chacha20, empty for `none`.
    pub fn password(self) -> Result<String, BenchError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| BenchError::measure("peer", format!("no randomness: {e}")))?;
        Ok(match self {
            Method::Aes2022 => base64(&key),
            Method::Chacha20 => mpbond_tests::datagen::hex(&key),
            Method::Plain => String::new(),
        })
    }
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The sslocal and ssserver configs (JSON) for `method` and `password`.
pub fn configs(method: Method, password: &str) -> (String, String) {
    let server = serde_json::json!({
        "server": "0.0.0.0",
        "server_port": SERVER_PORT,
        "password": password,
        "method": method.as_str(),
        "mode": "tcp_only",
        "mptcp": true,
    });
    let local = serde_json::json!({
        "server": VPS_V4.to_string(),
        "server_port": SERVER_PORT,
        "password": password,
        "method": method.as_str(),
        "local_address": "0.0.0.0",
        "local_port": LOCAL_PORT,
        "protocol": "redir",
        "mode": "tcp_only",
        "mptcp": true,
    });
    (local.to_string(), server.to_string())
}

/// sslocal's first UDP tunnel port on the router (case 14): the LAN client writes to
/// `LAN_ROUTER_V4` on `TUNNEL_PORT + i` and sslocal forwards it to the `i`-th address.
pub const TUNNEL_PORT: u16 = 1101;

/// The configs (JSON) for the peer's UDP relay: ssserver and sslocal in `tcp_and_udp`
/// mode with MPTCP (for the TCP side; UDP goes as plain UDP), and one `tunnel` local per
/// forward address, on `TUNNEL_PORT`, `TUNNEL_PORT + 1`, ... of the router's LAN address.
/// `tunnel` needs no tproxy rules on the router, and its per-datagram work (encrypt, one
/// UDP socket to ssserver) is redir's.
pub fn udp_configs(method: Method, password: &str, forwards: &[SocketAddr]) -> (String, String) {
    let server = serde_json::json!({
        "server": "0.0.0.0",
        "server_port": SERVER_PORT,
        "password": password,
        "method": method.as_str(),
        "mode": "tcp_and_udp",
        "mptcp": true,
    });
    let locals: Vec<serde_json::Value> = forwards
        .iter()
        .zip(TUNNEL_PORT..)
        .map(|(to, port)| {
            serde_json::json!({
                "local_address": LAN_ROUTER_V4.to_string(),
                "local_port": port,
                "protocol": "tunnel",
                "forward_address": to.ip().to_string(),
                "forward_port": to.port(),
                "mode": "tcp_and_udp",
            })
        })
        .collect();
    let local = serde_json::json!({
        "server": VPS_V4.to_string(),
        "server_port": SERVER_PORT,
        "password": password,
        "method": method.as_str(),
        "locals": locals,
        "mode": "tcp_and_udp",
        "mptcp": true,
    });
    (local.to_string(), server.to_string())
}

/// The router's redirect: TCP from the LAN to anything but the router itself
/// goes to sslocal, as the agent's `inet mpbond` table does for mpbond.
pub fn redirect_ruleset() -> String {
    format!(
        "table inet {NFT_TABLE} {{\n\
         \tchain prerouting {{\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tiifname \"{ROUTER_LAN_IF}\" meta l4proto tcp fib daddr type != local redirect to :{LOCAL_PORT}\n\
         \t}}\n\
         }}\n"
    )
}

/// A running peer; dropping it deletes the redirect and kills both processes.
#[derive(Debug)]
pub struct Peer<'a> {
    bed: &'a TestBed,
    local: ChildGuard,
    server: ChildGuard,
    logs: [PathBuf; 2],
}

impl<'a> Peer<'a> {
    /// Start ssserver (VPS), sslocal (router) and the redirect, and wait until
    /// both listen. Configs and logs go to `ctx.out_dir`.
    pub fn start(bed: &'a TestBed, ctx: &Ctx, method: Method) -> Result<Self, BenchError> {
        let (local_cfg, server_cfg) = configs(method, &method.password()?);
        let peer = Self::launch(
            bed,
            ctx,
            method.as_str(),
            &local_cfg,
            &server_cfg,
            LOCAL_PORT,
        )?;
        bed.nft(Node::Router, &redirect_ruleset())?;
        Ok(peer)
    }

    /// Start the peer's UDP relay: ssserver (VPS) and sslocal (router) with one UDP
    /// tunnel per address in `forwards` (see [`udp_configs`]); no redirect.
    pub fn start_udp(
        bed: &'a TestBed,
        ctx: &Ctx,
        method: Method,
        forwards: &[SocketAddr],
    ) -> Result<Self, BenchError> {
        let (local_cfg, server_cfg) = udp_configs(method, &method.password()?, forwards);
        let tag = format!("udp-{}", method.as_str());
        Self::launch(bed, ctx, &tag, &local_cfg, &server_cfg, TUNNEL_PORT)
    }

    fn launch(
        bed: &'a TestBed,
        ctx: &Ctx,
        tag: &str,
        local_cfg: &str,
        server_cfg: &str,
        local_port: u16,
    ) -> Result<Self, BenchError> {
        let (local_bin, server_bin) = (ctx.ss("sslocal")?, ctx.ss("ssserver")?);
        let (server, server_log) = spawn(
            bed,
            ctx,
            Node::Vps,
            &server_bin,
            &format!("ssserver-{tag}"),
            server_cfg,
        )?;
        let (local, local_log) = spawn(
            bed,
            ctx,
            Node::Router,
            &local_bin,
            &format!("sslocal-{tag}"),
            local_cfg,
        )?;
        let mut peer = Peer {
            bed,
            local,
            server,
            logs: [local_log, server_log],
        };
        peer.wait_listening(Node::Vps, SERVER_PORT)?;
        peer.wait_listening(Node::Router, local_port)?;
        Ok(peer)
    }

    /// `[sslocal, ssserver]` pids, for CPU accounting.
    pub fn pids(&self) -> [u32; 2] {
        [self.local.pid(), self.server.pid()]
    }

    /// The tail of both logs (for error messages).
    pub fn log_tail(&self) -> String {
        self.logs
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "{}:\n{}",
                    p.display(),
                    lines[lines.len().saturating_sub(10)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_listening(&mut self, node: Node, port: u16) -> Result<(), BenchError> {
        let filter = format!("ss -Hltn sport = :{port}");
        let bed = self.bed;
        let mut exited = false;
        let ok = proc::wait_until(READY_LIMIT, || {
            exited = self.local.try_wait().is_some() || self.server.try_wait().is_some();
            exited
                || bed
                    .exec(node, &filter)
                    .is_ok_and(|out| !out.trim().is_empty())
        });
        if ok && !exited {
            return Ok(());
        }
        Err(BenchError::measure(
            "peer",
            format!(
                "{} did not listen on port {port} ({}); logs:\n{}",
                if node == Node::Vps {
                    "ssserver"
                } else {
                    "sslocal"
                },
                if exited { "exited" } else { "timeout" },
                self.log_tail()
            ),
        ))
    }
}

impl Drop for Peer<'_> {
    fn drop(&mut self) {
        let _ = self
            .bed
            .exec(Node::Router, &format!("nft delete table inet {NFT_TABLE}"));
        self.local.terminate(Duration::from_secs(3));
        self.server.terminate(Duration::from_secs(3));
    }
}

/// Start `bin` in `node` with `cfg` written to `NAME.json` in the output directory and
/// its stderr in `NAME.log`; returns the child and the log's path.
pub fn spawn(
    bed: &TestBed,
    ctx: &Ctx,
    node: Node,
    bin: &std::path::Path,
    name: &str,
    cfg: &str,
) -> Result<(ChildGuard, PathBuf), BenchError> {
    let (cfg_path, log) = (
        ctx.out(&format!("{name}.json")),
        ctx.out(&format!("{name}.log")),
    );
    let io = |what, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| BenchError::Io { what, path, source }
    };
    std::fs::write(&cfg_path, cfg).map_err(io("cannot write", &cfg_path))?;
    let log_file = File::create(&log).map_err(io("cannot create", &log))?;
    let mut cmd = bed.netns(node)?.command(&bin.to_string_lossy());
    cmd.arg("-c")
        .arg(cfg_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    Ok((ChildGuard::spawn(cmd)?, log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
        assert_eq!(base64(&[0u8; 32]).len(), 44);
    }

    #[test]
    fn configs_are_mptcp_redir() {
        let (local, server) = configs(Method::Aes2022, "k");
        let l: serde_json::Value = serde_json::from_str(&local).unwrap();
        assert_eq!(l["protocol"], "redir");
        assert_eq!(l["mptcp"], true);
        assert_eq!(l["server"], "192.0.2.1");
        let s: serde_json::Value = serde_json::from_str(&server).unwrap();
        assert_eq!(s["method"], "2022-blake3-aes-256-gcm");
        assert_eq!(s["mptcp"], true);
        assert!(redirect_ruleset().contains("redirect to :1100"));
        assert_eq!(Method::Plain.password().unwrap(), "");
    }

    #[test]
    fn udp_configs_are_tunnels_with_udp() {
        let to: SocketAddr = "203.0.113.10:4433".parse().unwrap();
        let (local, server) = udp_configs(Method::Aes2022, "k", &[to]);
        let l: serde_json::Value = serde_json::from_str(&local).unwrap();
        let first = &l["locals"][0];
        assert_eq!(first["protocol"], "tunnel");
        assert_eq!(first["mode"], "tcp_and_udp");
        assert_eq!(first["forward_address"], "203.0.113.10");
        assert_eq!(first["forward_port"], 4433);
        assert_eq!(first["local_port"], TUNNEL_PORT);
        let s: serde_json::Value = serde_json::from_str(&server).unwrap();
        assert_eq!(s["mode"], "tcp_and_udp");
    }
}
