//! Driving the UDP tools of `mpbond-tb` in the test bed: the echo and QUIC servers (which
//! log the peers they see), the paced echo client (loss, delay, gaps) and the QUIC
//! download.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::daemons::bin_path;
use crate::proc::{wait_until, ChildGuard};
use crate::tools::TB;
use crate::{BedError, Node, TestBed};

/// A running `mpbond-tb udp-echo-server` and the peers it has seen.
#[derive(Debug)]
pub struct UdpEchoServer {
    _child: ChildGuard,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
}

impl UdpEchoServer {
    /// The peer addresses seen so far, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// What `mpbond-tb udp-echo` reports.
#[derive(Debug, Clone, Deserialize)]
pub struct UdpEchoReport {
    pub sent: u32,
    pub received: u32,
    pub lost: u32,
    pub late: u32,
    pub rtt_p50_ms: f64,
    pub rtt_p99_ms: f64,
    pub rtt_max_ms: f64,
    pub max_gap_ms: f64,
    pub refused: u32,
}

impl TestBed {
    /// Start an echo server on `listen` in `node` and wait until it is bound.
    pub fn udp_echo_server(
        &self,
        node: Node,
        listen: SocketAddr,
    ) -> Result<UdpEchoServer, BedError> {
        self.peer_logging_server(node, "udp-echo-server", listen)
    }

    /// Start a QUIC server (`mpbond-tb quic-server`) on `listen` in `node`.
    pub fn quic_server(&self, node: Node, listen: SocketAddr) -> Result<UdpEchoServer, BedError> {
        self.peer_logging_server(node, "quic-server", listen)
    }

    /// Start a QUIC download of `bytes` from `to` in `node`, given `timeout` to finish.
    pub fn spawn_quic_fetch(
        &self,
        node: Node,
        to: SocketAddr,
        bytes: u64,
        timeout: Duration,
    ) -> Result<QuicRun, BedError> {
        let bin = bin_path(TB)?;
        let bin = bin.to_string_lossy();
        let (to, n, secs) = (
            to.to_string(),
            bytes.to_string(),
            timeout.as_secs().to_string(),
        );
        let args = [
            &*bin,
            "quic-fetch",
            "--to",
            &to,
            "--bytes",
            &n,
            "--timeout",
            &secs,
        ];
        let child = self.spawn(node, &args)?;
        Ok(QuicRun {
            child,
            limit: timeout + Duration::from_secs(10),
        })
    }

    fn peer_logging_server(
        &self,
        node: Node,
        tool: &str,
        listen: SocketAddr,
    ) -> Result<UdpEchoServer, BedError> {
        let bin = bin_path(TB)?;
        let bin = bin.to_string_lossy();
        let addr = listen.to_string();
        let mut child = self.spawn(node, &[&bin, tool, "--listen", &addr])?;
        let peers = Arc::new(Mutex::new(Vec::new()));
        let listening = Arc::new(Mutex::new(false));
        if let Some(stdout) = child.child_mut().stdout.take() {
            let (peers, listening) = (peers.clone(), listening.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                        continue;
                    };
                    match event["event"].as_str() {
                        Some("listening") => {
                            if let Ok(mut l) = listening.lock() {
                                *l = true;
                            }
                        }
                        Some("peer") => {
                            let peer = event["addr"].as_str().and_then(|a| a.parse().ok());
                            if let (Some(peer), Ok(mut all)) = (peer, peers.lock()) {
                                all.push(peer);
                            }
                        }
                        _ => {}
                    }
                }
            });
        }
        let up = wait_until(Duration::from_secs(10), || {
            listening.lock().map(|l| *l).unwrap_or(false)
        });
        if !up {
            return Err(BedError::Timeout {
                cmd: child.cmd().to_owned(),
                secs: 10,
            });
        }
        Ok(UdpEchoServer {
            _child: child,
            peers,
        })
    }

    /// Run `udp-echo` from `node` to `to`: `count` datagrams of 200 bytes at 50 a second.
    pub fn udp_echo(
        &self,
        node: Node,
        to: SocketAddr,
        count: u32,
    ) -> Result<UdpEchoReport, BedError> {
        self.spawn_udp_echo(node, to, count)?.finish()
    }

    /// Start [`Self::udp_echo`] without waiting for it.
    pub fn spawn_udp_echo(
        &self,
        node: Node,
        to: SocketAddr,
        count: u32,
    ) -> Result<UdpEchoRun, BedError> {
        let bin = bin_path(TB)?;
        let bin = bin.to_string_lossy();
        let (to, n) = (to.to_string(), count.to_string());
        let args = [&*bin, "udp-echo", "--to", &to, "--count", &n];
        let child = self.spawn(node, &args)?;
        Ok(UdpEchoRun {
            child,
            limit: Duration::from_secs(30) + Duration::from_millis(20) * count,
        })
    }
}

/// What `mpbond-tb quic-fetch` reports.
#[derive(Debug, Clone, Deserialize)]
pub struct QuicReport {
    pub bytes: u64,
    pub seconds: f64,
    pub mbit_per_s: f64,
    /// Every byte arrived, intact.
    pub ok: bool,
    pub first_bad_offset: Option<u64>,
    pub longest_stall_ms: f64,
    pub error: Option<String>,
}

/// A running `quic-fetch`.
#[derive(Debug)]
pub struct QuicRun {
    child: ChildGuard,
    limit: Duration,
}

impl QuicRun {
    /// Wait for the report.
    pub fn finish(self) -> Result<QuicReport, BedError> {
        crate::tools::last_json_line(self.child, self.limit)
    }
}

/// A running `udp-echo`.
#[derive(Debug)]
pub struct UdpEchoRun {
    child: ChildGuard,
    limit: Duration,
}

impl UdpEchoRun {
    /// Wait for the report.
    pub fn finish(self) -> Result<UdpEchoReport, BedError> {
        crate::tools::last_json_line(self.child, self.limit)
    }
}
