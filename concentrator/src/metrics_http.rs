//! A minimal HTTP/1.0 responder for `GET /metrics`.
//!
//! One request per connection, read with a size cap and answered with `Connection: close`.
//! Anything other than `GET /metrics` gets 404 (or 405 for another method). The shared
//! accept loop ([`mpbond_relay::accept`]) bounds concurrent connections to
//! [`MAX_SCRAPES`], and each has [`SCRAPE_DEADLINE`] in all to send its request and take
//! the answer: idle or slow sockets (a slowloris) hold a slot that long at most, so they
//! cannot keep a scrape waiting, and each one that runs out is counted
//! (`mpbond_scrape_timeouts_total`).

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
/// How long one connection may take to send its request and read the answer, together.
pub const SCRAPE_DEADLINE: Duration = Duration::from_secs(2);
/// Concurrent metrics connections. A slot costs a task and a socket.
pub const MAX_SCRAPES: usize = 64;

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
                match tokio::time::timeout(SCRAPE_DEADLINE, answer(stream, &metrics)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => debug!(%peer, error = %e, "metrics request failed"),
                    Err(_) => {
                        metrics.scrape_timeout();
                        debug!(%peer, "metrics request missed its deadline");
                    }
                }
                drop(permit);
            }
        })
        .await;
}

/// Read one request and write its answer. The caller bounds the time.
async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let request = read_head(&mut stream).await?;
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
