//! Moving a connection off a WAN that went down while it waited for its Convert reply.
//!
//! An MPTCP connection adds subflows only once it is fully established, and the client
//! side (the agent) is fully established only when the concentrator's first data ACK
//! arrives. A connection whose handshake completed just before its WAN went dark (the
//! SYN-ACK came back, the request or its ACK was lost) therefore has one subflow, on the
//! dead WAN, for good: the kernel retransmits there until the LAN client gives up. The
//! hedge (`proxy::hedge`) cannot help: the handshake it races did complete.
//!
//! [`moved_off`] watches the published parameters while a connection waits for its
//! reply. When the core lists the WAN address of every subflow the socket has as
//! abandoned (`core::hedge::must_move`: down, without link, or off) and a live WAN
//! starts new connections, it returns those parameters, and `proxy::conn` opens a new
//! upstream connection there and replays the LAN bytes it sent.

use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::ConnParams;
use crate::core::hedge::must_move;

/// How often the subflows are read again while the WAN is abandoned but a subflow on
/// another WAN keeps the connection (a join may still be refused).
const RECHECK: Duration = Duration::from_millis(200);

/// Resolves with the parameters to move with once the connection on socket `fd` (whose
/// initial subflow starts from `initial`) must move; pending otherwise.
pub async fn moved_off(
    fd: RawFd,
    initial: Option<IpAddr>,
    mut params: watch::Receiver<Arc<ConnParams>>,
) -> Arc<ConnParams> {
    loop {
        let now = params.borrow_and_update().clone();
        let watching = !now.abandoned.is_empty();
        if watching {
            let sources = sources(fd, initial);
            if must_move(&sources, &now.abandoned, now.upstream.source) {
                return now;
            }
        }
        let changed = if watching {
            match tokio::time::timeout(RECHECK, params.changed()).await {
                Ok(changed) => changed,
                Err(_) => Ok(()),
            }
        } else {
            params.changed().await
        };
        if changed.is_err() {
            // Nobody publishes any more (shutdown, or a fixed context): never moves.
            std::future::pending::<()>().await;
        }
    }
}

/// The source addresses of the subflows of the socket `fd`; the initial one where the
/// kernel cannot list them (before 5.17, or a fallback to plain TCP).
fn sources(fd: RawFd, initial: Option<IpAddr>) -> Vec<IpAddr> {
    match crate::udp::subflows::read(&fd) {
        Ok(subflows) if !subflows.is_empty() => subflows.iter().map(|s| s.local.ip()).collect(),
        _ => initial.into_iter().collect(),
    }
}
