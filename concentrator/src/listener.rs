//! Listeners, served by the shared accept loop.
//!
//! Each `listen` address gets an MPTCP listener with a TCP Fast Open queue. If the kernel
//! refuses MPTCP sockets (no MPTCP, or `net.mptcp.enabled = 0`) the address falls back to a
//! plain TCP listener, so clients still work over one path. [`serve`] runs
//! [`mpbond_relay::accept::AcceptLoop`] on it: every listener shares the server's slots
//! semaphore, accept errors back off, and each connection is a session on the task
//! tracker whose failure is its own.
//!
//! Before a connection takes a slot, [`Screened`] asks the per-source limits
//! ([`crate::source_limit`]): a connection they refuse is reset at once, counted in
//! `mpbond_source_limit_refusals_total`, and logged at most once per
//! [`crate::source_limit::LOG_EVERY`]. An admitted one carries an [`Unproven`] mark, which
//! the session drops once the client has authenticated.
//!
//! No Fast Open listener sets `TCP_FASTOPEN_NO_COOKIE`
//! ([`mpbond_relay::sys::mptcp_listener`]): data in a SYN is taken only with the kernel's
//! cookie, so nothing is accepted from a source address before its owner answered a
//! SYN-ACK.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use mpbond_relay::accept::{AcceptLoop, Listener};
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use crate::reload::State;
use crate::source_limit::{Source, SourceTable};

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

/// Accept on `listener` until `accept.shutdown`, a session per connection that the
/// per-source limits let through. Its slot comes from `accept.limit` (the server's slots)
/// and goes to the session.
pub(crate) async fn serve(listener: TcpListener, state: Arc<State>, accept: AcceptLoop) {
    let screened = Screened {
        listener: &listener,
        state: state.clone(),
    };
    accept
        .run(&screened, |stream, (peer, unproven), slot| {
            crate::session::serve(stream, peer, unproven, state.clone(), slot)
        })
        .await;
}

/// [`serve`] for a SOCKS5 listener (`[socks] listen`): the same slots, per-source
/// limits and accept loop, a [`crate::socks::session`] per connection.
pub(crate) async fn serve_socks(listener: TcpListener, state: Arc<State>, accept: AcceptLoop) {
    let screened = Screened {
        listener: &listener,
        state: state.clone(),
    };
    accept
        .run(&screened, |stream, (peer, unproven), slot| {
            crate::socks::session::serve(stream, peer, unproven, state.clone(), slot)
        })
        .await;
}

/// A listener whose `accept` returns only connections the per-source limits admit; the
/// others it resets and counts.
pub(crate) struct Screened<'a> {
    listener: &'a TcpListener,
    state: Arc<State>,
}

/// A connection counted as unauthenticated against its source until dropped.
#[derive(Debug)]
pub(crate) struct Unproven {
    sources: Arc<Mutex<SourceTable>>,
    source: Source,
}

impl Drop for Unproven {
    fn drop(&mut self) {
        self.sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(self.source);
    }
}

impl Screened<'_> {
    /// Count `peer` in against its source, or count and log the refusal.
    fn screen(&self, peer: SocketAddr) -> Option<Unproven> {
        let limits = self.state.live().config.limits.per_source;
        let now = Instant::now();
        let (verdict, log) = {
            let mut table = self
                .state
                .sources
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let verdict = table.admit(peer.ip(), &limits, now);
            (verdict, table.log_due(now))
        };
        match verdict {
            Ok(source) => Some(Unproven {
                sources: self.state.sources.clone(),
                source,
            }),
            Err(hit) => {
                self.state.metrics.source_limit_refusal(hit);
                if let Some(refused) = log {
                    warn!(
                        refused,
                        last_source = %peer.ip(),
                        limit = hit.as_str(),
                        "per-source limits reset connections before authentication"
                    );
                }
                None
            }
        }
    }
}

impl Listener for Screened<'_> {
    type Stream = TcpStream;
    type Peer = (SocketAddr, Unproven);

    async fn accept(&self) -> io::Result<(TcpStream, Self::Peer)> {
        loop {
            let (stream, peer) = self.listener.accept().await?;
            match self.screen(peer) {
                Some(unproven) => return Ok((stream, (peer, unproven))),
                None => mpbond_relay::sys::reset(stream),
            }
        }
    }
}
