//! The LAN client's bytes go to the concentrator before its Convert reply (up to the early
//! window, over several writes), so the destination's answer is not held back a round
//! trip and an upload does not stall on the reply, and a fail-open still replays them.
//! A fake concentrator on loopback that reads the request *and the client's bytes*
//! before it replies: without early data it would wait forever and the test time out.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{echo_server, key, upstream};
use mpbond_agent::proxy::conn::{Close, EARLY_MAX};
use mpbond_agent::proxy::{handle, ConnContext, UpstreamKind};
use mpbond_protocol::Message;
use mpbond_relay::message::read_message;
use mpbond_relay::relay::CloseReason;
use mpbond_testkit::bounded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

fn context(addr: SocketAddr) -> Arc<ConnContext> {
    common::context(upstream(addr, key())).0
}

/// Read one Convert request and check that it decodes.
async fn read_request(stream: &mut TcpStream) {
    read_message(stream).await.expect("one whole request");
}

/// Accept one connection, read the Convert request and then `early.len()` more bytes,
/// report those bytes, and reply OK followed by `answer` (or hang up if `answer` is None).
async fn patient_concentrator(
    expect: usize,
    answer: Option<&'static [u8]>,
) -> (SocketAddr, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_request(&mut stream).await;
        let mut early = vec![0u8; expect];
        stream.read_exact(&mut early).await.unwrap();
        let _ = tx.send(early);
        if let Some(answer) = answer {
            let mut out = Message::ok().encode().unwrap();
            out.extend_from_slice(answer);
            stream.write_all(&out).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        }
    });
    (addr, rx)
}

/// A LAN client and the agent's accepted end of its connection, on loopback.
async fn lan_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (lan, _) = listener.accept().await.unwrap();
    (client, lan)
}

/// A LAN connection handled towards `dst`; the client writes `request` at once and
/// reads to the end. Returns what it read and the summary.
async fn lan_request(
    ctx: &Arc<ConnContext>,
    dst: SocketAddr,
    request: &[u8],
) -> (Vec<u8>, mpbond_agent::proxy::Summary) {
    let (mut client, lan) = lan_pair().await;
    client.write_all(request).await.unwrap();
    let task_ctx = ctx.clone();
    let handler = tokio::spawn(async move { handle(lan, dst, &task_ctx).await });
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    client.shutdown().await.unwrap();
    (got, handler.await.expect("handler does not panic"))
}

#[tokio::test]
async fn the_request_reaches_the_concentrator_before_its_reply() {
    timeout(LIMIT, async {
        let request = b"GET / HTTP/1.1\r\n\r\n";
        let (addr, early) = patient_concentrator(request.len(), Some(b"answer")).await;
        let ctx = context(addr);
        let dst = "192.0.2.80:80".parse().unwrap();
        let (got, summary) = lan_request(&ctx, dst, request).await;
        assert_eq!(early.await.unwrap(), request);
        assert_eq!(got, b"answer");
        assert_eq!(summary.upstream, UpstreamKind::Concentrator);
        assert_eq!(summary.close, Close::Relay(CloseReason::Finished));
        assert_eq!((summary.up, summary.down), (request.len() as u64, 6));
    })
    .await
    .expect("the LAN bytes did not go ahead of the reply");
}

#[tokio::test]
async fn bytes_sent_ahead_are_replayed_when_failing_open() {
    bounded(LIMIT, async {
        let request = b"replay me";
        let (addr, early) = patient_concentrator(request.len(), None).await;
        let echo = echo_server().await;
        let ctx = context(addr);
        let (mut client, lan) = lan_pair().await;
        client.write_all(request).await.unwrap();
        client.shutdown().await.unwrap();
        let task_ctx = ctx.clone();
        let handler = tokio::spawn(async move { handle(lan, echo, &task_ctx).await });
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        let summary = handler.await.unwrap();
        assert_eq!(early.await.unwrap(), request);
        assert_eq!(
            got, request,
            "the direct connection got the bytes sent ahead"
        );
        assert_eq!(summary.upstream, UpstreamKind::Direct);
        assert_eq!(summary.up, request.len() as u64);
    })
    .await;
}

