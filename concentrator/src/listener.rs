//! Listeners and the bounded accept loop.
//!
//! Each `listen` address gets an MPTCP listener with a TCP Fast Open queue. If the kernel
//! refuses MPTCP sockets (no MPTCP, or `net.mptcp.enabled = 0`) the address falls back to a
//! plain TCP listener, so clients still work over one path. The accept loop takes a slot
//! from the shared semaphore before each accept, backs off on accept errors, and spawns
//! each connection on the task tracker; a connection's failure is its own and is logged by
//! the connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

use crate::reload::State;

/// Listen backlog.
pub const BACKLOG: i32 = 4096;
/// TCP Fast Open queue length on the listeners.
pub const FASTOPEN_QLEN: i32 = 4096;

/// A bound listener and whether it is MPTCP.
#[derive(Debug)]
pub struct Bound {
    pub listener: TcpListener,
    pub mptcp: bool,
}

/// Bind `addr` as MPTCP, falling back to plain TCP if the kernel has no MPTCP sockets.
pub fn bind(addr: SocketAddr) -> io::Result<Bound> {
    match mpbond_relay::sys::mptcp_listener(addr, BACKLOG, Some(FASTOPEN_QLEN)) {
        Ok(listener) => Ok(Bound {
            listener,
            mptcp: true,
        }),
        Err(e) if is_no_mptcp(&e) => {
            warn!(%addr, error = %e, "cannot open an MPTCP socket; listening with plain TCP (run `mpbond-concentrator setup`)");
            let listener = mpbond_relay::sys::tcp_listener(addr, BACKLOG)?;
            if let Err(error) = mpbond_relay::sys::set_fastopen_listener(&listener, FASTOPEN_QLEN) {
                warn!(%addr, %error, "TCP Fast Open not available on the TCP listener");
            }
            Ok(Bound {
                listener,
                mptcp: false,
            })
        }
        Err(e) => Err(e),
    }
}

fn is_no_mptcp(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOPROTOOPT | libc::EPROTONOSUPPORT)
    )
}

/// The address family is not available on this host (e.g. IPv6 disabled).
pub fn is_no_family(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
    )
}

/// Accept until `shutdown`, spawning a session per connection on `tracker`.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = state.slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let _ = stream.set_nodelay(true);
                tracker.spawn(crate::session::serve(stream, peer, state.clone(), permit));
            }
            Err(e) => {
                drop(permit);
                if backoff >= Duration::from_millis(640) {
                    error!(error = %e, "accept keeps failing; backing off");
                } else {
                    warn!(error = %e, "accept failed; backing off");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
