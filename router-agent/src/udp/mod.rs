//! LAN UDP through the concentrator: interception, the flow table and the relay.
//!
//! ```text
//! LAN client ──UDP──▶ nft `udp_lan`: tproxy to :4852, mark ──▶ policy rule: local table
//!   dispatcher (this file): the transparent socket(s), recvmsg with the original
//!     destination; a flow per (client, destination): known → its task's channel; new →
//!     FlowBook::route (bond | direct), a flow socket bound to the destination and
//!     connected to the client, one task
//!   flow task (relay.rs): one MPTCP connection to the concentrator, Convert request with
//!     the UDP TLV, then DATAGRAM capsules both ways; or direct from the router
//!   replies ──▶ the client, from the flow socket: source = the original destination
//! ```
//!
//! * `sys.rs`: the transparent sockets, `IP(V6)_ORIGDSTADDR`;
//! * `book.rs` (pure): bond or direct, what refusals teach, idle timeouts;
//! * `queue.rs` (pure): the bounded capsule queue (drop when full);
//! * `relay.rs`: one flow, bonded or direct;
//! * `routing.rs`: the fwmark rule and `local default dev lo` route tproxy needs;
//! * `stats.rs`: the counters `status` shows, and the ledger of bytes per local address;
//! * `wan_bytes.rs` (pure): a flow's bytes per local address, and addresses to WANs;
//! * `subflows.rs`: an MPTCP socket's subflows with their byte counters (getsockopt);
//! * `protect/`: flows a rule classes `protect`, over two WANs at once, each datagram
//!   on both, the first copy wins. The dispatcher classifies a new flow by the rules
//!   as they were at start (a changed protect rule takes a restart; nft follows
//!   reloads, and a flow no rule protects any more is bonded after the restart).
//! * `promote.rs`: with `[udp] auto_protect`, a bonded flow `core::classify` classes
//!   real-time moves to `protect/` (make before break: its MPTCP connection drains).
//!
//! Safety: the nft rule sets the mark only after tproxy found the live socket, and the
//! table is owned by the agent's netlink socket: a dead agent leaves UDP to the router's
//! NAT. Fail open is the nft plan's (`model::udp_plan`): no tproxy while the concentrator
//! is unreachable. A `[udp]` change other than the rules (port, limits, routing) takes a
//! restart; the rules follow a reload with the rest of the nft table.

pub mod book;
pub mod promote;
pub mod protect;
pub mod queue;
pub mod relay;
pub mod routing;
pub mod stats;
pub mod subflows;
pub mod sys;
pub mod wan_bytes;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::udp::{UdpAction, UdpConfig};
use crate::proxy::ConnContext;
use book::{FlowBook, Route};
pub use protect::{ProtectSnapshot, ProtectStats};
use relay::{Flow, FlowEvent};
use routing::LocalRouting;
pub use stats::{ProtectOrigin, UdpSnapshot, UdpStats};
pub use wan_bytes::UdpWanBytes;

/// Datagrams a flow task may be behind the dispatcher before new ones are dropped.
const FLOW_CHANNEL: usize = 256;

/// Why UDP interception could not start.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    #[error("cannot bind the transparent UDP socket on port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Routing(#[from] routing::RoutingError),
}

/// The running UDP side: its dispatcher task and its routing.
#[derive(Debug)]
pub struct UdpService {
    stats: Arc<UdpStats>,
    protect: Arc<ProtectStats>,
    routing: Option<LocalRouting>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl UdpService {
    /// Bind the transparent sockets, install the policy routing, start the dispatcher.
    pub fn start(
        config: &UdpConfig,
        ctx: Arc<ConnContext>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<UdpService, UdpError> {
        let port = config.listen_port;
        let v4 =
            sys::bind_listener(port, false).map_err(|source| UdpError::Bind { port, source })?;
        let v6 = match sys::bind_listener(port, true) {
            Ok(sock) => Some(sock),
            Err(error) => {
                warn!(%error, "no IPv6 transparent UDP socket: LAN IPv6 UDP goes out by NAT");
                None
            }
        };
        let routing =
            LocalRouting::install(config.fwmark, config.route_table, config.rule_priority)?;
        let stats = Arc::new(UdpStats::default());
        let protect = Arc::new(ProtectStats::default());
        let dispatcher = Dispatcher {
            v4,
            v6,
            book: FlowBook::new(config.idle_timeout),
            flows: HashMap::new(),
            max_flows: config.max_flows,
            queue_bytes: config.queue_bytes,
            ctx,
            stats: stats.clone(),
            protect: protect.clone(),
            classes: config.clone(),
            tracker,
        };
        let dispatcher = tokio::spawn(dispatcher.run(shutdown));
        info!(port, "intercepting LAN UDP");
        Ok(UdpService {
            stats,
            protect,
            routing: Some(routing),
            dispatcher,
        })
    }

    /// The counters.
    pub fn stats(&self) -> Arc<UdpStats> {
        self.stats.clone()
    }

    /// The protected flows' statistics.
    pub fn protect_stats(&self) -> Arc<ProtectStats> {
        self.protect.clone()
    }

    /// Wait for the dispatcher (after shutdown) and remove the policy routing.
    pub async fn stop(mut self) {
        let _ = (&mut self.dispatcher).await;
        if let Some(routing) = self.routing.take() {
            routing.remove();
        }
    }
}

struct Dispatcher {
    v4: UdpSocket,
    v6: Option<UdpSocket>,
    book: FlowBook,
    flows: HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>>,
    max_flows: usize,
    queue_bytes: usize,
    ctx: Arc<ConnContext>,
    stats: Arc<UdpStats>,
    protect: Arc<ProtectStats>,
    /// The rules that class a flow `protect` (as at start).
    classes: UdpConfig,
    tracker: TaskTracker,
}

async fn recv_opt(
    sock: Option<&UdpSocket>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, SocketAddr)> {
    match sock {
        Some(sock) => sys::recv_from_orig(sock, buf).await,
        None => std::future::pending().await,
    }
}

impl Dispatcher {
    async fn run(mut self, shutdown: CancellationToken) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let mut buf4 = vec![0u8; mpbond_protocol::MAX_UDP_PAYLOAD + 1];
        let mut buf6 = vec![0u8; mpbond_protocol::MAX_UDP_PAYLOAD + 1];
        loop {
            let got = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(event) = events.recv() => {
                    self.on_event(event, &events_tx, &shutdown);
                    continue;
                }
                got = sys::recv_from_orig(&self.v4, &mut buf4) => got.map(|(n, c, d)| (buf4[..n].to_vec(), c, d)),
                got = recv_opt(self.v6.as_ref(), &mut buf6) => got.map(|(n, c, d)| (buf6[..n].to_vec(), c, d)),
            };
            match got {
                Ok((datagram, client, dst)) => {
                    self.on_datagram(datagram, client, dst, &events_tx, &shutdown)
                }
                Err(error) => debug!(%error, "transparent UDP socket"),
            }
        }
    }

