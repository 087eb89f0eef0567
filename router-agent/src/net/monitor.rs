//! "Something changed" nudges from rtnetlink multicast.
//!
//! [`monitor`] joins the link, IPv4/IPv6 address, route and rule groups and yields `()`
//! for every notification. The agent does not interpret them: it debounces the nudges,
//! then re-snapshots and reconciles (the periodic reconcile covers missed events). The
//! stream ends if the socket fails, e.g. its receive buffer overran; the caller then
//! re-subscribes and reconciles from a fresh dump.
//!
//! Call it inside a tokio runtime: the connection task is spawned there, in the network
//! namespace of the calling thread, and aborted when the stream is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{Stream, StreamExt};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{AsyncSocket, SocketAddr};

use super::model::NetError;
use super::{kernel_err, AbortOnDrop};

/// The rtnetlink multicast groups (`enum rtnetlink_groups` in `linux/rtnetlink.h`).
pub mod groups {
    pub const LINK: u32 = 1;
    pub const IPV4_IFADDR: u32 = 5;
    pub const IPV4_ROUTE: u32 = 7;
    pub const IPV4_RULE: u32 = 8;
    pub const IPV6_IFADDR: u32 = 9;
    pub const IPV6_ROUTE: u32 = 11;
    pub const IPV6_RULE: u32 = 19;
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
    rx: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    _task: AbortOnDrop,
}

/// Subscribe to [`groups::ALL`].
pub fn monitor() -> Result<Monitor, NetError> {
    const OP: &str = "subscribing to rtnetlink link/address/route/rule events";
    let (mut conn, _handle, rx) = rtnetlink::new_connection().map_err(|e| kernel_err(OP, e))?;
    let socket = conn.socket_mut().socket_mut();
    socket.bind_auto().map_err(|e| kernel_err(OP, e))?;
    for group in groups::ALL {
        socket
            .add_membership(group)
            .map_err(|e| kernel_err(OP, e))?;
    }
    Ok(Monitor {
        rx,
        _task: AbortOnDrop(tokio::spawn(conn)),
    })
}

impl Stream for Monitor {
    type Item = ();

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        loop {
            match self.rx.poll_next_unpin(cx) {
                Poll::Ready(Some((msg, _))) => {
                    if matches!(msg.payload, NetlinkPayload::InnerMessage(_)) {
                        return Poll::Ready(Some(()));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
