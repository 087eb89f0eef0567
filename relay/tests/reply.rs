//! Loopback tests of `relay_after_reply`: upstream flows before the reply, the reply is
//! stripped, and a refused or missing reply resets the client.

mod common;

use std::io;

use common::{read_to_end, tcp_pair, within};
use mpbond_relay::relay::{relay_after_reply, CloseReason, RelayOpts, RelayStats, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Replies are `OK` or `NO` followed by `;`.
fn check(seen: &[u8]) -> Reply {
    match seen {
        [b'O', b'K', b';', ..] => Reply::Accept { len: 3 },
        [_, _, _, ..] => Reply::Reject,
        _ => Reply::NeedMore,
    }
}

async fn setup() -> (TcpStream, TcpStream, JoinHandle<RelayStats>) {
    let (client, a) = tcp_pair().await;
    let (b, server) = tcp_pair().await;
    let relay =
        tokio::spawn(async move { relay_after_reply(a, b, &RelayOpts::default(), check).await });
    (client, server, relay)
}

#[tokio::test]
async fn upstream_flows_before_the_reply_and_the_reply_is_stripped() {
    let (mut client, mut server, relay) = setup().await;
    client.write_all(b"request").await.expect("write");
    let mut got = [0; 7];
    within("upstream before reply", server.read_exact(&mut got))
        .await
        .expect("read");
    assert_eq!(&got, b"request");
    // The reply arrives in two pieces, glued to the first bytes of the response.
    server.write_all(b"O").await.expect("write");
    server.flush().await.expect("flush");
    server.write_all(b"K;response").await.expect("write");
    server.shutdown().await.expect("shutdown");
    client.shutdown().await.expect("shutdown");
    let body = within("response", read_to_end(&mut client))
        .await
        .expect("read");
    assert_eq!(body, b"response");
    let stats = within("relay end", relay).await.expect("relay task");
    assert_eq!(stats.close, CloseReason::Finished);
    assert_eq!((stats.a_to_b, stats.b_to_a), (7, 8));
}

async fn expect_reset(client: &mut TcpStream) {
    let mut buf = [0; 64];
    let result = within("client reset", async {
        loop {
            if client.read(&mut buf).await? == 0 {
                return Ok::<(), io::Error>(());
            }
        }
    })
    .await;
    let error = result.expect_err("the client must see a reset");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn refused_reply_resets_the_client() {
    let (mut client, mut server, relay) = setup().await;
    server.write_all(b"NO;secret").await.expect("write");
    expect_reset(&mut client).await;
    let stats = within("relay end", relay).await.expect("relay task");
    assert_eq!(stats.close, CloseReason::ResetByB);
    assert_eq!(stats.b_to_a, 0);
}

#[tokio::test]
async fn end_of_stream_before_a_reply_resets_the_client() {
    let (mut client, mut server, relay) = setup().await;
    server.write_all(b"O").await.expect("write");
    drop(server);
    expect_reset(&mut client).await;
    let stats = within("relay end", relay).await.expect("relay task");
    assert_eq!(stats.close, CloseReason::ResetByB);
}
