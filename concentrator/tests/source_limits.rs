//! Per-source limits before authentication, in a namespace of its own where each source
//! has its own address on `d0` (11.0.0.2 holds idle connections, 11.0.0.3 is a normal
//! client, 11.0.0.4 opens connections faster than its rate):
//!
//! * one source holding many idle connections keeps only
//!   `max_unauthenticated_per_source` of them; the rest are reset before they take a
//!   slot, and another source's valid request is answered meanwhile (with the handshake
//!   timeout out of reach, on the old code it waited for a slot forever);
//! * a source past its burst of new connections is reset, counted by limit.
//!
//! Needs root, `ip` and `ss`: `#[ignore = "needs root and netns"]`.

mod common;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use common::*;
use mpbond_concentrator::Config;
use mpbond_protocol::ErrorCode;
use mpbond_testkit::{require_tools, Netns};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

const SERVER_IP: &str = "11.0.0.1";
const IDLER_IP: &str = "11.0.0.2";
const CLIENT_IP: &str = "11.0.0.3";
const FLOODER_IP: &str = "11.0.0.4";
/// `max_unauthenticated_per_source` in the test config.
const HELD: usize = 8;
/// Idle connections the idler opens: more than the accept loop's slots (16 + 64).
const IDLE: usize = 100;
/// `new_connections_per_source_burst` in the test config.
const BURST: usize = 30;

fn bed(role: &str) -> Netns {
    require_tools(&["ip", "ss"]);
    veth_netns(role, &[SERVER_IP, IDLER_IP, CLIENT_IP, FLOODER_IP])
}

/// A small pool (16 connections, so 80 accept slots), a handshake timeout far beyond the
/// test's bound, and tight per-source limits.
fn bed_config() -> Config {
    let limits = format!(
        "max_connections = 16\nhandshake_timeout_ms = 600000\n\
         max_unauthenticated_per_source = {HELD}\n\
         new_connections_per_source_per_sec = 1\nnew_connections_per_source_burst = {BURST}"
    );
    config_on(
        &format!("{SERVER_IP}:0"),
        "127.0.0.0/8",
        &limits,
        &client_toml("home", &key(1)),
    )
}

/// A TCP connection to `server` from `from`.
async fn connect_from(from: &str, server: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let ip: IpAddr = from.parse().expect("ip");
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(server).await
}

/// Send `first` from `from` and read the reply: Ok(error code, None for ok), or the error
/// of a connection that was closed or reset without one.
async fn try_request(
    from: &str,
    server: SocketAddr,
    first: &[u8],
) -> io::Result<(TcpStream, Option<ErrorCode>)> {
    let mut s = connect_from(from, server).await?;
    s.write_all(first).await?;
    let reply = match mpbond_relay::message::read_message(&mut s).await {
        Ok(reply) => reply,
        Err(mpbond_relay::message::ReadMessageError::Io(error)) => return Err(error),
        Err(other) => panic!("not a Convert reply: {other}"),
    };
    Ok((s, reply.message.error_code()))
}

/// Established TCP connections from `ip` (client side) to the server.
fn established_from(ip: &str) -> usize {
    let out = Command::new("ss")
        .args(["-Htn", "state", "established", "src", ip, "dst", SERVER_IP])
        .output()
        .expect("ss runs");
    assert!(out.status.success(), "ss failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
#[ignore = "needs root and netns"]
fn an_idle_source_is_capped_and_others_are_served() {
    let ns = bed("source-idle");
    block_on_in(&ns, || async {
        let server = start(bed_config()).await;
        let mut idle = Vec::new();
        for _ in 0..IDLE {
            // A connection reset at once can fail already here.
            match connect_from(IDLER_IP, server.addr).await {
                Ok(s) => idle.push(s),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("connect: {e}"),
            }
        }
        // Another source is answered while the idler holds its connections.
        let (echo, _) = echo_target("127.0.0.1").await;
        let first = home_connect(echo);
        let (s, code) = try_request(CLIENT_IP, server.addr, &first)
            .await
            .expect("the other source is answered");
        assert_eq!(code, None);
        assert_eq!(echo_round(s, b"served").await, b"served");

        // Every idle connection past the cap was reset before it took a slot.
        let refused = IDLE - HELD;
        server
            .wait_metric(&format!(
                "mpbond_source_limit_refusals_total{{limit=\"unauthenticated_per_source\"}} {refused}"
            ))
            .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while established_from(IDLER_IP) != HELD && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(established_from(IDLER_IP), HELD, "idle connections kept");
        assert_eq!(established_from(CLIENT_IP), 0);
        drop(idle);
        server.stop().await;
    });
}

#[test]
#[ignore = "needs root and netns"]
fn a_source_past_its_burst_is_reset() {
    let ns = bed("source-rate");
    block_on_in(&ns, || async {
        let server = start(bed_config()).await;
        let (echo, _) = echo_target("127.0.0.1").await;
        let probe = || home_connect(echo);
        // The burst is served (each request authenticates, so the unauthenticated cap
        // never trips)...
        for n in 0..BURST {
            let (s, code) = try_request(FLOODER_IP, server.addr, &probe())
                .await
                .unwrap_or_else(|e| panic!("request {n} of the burst: {e}"));
            assert_eq!(code, None, "request {n}");
            drop(s);
        }
        // ...and past it, at one a second, a connection is reset without an answer.
        let mut refused = None;
        for n in 0..BURST {
            if let Err(error) = try_request(FLOODER_IP, server.addr, &probe()).await {
                refused = Some((n, error));
                break;
            }
        }
        let (n, error) = refused.expect("a connection past the burst is refused");
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
            ),
            "request {n} past the burst: {error}"
        );
        let metrics = server.scrape().await;
        assert!(
            metrics.lines().any(|l| l
                .strip_prefix(
                    "mpbond_source_limit_refusals_total{limit=\"new_connections_per_source\"} "
                )
                .is_some_and(|v| v != "0")),
            "{metrics}"
        );
        // Another source is not limited by it.
        let (_, code) = try_request(CLIENT_IP, server.addr, &probe())
            .await
            .expect("another source is served");
        assert_eq!(code, None);
        server.stop().await;
    });
}
