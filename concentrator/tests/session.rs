//! Loopback session tests through `Server::bind` / `run` on 127.0.0.1 port 0.
//! Sockets only: nothing in the namespace is changed. The two tests that need a
//! namespace of their own (Fast Open on, no route but `lo`) make one with
//! `mpbond-testkit`; they are `#[ignore = "needs root and netns"]`.

mod common;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use mpbond_protocol::{ErrorCode, Message, Tlv};
use mpbond_relay::connect::connect_with;
use mpbond_testkit::{bounded, Netns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// [`home_config`] with quiet mode off: every refusal is answered.
fn one_client_answering() -> mpbond_concentrator::Config {
    let mut config = home_config();
    config.quiet = false;
    config
}

/// Run `body` with [`block_on_in`] inside a fresh namespace with only `lo`, up, and
/// `net.ipv4.tcp_fastopen` = `tcp_fastopen`. The namespace is deleted afterwards, also
/// on a panic.
fn in_netns<F: Future<Output = ()>>(tcp_fastopen: u32, body: impl FnOnce() -> F + Send) {
    let ns = Netns::with_lo("session");
    ns.sysctl("net/ipv4/tcp_fastopen", &tcp_fastopen.to_string());
    block_on_in(&ns, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_client_relays_both_ways_with_half_close() {
    bounded(TEST_TIMEOUT, async {
        let server = start(home_config()).await;
        let (target, accepted) = echo_target("127.0.0.1").await;
        // The Convert request and the first client bytes in one write: the concentrator
        // must read exactly the request and relay the rest.
        let data = payload(300_000);
        let mut first = home_connect(target);
        first.extend_from_slice(&data[..1000]);
        let (s, code) = request(server.addr, &first).await;
        assert_eq!(code, None, "ok reply");
        let back = echo_round(s, &data[1000..]).await;
        assert_eq!(back.len(), data.len());
        assert!(back == data, "echoed bytes differ");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        server
            .wait_metric("mpbond_bytes_total{client=\"home\",direction=\"up\"} 300000")
            .await;
        server
            .wait_metric("mpbond_bytes_total{client=\"home\",direction=\"down\"} 300000")
            .await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mptcp_client_works() {
    bounded(TEST_TIMEOUT, async {
        let server = start(home_config()).await;
        let (target, _) = echo_target("127.0.0.1").await;
        let first = home_connect(target);
        let mut c = connect_with(server.addr, &first, &mptcp_client(false))
            .await
            .expect("connect");
        assert_eq!(read_reply(&mut c.stream).await.error_code(), None);
        let back = echo_round(c.stream, b"over mptcp").await;
        assert_eq!(back, b"over mptcp");
        server.stop().await;
    })
    .await;
}

/// The full fast path: MPTCP with the Convert request in the SYN, from the second
/// connection on (the first one learns the cookie). Needs the TFO server bit
/// (net.ipv4.tcp_fastopen & 2), which tests must not set in the root namespace, so the
/// test runs in a namespace of its own with tcp_fastopen = 3.
#[test]
#[ignore = "needs root and netns"]
fn mptcp_fastopen_client_rides_in_the_syn() {
    in_netns(3, || async {
        let mptcp = std::fs::read_to_string("/proc/sys/net/mptcp/enabled").expect("mptcp sysctl");
        assert_eq!(mptcp.trim(), "1", "MPTCP is off in a new namespace");
        let server = start(home_config()).await;
        let (target, _) = echo_target("127.0.0.1").await;
        let opts = mptcp_client(true);
        // The first connection learns the listener's Fast Open cookie, the second uses it.
        for in_syn in [false, true] {
            let first = home_connect(target);
            let mut c = connect_with(server.addr, &first, &opts)
                .await
                .expect("connect");
            assert!(
                c.fastopen && c.mptcp,
                "fastopen {} mptcp {}",
                c.fastopen,
                c.mptcp
            );
            assert_eq!(read_reply(&mut c.stream).await.error_code(), None);
            assert_eq!(mpbond_relay::sys::syn_data_acked(&c.stream), Some(in_syn));
            let back = echo_round(c.stream, b"in the syn").await;
            assert_eq!(back, b"in the syn");
        }
        server.stop().await;
    });
}

/// A Fast Open request is accepted at SYN time: the concentrator connects to its
/// destination while the client's final ACK is still on its way, and holds only the reply
/// until the first subflow is established. An nft rule in the test's namespace drops
/// every packet to the listener but a SYN, so the final ACK never arrives: the
/// destination must see the connection anyway, well before the (long) handshake timeout
/// would end the wait; once the rule is gone, the reply and the relay work.
#[test]
#[ignore = "needs root and netns"]
fn mptcp_fastopen_destination_connect_does_not_wait_for_the_final_ack() {
    let ns = Netns::with_lo("session");
    ns.sysctl("net/ipv4/tcp_fastopen", "3");
    let ns = &ns;
    block_on_in(ns, || async move {
        let config = config(
            "127.0.0.0/8",
            "handshake_timeout_ms = 25000",
            &client_toml("home", &key(1)),
        );
        let server = start(config).await;
        let (target, accepted) = echo_target("127.0.0.1").await;
        let opts = mptcp_client(true);
        // The first connection learns the listener's Fast Open cookie.
        let mut c = connect_with(server.addr, &home_connect(target), &opts)
            .await
            .expect("connect");
        assert_eq!(read_reply(&mut c.stream).await.error_code(), None);
        assert_eq!(echo_round(c.stream, b"cookie").await, b"cookie");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        let port = server.addr.port();
        ns.nft(&format!(
            "table inet hold_final_ack {{\n chain input {{\n type filter hook input priority 0;\n \
             tcp dport {port} tcp flags & (syn | ack) == ack drop\n }}\n}}\n"
        ));
        // The Convert request rides in the SYN; the client's ACK and later bytes are dropped.
        let mut c = connect_with(server.addr, &home_connect(target), &opts)
            .await
            .expect("connect");
        assert!(
            c.fastopen && c.mptcp,
            "fastopen {} mptcp {}",
            c.fastopen,
            c.mptcp
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while accepted.load(Ordering::SeqCst) < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "the destination saw no connection while the final ACK was held"
        );
        ns.nft("delete table inet hold_final_ack");
        // The SYN-ACK's retransmission brings the final ACK; then the reply and the relay.
        assert_eq!(read_reply(&mut c.stream).await.error_code(), None);
        assert_eq!(
            echo_round(c.stream, b"after the ack").await,
            b"after the ack"
        );
        server.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_refused_without_connecting() {
    bounded(TEST_TIMEOUT, async {
        let server = start(one_client_answering()).await;
        let target = silent_target("127.0.0.1");
        let dest = target.local_addr().unwrap();
        let (mut s, code) = request(
            server.addr,
            &sealed(&Message::connect(dest), "home", &key(2)),
        )
        .await;
        assert_eq!(code, Some(ErrorCode::NotAuthorized));
        expect_eof(&mut s).await;
        assert_no_connection(&target);
        let (mut s, code) = request(
            server.addr,
            &sealed(&Message::connect(dest), "stranger", &key(1)),
        )
        .await;
        assert_eq!(code, Some(ErrorCode::NotAuthorized));
        expect_eof(&mut s).await;
        assert_no_connection(&target);
        // No cookie at all: Missing Cookie (3).
        let (_, code) = request(server.addr, &Message::connect(dest).encode().unwrap()).await;
        assert_eq!(code, Some(ErrorCode::MissingCookie));
        assert_no_connection(&target);
        server
            .wait_metric("mpbond_auth_failures_total{reason=\"bad_tag\"} 1")
            .await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_refused() {
    bounded(TEST_TIMEOUT, async {
        let server = start(home_config()).await;
        let (target, accepted) = echo_target("127.0.0.1").await;
        let first = home_connect(target);
        let (s, code) = request(server.addr, &first).await;
        assert_eq!(code, None);
        assert_eq!(echo_round(s, b"x").await, b"x");
        // Quiet mode (the default): a replay gets no answer at all.
        let got = request_silenced(server.addr, &first).await;
        assert!(got.is_empty(), "a replay got an answer: {got:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        server
            .wait_metric("mpbond_auth_failures_total{reason=\"replay\"} 1")
            .await;
        server.wait_metric("mpbond_quiet_refusals_total 1").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_destinations_are_refused() {
    bounded(TEST_TIMEOUT, async {
        // Only 127.0.0.1 is allowed; 127.0.0.2 stays loopback, so it is refused.
        let server = start(config("127.0.0.1/32", "", &client_toml("home", &key(1)))).await;
        let target = silent_target("127.0.0.2");
        let port = target.local_addr().unwrap().port();
        for dest in [
            format!("127.0.0.2:{port}"),
            format!("[::ffff:127.0.0.2]:{port}"),
            format!("[::1]:{port}"),
            "10.0.0.1:80".to_owned(),
            "169.254.169.254:80".to_owned(),
        ] {
            let dest = dest.parse().unwrap();
            let (mut s, code) = request_home(server.addr, dest).await;
            assert_eq!(code, Some(ErrorCode::NotAuthorized), "{dest}");
            expect_eof(&mut s).await;
        }
        assert_no_connection(&target);
        server.wait_metric("mpbond_policy_refusals_total 5").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_gets_connection_reset() {
    bounded(TEST_TIMEOUT, async {
        let server = start(home_config()).await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let (mut s, code) = request_home(server.addr, closed).await;
        assert_eq!(code, Some(ErrorCode::ConnectionReset));
        expect_eof(&mut s).await;
        server
            .wait_metric("mpbond_connect_errors_total{code=\"96\"} 1")
            .await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_a_protocol_error_when_not_quiet() {
    bounded(TEST_TIMEOUT, async {
        let server = start(one_client_answering()).await;
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[1, 1, 0x12, 0x34][..],
            &[1, 2, 0x22, 0x63, 0x0a, 0x00, 0, 0][..],
            &[1, 3, 0x22, 0x63, 0x0a, 0x09, 0, 0, 0, 0, 0, 0][..],
        ] {
            let (mut s, code) = request(server.addr, garbage).await;
            let code = code.map(ErrorCode::code);
            assert!(matches!(code, Some(0 | 1)), "{garbage:?} got {code:?}");
            expect_eof(&mut s).await;
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_probe_gets_supported_extensions() {
    bounded(TEST_TIMEOUT, async {
        let server = start(home_config()).await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&sealed(&Message::info(), "home", &key(1)))
            .await
            .unwrap();
        let reply = read_reply(&mut s).await;
        assert!(
            reply
                .tlvs
                .iter()
                .any(|t| matches!(t, Tlv::SupportedTcpExtensions(_))),
            "{reply:?}"
        );
        assert_eq!(reply.error_code(), None);
        expect_eof(&mut s).await;
        // An unauthenticated probe is refused, without a word in quiet mode.
        let got = request_silenced(server.addr, &sealed(&Message::info(), "home", &key(9))).await;
        assert!(got.is_empty(), "{got:?}");
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_times_out() {
    bounded(TEST_TIMEOUT, async {
        let cfg = config(
            "127.0.0.0/8",
            "handshake_timeout_ms = 100",
            &client_toml("home", &key(1)),
        );
        let server = start(cfg).await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&[1, 5]).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        assert!(buf.is_empty(), "no reply to a partial request: {buf:?}");
        server
            .wait_metric("mpbond_handshake_timeouts_total 1")
            .await;
        // A client that goes away mid-request is counted too.
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&[1, 5, 0x22]).await.unwrap();
        drop(s);
        server.wait_metric("mpbond_early_closes_total 1").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_limit_gets_resource_exceeded() {
    bounded(TEST_TIMEOUT, async {
        let cfg = config(
            "127.0.0.0/8",
            "max_connections_per_client = 1",
            &client_toml("home", &key(1)),
        );
        let server = start(cfg).await;
        let (target, _) = echo_target("127.0.0.1").await;
        let (first, code) = request_home(server.addr, target).await;
        assert_eq!(code, None);
        let (mut s, code) = request_home(server.addr, target).await;
        assert_eq!(code, Some(ErrorCode::ResourceExceeded));
        expect_eof(&mut s).await;
        assert_eq!(echo_round(first, b"still fine").await, b"still fine");
        server.stop().await;
    })
    .await;
}

/// A destination without a route gets 97. Runs in a namespace with just `lo`, so
/// 203.0.113.10 has no route and no SYN ever leaves for a real network.
#[test]
#[ignore = "needs root and netns"]
fn unroutable_destination_gets_destination_unreachable() {
    in_netns(1, || async {
        let dest: std::net::SocketAddr = "203.0.113.10:80".parse().unwrap();
        // A UDP connect does the route lookup without sending anything.
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        assert!(
            probe.connect(dest).is_err(),
            "{dest} is routable in the namespace"
        );
        // A documentation address, refused by default: opened for the test.
        let mut config = home_config();
        config.policy.allow.push("203.0.113.10/32".parse().unwrap());
        let server = start(config).await;
        let (mut s, code) = request_home(server.addr, dest).await;
        assert_eq!(code, Some(ErrorCode::DestinationUnreachable));
        expect_eof(&mut s).await;
        server
            .wait_metric("mpbond_connect_errors_total{code=\"97\"} 1")
            .await;
        server.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_it_does_not_serve_get_unsupported_message() {
    bounded(TEST_TIMEOUT, async {
        let server = start(home_config()).await;
        let target = silent_target("127.0.0.1");
        let dest = target.local_addr().unwrap();
        let connect = Tlv::Connect {
            dest,
            tcp_options: Vec::new(),
        };
        for tlvs in [
            vec![connect.clone(), Tlv::Info],
            vec![connect.clone(), connect.clone()],
            vec![
                connect,
                Tlv::Error {
                    code: ErrorCode::NotAuthorized,
                    value: vec![0],
                },
            ],
        ] {
            let message = Message { tlvs };
            let (mut s, code) = request(server.addr, &sealed(&message, "home", &key(1))).await;
            assert_eq!(code, Some(ErrorCode::UnsupportedMessage), "{message:?}");
            expect_eof(&mut s).await;
        }
        assert_no_connection(&target);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_config_without_listen_addresses_is_an_error() {
    let mut config = home_config();
    config.listen.clear();
    let bound = mpbond_concentrator::Server::bind(config).await;
    assert!(
        matches!(bound, Err(mpbond_concentrator::RunError::NoListenAddress)),
        "{bound:?}"
    );
}

/// A refused connection gives its accept slot back before its slow close (the linger
/// that waits up to 2 s for the client's end of stream). Time is paused: with the slots
/// held through the linger, the good request below could only be served once tokio's
/// clock had run to the end of a linger.
#[tokio::test(start_paused = true)]
async fn refused_connections_do_not_hold_their_slots_while_they_linger() {
    const LINGER: Duration = Duration::from_secs(2);
    let started = tokio::time::Instant::now();
    // One admitted connection at most: 65 accept slots (the limit plus 64 of headroom).
    let cfg = config(
        "127.0.0.0/8",
        "max_connections = 1",
        &client_toml("home", &key(1)),
    );
    let server = start(cfg).await;
    let (target, _) = echo_target("127.0.0.1").await;
    // More refused clients than there are slots, each keeping its socket open so that the
    // concentrator lingers on it.
    // Each sealed anew: an unsupported request spends its nonce like any other.
    let unsupported = Message {
        tlvs: vec![Tlv::Info, Tlv::Info],
    };
    let mut lingering = Vec::new();
    for _ in 0..80 {
        let (s, code) = request(server.addr, &sealed(&unsupported, "home", &key(1))).await;
        assert_eq!(code, Some(ErrorCode::UnsupportedMessage));
        lingering.push(s);
    }
    let (s, code) = request_home(server.addr, target).await;
    assert_eq!(code, None);
    assert!(
        started.elapsed() < LINGER,
        "the good request waited for a linger to end: {:?} on the paused clock",
        started.elapsed()
    );
    assert_eq!(echo_round(s, b"served").await, b"served");
    drop(lingering);
    server.stop().await;
}
