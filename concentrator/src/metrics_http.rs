//! A minimal HTTP/1.0 responder for `GET /metrics`.
//!
//! One request per connection, read with a deadline and a size cap, answered with
//! `Connection: close`. Anything other than `GET /metrics` gets 404 (or 405 for another
//! method). The shared accept loop ([`mpbond_relay::accept`]) bounds concurrent scrapes.

use std::sync::Arc;
use std::time::Duration;

use mpbond_relay::accept::AcceptLoop;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::metrics::Metrics;

const MAX_REQUEST: usize = 8192;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_SCRAPES: usize = 16;

/// Serve metrics on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let accept = AcceptLoop::new("metrics", MAX_SCRAPES, tracker, shutdown);
    accept
        .run(&listener, |stream, peer, permit| {
            let metrics = metrics.clone();
            async move {
                if let Err(e) = answer(stream, &metrics).await {
                    debug!(%peer, error = %e, "metrics request failed");
                }
                drop(permit);
            }
        })
        .await;
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    };
    let response = respond(&request, metrics);
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// Read until the end of the request head, EOF, or the size cap.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() >= MAX_REQUEST
            || buf.windows(4).any(|w| w == b"\r\n\r\n")
            || buf.windows(2).any(|w| w == b"\n\n")
        {
            return Ok(buf);
        }
    }
}

/// Build the full HTTP response for a request head. Pure, for tests.
pub fn respond(request: &[u8], metrics: &Metrics) -> Vec<u8> {
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let (status, body, ctype) = match (method, path) {
        ("GET", "/metrics") | ("HEAD", "/metrics") => (
            "200 OK",
            metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        ("GET", _) | ("HEAD", _) => (
            "404 Not Found",
            "not found; try /metrics\n".to_owned(),
            "text/plain",
        ),
        _ => (
            "405 Method Not Allowed",
            "method not allowed\n".to_owned(),
            "text/plain",
        ),
    };
    let mut out = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_metrics_is_200() {
        let m = Metrics::default();
        m.connection_opened();
        let r =
            String::from_utf8(respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &m)).unwrap();
        assert!(r.starts_with("HTTP/1.0 200 OK\r\n"), "{r}");
        assert!(r.contains("\r\n\r\n# HELP"), "{r}");
        assert!(r.contains("\nmpbond_connections_total 1\n"), "{r}");
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
    }

    #[test]
    fn other_paths_and_methods() {
        let m = Metrics::default();
        let r = respond(b"GET / HTTP/1.0\r\n\r\n", &m);
        assert!(r.starts_with(b"HTTP/1.0 404"));
        let r = respond(b"POST /metrics HTTP/1.0\r\n\r\n", &m);
        assert!(r.starts_with(b"HTTP/1.0 405"));
        let r = respond(b"\xff\xfe garbage", &m);
        assert!(r.starts_with(b"HTTP/1.0 405"));
        let r = respond(b"", &m);
        assert!(r.starts_with(b"HTTP/1.0 405"));
    }
}
