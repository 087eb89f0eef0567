//! The transparent proxy: LAN TCP redirected by nft arrives here and leaves over MPTCP.
//!
//! * [`listener`]: binds `0.0.0.0:port` and `[::]:port` and runs the bounded accept loop.
//! * [`conn`]: one connection: original destination → Convert request in the SYN →
//!   reply → relay; fail open to a direct connection when the concentrator is unreachable.
//! * [`stats`]: connection counters.

pub mod conn;
pub mod listener;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use mpbond_relay::relay::RelayOpts;
use tokio::sync::Notify;

use crate::upstream::Upstream;

pub use conn::{handle, Summary, UpstreamKind};
pub use listener::{bind, serve, BindError, Listeners};
pub use stats::{Stats, StatsSnapshot};

/// What every connection task shares.
#[derive(Debug)]
pub struct ConnContext {
    pub upstream: Arc<Upstream>,
    pub stats: Arc<Stats>,
    /// Poked when an upstream connect fails, so health probes at once.
    pub probe_now: Arc<Notify>,
    /// How long to wait for the concentrator's Convert reply.
    pub reply_timeout: Duration,
    /// Timeout of the direct (fail-open) connect.
    pub direct_timeout: Duration,
    pub relay: RelayOpts,
}
