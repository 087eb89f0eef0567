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
//! their source addresses, whether each is stalled (`tcpi_unacked > 0` and
//! `tcpi_retransmits > 0`: the kernel's retransmission timer fired for data still
//! unacknowledged), its unanswered keepalive probes (`tcpi_probes`), how long it has
//! received nothing, and its RTT. While it waits and some WAN is abandoned or suspect,
//! the socket has keepalive on (`core::hedge::PROBE_IDLE`, then every second), turned
//! off again when the wait ends:
//! a subflow whose request was acknowledged and which then hears nothing (a
//! downstream-only black hole) has nothing to retransmit, and the probe is the one
//! segment that asks the concentrator for an answer without sending it a byte. The
//! decision is the core's (`core::hedge::must_move`): every subflow on an abandoned WAN
//! (down, without link, or off), or every one on an abandoned or suspect WAN (a hedge
//! won against it) and failing (stalled, or its probe unanswered), and a good WAN to go
//! to. It then returns those parameters, and `proxy::conn` opens a new upstream
//! connection there and replays the LAN bytes it sent.

use std::net::IpAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::sync::watch;
use tracing::debug;

use super::ConnParams;
use crate::core::hedge::{must_move, WaitingSubflow, PROBE_IDLE};
use crate::net::sock_diag::tcp_info;

/// Unanswered keepalive probes before the kernel resets the subflow: the most it takes,
/// so that the probes only inform (the reply timeout and the move decide).
const PROBE_COUNT: u32 = 127;

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
    // Keepalive only once some WAN is abandoned or suspect: only then can a probe decide
    // anything, so a connection on healthy WANs pays no system call for it.
    let mut probing: Option<Probing> = None;
    loop {
        let now = params.borrow_and_update().clone();
        let watching = !now.abandoned.is_empty() || !now.suspects.is_empty();
        if watching {
            probing.get_or_insert_with(|| Probing::start(fd));
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
            probes: s.probes,
            silent: s.since_ack_recv.min(s.since_data_recv),
            rtt: s.rtt,
        })
    });
    match read {
        Ok(subflows) if !subflows.is_empty() => subflows,
        _ => initial
            .map(|source| WaitingSubflow {
                source,
                stalled: false,
                probes: 0,
                silent: Duration::ZERO,
                rtt: Duration::ZERO,
            })
            .into_iter()
            .collect(),
    }
}

/// Keepalive on the socket `fd` while it lives (the connection waits for its reply):
/// a probe after [`PROBE_IDLE`] of silence on a subflow, then one a second. The kernel
/// copies it to every subflow, joins included. Dropped, it turns keepalive off again,
/// so that a relayed connection sends no probe. A socket that refuses it (an older
/// kernel's MPTCP, say) just goes without: its subflows can still stall.
struct Probing(RawFd);

impl Probing {
    fn start(fd: RawFd) -> Self {
        let keepalive = TcpKeepalive::new()
            .with_time(PROBE_IDLE)
            .with_interval(PROBE_IDLE)
            .with_retries(PROBE_COUNT);
        if let Err(error) = with_sock(fd, |s| s.set_tcp_keepalive(&keepalive)) {
            debug!(%error, "no keepalive probes while waiting for the reply");
        }
        Probing(fd)
    }
}

impl Drop for Probing {
    fn drop(&mut self) {
        let _ = with_sock(self.0, |s| s.set_keepalive(false));
    }
}

/// Run `f` on the socket `fd`.
fn with_sock<T>(fd: RawFd, f: impl FnOnce(SockRef<'_>) -> T) -> T {
    // SAFETY: the caller of `moved_off` keeps the socket open while the future (and the
    // `Probing` in it) lives: `proxy::conn::converse` holds the stream across the
    // `select!` that drops it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    f(SockRef::from(&borrowed))
}
