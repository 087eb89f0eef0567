//! The transparent listener and its bounded, self-healing accept loop.
//!
//! The agent listens on `0.0.0.0:port` and `[::]:port` (v6only). A semaphore caps the
//! number of live connections: at the limit, a loop holds its freshly accepted connection
//! until a permit frees up and accepts nothing more, so excess clients queue in the
//! kernel backlog. Accept errors (e.g. EMFILE) back off from 10 ms
//! to 1 s instead of spinning. Each connection runs in its own task on the shared
//! [`TaskTracker`], logs its own outcome, and can never take the loop down.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mpbond_relay::sys;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::conn::serve_accepted;
use super::ConnContext;

const BACKLOG: i32 = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

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
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    let v4 = accept_loop(&listeners.v4, &ctx, &limit, &tracker, &shutdown);
    match &listeners.v6 {
        Some(v6) => {
            let v6 = accept_loop(v6, &ctx, &limit, &tracker, &shutdown);
            tokio::join!(v4, v6);
        }
        None => v4.await,
    }
}

async fn accept_loop(
    listener: &TcpListener,
    ctx: &Arc<ConnContext>,
    limit: &Arc<Semaphore>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let local = listener.local_addr().ok();
    let mut backoff = BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(listener = ?local, %error, ?backoff, "accept failed, backing off");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        // At the limit, this connection waits for a permit and the next ones wait in the
        // kernel backlog. (Taking the permit before accept would let an idle listener sit
        // on one.)
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let ctx = ctx.clone();
        tracker.spawn(async move {
            serve_accepted(stream, client, ctx).await;
            drop(permit);
        });
    }
    info!(listener = ?local, "stopped accepting");
}
