//! WAN probe datagrams on loopback, without root (no device binding), against a stand-in
//! UDP responder built on `mpbond_protocol::probe`: success with the round trip and the
//! bytes on the wire, a wrong key gets silence (a timeout), a forged reply is not a
//! success, a closed port is Refused, an older concentrator (TCP only: the datagram is
//! refused) is probed over TCP instead, mixed address families are refused before any
//! I/O, and the probe loop probes on request and stops on its token or when either
//! channel closes. The namespace version, with real WANs and the real concentrator, is
//! `status_wanprobe_netns.rs`.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{fake_concentrator, key, upstream, wrong_key, Behaviour};
use mpbond_agent::proxy::ConnParams;
use mpbond_agent::upstream::Upstream;
use mpbond_agent::wan_probe::{next_stamp, probe_once, ProbeError, ProbeLoop, ProbeTarget};
use mpbond_protocol::auth::Key;
use mpbond_protocol::probe;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

/// How the stand-in answers a valid request.
#[derive(Clone, Copy)]
enum Answer {
    Right,
    /// A reply with a wrong tag (as an attacker without the key would send).
    Forged,
}

/// A UDP responder on loopback that checks requests with `key` (as the concentrator
/// does) and counts what it received.
async fn responder(key: Key, answer: Answer) -> (SocketAddr, Arc<AtomicU32>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 128];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            counter.fetch_add(1, Ordering::SeqCst);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let now_ms = now.as_millis() as u64;
            let Ok(request) =
                probe::verify_request(&buf[..len], now_ms, 60_000, |_| Some(key.clone()))
            else {
                continue;
            };
            let mut reply = probe::encode_reply(&key, &request);
            if let Answer::Forged = answer {
                reply[20] ^= 1;
            }
            let _ = socket.send_to(&reply, from).await;
        }
    });
    (addr, seen)
}

