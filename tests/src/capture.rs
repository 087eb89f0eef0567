//! Real status documents for the LuCI page's browser test: the agent's
//! `status --json`, captured in the test bed while a download runs.
//!
//! The bed has three WANs (40, 60 and 20 Mbit/s, the third in `backup` mode)
//! with agent routing. A download runs through mpbond; then WAN 2's ISP
//! silently drops everything, so the capture holds a WAN that is up and
//! carrying traffic, one the health probes found down, and an idle backup
//! (backup subflows carry data only when no `on` WAN is left). Two documents are written one rate interval apart
//! (`status.json`, `status-next.json`) so the page's graph moves between them.
//! `mpbond-demo --capture-status DIR` runs it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::topology::SERVER_V4;
use crate::{proc, status_wan, BedError, Fetch, Node, TestBed, WanEntry};

const PORT: u16 = 5001;
const LIMIT: Duration = Duration::from_secs(20);

/// Capture `status.json` and `status-next.json` into `dir` (created if needed).
pub fn capture_status(dir: &Path) -> Result<(), BedError> {
    let bed = TestBed::builder()
        .wans(&[40, 60, 20])
        .agent_routing(true)
        .try_build()?;
    let _server = bed.serve(Node::Server, SocketAddr::new(SERVER_V4.into(), PORT), false)?;
    let _conc = bed.start_concentrator(&bed.concentrator_config())?;
    let mut cfg = bed.agent_config();
    cfg.wans[2] = WanEntry::new("wan3", "backup");
    let agent = bed.start_agent(&cfg)?;
    wait_for(&bed, "every WAN up", |doc| {
        ["wan1", "wan2", "wan3"]
            .iter()
            .all(|w| state(doc, w) == Some("up"))
    })
    .map_err(|e| with_log(e, &agent))?;

    let fetch = Fetch::get(SocketAddr::new(SERVER_V4.into(), PORT), 2_000_000_000)
        .timeout(Duration::from_secs(120));
    let download = bed.spawn_fetch(Node::Lan, &fetch)?;
    wait_for(&bed, "traffic on wan1 and wan2", |doc| {
        rx_bps(doc, "wan1") > 1_000_000 && rx_bps(doc, "wan2") > 1_000_000
    })?;
    bed.blackhole_wan(2, true)?;
    wait_for(&bed, "wan2 down and wan1 carrying on", |doc| {
        state(doc, "wan2") == Some("down") && rx_bps(doc, "wan1") > 1_000_000
    })
    .map_err(|e| with_log(e, &agent))?;

    let first = bed.agent_status()?;
    let next = wait_for(&bed, "the next rate interval", |doc| {
        rx_bytes(doc, "wan1") != rx_bytes(&first, "wan1")
            && doc["connections"] == first["connections"]
    })?;
    drop(download);
    std::fs::create_dir_all(dir).map_err(|e| BedError::Usage(format!("{}: {e}", dir.display())))?;
    for (name, doc) in [("status.json", &first), ("status-next.json", &next)] {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(doc).unwrap_or_default() + "\n";
        std::fs::write(&path, text)
            .map_err(|e| BedError::Usage(format!("{}: {e}", path.display())))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Poll the status until `cond` holds; the document that satisfied it.
fn wait_for(bed: &TestBed, what: &str, cond: impl Fn(&Value) -> bool) -> Result<Value, BedError> {
    let mut found = None;
    proc::wait_until(LIMIT, || match bed.agent_status() {
        Ok(doc) if cond(&doc) => {
            found = Some(doc);
            true
        }
        _ => false,
    });
    found.ok_or_else(|| {
        let last = bed
            .agent_status()
            .map(|d| d.to_string())
            .unwrap_or_else(|e| e.to_string());
        BedError::Usage(format!("no {what} within {LIMIT:?}; last status: {last}"))
    })
}

fn with_log(e: BedError, agent: &crate::Daemon) -> BedError {
    BedError::Usage(format!("{e}\nagent log:\n{}", agent.log_tail(30)))
}

fn state<'a>(doc: &'a Value, wan: &str) -> Option<&'a str> {
    status_wan(doc, wan)?.get("state")?.as_str()
}

fn rx_bps(doc: &Value, wan: &str) -> u64 {
    field(doc, wan, "rx_bps")
}

fn rx_bytes(doc: &Value, wan: &str) -> u64 {
    field(doc, wan, "rx_bytes")
}

fn field(doc: &Value, wan: &str, name: &str) -> u64 {
    status_wan(doc, wan)
        .and_then(|w| w.get(name))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}
