//! The agent's two servers as tasks a reload can restart without touching anything
//! else: the transparent listener ([`ServeTask`]) and the control socket
//! ([`ControlSocketTask`]). Restarting the listener never closes a live connection: the
//! connection tasks live on the shared [`TaskTracker`], not in the accept loop.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use crate::control::{self, SharedStatus};
use crate::proxy::{self, ConnContext, Listeners};
use crate::status::ControlSocket;

/// A change for the running listener: new sockets (a new port) and the connection cap.
#[derive(Debug)]
struct Restart {
    listeners: Option<Listeners>,
    max_connections: usize,
}

/// The transparent listener's accept loop, on a task of its own.
#[derive(Debug)]
pub struct ServeTask {
    restarts: mpsc::UnboundedSender<Restart>,
    handle: JoinHandle<Listeners>,
}

impl ServeTask {
    /// Accept on `listeners` until `shutdown`; connections go on `tracker`.
    pub fn start(
        listeners: Listeners,
        ctx: Arc<ConnContext>,
        max_connections: usize,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> ServeTask {
        let (restarts, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(serve_loop(
            listeners,
            ctx,
            max_connections,
            tracker,
            rx,
            shutdown,
        ));
        ServeTask { restarts, handle }
    }

    /// Accept on `listeners` (when given; the old ones close) with a new cap. Live
    /// connections carry on.
    pub fn restart(&self, listeners: Option<Listeners>, max_connections: usize) {
        let _ = self.restarts.send(Restart {
            listeners,
            max_connections,
        });
    }

    /// Wait for the loop to stop (after shutdown) and take the listeners back, so the
    /// caller closes them after the nft table is gone.
    pub async fn join(self) -> Option<Listeners> {
        self.handle.await.ok()
    }
}

async fn serve_loop(
    mut listeners: Listeners,
    ctx: Arc<ConnContext>,
    mut max_connections: usize,
    tracker: TaskTracker,
    mut restarts: mpsc::UnboundedReceiver<Restart>,
    shutdown: CancellationToken,
) -> Listeners {
    loop {
        let round = shutdown.child_token();
        let restart = {
            let serving = proxy::serve(
                &listeners,
                ctx.clone(),
                max_connections,
                tracker.clone(),
                round.clone(),
            );
            tokio::pin!(serving);
            tokio::select! {
                () = &mut serving => None,
                restart = restarts.recv() => {
                    round.cancel();
                    (&mut serving).await;
                    Some(restart)
                }
            }
        };
        let Some(restart) = restart else {
            return listeners; // shutdown
        };
        match restart {
            Some(restart) => {
                if let Some(new) = restart.listeners {
                    listeners = new;
                }
                max_connections = restart.max_connections;
                info!(
                    port = listeners.v4.local_addr().map(|a| a.port()).unwrap_or(0),
                    max_connections, "listener restarted; live connections untouched"
                );
            }
            None => {
                // Nobody can restart it any more: serve until shutdown.
                proxy::serve(&listeners, ctx, max_connections, tracker, shutdown).await;
                return listeners;
            }
        }
    }
}

/// The control socket's server, on a task of its own.
#[derive(Debug)]
pub struct ControlSocketTask {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl ControlSocketTask {
    /// Bind `path` and serve the status from `status`; `None` (logged) when it cannot
    /// be bound: the agent runs without it.
    pub fn start(path: &Path, status: &SharedStatus) -> Option<ControlSocketTask> {
        let socket = match ControlSocket::bind(path) {
            Ok(socket) => socket,
            Err(error) => {
                error!(%error, "no control socket: `mpbond-agent status` will not answer");
                return None;
            }
        };
        info!(path = %socket.path().display(), "control socket ready");
        let stop = CancellationToken::new();
        let status = status.clone();
        let source = move || {
            let (mut doc, names) = {
                let model = control::status::lock(&status);
                (
                    model.render(std::time::Instant::now()),
                    model.name_sets_table(),
                )
            };
            crate::bypass_names::count_sets(&mut doc, names.as_deref());
            doc
        };
        let handle = tokio::spawn(socket.serve(source, stop.clone()));
        Some(ControlSocketTask { stop, handle })
    }

    /// Stop serving; the socket file is removed when the task ends.
    pub fn stop(self) {
        self.stop.cancel();
        drop(self.handle);
    }

    /// Stop serving and wait until the socket file is gone.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}
