//! Driving `mpbond-tb` inside the test bed: servers, fetches and Convert probes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bed::TestBed;
use crate::daemons::bin_path;
use crate::error::BedError;
use crate::proc::{self, ChildGuard};
use crate::topology::Node;
use crate::wire::{ConvertReport, FetchReport, ServeEvent};

/// Name of the tools binary.
pub const TB: &str = "mpbond-tb";

/// A `mpbond-tb serve` process and the events it has logged.
#[derive(Debug)]
pub struct TbServer {
    child: ChildGuard,
    events: Arc<Mutex<Vec<ServeEvent>>>,
    addr: SocketAddr,
}

impl TbServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything logged so far.
    pub fn events(&self) -> Vec<ServeEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.events().iter().filter(|e| e.event == "accept").count()
    }

    /// Finished connections so far.
    pub fn done(&self) -> Vec<ServeEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.event == "done")
            .collect()
    }

    /// Poll until `cond(events)` holds or `limit` passes; returns whether it held.
    pub fn wait_for(&self, limit: Duration, mut cond: impl FnMut(&[ServeEvent]) -> bool) -> bool {
        proc::wait_until(limit, || cond(&self.events()))
    }

    /// Stop it.
    pub fn stop(mut self) {
        self.child.kill();
    }
}

