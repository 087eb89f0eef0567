//! The transparent listener, served by the shared accept loop.
//!
//! The agent listens on `0.0.0.0:port` and `[::]:port` (v6only). Both listeners run
//! [`mpbond_relay::accept::AcceptLoop`] with one semaphore that caps the live
//! connections: at the limit, a loop holds its freshly accepted connection until a
//! permit frees up and accepts nothing more, so excess clients queue in the kernel
//! backlog. Accept errors (e.g. EMFILE) back off from 10 ms to 1 s instead of spinning.
//! Each connection runs in its own task on the shared [`TaskTracker`], logs its own
//! outcome, and can never take the loop down.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use mpbond_relay::accept::AcceptLoop;
use mpbond_relay::sys;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::conn::serve_accepted;
use super::ConnContext;

const BACKLOG: i32 = 1024;

/// The bound listeners. IPv6 is optional: a router with IPv6 disabled has only IPv4.
#[derive(Debug)]
pub struct Listeners {
    pub v4: TcpListener,
    pub v6: Option<TcpListener>,
}

/// A listener could not be bound.
#[derive(Debug, Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// Bind `0.0.0.0:port` and `[::]:port`. The IPv6 listener is skipped (with a warning)
/// when the kernel has no IPv6; any other failure is an error.
pub fn bind(port: u16) -> Result<Listeners, BindError> {
    let v4_addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let v4 = sys::tcp_listener(v4_addr, BACKLOG).map_err(|source| BindError {
        addr: v4_addr,
        source,
    })?;
    let v6_addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    let v6 = match sys::tcp_listener(v6_addr, BACKLOG) {
        Ok(listener) => Some(listener),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
            ) =>
        {
            warn!(error = %e, "no IPv6, listening on IPv4 only");
            None
        }
        Err(source) => {
            return Err(BindError {
                addr: v6_addr,
                source,
            })
        }
    };
    Ok(Listeners { v4, v6 })
}

/// Accept on every listener until `shutdown`, at most `max_connections` at a time.
/// Connection tasks go on `tracker`; the caller waits for them. The listeners stay
/// bound until the caller drops them.
pub async fn serve(
    listeners: &Listeners,
    ctx: Arc<ConnContext>,
    max_connections: usize,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let accept = AcceptLoop::new("proxy", max_connections, tracker, shutdown);
    let v4 = accept_loop(&accept, &listeners.v4, &ctx);
    match &listeners.v6 {
        Some(v6) => {
            let v6 = accept_loop(&accept, v6, &ctx);
            tokio::join!(v4, v6);
        }
        None => v4.await,
    }
}

async fn accept_loop(accept: &AcceptLoop, listener: &TcpListener, ctx: &Arc<ConnContext>) {
    let local = listener.local_addr().ok();
    accept
        .run(listener, |stream, client, permit| {
            let ctx = ctx.clone();
            async move {
                serve_accepted(stream, client, ctx).await;
                drop(permit);
            }
        })
        .await;
    info!(listener = ?local, "stopped accepting");
}
