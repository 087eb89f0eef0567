//! The one accept loop of both daemons: bounded, self-healing, stopped by a token.
//!
//! [`AcceptLoop::run`] accepts on one listener until its `shutdown` token is
//! cancelled, and spawns each connection's handler on the [`TaskTracker`], so the
//! caller can wait for them to drain. The rules (mini-redis's `Listener::run` is the
//! model):
//!
//! * **Bounded.** Each connection holds a permit of the shared semaphore, handed to
//!   its handler, which drops it when the connection no longer needs its slot (at the
//!   end, or earlier, say before a slow close). At the limit the loop holds its newly
//!   accepted connection until a permit frees up and accepts nothing more, so further
//!   clients queue in the kernel's backlog. The permit is taken after `accept`: a loop
//!   idling on one of several listeners that share a semaphore never sits on a slot.
//! * **Self-healing.** An accept error (`EMFILE`, `ENFILE`, `ENOBUFS`, ...) backs off
//!   from [`BACKOFF_MIN`], doubling up to [`BACKOFF_MAX`], and resets after a success;
//!   it is logged at warn level, at error level once the backoff is at its maximum.
//!   The loop never gives up, and the backoff ends at once on shutdown.
//! * **Isolated.** A handler runs in its own task: its failure is its own to log, and
//!   cannot take the loop down.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// First wait after an accept error.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait between accept attempts while errors go on.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A listening socket the loop can accept on.
pub trait Listener: Sync {
    /// An accepted connection.
    type Stream: Send + 'static;
    /// The peer's address.
    type Peer: Send + 'static;
    /// Accept one connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Self::Peer)>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    type Peer = std::net::SocketAddr;

    fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, Self::Peer)>> + Send {
        TcpListener::accept(self)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    type Peer = tokio::net::unix::SocketAddr;

    fn accept(&self) -> impl Future<Output = io::Result<(UnixStream, Self::Peer)>> + Send {
        UnixListener::accept(self)
    }
}

/// What every accept loop of one server shares.
#[derive(Debug, Clone)]
pub struct AcceptLoop {
    /// For logs: which server this is (`"proxy"`, `"metrics"`, ...).
    pub name: &'static str,
    /// Caps live connections: one permit each, handed to the handler.
    pub limit: Arc<Semaphore>,
    /// Where handlers run; the caller closes it and waits to drain.
    pub tracker: TaskTracker,
    /// Stops accepting (live connections are not touched).
    pub shutdown: CancellationToken,
}

impl AcceptLoop {
    /// A loop capped at `max_connections` (at least 1) live connections.
    pub fn new(
        name: &'static str,
        max_connections: usize,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let permits = max_connections.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            name,
            limit: Arc::new(Semaphore::new(permits)),
            tracker,
            shutdown,
        }
    }

    /// Accept on `listener` until shutdown; `handle` makes each connection's task from
    /// the stream, the peer and the connection's permit. Returns once shutdown is
    /// cancelled (or the semaphore is closed); the listener stays bound.
    pub async fn run<L, F, Fut>(&self, listener: &L, mut handle: F)
    where
        L: Listener,
        F: FnMut(L::Stream, L::Peer, OwnedSemaphorePermit) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut backoff = BACKOFF_MIN;
        loop {
            let accepted = tokio::select! {
                () = self.shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if backoff >= BACKOFF_MAX {
                        tracing::error!(server = self.name, %error, ?backoff, "accept keeps failing; backing off");
                    } else {
                        tracing::warn!(server = self.name, %error, ?backoff, "accept failed; backing off");
                    }
                    tokio::select! {
                        () = self.shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            backoff = BACKOFF_MIN;
            let permit = tokio::select! {
                () = self.shutdown.cancelled() => break,
                permit = self.limit.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_closed) => break,
                },
            };
            self.tracker.spawn(handle(stream, peer, permit));
        }
        tracing::debug!(server = self.name, "stopped accepting");
    }
}
