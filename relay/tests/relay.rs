//! Loopback tests of the relay: byte-exact transfer both ways at once, half-close in each
//! direction, reset propagation in each direction, idle timeout. Every test runs with the
//! splice path and with the copy fallback.

mod common;

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{expect_pattern, read_to_end, relayed, send_pattern, within, Relayed};

use mpbond_relay::relay::{relay_with, CloseReason, Mode, RelayOpts};
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MODES: [Mode; 2] = [Mode::Splice, Mode::Copy];

/// Each data path, with the `b` side over TCP and over MPTCP.
const VARIANTS: [(Mode, bool); 4] = [
    (Mode::Splice, false),
    (Mode::Copy, false),
    (Mode::Splice, true),
    (Mode::Copy, true),
];

async fn setup(mode: Mode, mptcp: bool) -> Relayed {
    if mptcp {
        common::relayed_mptcp(RelayOpts::default(), mode).await
    } else {
        relayed(RelayOpts::default(), mode).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_megabytes_both_ways_at_once_byte_exact() {
    for mode in MODES {
        both_ways_byte_exact(relayed(RelayOpts::default(), mode).await, mode).await;
    }
}

/// The same between a TCP socket and an MPTCP socket, as on the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_between_tcp_and_mptcp_byte_exact() {
    for mode in MODES {
        let relayed = common::relayed_mptcp(RelayOpts::default(), mode).await;
        both_ways_byte_exact(relayed, mode).await;
    }
}

/// 8 MiB up and 8 MiB + 7 down at the same time, every byte checked.
async fn both_ways_byte_exact(relayed: Relayed, mode: Mode) {
    const LEN: usize = 8 << 20;
    let (client, server, relay) = relayed.into_parts();
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    let up = tokio::spawn(async move {
        send_pattern(&mut client_w, 1, LEN).await;
        client_w.shutdown().await.expect("client shutdown");
    });
    let down = tokio::spawn(async move {
        send_pattern(&mut server_w, 2, LEN + 7).await;
        server_w.shutdown().await.expect("server shutdown");
    });
    within("both directions", async {
        tokio::join!(
            expect_pattern(&mut server_r, 1, LEN),
            expect_pattern(&mut client_r, 2, LEN + 7),
        )
    })
    .await;
    within("upstream writer", up).await.expect("up task");
    within("downstream writer", down).await.expect("down task");
    let stats = within("relay end", relay).await.expect("relay task");
    assert_eq!(stats.close, CloseReason::Finished, "{mode:?}");
    assert_eq!(
        (stats.a_to_b, stats.b_to_a),
        (LEN as u64, LEN as u64 + 7),
        "{mode:?}"
    );
}

/// How many bytes the side that did not shut down answers with.
const ANSWER_LEN: usize = 3 << 20;

/// One side sends and shuts down; only after the far end saw EOF does the other side
/// answer, so the answer can only arrive if the half-closed connection stayed open.
#[tokio::test]
async fn half_close_client_first_then_server_answers() {
    half_close_then_answer(true, b"request", 9).await;
}

#[tokio::test]
async fn half_close_server_first_then_client_keeps_sending() {
    half_close_then_answer(false, b"banner", 5).await;
}

/// On every variant: the client (`client_first`) or the server sends `request` and shuts
/// down its write side; once the other side has read exactly that and EOF, it sends
/// [`ANSWER_LEN`] pattern bytes from `seed` and shuts down, and the first side must get
/// all of them. The relay then ends `Finished` having counted both directions.
async fn half_close_then_answer(client_first: bool, request: &[u8], seed: u64) {
    for (mode, mptcp) in VARIANTS {
        let (mut client, mut server, relay) = setup(mode, mptcp).await.into_parts();
        let (first, second) = if client_first {
            (&mut client, &mut server)
        } else {
            (&mut server, &mut client)
        };
        first.write_all(request).await.expect("write");
        first.shutdown().await.expect("first side shutdown(Write)");
        let got = within("EOF after the request", read_to_end(second))
            .await
            .expect("read the request");
        assert_eq!(got, request, "{mode:?} mptcp={mptcp}");
        send_pattern(second, seed, ANSWER_LEN).await;
        second
            .shutdown()
            .await
            .expect("answering side shutdown(Write)");
        within("answer", expect_pattern(first, seed, ANSWER_LEN)).await;
        let stats = within("relay end", relay).await.expect("relay task");
        assert_eq!(stats.close, CloseReason::Finished, "{mode:?} mptcp={mptcp}");
        let (sent, answered) = (request.len() as u64, ANSWER_LEN as u64);
        let want = if client_first {
            (sent, answered)
        } else {
            (answered, sent)
        };
        assert_eq!((stats.a_to_b, stats.b_to_a), want, "{mode:?} mptcp={mptcp}");
    }
}

/// Read until an error or EOF on `stream`, which must end in a reset, not a clean EOF.
async fn expect_reset(stream: &mut tokio::net::TcpStream, who: &str, mode: Mode, mptcp: bool) {
    let mut buf = [0; 4096];
    let end: io::Result<()> = within(&format!("{who} sees reset"), async {
        loop {
            if stream.read(&mut buf).await? == 0 {
                return Ok(());
            }
        }
    })
    .await;
    let kind = end
        .expect_err("the far side must see a reset, not a clean EOF")
        .kind();
    assert_eq!(
        kind,
        io::ErrorKind::ConnectionReset,
        "{who}: {mode:?} mptcp={mptcp}"
    );
}

#[tokio::test]
async fn reset_by_client_is_mirrored_to_server() {
    for (mode, mptcp) in VARIANTS {
        let (mut client, mut server, relay) = setup(mode, mptcp).await.into_parts();
        client.write_all(b"hello").await.expect("write");
        let mut buf = [0; 5];
        within("hello", server.read_exact(&mut buf))
            .await
            .expect("read hello");
        SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(client);
        expect_reset(&mut server, "server", mode, mptcp).await;
        let stats = within("relay end", relay).await.expect("relay task");
        assert_eq!(stats.close, CloseReason::ResetByA, "{mode:?} mptcp={mptcp}");
        assert_eq!(stats.a_to_b, 5);
    }
}

#[tokio::test]
async fn reset_by_server_is_mirrored_to_client() {
    for (mode, mptcp) in VARIANTS {
        let (mut client, server, relay) = setup(mode, mptcp).await.into_parts();
        mpbond_relay::sys::reset(server);
        expect_reset(&mut client, "client", mode, mptcp).await;
        let stats = within("relay end", relay).await.expect("relay task");
        assert_eq!(stats.close, CloseReason::ResetByB, "{mode:?} mptcp={mptcp}");
    }
}

/// The server's last bytes and its reset both wait at the relay before it reads: the
/// client gets the bytes, then a reset, never a clean end. (The kernel reports a socket
/// error once: the splice pump's extra read at the end's readiness must not drop it.)
#[tokio::test]
async fn bytes_then_a_reset_queued_together_reach_the_client_as_a_reset() {
    for mode in MODES {
        let (mut client, a) = common::tcp_pair().await;
        let (b, mut server) = common::tcp_pair().await;
        server.write_all(b"partial").await.expect("write");
        mpbond_relay::sys::reset(server);
        // Wait, before the relay starts, until the reset is queued behind the bytes.
        let mut pfd = libc::pollfd {
            fd: b.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 5_000) };
        assert_eq!(n, 1, "the reset reaches the relay's socket");
        let relay =
            tokio::spawn(async move { relay_with(a, b, &RelayOpts::default(), mode).await });
        let mut got = [0; 7];
        within("the bytes", client.read_exact(&mut got))
            .await
            .expect("the bytes before the reset");
        assert_eq!(&got, b"partial", "{mode:?}");
        expect_reset(&mut client, "client", mode, false).await;
        let stats = within("relay end", relay).await.expect("relay task");
        assert_eq!(stats.close, CloseReason::ResetByB, "{mode:?}");
    }
}

