//! `mpbond-agent status [--json] [--socket PATH]`: fetch the document from the control
//! socket and print it, as JSON verbatim or as the table of [`super::render`].
//!
//! Exit codes: 0 printed, 3 the agent is not running (no socket, or nobody listening),
//! 1 anything else (a timeout, an `{"error": ...}` answer, a document that does not
//! parse). Blocking std I/O: the CLI has no runtime.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::render::render;
use super::state::StatusDoc;

/// Exit code when the agent is not running.
pub const EXIT_NOT_RUNNING: i32 = 3;
/// How long the client waits for the agent.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A reply larger than this is refused.
const MAX_REPLY: u64 = 4 << 20;

/// Why fetching the status failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("mpbond-agent is not running (no control socket at {})", path.display())]
    NotRunning {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("talking to the agent at {} failed: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the agent answered with an error: {0}")]
    Agent(String),
    #[error("the agent's answer is not a status document: {0}")]
    BadDocument(#[source] serde_json::Error),
}

impl ClientError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::NotRunning { .. } => EXIT_NOT_RUNNING,
            _ => 1,
        }
    }
}

/// Send `request` and return the raw answer text.
pub fn fetch_raw(socket: &Path, request: &str, timeout: Duration) -> Result<String, ClientError> {
    let io_err = |source| ClientError::Io {
        path: socket.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| {
        let absent = matches!(
            source.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
        );
        if absent {
            ClientError::NotRunning {
                path: socket.to_owned(),
                source,
            }
        } else {
            io_err(source)
        }
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(io_err)?;
    let mut text = String::new();
    stream
        .take(MAX_REPLY)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    Ok(text)
}

/// Fetch and parse the status document; an `{"error": ...}` answer is an error.
pub fn fetch(socket: &Path, timeout: Duration) -> Result<(String, StatusDoc), ClientError> {
    let text = fetch_raw(socket, "status", timeout)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(ClientError::BadDocument)?;
    if let Some(error) = value.get("error") {
        let message = error
            .as_str()
            .map_or_else(|| error.to_string(), str::to_owned);
        return Err(ClientError::Agent(message));
    }
    let doc = serde_json::from_value(value).map_err(ClientError::BadDocument)?;
    Ok((text, doc))
}

/// Run the `status` subcommand: print to stdout, errors to stderr; returns the exit code.
pub fn status_command(json: bool, socket: &Path) -> i32 {
    match fetch(socket, FETCH_TIMEOUT) {
        Ok((text, doc)) => {
            let out = if json { text } else { render(&doc) };
            let mut stdout = io::stdout().lock();
            match stdout
                .write_all(out.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => 0,
                Err(error) if error.kind() == io::ErrorKind::BrokenPipe => 0,
                Err(error) => {
                    eprintln!("mpbond-agent status: {error}");
                    1
                }
            }
        }
        Err(error) => {
            eprintln!("{error}");
            error.exit_code()
        }
    }
}