    fn on_event(
        &mut self,
        event: FlowEvent,
        events: &mpsc::UnboundedSender<FlowEvent>,
        shutdown: &CancellationToken,
    ) {
        match event {
            FlowEvent::Refused { dst, code } => self.book.refused(dst, code, Instant::now()),
            FlowEvent::Ended { client, dst } => {
                self.flows.remove(&(client, dst));
            }
            FlowEvent::Unprotected => self.book.groups_refused(Instant::now()),
            FlowEvent::Promote(flow) => {
                if self.flows.contains_key(&(flow.client, flow.dst)) {
                    self.spawn_protected(*flow, events, shutdown);
                }
            }
        }
    }

    fn spawn_protected(
        &self,
        flow: Flow,
        events: &mpsc::UnboundedSender<FlowEvent>,
        shutdown: &CancellationToken,
    ) {
        let shared = protect::flow::Shared {
            ctx: self.ctx.clone(),
            stats: self.stats.clone(),
            protect: self.protect.clone(),
            events: events.clone(),
        };
        let mode = self.classes.protect_mode_for(flow.dst);
        self.tracker.spawn(protect::flow::run_with_mode(
            flow,
            shared,
            mode,
            shutdown.clone(),
        ));
    }

    fn on_datagram(
        &mut self,
        datagram: Vec<u8>,
        client: SocketAddr,
        dst: SocketAddr,
        events: &mpsc::UnboundedSender<FlowEvent>,
        shutdown: &CancellationToken,
    ) {
        let key = (client, dst);
        if let Some(flow) = self.flows.get(&key) {
            if flow.try_send(datagram).is_err() {
                self.stats.drops_lan_busy();
            }
            return;
        }
        let own = [
            self.v4.local_addr().ok(),
            self.v6.as_ref().and_then(|s| s.local_addr().ok()),
        ];
        if own.contains(&Some(dst)) {
            // Sent to the socket itself, not tproxied: nothing to relay.
            return;
        }
        if self.flows.len() >= self.max_flows {
            self.stats.drops_flow_limit();
            return;
        }
        let lan = match sys::flow_socket(dst, client) {
            Ok(lan) => lan,
            Err(error) => {
                debug!(%client, %dst, %error, "cannot open the flow socket");
                return;
            }
        };
        let now = Instant::now();
        let route = self.book.route(dst, now);
        let protectable = route == Route::Bond && self.book.protects(now);
        let by_rule = self.classes.action_for(dst) == UdpAction::Protect;
        let protect = protectable && by_rule;
        let (tx, early) = mpsc::channel(FLOW_CHANNEL);
        let _ = tx.try_send(datagram);
        self.flows.insert(key, tx);
        let flow = Flow {
            client,
            dst,
            lan,
            early,
            route,
            idle: self.book.idle_timeout(dst),
            queue_bytes: self.queue_bytes,
            classify: protectable && !by_rule && self.classes.auto_protects(dst),
            origin: ProtectOrigin::Rule,
        };
        if protect {
            self.spawn_protected(flow, events, shutdown);
            return;
        }
        self.tracker.spawn(relay::run(
            flow,
            self.ctx.clone(),
            self.stats.clone(),
            events.clone(),
            shutdown.clone(),
        ));
    }
}
