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
//! reply, and reads the socket's subflows (`MPTCP_SUBFLOW_ADDRS`, `MPTCP_TCPINFO`):
//! their source addresses and whether each is stalled (`tcpi_unacked > 0` and
//! `tcpi_retransmits > 0`: the kernel's retransmission timer fired for data still
//! unacknowledged). The decision is the core's (`core::hedge::must_move`): every
//! subflow on an abandoned WAN (down, without link, or off), or every one on an
//! abandoned or suspect WAN (a hedge won against it) and stalled, and a good WAN to go
//! to. It then returns those parameters, and `proxy::conn` opens a new upstream
//! connection there and replays the LAN bytes it sent.

use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::ConnParams;
use crate::core::hedge::{must_move, WaitingSubflow};
use crate::net::sock_diag::tcp_info;

/// How often the subflows are read again while some WAN is abandoned or suspect: a
/// subflow stalls, or a join is refused, without a new publication.
const RECHECK: Duration = Duration::from_millis(100);

/// Resolves with the parameters to move with once the connection on socket `fd` (whose
/// initial subflow starts from `initial`) must move; pending otherwise.
pub async fn moved_off(
    fd: RawFd,
    initial: Option<IpAddr>,
    mut params: watch::Receiver<Arc<ConnParams>>,
) -> Arc<ConnParams> {
    loop {
        let now = params.borrow_and_update().clone();
        let watching = !now.abandoned.is_empty() || !now.suspects.is_empty();
        if watching {
            let subflows = subflows(fd, initial);
            if must_move(
                &subflows,
                &now.abandoned,
                &now.suspects,
                now.upstream.source,
            ) {
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

/// The subflows of the socket `fd`; the initial one, not known to be stalled, where the
/// kernel cannot list them (before 5.17, or a fallback to plain TCP).
fn subflows(fd: RawFd, initial: Option<IpAddr>) -> Vec<WaitingSubflow> {
    let read = crate::udp::subflows::read_with(&fd, |local, remote, info| {
        tcp_info(info, local.ip(), remote).map(|s| WaitingSubflow {
            source: s.src,
            stalled: s.unacked > 0 && s.retransmits > 0,
        })
    });
    match read {
        Ok(subflows) if !subflows.is_empty() => subflows,
        _ => initial
            .map(|source| WaitingSubflow {
                source,
                stalled: false,
            })
            .into_iter()
            .collect(),
    }
}
