//! Loopback tests of the relay: byte-exact transfer both ways at once, half-close in each
//! direction, reset propagation in each direction, idle timeout. Every test runs with the
//! splice path and with the copy fallback.

mod common;

use std::io;
use std::time::Duration;

use common::{expect_pattern, read_to_end, relayed, send_pattern, within, Relayed};
use mpbond_relay::relay::{CloseReason, Mode, RelayOpts};
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
    let Relayed {
        client,
        server,
        relay,
    } = relayed;
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

/// One side sends and shuts down; only after the far end saw EOF does the other side
/// answer, so the answer can only arrive if the half-closed connection stayed open.
#[tokio::test]
async fn half_close_client_first_then_server_answers() {
    for (mode, mptcp) in VARIANTS {
        let Relayed {
            mut client,
            mut server,
            relay,
        } = setup(mode, mptcp).await;
        client.write_all(b"request").await.expect("write");
        client.shutdown().await.expect("client shutdown(Write)");
        let got = within("server EOF", read_to_end(&mut server))
            .await
            .expect("server read");
        assert_eq!(got, b"request");
        send_pattern(&mut server, 9, 3 << 20).await;
        server.shutdown().await.expect("server shutdown(Write)");
        within("client data", expect_pattern(&mut client, 9, 3 << 20)).await;
        let stats = within("relay end", relay).await.expect("relay task");
        assert_eq!(stats.close, CloseReason::Finished);
        assert_eq!((stats.a_to_b, stats.b_to_a), (7, 3 << 20));
    }
}

#[tokio::test]
async fn half_close_server_first_then_client_keeps_sending() {
    for (mode, mptcp) in VARIANTS {
        let Relayed {
            mut client,
            mut server,
            relay,
        } = setup(mode, mptcp).await;
        server.write_all(b"banner").await.expect("write");
        server.shutdown().await.expect("server shutdown(Write)");
        let got = within("client EOF", read_to_end(&mut client))
            .await
            .expect("client read");
        assert_eq!(got, b"banner");
        send_pattern(&mut client, 5, 3 << 20).await;
        client.shutdown().await.expect("client shutdown(Write)");
        within("server data", expect_pattern(&mut server, 5, 3 << 20)).await;
        let stats = within("relay end", relay).await.expect("relay task");
        assert_eq!(stats.close, CloseReason::Finished);
        assert_eq!((stats.a_to_b, stats.b_to_a), (3 << 20, 6));
    }
}

/// Read until an error or EOF; return the error kind (EOF is `Ok(())`).
async fn read_until_error(stream: &mut tokio::net::TcpStream) -> io::Result<()> {
    let mut buf = [0; 4096];
    loop {
        if stream.read(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

#[tokio::test]
async fn reset_by_client_is_mirrored_to_server() {
    for (mode, mptcp) in VARIANTS {
        let Relayed {
            mut client,
            mut server,
            relay,
        } = setup(mode, mptcp).await;
        client.write_all(b"hello").await.expect("write");
        let mut buf = [0; 5];
        within("hello", server.read_exact(&mut buf))
            .await
            .expect("read hello");
        SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(client);
        let end = within("server sees reset", read_until_error(&mut server)).await;
        let kind = end
            .expect_err("server must see a reset, not a clean EOF")
            .kind();
        assert_eq!(
            kind,
            io::ErrorKind::ConnectionReset,
            "{mode:?} mptcp={mptcp}"
        );
        let stats = within("relay end", relay).await.expect("relay task");
        assert_eq!(stats.close, CloseReason::ResetByA, "{mode:?} mptcp={mptcp}");
        assert_eq!(stats.a_to_b, 5);
    }
}

#[tokio::test]
async fn reset_by_server_is_mirrored_to_client() {
    for (mode, mptcp) in VARIANTS {
        let Relayed {
            mut client,
            server,
            relay,
        } = setup(mode, mptcp).await;
        mpbond_relay::sys::reset(server);
        let end = within("client sees reset", read_until_error(&mut client)).await;
        let kind = end
            .expect_err("client must see a reset, not a clean EOF")
            .kind();
        assert_eq!(
            kind,
            io::ErrorKind::ConnectionReset,
            "{mode:?} mptcp={mptcp}"
        );
        let stats = within("relay end", relay).await.expect("relay task");
        assert_eq!(stats.close, CloseReason::ResetByB, "{mode:?} mptcp={mptcp}");
    }
}

/// With paused time the idle timer fires as soon as nothing else can happen.
#[tokio::test(start_paused = true)]
async fn idle_timeout_closes_both_sides() {
    let opts = RelayOpts {
        idle_timeout: Some(Duration::from_secs(7200)),
    };
    let Relayed {
        mut client,
        mut server,
        relay,
    } = relayed(opts, Mode::Splice).await;
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
    };
    let Relayed {
        mut client,
        mut server,
        relay,
    } = relayed(opts, Mode::Splice).await;
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
    };
    let Relayed {
        mut client,
        mut server,
        relay,
    } = relayed(opts, Mode::Splice).await;
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