#[tokio::test]
async fn later_lan_writes_also_go_ahead_of_the_reply() {
    const FIRST: &[u8] = b"POST / HTTP/1.1\r\n\r\n";
    const SECOND: &[u8] = b"the body";
    timeout(LIMIT, async {
        // This concentrator answers only once it has both writes: the second is made
        // after the first has arrived, so the agent must keep forwarding.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (first_tx, first_rx) = oneshot::channel();
        let concentrator = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await;
            let mut first = vec![0u8; FIRST.len()];
            stream.read_exact(&mut first).await.unwrap();
            let _ = first_tx.send(());
            let mut second = vec![0u8; SECOND.len()];
            stream.read_exact(&mut second).await.unwrap();
            let mut out = Message::ok().encode().unwrap();
            out.extend_from_slice(b"created");
            stream.write_all(&out).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            (first, second)
        });
        let ctx = context(addr);
        let (mut client, lan) = lan_pair().await;
        client.write_all(FIRST).await.unwrap();
        let task_ctx = ctx.clone();
        let dst = "192.0.2.80:80".parse().unwrap();
        let handler = tokio::spawn(async move { handle(lan, dst, &task_ctx).await });
        first_rx.await.unwrap();
        client.write_all(SECOND).await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        client.shutdown().await.unwrap();
        let summary = handler.await.expect("handler does not panic");
        let (first, second) = concentrator.await.unwrap();
        assert_eq!((first.as_slice(), second.as_slice()), (FIRST, SECOND));
        assert_eq!(got, b"created");
        assert_eq!(summary.upstream, UpstreamKind::Concentrator);
        assert_eq!(summary.up, (FIRST.len() + SECOND.len()) as u64);
    })
    .await
    .expect("the second LAN write did not go ahead of the reply");
}

/// `len` bytes of a pattern that shows a lost, repeated or reordered slice.
fn upload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn an_upload_goes_ahead_of_the_reply_up_to_the_early_window() {
    // This concentrator replies only once it has 256 KiB: an agent that stopped short of
    // it (16 KiB before round 17, which held uploads for the reply) waits forever.
    const AHEAD: usize = 256 * 1024;
    let body = upload(AHEAD + 64 * 1024);
    timeout(LIMIT, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let concentrator = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await;
            let mut got = vec![0u8; AHEAD];
            stream.read_exact(&mut got).await.unwrap();
            let mut out = Message::ok().encode().unwrap();
            out.extend_from_slice(b"stored");
            stream.write_all(&out).await.unwrap();
            stream.read_to_end(&mut got).await.unwrap();
            stream.shutdown().await.unwrap();
            got
        });
        let ctx = context(addr);
        let (mut client, lan) = lan_pair().await;
        let dst = "192.0.2.80:80".parse().unwrap();
        let handler = tokio::spawn(async move { handle(lan, dst, &ctx).await });
        let (mut read, mut write) = client.split();
        let sent = body.clone();
        let writer = async move {
            write.write_all(&sent).await.unwrap();
            write.shutdown().await.unwrap();
        };
        let mut got = Vec::new();
        let (_, read) = tokio::join!(writer, read.read_to_end(&mut got));
        read.unwrap();
        assert_eq!(got, b"stored");
        let summary = handler.await.expect("handler does not panic");
        assert!(
            concentrator.await.unwrap() == body,
            "the upload arrived intact"
        );
        assert_eq!(summary.upstream, UpstreamKind::Concentrator);
        assert_eq!(summary.up, body.len() as u64);
    })
    .await
    .expect("the upload stalled before the reply");
}

#[tokio::test]
async fn a_large_early_upload_is_replayed_whole_when_failing_open() {
    // Several reads' worth before the concentrator hangs up: the kept copy grows with
    // them, and the direct connection gets all of it, in order.
    let body = upload(EARLY_MAX / 2 + 1000);
    let taken = body.len();
    fails_open_whole(body, taken).await;
}

#[tokio::test]
async fn an_upload_past_the_early_window_fails_open_whole_and_in_order() {
    // The concentrator takes the whole early window and hangs up without a reply: the
    // direct connection gets the kept copy first, then what waited in the LAN socket.
    fails_open_whole(upload(EARLY_MAX + 64 * 1024), EARLY_MAX).await;
}

/// The LAN client uploads `body`; the concentrator reads the request and `taken` bytes
/// and hangs up without a reply. The agent fails open: the direct connection (an echo)
/// must get all of `body`, in order.
async fn fails_open_whole(body: Vec<u8>, taken: usize) {
    bounded(LIMIT, async {
        let (addr, early) = patient_concentrator(taken, None).await;
        let echo = echo_server().await;
        let ctx = context(addr);
        let (mut client, lan) = lan_pair().await;
        let handler = tokio::spawn(async move { handle(lan, echo, &ctx).await });
        let (mut read, mut write) = client.split();
        let sent = body.clone();
        let writer = async move {
            write.write_all(&sent).await.unwrap();
            write.shutdown().await.unwrap();
        };
        let mut got = Vec::new();
        let (_, read) = tokio::join!(writer, read.read_to_end(&mut got));
        read.unwrap();
        let summary = handler.await.unwrap();
        assert!(
            early.await.unwrap() == body[..taken],
            "the concentrator got the early bytes first"
        );
        assert!(
            got == body,
            "the direct connection got the bytes sent ahead, then the rest, in order"
        );
        assert_eq!(summary.upstream, UpstreamKind::Direct);
        assert_eq!(summary.up, body.len() as u64);
    })
    .await;
}
