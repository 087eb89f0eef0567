//! The control socket: a unix stream socket that answers each connection with one JSON
//! document, then closes it.
//!
//! A client writes a one-line request: `status` (or an empty line, or nothing before it
//! shuts down its write side) gets the status document; anything else gets
//! `{"error": "..."}`. The server is bounded: at most [`MAX_CLIENTS`] connections at a
//! time (further ones wait in the backlog), [`CLIENT_TIMEOUT`] per connection, and
//! requests of at most [`MAX_REQUEST`] bytes. Bad input never takes it down. It runs on
//! the shared accept loop ([`mpbond_relay::accept`]), so accept errors back off and
//! shutdown ends the backoff too.
//!
//! [`ControlSocket::bind`] creates the parent directory, refuses to start if another
//! agent answers on the path, removes a stale socket file, and binds with mode 0600: the
//! socket is bound under a temporary name, chmod-ed, then renamed into place, so it is
//! never reachable with looser permissions. Dropping the [`ControlSocket`] removes the
//! file.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mpbond_relay::accept::AcceptLoop;
use serde_json::json;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::state::StatusDoc;

/// Where the agent listens unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/mpbond/agent.sock";
/// Connections served at the same time.
pub const MAX_CLIENTS: usize = 4;
/// Bound on one connection: request, render and reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request line accepted.
pub const MAX_REQUEST: usize = 256;
/// Input after the request line that is read and dropped before closing.
const MAX_DRAIN: usize = 64 * 1024;

/// Why the control socket could not be set up.
#[derive(Debug, Error)]
pub enum ControlError {
    #[error("cannot create the directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("another agent is already serving {path}")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; not removing it")]
    NotSocket { path: PathBuf },
    #[error("cannot remove the stale socket {path}: {source}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot bind the control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The bound control socket. Dropping it removes the socket file.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Bind `path` (see the module docs). Must be called inside a tokio runtime.
    pub fn bind(path: &Path) -> Result<ControlSocket, ControlError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| ControlError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        remove_stale(path)?;
        let bind_err = |source| ControlError::Bind {
            path: path.to_owned(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(bind_err)?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(source) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(bind_err(source));
        }
        Ok(ControlSocket {
            listener,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serve until `shutdown`; `source` renders the document for each request. The
    /// socket file is removed when this returns.
    pub async fn serve<F>(self, source: F, shutdown: CancellationToken)
    where
        F: Fn() -> StatusDoc + Send + Sync + 'static,
    {
        let source = Arc::new(source);
        // Each client is bounded by CLIENT_TIMEOUT, so nobody waits for them to drain.
        let accept = AcceptLoop::new("control", MAX_CLIENTS, TaskTracker::new(), shutdown);
        accept
            .run(&self.listener, |stream, _peer, permit| {
                let source = source.clone();
                async move {
                    let served =
                        tokio::time::timeout(CLIENT_TIMEOUT, answer(stream, &*source)).await;
                    match served {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => debug!(%error, "control client failed"),
                        Err(_) => debug!("control client timed out"),
                    }
                    drop(permit);
                }
            })
            .await;
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            if error.kind() != io::ErrorKind::NotFound {
                warn!(%error, path = %self.path.display(), "cannot remove the control socket");
            }
        }
    }
}

/// Remove a socket file nobody answers on; refuse if somebody does or if it is not a
/// socket.
fn remove_stale(path: &Path) -> Result<(), ControlError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ControlError::RemoveStale {
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::NotSocket {
            path: path.to_owned(),
        });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ControlError::InUse {
            path: path.to_owned(),
        });
    }
    std::fs::remove_file(path).map_err(|source| ControlError::RemoveStale {
        path: path.to_owned(),
        source,
    })
}

/// What a request line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Status,
    Bad(String),
}

fn parse_request(raw: &[u8]) -> Request {
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    match std::str::from_utf8(line).map(str::trim) {
        Ok("" | "status") => Request::Status,
        Ok(other) => Request::Bad(format!("unknown request {other:?}; try \"status\"")),
        Err(_) => Request::Bad("request is not UTF-8".into()),
    }
}

/// Read up to the first newline (or EOF, or [`MAX_REQUEST`] bytes).
async fn read_request(stream: &mut UnixStream) -> io::Result<Result<Vec<u8>, String>> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 128];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Ok(buf));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            buf.truncate(end);
            return Ok(Ok(buf));
        }
        if buf.len() > MAX_REQUEST {
            return Ok(Err(format!("request longer than {MAX_REQUEST} bytes")));
        }
    }
}

async fn answer(
    mut stream: UnixStream,
    source: &(dyn Fn() -> StatusDoc + Send + Sync),
) -> io::Result<()> {
    let request = match read_request(&mut stream).await? {
        Ok(raw) => parse_request(&raw),
        Err(message) => Request::Bad(message),
    };
    let body = match request {
        Request::Status => serde_json::to_string_pretty(&source()),
        Request::Bad(message) => serde_json::to_string_pretty(&json!({ "error": message })),
    };
    let mut body =
        body.unwrap_or_else(|e| format!("{{\"error\": \"cannot encode the status: {e}\"}}"));
    body.push('\n');
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await?;
    // Closing with unread input would reset the connection before the client has read
    // the answer: read (and drop) what is left, a bounded amount, until it closes.
    let mut sink = [0u8; 1024];
    let mut left = MAX_DRAIN;
    while left > 0 {
        match stream.read(&mut sink).await? {
            0 => break,
            n => left = left.saturating_sub(n),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(parse_request(b""), Request::Status);
        assert_eq!(parse_request(b"status"), Request::Status);
        assert_eq!(parse_request(b"  status \r"), Request::Status);
        assert!(matches!(parse_request(b"reload"), Request::Bad(m) if m.contains("reload")));
        assert!(matches!(parse_request(&[0xff, 0xfe]), Request::Bad(_)));
    }
}
