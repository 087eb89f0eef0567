//! Listeners, served by the shared accept loop.
//!
//! Each `listen` address gets an MPTCP listener with a TCP Fast Open queue. If the kernel
//! refuses MPTCP sockets (no MPTCP, or `net.mptcp.enabled = 0`) the address falls back to a
//! plain TCP listener, so clients still work over one path. [`serve`] runs
//! [`mpbond_relay::accept::AcceptLoop`] on it: every listener shares the server's slots
//! semaphore, accept errors back off, and each connection is a session on the task
//! tracker whose failure is its own.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mpbond_relay::accept::AcceptLoop;
use tokio::net::TcpListener;
use tracing::warn;

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

/// Accept on `listener` until `accept.shutdown`, a session per connection. Its slot
/// comes from `accept.limit` (the server's slots) and goes to the session.
pub(crate) async fn serve(listener: TcpListener, state: Arc<State>, accept: AcceptLoop) {
    accept
        .run(&listener, |stream, peer, slot| {
            crate::session::serve(stream, peer, state.clone(), slot)
        })
        .await;
}
