//! The connection handler and the health probe against a fake concentrator on loopback.
//! No nft: the original destination is passed to `proxy::handle` directly.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{
    closed_port, context, echo_server, fake_concentrator, key, sent, upstream, wrong_key, Behaviour,
};
use mpbond_agent::concentrator_probe::{probe, ProbeError};
use mpbond_agent::core::{FastOpenEvidence, Input};
use mpbond_agent::proxy::{conn::Close, handle, ConnContext, Summary, UpstreamKind};
use mpbond_agent::upstream::UpstreamError;
use mpbond_protocol::ErrorCode;
use mpbond_relay::relay::CloseReason;
use mpbond_testkit::bounded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(10);

/// Connect a "LAN client" through the handler to `dst`; send `data`, half-close, and
/// read until EOF. Returns what the client read (or its error) and the handler's summary.
async fn exchange(
    ctx: &Arc<ConnContext>,
    dst: SocketAddr,
    data: &[u8],
) -> (std::io::Result<Vec<u8>>, Summary) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (lan, _) = listener.accept().await.unwrap();
    let task_ctx = ctx.clone();
    let handler = tokio::spawn(async move { handle(lan, dst, &task_ctx).await });
    client.write_all(data).await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    let read = client.read_to_end(&mut got).await.map(|_| got);
    let summary = handler.await.expect("handler does not panic");
    (read, summary)
}

#[tokio::test]
async fn relays_through_the_concentrator() {
    bounded(LIMIT, async {
        let fake = fake_concentrator(Behaviour::Relay).await;
        let echo = echo_server().await;
        let (ctx, mut events) = context(upstream(fake.addr, key()));
        let (read, summary) = exchange(&ctx, echo, b"hello through mptcp").await;
        assert_eq!(read.unwrap(), b"hello through mptcp");
        assert_eq!(summary.upstream, UpstreamKind::Concentrator);
        assert_eq!(summary.close, Close::Relay(CloseReason::Finished));
        assert_eq!((summary.up, summary.down), (19, 19));
        // The client puts the request in the SYN only with a Fast Open cookie the server
        // issued (without one it asks for one and sends the request after the handshake),
        // so the server never drops SYN data and MPTCP stays MPTCP, with or without the
        // server bit of net.ipv4.tcp_fastopen.
        if common::mptcp_enabled() {
            assert_eq!(summary.mptcp, Some(true));
        }
        let fallbacks = u64::from(summary.mptcp == Some(false));
        assert_eq!(ctx.stats.snapshot().mptcp_fallbacks, fallbacks);
        let told = sent(&mut events);
        if common::mptcp_enabled() {
            let evidence = FastOpenEvidence { mptcp: true };
            assert_eq!(told.len(), 1, "{told:?}");
            assert!(
                matches!(told[0], Input::UpstreamConnected(e) if e == evidence),
                "{told:?}"
            );
        }
        assert!(
            !told.iter().any(|i| matches!(i, Input::UpstreamFailed)),
            "a reachable concentrator asks for no probe"
        );
        let requests = fake.requests.lock().unwrap().clone();
        assert!(!requests.is_empty());
        assert_eq!(requests[0].destination(), Some(echo));
    })
    .await;
}

#[tokio::test]
async fn data_right_behind_the_reply_reaches_the_client() {
    bounded(LIMIT, async {
        let fake = fake_concentrator(Behaviour::OkWithData(b"server speaks first")).await;
        let echo = echo_server().await;
        let (ctx, _events) = context(upstream(fake.addr, key()));
        let (read, summary) = exchange(&ctx, echo, b"").await;
        assert_eq!(read.unwrap(), b"server speaks first");
        assert_eq!(summary.upstream, UpstreamKind::Concentrator);
        assert_eq!(summary.down, 19);
    })
    .await;
}

