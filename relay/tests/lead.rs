//! Loopback tests of `relay_with_lead`: the lead reaches `a` first, in the same write as
//! `b`'s first bytes when they come within the hold, alone when `b` is silent; `a → b`
//! is never held; `b`'s end of stream and reset still reach `a` after the lead.

mod common;

use std::io;
use std::time::{Duration, Instant};

use common::{read_to_end, tcp_pair, within};
use mpbond_relay::relay::{relay_with_lead, CloseReason, Lead, RelayOpts, RelayStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const LEAD: &[u8] = b"OK;";

/// A client, the relay's `a` and `b`, and a server, on loopback.
struct Setup {
    client: TcpStream,
    server: TcpStream,
    relay: JoinHandle<RelayStats>,
}

async fn setup_with(hold: Duration) -> Setup {
    let (client, a) = tcp_pair().await;
    let (b, server) = tcp_pair().await;
    let lead = Lead {
        bytes: LEAD.to_vec(),
        hold,
    };
    let relay =
        tokio::spawn(async move { relay_with_lead(a, b, &RelayOpts::default(), &lead).await });
    Setup {
        client,
        server,
        relay,
    }
}

#[tokio::test]
async fn the_request_flows_at_once_and_the_lead_rides_with_the_answer() {
    // A hold far longer than the test: only the answer can release the lead.
    let Setup {
        mut client,
        mut server,
        relay,
    } = setup_with(Duration::from_secs(30)).await;
    client.write_all(b"request").await.expect("write");
    let mut got = [0; 7];
    within("request before the lead", server.read_exact(&mut got))
        .await
        .expect("read");
    assert_eq!(&got, b"request");
    server.write_all(b"answer").await.expect("write");
    // One write of lead + answer: the client's first read sees both.
    let mut first = [0; 64];
    let n = within("lead and answer", client.read(&mut first))
        .await
        .expect("read");
    assert_eq!(&first[..n], b"OK;answer");
    server.shutdown().await.expect("shutdown");
    client.shutdown().await.expect("shutdown");
    let rest = within("end of stream", read_to_end(&mut client))
        .await
        .expect("read");
    assert!(rest.is_empty(), "nothing after the answer: {rest:?}");
    let stats = within("relay end", relay).await.expect("relay task");
    assert_eq!(stats.close, CloseReason::Finished);
    // The lead is ours: it is not counted as relayed.
    assert_eq!((stats.a_to_b, stats.b_to_a), (7, 6));
}

#[tokio::test]
async fn a_silent_server_gets_the_lead_sent_alone_when_the_hold_ends() {
    let hold = Duration::from_millis(50);
    let Setup {
        mut client,
        mut server,
        relay,
    } = setup_with(hold).await;
    let started = Instant::now();
    let mut got = [0; 3];
    within("lead alone", client.read_exact(&mut got))
        .await
        .expect("read");
    assert_eq!(&got, LEAD);
    assert!(started.elapsed() >= hold, "the lead waited for the hold");
    // The relay goes on as usual after it.
    server.write_all(b"late").await.expect("write");
    server.shutdown().await.expect("shutdown");
    client.shutdown().await.expect("shutdown");
    let rest = within("late bytes", read_to_end(&mut client))
        .await
        .expect("read");
    assert_eq!(rest, b"late");
    let stats = within("relay end", relay).await.expect("relay task");
    assert_eq!(
        (stats.a_to_b, stats.b_to_a, stats.close),
        (0, 4, CloseReason::Finished)
    );
}

#[tokio::test]
async fn end_of_stream_in_the_hold_follows_the_lead() {
    let Setup {
        mut client,
        server,
        relay,
    } = setup_with(Duration::from_secs(30)).await;
    drop(server);
    let all = within("lead then end of stream", read_to_end(&mut client))
        .await
        .expect("read");
    assert_eq!(all, LEAD);
    client.shutdown().await.expect("shutdown");
    let stats = within("relay end", relay).await.expect("relay task");
    assert_eq!(stats.b_to_a, 0);
}

#[tokio::test]
async fn a_reset_in_the_hold_follows_the_lead_as_a_reset() {
    let Setup {
        mut client,
        server,
        relay,
    } = setup_with(Duration::from_secs(30)).await;
    mpbond_relay::sys::reset(server);
    let mut got = [0; 3];
    within("lead", client.read_exact(&mut got))
        .await
        .expect("read");
    assert_eq!(&got, LEAD);
    let mut more = [0; 16];
    let error = within("reset", client.read(&mut more))
        .await
        .expect_err("the client must see the reset");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    let stats = within("relay end", relay).await.expect("relay task");
    assert_eq!(stats.close, CloseReason::ResetByB);
}
