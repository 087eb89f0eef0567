//! An idle relay holds no splice pipe: each direction takes one when data comes, keeps it
//! while the pipe holds bytes, and gives it back once the data has gone through.
//!
//! [`pipes_in_use`] is process-wide, so this file holds one test: no other relay runs in
//! this test binary at the same time.

mod common;

use std::time::Duration;

use common::{relayed, send_pattern, tcp_pair, within, Pattern};
use mpbond_relay::relay::{pipes_in_use, relay_with, CloseReason, Mode, RelayOpts};
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Many times what the four sockets' buffers (each fixed at [`SOCKET_BUF`], so the kernel
/// does not grow them) and the pipe take, so the relay's pipe stays full of bytes until the
/// receiver reads.
const BURST: usize = 4 << 20;
/// Every socket's send and receive buffer (the kernel doubles it).
const SOCKET_BUF: usize = 64 * 1024;
/// Connections relayed at once in the many-connections round.
const MANY: usize = 32;

/// Wait (bounded by the common deadline) until `pipes_in_use() == want`.
async fn pipes_become(want: usize, what: &str) {
    within(what, async {
        while pipes_in_use() != want {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// Read exactly `len` pattern bytes from `seed`, checking each.
async fn expect_exactly(r: &mut OwnedReadHalf, seed: u64, len: usize) {
    let mut pattern = Pattern::new(seed);
    let (mut buf, mut want) = (vec![0; 65_536], vec![0; 65_536]);
    let mut got = 0;
    while got < len {
        let n = (len - got).min(buf.len());
        r.read_exact(&mut buf[..n]).await.expect("read pattern");
        pattern.fill(&mut want[..n]);
        assert!(buf[..n] == want[..n], "corrupt data at offset {got}");
        got += n;
    }
}

/// One burst from `w` to `r` while `r` first stays silent: the direction must hold a pipe
/// (full of bytes) until `r` reads, every byte must arrive, and the pipe must go back.
async fn burst(w: OwnedWriteHalf, r: &mut OwnedReadHalf, seed: u64) -> OwnedWriteHalf {
    let sender = tokio::spawn(async move {
        let mut w = w;
        send_pattern(&mut w, seed, BURST).await;
        w
    });
    pipes_become(1, "the busy direction takes a pipe").await;
    within("burst received", expect_exactly(r, seed, BURST)).await;
    let w = within("sender done", sender).await.expect("sender");
    pipes_become(0, "the idle direction gives its pipe back").await;
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_relays_hold_no_pipes_and_bursts_arrive_whole() {
    assert_eq!(pipes_in_use(), 0, "pipes held before any relay");
    let ((client, a), (b, server)) = (tcp_pair().await, tcp_pair().await);
    for socket in [&client, &a, &b, &server] {
        let socket = SockRef::from(socket);
        socket.set_recv_buffer_size(SOCKET_BUF).expect("SO_RCVBUF");
        socket.set_send_buffer_size(SOCKET_BUF).expect("SO_SNDBUF");
    }
    let relay =
        tokio::spawn(async move { relay_with(a, b, &RelayOpts::default(), Mode::Splice).await });
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    // idle → busy → idle, three times each way, alternating.
    for round in 0..3u64 {
        client_w = burst(client_w, &mut server_r, 10 + round).await;
        server_w = burst(server_w, &mut client_r, 20 + round).await;
    }
    // A last small exchange, then both ends close: the relay finishes with no pipe held.
    client_w.write_all(b"bye").await.expect("write");
    client_w.shutdown().await.expect("shutdown");
    let mut bye = Vec::new();
    within("bye", server_r.read_to_end(&mut bye))
        .await
        .expect("read");
    assert_eq!(bye, b"bye");
    server_w.shutdown().await.expect("shutdown");
    let stats = within("relay end", relay).await.expect("relay task");
    assert_eq!(stats.close, CloseReason::Finished);
    assert_eq!(stats.a_to_b, 3 * BURST as u64 + 3);
    assert_eq!(stats.b_to_a, 3 * BURST as u64);
    assert_eq!(pipes_in_use(), 0, "a finished relay still holds a pipe");

    // Many connections with a little traffic each, then idle: none keeps a pipe.
    let mut open = Vec::new();
    for k in 0..MANY {
        let (client, server, relay) = relayed(RelayOpts::default(), Mode::Splice)
            .await
            .into_parts();
        let (mut client_r, mut client_w) = client.into_split();
        let (mut server_r, mut server_w) = server.into_split();
        let seed = 100 + k as u64;
        send_pattern(&mut client_w, seed, 1000 + k).await;
        within("request", expect_exactly(&mut server_r, seed, 1000 + k)).await;
        send_pattern(&mut server_w, seed + 1, 5000 + k).await;
        within("answer", expect_exactly(&mut client_r, seed + 1, 5000 + k)).await;
        open.push((client_r, client_w, server_r, server_w, relay));
    }
    pipes_become(0, "idle relays give their pipes back").await;
    for (_client_r, mut client_w, _server_r, mut server_w, relay) in open {
        client_w.shutdown().await.expect("shutdown");
        server_w.shutdown().await.expect("shutdown");
        let stats = within("relay end", relay).await.expect("relay task");
        assert_eq!(stats.close, CloseReason::Finished);
    }
    assert_eq!(pipes_in_use(), 0);
}
