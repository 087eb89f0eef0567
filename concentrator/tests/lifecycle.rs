//! Reload, graceful shutdown and the metrics endpoint, through the library on loopback.

mod common;

use std::time::Duration;

use common::*;
use mpbond_concentrator::Config;
use mpbond_protocol::{ErrorCode, Message};
use mpbond_testkit::bounded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One echo exchange on a live relayed connection.
async fn ping(s: &mut TcpStream, text: &[u8]) {
    s.write_all(text).await.unwrap();
    let mut back = vec![0u8; text.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_a_client_without_dropping_live_connections() {
    bounded(TEST_TIMEOUT, async {
        let server = start(home_config()).await;
        let (target, _) = echo_target("127.0.0.1").await;
        let (mut live, code) = request_home(server.addr, target).await;
        assert_eq!(code, None);
        ping(&mut live, b"before").await;

        // "work" is unknown before the reload: quiet mode answers nothing.
        let work = sealed(&Message::connect(target), "work", &key(2));
        assert!(request_silenced(server.addr, &work).await.is_empty());

        let clients = format!(
            "{}{}",
            client_toml("home", &key(1)),
            client_toml("work", &key(2))
        );
        let summary = server.handle.reload(config("127.0.0.0/8", "", &clients));
        assert!(
            summary.changes.iter().any(|c| c == "client work added"),
            "{summary}"
        );
        assert_eq!(server.handle.client_count(), 2);

        let (s, code) = request(
            server.addr,
            &sealed(&Message::connect(target), "work", &key(2)),
        )
        .await;
        assert_eq!(code, None);
        assert_eq!(echo_round(s, b"new client").await, b"new client");
        ping(&mut live, b"after reload").await;

        // Removing "home" refuses new connections but keeps the live one.
        let summary =
            server
                .handle
                .reload(config("127.0.0.0/8", "", &client_toml("work", &key(2))));
        assert!(
            summary.changes.iter().any(|c| c == "client home removed"),
            "{summary}"
        );
        let removed = home_connect(target);
        assert!(request_silenced(server.addr, &removed).await.is_empty());
        ping(&mut live, b"still here").await;
        assert_eq!(echo_round(live, b"bye").await, b"bye");
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_from_a_bad_file_keeps_the_running_config() {
    bounded(TEST_TIMEOUT, async {
        let server = start(home_config()).await;
        let path =
            std::env::temp_dir().join(format!("mpbond-reload-bad-{}.toml", std::process::id()));
        std::fs::write(&path, "[[client]]\nid = \"x\"\nkey = \"nothex\"\n").unwrap();
        let err = server.handle.reload_from(&path).unwrap_err();
        assert!(err.to_string().contains("client[0].key"), "{err}");
        assert_eq!(server.handle.client_count(), 1);
        let (target, _) = echo_target("127.0.0.1").await;
        let (_, code) = request_home(server.addr, target).await;
        assert_eq!(code, None);
        std::fs::remove_file(&path).unwrap();
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_policy() {
    bounded(TEST_TIMEOUT, async {
        let server = start(home_config()).await;
        let (target, _) = echo_target("127.0.0.1").await;
        let (_, code) = request_home(server.addr, target).await;
        assert_eq!(code, None);
        server
            .handle
            .reload(config("127.0.0.2/32", "", &client_toml("home", &key(1))));
        let (_, code) = request_home(server.addr, target).await;
        assert_eq!(code, Some(ErrorCode::NotAuthorized));
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_drains_live_connections() {
    bounded(TEST_TIMEOUT, async {
        let server = start(home_config()).await;
        let (target, _) = echo_target("127.0.0.1").await;
        let (mut live, code) = request_home(server.addr, target).await;
        assert_eq!(code, None);
        server.shutdown.cancel();
        // New connections are refused once the listener is gone. Until then a connect may
        // still succeed, or be reset when the listener closes with it in the backlog.
        loop {
            match TcpStream::connect(server.addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("unexpected connect error {e}"),
                Ok(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The live connection still works during the drain.
        ping(&mut live, b"draining").await;
        assert!(!server.task.is_finished());
        assert_eq!(echo_round(live, b"last").await, b"last");
        let r = tokio::time::timeout(Duration::from_secs(10), server.task).await;
        r.expect("run returns after the drain").unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_ends_run() {
    bounded(TEST_TIMEOUT, async {
        let cfg = config(
            "127.0.0.0/8",
            "drain_timeout_secs = 0",
            &client_toml("home", &key(1)),
        );
        let server = start(cfg).await;
        let (target, _) = echo_target("127.0.0.1").await;
        let (_live, code) = request_home(server.addr, target).await;
        assert_eq!(code, None);
        server.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(10), server.task).await;
        r.expect("run returns at the drain timeout")
            .unwrap()
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_counts_everything() {
    bounded(TEST_TIMEOUT, async {
        let server = start(home_config()).await;
        let (target, _) = echo_target("127.0.0.1").await;
        // Plain TCP to the MPTCP listener: a fallback.
        let (s, code) = request_home(server.addr, target).await;
        assert_eq!(code, None);
        assert_eq!(echo_round(s, b"12345").await, b"12345");
        let wrong_key = sealed(&Message::connect(target), "home", &key(7));
        assert!(request_silenced(server.addr, &wrong_key).await.is_empty());
        let text = server
            .wait_metric("mpbond_bytes_total{client=\"home\",direction=\"up\"} 5")
            .await;
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
        for line in [
            "mpbond_bytes_total{client=\"home\",direction=\"down\"} 5",
            "mpbond_auth_failures_total{reason=\"bad_tag\"} 1",
            "mpbond_quiet_refusals_total 1",
            "mpbond_fallbacks_total 2",
            "mpbond_handshake_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        server.wait_metric("mpbond_connections_active 0").await;
        let text = server.scrape().await;
        assert!(
            text.lines().any(|l| l == "mpbond_connections_total 2"),
            "{text}"
        );
        // Not found.
        let mut s = TcpStream::connect(server.metrics).await.unwrap();
        s.write_all(b"GET /other HTTP/1.0\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.0 404"), "{out}");
        server.stop().await;
    })
    .await;
}

#[test]
fn config_parse_is_used_by_the_harness() {
    // Guards the harness itself: a broken base config would make every test fail oddly.
    let cfg: Config = config("127.0.0.0/8", "", "");
    assert_eq!(cfg.policy.allow.len(), 1);
}
