//! Keeps the policy's own-address set current: joins rtnetlink's IPv4 and IPv6 address
//! groups and, on every address event, re-reads the host's addresses and swaps in a new
//! snapshot ([`crate::reload`]). So an address added after start is refused as a
//! destination as soon as the kernel announces it.
//!
//! The subscription is opened in [`Server::bind`](crate::Server::bind), before the first
//! read of the addresses, so no change between that read and the watch is missed. If
//! the socket fails (for example it overflowed), the watcher opens a new one and reads
//! the addresses again.

use std::io;
use std::sync::Arc;

use mpbond_netlink::rtnl::groups;
use mpbond_netlink::Subscription;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::reload::State;

/// A subscription to address changes.
pub fn subscribe() -> io::Result<Subscription> {
    Subscription::open(
        libc::NETLINK_ROUTE,
        &[groups::IPV4_IFADDR, groups::IPV6_IFADDR],
    )
}

/// Follow address changes until `shutdown`. Without a subscription (`None`: netlink
/// unavailable at start) it only tries to open one again after a failure.
pub(crate) async fn watch(
    mut subscription: Option<Subscription>,
    state: Arc<State>,
    shutdown: CancellationToken,
) {
    loop {
        let Some(sub) = subscription.as_mut() else {
            return;
        };
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = sub.next_message() => event,
        };
        if event.is_none() {
            warn!("address watch socket failed; opening a new one");
            subscription = match subscribe() {
                Ok(sub) => Some(sub),
                Err(error) => {
                    warn!(%error, "cannot watch addresses any more; SIGHUP re-reads them");
                    None
                }
            };
        }
        if let Some(own) = state.refresh_own() {
            info!(?own, "own addresses changed");
        }
    }
}