async fn closed_udp_port() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test]
async fn an_answered_probe_gives_the_round_trip_and_its_bytes() {
    let (addr, seen) = responder(key(), Answer::Right).await;
    let up = upstream(addr, key());
    let outcome = probe_once("", localhost(), &up, next_stamp(0), PROBE_TIMEOUT).await;
    let rtt = outcome.result.unwrap();
    assert!(rtt < PROBE_TIMEOUT, "{rtt:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 1, "one datagram");
    let id = up.client_id.as_str().len();
    let expected = probe::request_len(id) + probe::REPLY_LEN + 2 * probe::IPV4_UDP_HEADER;
    assert_eq!(outcome.bytes, expected as u64);
}

#[tokio::test]
async fn a_wrong_key_gets_silence() {
    let (addr, seen) = responder(key(), Answer::Right).await;
    let up = upstream(addr, wrong_key());
    let outcome = probe_once("", localhost(), &up, next_stamp(0), PROBE_TIMEOUT).await;
    let err = outcome.result.unwrap_err();
    assert!(matches!(err, ProbeError::Timeout(_)), "{err:?}");
    assert_eq!(err.kind(), "timeout");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_forged_reply_is_not_a_success() {
    let (addr, _) = responder(key(), Answer::Forged).await;
    let up = upstream(addr, key());
    let outcome = probe_once("", localhost(), &up, next_stamp(0), PROBE_TIMEOUT).await;
    let err = outcome.result.unwrap_err();
    assert!(matches!(err, ProbeError::Timeout(_)), "{err:?}");
    let id = up.client_id.as_str().len();
    let expected = probe::request_len(id) + probe::REPLY_LEN + 2 * probe::IPV4_UDP_HEADER;
    assert_eq!(
        outcome.bytes, expected as u64,
        "the forged reply is counted"
    );
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let up = upstream(closed_udp_port().await, key());
    let outcome = probe_once("", localhost(), &up, next_stamp(0), PROBE_TIMEOUT).await;
    let err = outcome.result.unwrap_err();
    assert!(matches!(err, ProbeError::Refused(_)), "{err:?}");
}

#[tokio::test]
async fn an_older_concentrator_is_probed_over_tcp() {
    let fake = fake_concentrator(Behaviour::Relay).await;
    let up = upstream(fake.addr, key());
    let outcome = probe_once("", localhost(), &up, next_stamp(0), PROBE_TIMEOUT).await;
    let rtt = outcome.result.expect("the TCP fallback answers");
    assert!(rtt < PROBE_TIMEOUT, "{rtt:?}");
    let requests = fake.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    assert!(requests[0].is_info());
}

#[tokio::test]
async fn mixed_families_fail_before_any_io() {
    let up = upstream(closed_udp_port().await, key());
    let outcome = probe_once("", "::1".parse().unwrap(), &up, 1, PROBE_TIMEOUT).await;
    assert!(
        matches!(outcome.result, Err(ProbeError::Family { .. })),
        "{:?}",
        outcome.result
    );
    assert_eq!(outcome.bytes, 0);
}

#[test]
fn stamps_increase_strictly() {
    let a = next_stamp(0);
    let b = next_stamp(a);
    let c = next_stamp(u64::MAX - 1);
    assert!(b > a);
    assert_eq!(c, u64::MAX);
}

fn target(wan: &str) -> ProbeTarget {
    ProbeTarget {
        wan: wan.into(),
        device: String::new(),
        src: localhost(),
    }
}

#[tokio::test]
async fn the_loop_probes_on_request_until_cancelled() {
    let (addr, seen) = responder(key(), Answer::Right).await;
    let (tx, mut rx) = mpsc::channel(4);
    let (requests, requests_rx) = mpsc::channel(2);
    let shutdown = CancellationToken::new();
    let task = ProbeLoop {
        target: target("wan1"),
        params: fixed(upstream(addr, key())),
        requests: requests_rx,
        reports: tx,
    }
    .spawn(shutdown.clone());
    let mut last = None;
    for i in 1..=3 {
        requests.send(PROBE_TIMEOUT).await.unwrap();
        let report = timeout(LIMIT, rx.recv()).await.unwrap().expect("a report");
        assert_eq!(report.wan, "wan1");
        assert!(report.outcome().is_some(), "{:?}", report.result);
        assert!(report.bytes > 0);
        assert_eq!(seen.load(Ordering::SeqCst), i, "one datagram per request");
        if let Some(last) = last {
            assert!(report.at > last);
        }
        last = Some(report.at);
    }
    shutdown.cancel();
    timeout(LIMIT, task).await.unwrap().unwrap();
    while let Ok(Some(_)) = timeout(LIMIT, rx.recv()).await {}
}

#[tokio::test]
async fn the_loop_stops_when_either_channel_closes() {
    let (tx, rx) = mpsc::channel(1);
    let (requests, requests_rx) = mpsc::channel(2);
    let task = ProbeLoop {
        target: target("wan2"),
        params: fixed(upstream(closed_udp_port().await, key())),
        requests: requests_rx,
        reports: tx,
    }
    .spawn(CancellationToken::new());
    drop(rx);
    requests.send(PROBE_TIMEOUT).await.unwrap();
    timeout(LIMIT, task).await.unwrap().unwrap();

    let (tx, _rx) = mpsc::channel(1);
    let (requests, requests_rx) = mpsc::channel::<Duration>(2);
    let task = ProbeLoop {
        target: target("wan3"),
        params: fixed(upstream(closed_udp_port().await, key())),
        requests: requests_rx,
        reports: tx,
    }
    .spawn(CancellationToken::new());
    drop(requests);
    timeout(LIMIT, task).await.unwrap().unwrap();
}

/// Parameters nobody changes, as the WAN probe loop reads them.
fn fixed(upstream: Upstream) -> watch::Receiver<Arc<ConnParams>> {
    watch::channel(Arc::new(common::params(upstream))).1
}