#[tokio::test]
async fn concentrator_error_resets_the_lan_side() {
    bounded(LIMIT, async {
        let fake = fake_concentrator(Behaviour::Refuse(ErrorCode::DestinationUnreachable)).await;
        let echo = echo_server().await;
        let (ctx, _events) = context(upstream(fake.addr, key()));
        let (read, summary) = exchange(&ctx, echo, b"x").await;
        let err = read.expect_err("the client sees a reset");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            summary.close,
            Close::Refused(ErrorCode::DestinationUnreachable)
        );
        assert_eq!(ctx.stats.snapshot().refused, 1);
        assert_eq!(ctx.stats.snapshot().direct, 0);
    })
    .await;
}

#[tokio::test]
async fn a_rejected_key_resets_the_lan_side() {
    bounded(LIMIT, async {
        let fake = fake_concentrator(Behaviour::Relay).await;
        let echo = echo_server().await;
        let (ctx, _events) = context(upstream(fake.addr, wrong_key()));
        let (read, summary) = exchange(&ctx, echo, b"x").await;
        assert!(read.is_err());
        assert_eq!(summary.close, Close::Refused(ErrorCode::NotAuthorized));
        assert!(fake.requests.lock().unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn unreachable_concentrator_fails_open_and_asks_for_a_probe() {
    bounded(LIMIT, async {
        let echo = echo_server().await;
        let (ctx, mut events) = context(upstream(closed_port().await, key()));
        let (read, summary) = exchange(&ctx, echo, b"direct data").await;
        assert_eq!(read.unwrap(), b"direct data");
        assert_eq!(summary.upstream, UpstreamKind::Direct);
        assert_eq!(summary.close, Close::Relay(CloseReason::Finished));
        assert_eq!(ctx.stats.snapshot().direct, 1);
        let told = sent(&mut events);
        assert!(
            told.iter().any(|i| matches!(i, Input::UpstreamFailed)),
            "the core is asked to probe: {told:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn no_reply_fails_open() {
    bounded(LIMIT, async {
        let fake = fake_concentrator(Behaviour::Hangup).await;
        let echo = echo_server().await;
        let (ctx, _events) = context(upstream(fake.addr, key()));
        let (read, summary) = exchange(&ctx, echo, b"late").await;
        assert_eq!(read.unwrap(), b"late");
        assert_eq!(summary.upstream, UpstreamKind::Direct);
        assert_eq!(fake.requests.lock().unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn direct_failure_resets_the_lan_side() {
    bounded(LIMIT, async {
        let (ctx, _events) = context(upstream(closed_port().await, key()));
        let (read, summary) = exchange(&ctx, closed_port().await, b"nowhere").await;
        assert!(read.is_err(), "the client sees a reset, got {read:?}");
        assert_eq!(summary.upstream, UpstreamKind::Direct);
        assert_eq!(summary.close, Close::DirectFailed);
    })
    .await;
}

#[tokio::test]
async fn probe_succeeds_against_a_live_concentrator() {
    bounded(LIMIT, async {
        let fake = fake_concentrator(Behaviour::Relay).await;
        probe(&upstream(fake.addr, key()), Duration::from_secs(2), true)
            .await
            .result
            .expect("probe succeeds");
        let requests = fake.requests.lock().unwrap().clone();
        assert!(requests.len() == 1 && requests[0].is_info());
    })
    .await;
}

#[tokio::test]
async fn probe_with_a_wrong_key_is_rejected() {
    bounded(LIMIT, async {
        let fake = fake_concentrator(Behaviour::Relay).await;
        let result = probe(
            &upstream(fake.addr, wrong_key()),
            Duration::from_secs(2),
            true,
        )
        .await
        .result;
        assert!(
            matches!(
                result,
                Err(ProbeError::Rejected {
                    code: ErrorCode::NotAuthorized
                })
            ),
            "{result:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn probe_of_a_closed_port_fails() {
    bounded(LIMIT, async {
        let result = probe(
            &upstream(closed_port().await, key()),
            Duration::from_secs(2),
            true,
        )
        .await
        .result;
        assert!(
            matches!(result, Err(ProbeError::Upstream(UpstreamError::Connect(_)))),
            "{result:?}"
        );
    })
    .await;
}
