//! WAN probes on loopback, without root (no device binding): success with a plausible
//! connect time, a wrong key is Rejected(32), a closed port is Refused, mixed address
//! families are refused before any I/O, and the probe loop reports on its interval and
//! stops on its token or when the receiver is gone. The namespace version, with real
//! WANs and a real concentrator, is `status_wanprobe_netns.rs`.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{closed_port, fake_concentrator, key, upstream, wrong_key, Behaviour};
use mpbond_agent::proxy::ConnParams;
use mpbond_agent::upstream::Upstream;
use mpbond_agent::wan_probe::{probe_once, ProbeError, ProbeLoop, ProbeTarget};
use mpbond_protocol::ErrorCode;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

#[tokio::test]
async fn answered_probe_gives_the_connect_time() {
    let fake = fake_concentrator(Behaviour::Relay).await;
    let up = upstream(fake.addr, key());
    let rtt = probe_once("", localhost(), &up, PROBE_TIMEOUT)
        .await
        .unwrap();
    assert!(rtt < PROBE_TIMEOUT, "{rtt:?}");
    assert_eq!(fake.requests.lock().unwrap().len(), 1);
    assert!(fake.requests.lock().unwrap()[0].is_info());
}

#[tokio::test]
async fn wrong_key_is_rejected_with_32() {
    let fake = fake_concentrator(Behaviour::Relay).await;
    let up = upstream(fake.addr, wrong_key());
    let err = probe_once("", localhost(), &up, PROBE_TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProbeError::Rejected(ErrorCode::NotAuthorized)),
        "{err:?}"
    );
    assert_eq!(err.kind(), "rejected");
    assert!(err.to_string().contains("error 32"), "{err}");
}

#[tokio::test]
async fn closed_port_is_refused() {
    let up = upstream(closed_port().await, key());
    let err = probe_once("", localhost(), &up, PROBE_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::Refused(_)), "{err:?}");
}

#[tokio::test]
async fn mixed_families_fail_before_any_io() {
    let up = upstream(closed_port().await, key());
    let err = probe_once("", "::1".parse().unwrap(), &up, PROBE_TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::Family { .. }), "{err:?}");
}

#[tokio::test]
async fn loop_reports_until_cancelled() {
    let fake = fake_concentrator(Behaviour::Relay).await;
    let (tx, mut rx) = mpsc::channel(4);
    let shutdown = CancellationToken::new();
    let task = ProbeLoop {
        target: ProbeTarget {
            wan: "wan1".into(),
            device: String::new(),
            src: localhost(),
            interval: Duration::from_millis(50),
            timeout: PROBE_TIMEOUT,
        },
        params: fixed(upstream(fake.addr, key())),
        reports: tx,
    }
    .spawn(shutdown.clone());
    let mut last = None;
    for _ in 0..3 {
        let report = timeout(LIMIT, rx.recv()).await.unwrap().expect("a report");
        assert_eq!(report.wan, "wan1");
        assert!(report.outcome().is_some(), "{:?}", report.result);
        if let Some(last) = last {
            assert!(report.at > last);
        }
        last = Some(report.at);
    }
    shutdown.cancel();
    timeout(LIMIT, task).await.unwrap().unwrap();
    // Nothing is sent after the task ended: the channel is closed.
    while let Ok(Some(_)) = timeout(LIMIT, rx.recv()).await {}
}

#[tokio::test]
async fn loop_stops_when_nobody_listens() {
    let (tx, rx) = mpsc::channel(1);
    let task = ProbeLoop {
        target: ProbeTarget {
            wan: "wan2".into(),
            device: String::new(),
            src: localhost(),
            interval: Duration::from_millis(10),
            timeout: PROBE_TIMEOUT,
        },
        params: fixed(upstream(closed_port().await, key())),
        reports: tx,
    }
    .spawn(CancellationToken::new());
    drop(rx);
    timeout(LIMIT, task).await.unwrap().unwrap();
}

/// Parameters nobody changes, as the WAN probe loop reads them.
fn fixed(upstream: Upstream) -> watch::Receiver<Arc<ConnParams>> {
    watch::channel(Arc::new(common::params(upstream))).1
}
