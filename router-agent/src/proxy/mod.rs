//! The transparent proxy: LAN TCP redirected by nft arrives here and leaves over MPTCP.
//!
//! * [`listener`]: binds `0.0.0.0:port` and `[::]:port` and runs the bounded accept loop.
//! * [`conn`]: one connection: original destination → Convert request in the SYN →
//!   reply → relay; fail open to a direct connection when the concentrator is unreachable.
//! * [`abandon`]: when a connection waiting for its reply must move off a dead WAN.
//! * [`hedge`]: Happy Eyeballs: a second attempt from another WAN when the first gets
//!   no SYN-ACK within the core's bound.
//! * [`stats`]: connection counters.
//! * [`upstreams`]: the live relays' upstream sockets, sampled by the passive health check.

pub mod abandon;
pub mod conn;
pub mod hedge;
pub mod listener;
pub mod stats;
pub mod upstreams;

use std::sync::Arc;
use std::time::Duration;

use mpbond_relay::relay::RelayOpts;
use tokio::sync::{mpsc, watch};

use crate::core::Input;
use crate::upstream::Upstream;

pub use conn::{handle, Summary, UpstreamKind};
pub use listener::{bind, serve, BindError, Listeners};
pub use stats::{Stats, StatsSnapshot};

/// What a new connection uses: the driver publishes a new value when the config or the
/// decision core's choices change; a connection keeps the one it started with.
#[derive(Debug, Clone)]
pub struct ConnParams {
    pub upstream: Upstream,
    /// How long to wait for the concentrator's Convert reply.
    pub reply_timeout: Duration,
    /// Timeout of the direct (fail-open) connect.
    pub direct_timeout: Duration,
    pub relay: RelayOpts,
    /// WAN addresses a connection waiting for its Convert reply must not wait on: one
    /// whose subflows all start there moves to another WAN (`core::hedge::must_move`).
    pub abandoned: Vec<std::net::IpAddr>,
    /// WAN addresses a hedge won against lately: a connection waiting for its reply
    /// whose subflows there are all failing (stalled, or a keepalive probe unanswered)
    /// moves too.
    pub suspects: Vec<std::net::IpAddr>,
    /// The WANs for protected UDP flows' legs, best first (`core::protect`).
    pub legs: Vec<crate::core::protect::LegSource>,
}

/// What every connection task shares.
#[derive(Debug)]
pub struct ConnContext {
    /// The current parameters (see [`ConnParams`]).
    pub params: watch::Receiver<Arc<ConnParams>>,
    pub stats: Arc<Stats>,
    /// Events for the decision core: an unreachable concentrator, Fast Open evidence.
    pub events: mpsc::UnboundedSender<Input>,
}

impl ConnContext {
    /// A context whose parameters stay `params` (nobody publishes new ones), and the
    /// receiver of its events: for tools and tests that run connections without the
    /// driver.
    pub fn fixed(params: ConnParams) -> (Arc<ConnContext>, mpsc::UnboundedReceiver<Input>) {
        let (events, rx) = mpsc::unbounded_channel();
        let ctx = ConnContext {
            params: watch::channel(Arc::new(params)).1,
            stats: Arc::new(Stats::default()),
            events,
        };
        (Arc::new(ctx), rx)
    }

    /// The parameters as they are now.
    pub fn params(&self) -> Arc<ConnParams> {
        self.params.borrow().clone()
    }

    /// Tell the decision core; a stopped core is no error (the agent is shutting down).
    pub fn tell(&self, input: Input) {
        let _ = self.events.send(input);
    }
}
