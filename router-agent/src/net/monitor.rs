//! "Something changed" nudges from rtnetlink multicast.
//!
//! [`monitor`] joins the link, IPv4/IPv6 address, route and rule groups and yields `()`
//! for every notification. The agent does not interpret them: it debounces the nudges,
//! then re-snapshots and reconciles (the periodic reconcile covers missed events). The
//! stream ends if the socket fails, e.g. its receive buffer overran; the caller then
//! re-subscribes and reconciles from a fresh dump.
//!
//! Call it inside a tokio runtime: the socket is registered there, in the network
//! namespace of the calling thread.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::Stream;
use mpbond_netlink::{protocol, Subscription};

use super::kernel_err;
use super::types::NetError;

/// The rtnetlink multicast groups (`enum rtnetlink_groups` in `linux/rtnetlink.h`).
pub mod groups {
    pub use mpbond_netlink::rtnl::groups::*;

    /// Everything the WAN model depends on.
    pub const ALL: [u32; 7] = [
        LINK,
        IPV4_IFADDR,
        IPV6_IFADDR,
        IPV4_ROUTE,
        IPV6_ROUTE,
        IPV4_RULE,
        IPV6_RULE,
    ];
}

/// A stream of nudges, one per rtnetlink notification.
#[derive(Debug)]
pub struct Monitor {
    subscription: Subscription,
}

/// Subscribe to [`groups::ALL`].
pub fn monitor() -> Result<Monitor, NetError> {
    const OP: &str = "subscribing to rtnetlink link/address/route/rule events";
    let subscription =
        Subscription::open(protocol::ROUTE, &groups::ALL).map_err(|e| kernel_err(OP, e))?;
    Ok(Monitor { subscription })
}

impl Stream for Monitor {
    type Item = ();

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let msg = ready!(self.subscription.poll_next_message(cx));
        Poll::Ready(msg.map(drop))
    }
}