/// With paused time the idle timer fires as soon as nothing else can happen.
#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_both_sides() {
    let opts = RelayOpts {
        idle_timeout: Some(Duration::from_secs(7200)),
        ..Default::default()
    };
    let (mut client, mut server, relay) = relayed(opts, Mode::Splice).await.into_parts();
    let started = tokio::time::Instant::now();
    let stats = relay.await.expect("relay task");
    assert_eq!(stats.close, CloseReason::IdleTimeout);
    assert!(started.elapsed() >= Duration::from_secs(7200));
    assert_eq!(read_to_end(&mut client).await.expect("client EOF"), b"");
    assert_eq!(read_to_end(&mut server).await.expect("server EOF"), b"");
}

/// Traffic keeps the relay alive past the idle timeout; silence then ends it.
#[tokio::test]
async fn traffic_defers_idle_timeout() {
    let idle = Duration::from_millis(800);
    let opts = RelayOpts {
        idle_timeout: Some(idle),
        ..Default::default()
    };
    let (mut client, mut server, relay) = relayed(opts, Mode::Splice).await.into_parts();
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(idle / 4);
    let mut buf = [0; 1];
    for i in 0..12u8 {
        ticker.tick().await;
        client.write_all(&[i]).await.expect("write");
        within("tick", server.read_exact(&mut buf))
            .await
            .expect("read tick");
        assert_eq!(buf[0], i);
        assert!(!relay.is_finished(), "relay ended during traffic");
    }
    assert!(started.elapsed() > idle * 2);
    let stats = within("idle end", relay).await.expect("relay task");
    assert_eq!(stats.close, CloseReason::IdleTimeout);
    assert_eq!(stats.a_to_b, 12);
}

/// An absurd idle timeout (a config typo) must not panic on instant overflow.
#[tokio::test]
async fn huge_idle_timeout_does_not_panic() {
    let opts = RelayOpts {
        idle_timeout: Some(Duration::MAX),
        ..Default::default()
    };
    let (mut client, mut server, relay) = relayed(opts, Mode::Splice).await.into_parts();
    client.write_all(b"x").await.expect("write");
    client.shutdown().await.expect("shutdown");
    assert_eq!(
        within("data", read_to_end(&mut server))
            .await
            .expect("read"),
        b"x"
    );
    server.shutdown().await.expect("shutdown");
    let stats = within("relay end", relay).await.expect("relay task");
    assert_eq!(stats.close, CloseReason::Finished);
}
