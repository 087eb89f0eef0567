//! The netifd watcher: keeps a [`NetifdView`] current in a `tokio::sync::watch` channel.
//!
//! One session: connect → listen for `network.interface` events → look up
//! `network.interface` → dump; then re-dump after every event (a burst of queued events
//! costs one dump) and every [`WatchOpts::redump_every`] in case one was missed. A new
//! view is published only when it differs from the last one. Events are nudges: nothing
//! is taken from their payload.
//!
//! Any error (socket missing or vanished, ubusd or netifd restarted, a malformed reply)
//! ends the session with a warning; the watcher retries after a backoff that doubles
//! from [`WatchOpts::backoff_min`] to [`WatchOpts::backoff_max`] and resets after a
//! session that delivered a dump. The last view stays published meanwhile, so a ubusd
//! restart does not flap the WANs.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Map;
use tokio::sync::watch::Sender;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client::{Client, UbusError};
use super::netifd::{parse_dump, NetifdView};

/// The netifd object and the event id it sends.
pub const OBJECT: &str = "network.interface";

/// Where and how often.
#[derive(Debug, Clone)]
pub struct WatchOpts {
    pub socket: PathBuf,
    pub redump_every: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl WatchOpts {
    /// Defaults: re-dump every 60 s, backoff 250 ms to 30 s.
    pub fn new(socket: PathBuf) -> WatchOpts {
        WatchOpts {
            socket,
            redump_every: Duration::from_secs(60),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Run until `shutdown`, publishing every new view into `tx`.
pub async fn watch(opts: WatchOpts, tx: Sender<Option<NetifdView>>, shutdown: CancellationToken) {
    let mut backoff = opts.backoff_min;
    loop {
        let mut delivered = false;
        let error = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = session(&opts, &tx, &mut delivered) => e,
        };
        if delivered {
            backoff = opts.backoff_min;
        }
        warn!(
            socket = %opts.socket.display(),
            %error,
            retry_in = ?backoff,
            "netifd over ubus unavailable; keeping the last view"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(opts.backoff_max);
    }
}

/// One connection; returns only with the error that ended it.
async fn session(
    opts: &WatchOpts,
    tx: &Sender<Option<NetifdView>>,
    delivered: &mut bool,
) -> UbusError {
    let mut client = match Client::connect(&opts.socket).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    if let Err(e) = client.listen(OBJECT).await {
        return e;
    }
    let id = match client.lookup(OBJECT).await {
        Ok(id) => id,
        Err(e) => return e,
    };
    loop {
        let reply = match client.invoke(id, "dump", Map::new()).await {
            Ok(r) => r,
            Err(e) => return e,
        };
        let view = match parse_dump(&reply) {
            Ok(v) => v,
            Err(_) => return UbusError::Protocol("dump reply without an \"interface\" array"),
        };
        let changed = tx.send_if_modified(|cur| {
            if cur.as_ref() == Some(&view) {
                return false;
            }
            *cur = Some(view.clone());
            true
        });
        if changed {
            log_view(&view, *delivered);
        }
        *delivered = true;
        match tokio::time::timeout(opts.redump_every, client.next_event()).await {
            Ok(Ok(event)) => {
                let more = client.take_queued_events().len();
                let action = event.data.get("action").and_then(|a| a.as_str());
                let iface = event.data.get("interface").and_then(|a| a.as_str());
                debug!(event = %event.name, ?action, ?iface, more, "netifd event, re-dumping");
            }
            Ok(Err(e)) => return e,
            Err(_) => debug!("periodic netifd re-dump"),
        }
    }
}

fn log_view(view: &NetifdView, again: bool) {
    let summary: Vec<String> = view
        .ifaces
        .iter()
        .map(|i| {
            let dev = i.l3_device.as_deref().unwrap_or("-");
            let state = if i.up { "up" } else { "down" };
            format!("{}={dev}/{}/{state}", i.name, i.proto)
        })
        .collect();
    if again {
        info!(interfaces = %summary.join(" "), "netifd view changed");
    } else {
        info!(interfaces = %summary.join(" "), "netifd view");
    }
}