/// What one `mpbond-tb fetch` should do.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Server address.
    pub connect: SocketAddr,
    /// `get`, `put` or `xch`.
    pub mode: &'static str,
    /// Download bytes (get, xch) or upload bytes (put).
    pub bytes: u64,
    /// Upload bytes for xch.
    pub up_bytes: u64,
    /// Open an MPTCP socket.
    pub mptcp: bool,
    /// Send the request line in the SYN (TCP Fast Open, no cookie).
    pub tfo: bool,
    /// Fixed receive buffer (SO_RCVBUF) instead of autotuning.
    pub rcvbuf: Option<u32>,
    /// Stream seed (random if None).
    pub seed: Option<u64>,
    /// Throughput sample interval (the tool's default, 100 ms, if None).
    pub sample: Option<Duration>,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Fetch {
    /// Download `bytes` from `connect`.
    pub fn get(connect: SocketAddr, bytes: u64) -> Self {
        Self {
            connect,
            mode: "get",
            bytes,
            up_bytes: 0,
            mptcp: false,
            tfo: false,
            rcvbuf: None,
            seed: None,
            sample: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// Upload `bytes` to `connect`.
    pub fn put(connect: SocketAddr, bytes: u64) -> Self {
        Self {
            mode: "put",
            ..Self::get(connect, bytes)
        }
    }

    /// Upload `up` while downloading `down`.
    pub fn xch(connect: SocketAddr, up: u64, down: u64) -> Self {
        Self {
            mode: "xch",
            up_bytes: up,
            ..Self::get(connect, down)
        }
    }

    /// Use an MPTCP socket.
    pub fn mptcp(mut self) -> Self {
        self.mptcp = true;
        self
    }

    /// Send the request in the SYN (TCP Fast Open).
    pub fn tfo(mut self) -> Self {
        self.tfo = true;
        self
    }

    /// A fixed receive buffer of `bytes` (as the agent gives its Fast Open upstream).
    pub fn rcvbuf(mut self, bytes: u32) -> Self {
        self.rcvbuf = Some(bytes);
        self
    }

    /// Fix the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sample the throughput every `interval` (at least 1 ms) instead of 100 ms.
    pub fn sample_every(mut self, interval: Duration) -> Self {
        self.sample = Some(interval);
        self
    }

    /// Set the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    fn args(&self) -> Vec<String> {
        let mut a = vec![
            "fetch".to_string(),
            "--connect".into(),
            self.connect.to_string(),
            "--mode".into(),
            self.mode.into(),
            "--bytes".into(),
            self.bytes.to_string(),
            "--up-bytes".into(),
            self.up_bytes.to_string(),
            "--timeout-secs".into(),
            self.timeout.as_secs().max(1).to_string(),
        ];
        if self.mptcp {
            a.push("--mptcp".into());
        }
        if self.tfo {
            a.push("--tfo".into());
        }
        if let Some(bytes) = self.rcvbuf {
            a.push("--rcvbuf".into());
            a.push(bytes.to_string());
        }
        if let Some(seed) = self.seed {
            a.push("--seed".into());
            a.push(seed.to_string());
        }
        if let Some(interval) = self.sample {
            a.push("--sample-ms".into());
            a.push(interval.as_millis().max(1).to_string());
        }
        a
    }
}

/// A fetch running in the background.
#[derive(Debug)]
pub struct FetchRun {
    child: ChildGuard,
    limit: Duration,
}

impl FetchRun {
    /// Wait for it and parse its report.
    pub fn finish(self) -> Result<FetchReport, BedError> {
        last_json_line(self.child, self.limit)
    }
}

/// Wait up to `limit` for a tool that ends by printing its JSON report as its last line
/// of stdout, and parse that line.
pub(crate) fn last_json_line<T: serde::de::DeserializeOwned>(
    child: ChildGuard,
    limit: Duration,
) -> Result<T, BedError> {
    let cmd = child.cmd().to_owned();
    let out = child.output_within(limit)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(|source| BedError::BadOutput {
        cmd,
        output: format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
        source,
    })
}

impl TestBed {
    fn tb_command(&self, node: Node, args: &[String]) -> Result<ChildGuard, BedError> {
        let bin = bin_path(TB)?;
        let mut all = vec![bin.to_string_lossy().into_owned()];
        all.extend_from_slice(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        self.spawn(node, &refs)
    }

    /// Start `mpbond-tb serve` in `node` and wait until it listens.
    pub fn serve(&self, node: Node, listen: SocketAddr, mptcp: bool) -> Result<TbServer, BedError> {
        self.serve_with(node, listen, mptcp, false)
    }

    /// [`Self::serve`], optionally accepting data in the SYN (`tfo`).
    pub fn serve_with(
        &self,
        node: Node,
        listen: SocketAddr,
        mptcp: bool,
        tfo: bool,
    ) -> Result<TbServer, BedError> {
        let mut args = vec!["serve".to_string(), "--listen".into(), listen.to_string()];
        if mptcp {
            args.push("--mptcp".into());
        }
        if tfo {
            args.push("--tfo".into());
        }
        let mut child = self.tb_command(node, &args)?;
        let events = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.child_mut().stdout.take() {
            let sink = Arc::clone(&events);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let (Ok(ev), Ok(mut all)) =
                        (serde_json::from_str::<ServeEvent>(&line), sink.lock())
                    {
                        all.push(ev);
                    }
                }
            });
        }
        let server = TbServer {
            child,
            events,
            addr: listen,
        };
        let listening = server.wait_for(Duration::from_secs(10), |ev| {
            ev.iter().any(|e| e.event == "listening")
        });
        if !listening {
            let mut child = server.child;
            let cmd = child.cmd().to_owned();
            child.kill();
            return Err(BedError::Timeout { cmd, secs: 10 });
        }
        Ok(server)
    }

    /// Start a fetch in `node` without waiting for it.
    pub fn spawn_fetch(&self, node: Node, fetch: &Fetch) -> Result<FetchRun, BedError> {
        let child = self.tb_command(node, &fetch.args())?;
        Ok(FetchRun {
            child,
            limit: fetch.timeout + Duration::from_secs(10),
        })
    }

    /// Run a fetch in `node` and return its report.
    pub fn fetch(&self, node: Node, fetch: &Fetch) -> Result<FetchReport, BedError> {
        self.spawn_fetch(node, fetch)?.finish()
    }

    /// Run `mpbond-tb convert <args>` in `node` and return its report.
    pub fn convert(&self, node: Node, args: &[&str]) -> Result<ConvertReport, BedError> {
        let mut all = vec!["convert".to_string()];
        all.extend(args.iter().map(|s| s.to_string()));
        let child = self.tb_command(node, &all)?;
        let cmd = child.cmd().to_owned();
        let out = child.output_within(Duration::from_secs(30))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(text.lines().last().unwrap_or("")).map_err(|source| {
            BedError::BadOutput {
                cmd,
                output: format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
                source,
            }
        })
    }

    /// The concentrator's Prometheus text (curl in the VPS namespace).
    pub fn concentrator_metrics(&self) -> Result<String, BedError> {
        let url = format!("http://{}/metrics", crate::daemons::METRICS_ADDR);
        self.exec(Node::Vps, &format!("curl -sS --max-time 5 {url}"))
    }
}

/// Sum of every series of metric `name` (any labels) in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_labelled_series_only_of_that_name() {
        let text = "# HELP x\nmpbond_fallbacks_total 2\nmpbond_fallbacks_total_x 9\n\
                    mpbond_conn{a=\"b c\"} 3\nmpbond_conn{a=\"d\"} 4\n";
        assert_eq!(metric_sum(text, "mpbond_fallbacks_total"), Some(2.0));
        assert_eq!(metric_sum(text, "mpbond_conn"), Some(7.0));
        assert_eq!(metric_sum(text, "missing"), None);
    }
}
