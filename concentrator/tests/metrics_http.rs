//! The metrics endpoint under idle sockets (a slowloris), on loopback with tokio's clock
//! paused: the waits below are bounds on the paused clock, which only moves when every
//! task is idle, so they measure whether a scrape is *possible*, not how fast it is.

mod common;

use std::time::Duration;

use common::*;
use mpbond_concentrator::metrics_http::{MAX_SCRAPES, SCRAPE_DEADLINE};
use tokio::net::TcpStream;

/// `count` connections to the metrics port that never send a byte.
async fn idle_sockets(server: &TestServer, count: usize) -> Vec<TcpStream> {
    let mut idle = Vec::with_capacity(count);
    for _ in 0..count {
        idle.push(TcpStream::connect(server.metrics).await.unwrap());
    }
    idle
}

/// The value of an unlabelled metric in a scrape.
fn value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// 32 idle sockets: more than the 16 slots the endpoint had, fewer than it has now. A
/// scrape is served at once, while all 32 are still open; with 16 slots and a 5 s read
/// timeout it waited for the first idle socket to time out.
#[tokio::test(start_paused = true)]
async fn idle_sockets_do_not_delay_a_scrape() {
    let server = start(home_config()).await;
    let idle = idle_sockets(&server, 32).await;
    let scrape = tokio::time::timeout(Duration::from_millis(500), server.scrape())
        .await
        .expect("a scrape behind 32 idle sockets is served before any of them times out");
    assert!(scrape.starts_with("HTTP/1.0 200 OK"), "{scrape}");
    for s in &idle {
        let mut buf = [0u8; 1];
        let still_open =
            matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(still_open, "an idle socket was closed before its deadline");
    }
    assert_eq!(value(&scrape, "mpbond_scrape_timeouts_total"), 0);
    drop(idle);
    server.stop().await;
}

/// More idle sockets than slots: each holds its slot for the deadline at most, so a
/// scrape waits one deadline, not for the idle sockets to go away, and every socket that
/// ran out is counted.
#[tokio::test(start_paused = true)]
async fn more_idle_sockets_than_slots_wait_one_deadline_and_are_counted() {
    let server = start(home_config()).await;
    let idle = idle_sockets(&server, MAX_SCRAPES + 8).await;
    let scrape = tokio::time::timeout(SCRAPE_DEADLINE * 2, server.scrape())
        .await
        .expect("a scrape is served once the idle sockets' deadline has passed");
    assert!(scrape.starts_with("HTTP/1.0 200 OK"), "{scrape}");
    let timeouts = value(&scrape, "mpbond_scrape_timeouts_total");
    assert!(
        timeouts >= MAX_SCRAPES as u64,
        "{timeouts} scrape timeouts counted for {MAX_SCRAPES} idle slots"
    );
    drop(idle);
    server.stop().await;
}
