//! The SOCKS5 listener on loopback (IPv4 and IPv6), with a client written here from
//! RFC 1928/1929: every reply code the concentrator sends, byte by byte, and a relayed
//! echo over IPv6. Plain `cargo test`: no root, no tools.

mod common;

use std::net::SocketAddr;

use common::*;
use mpbond_concentrator::Server;
use mpbond_testkit::bounded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "loopback-password";

/// Greeting and RFC 1929 authentication; returns the two replies.
async fn login(s: &mut TcpStream, user: &str, password: &str) -> ([u8; 2], [u8; 2]) {
    s.write_all(&[5, 1, 2]).await.unwrap();
    let mut method = [0u8; 2];
    s.read_exact(&mut method).await.unwrap();
    let mut auth = vec![1, user.len() as u8];
    auth.extend_from_slice(user.as_bytes());
    auth.push(password.len() as u8);
    auth.extend_from_slice(password.as_bytes());
    s.write_all(&auth).await.unwrap();
    let mut status = [0u8; 2];
    s.read_exact(&mut status).await.unwrap();
    (method, status)
}

/// A CONNECT (or `cmd`) request for `dest`; returns the reply's first 4 bytes and the
/// whole reply length.
async fn request(s: &mut TcpStream, cmd: u8, dest: SocketAddr) -> Vec<u8> {
    let mut req = vec![5, cmd, 0];
    match dest {
        SocketAddr::V4(a) => {
            req.push(1);
            req.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            req.push(4);
            req.extend_from_slice(&a.ip().octets());
        }
    }
    req.extend_from_slice(&dest.port().to_be_bytes());
    s.write_all(&req).await.unwrap();
    read_reply(s).await
}

async fn read_reply(s: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.unwrap();
    let rest = match head[3] {
        1 => 6,
        4 => 18,
        other => panic!("reply address type {other}"),
    };
    let mut tail = vec![0u8; rest];
    s.read_exact(&mut tail).await.unwrap();
    [&head[..], &tail].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_codes_and_an_ipv6_relay() {
    let clients = format!(
        "[[client]]\nid = \"phone\"\nkey = \"{}\"\nsocks_password = \"{PASSWORD}\"\n",
        key(1).to_hex()
    );
    let mut config = config("::1/128", "", &clients);
    config.socks.listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    bounded(TEST_TIMEOUT, async {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let server = Server::bind(config).await.expect("bind");
        let socks = server.socks_addrs();
        assert_eq!(socks.len(), 2);
        let metrics = server.handle().metrics();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        let (v4, v6) = (socks[0], socks[1]);

        // Relayed over IPv6 to an allowed IPv6 destination.
        let (echo, count) = echo_target("[::1]").await;
        let mut s = TcpStream::connect(v6).await.unwrap();
        assert_eq!(login(&mut s, "phone", PASSWORD).await, ([5, 2], [1, 0]));
        let reply = request(&mut s, 1, echo).await;
        assert_eq!(&reply[..4], &[5, 0, 0, 4], "{reply:?}");
        s.write_all(b"ping").await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"ping");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);

        // Wrong password: status 1, then closed.
        let mut s = TcpStream::connect(v4).await.unwrap();
        assert_eq!(
            login(&mut s, "phone", "wrong-password").await,
            ([5, 2], [1, 1])
        );
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());

        // No acceptable method: 0xFF.
        let mut s = TcpStream::connect(v4).await.unwrap();
        s.write_all(&[5, 1, 0]).await.unwrap();
        let mut method = [0u8; 2];
        s.read_exact(&mut method).await.unwrap();
        assert_eq!(method, [5, 0xff]);

        let refused = |code: u8| vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0];
        // Forbidden destination (loopback v4 is not allowed here): 0x02.
        let mut s = TcpStream::connect(v4).await.unwrap();
        login(&mut s, "phone", PASSWORD).await;
        let forbidden: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(request(&mut s, 1, forbidden).await, refused(2));

        // Nothing listens on an allowed address: 0x05 connection refused.
        let closed = {
            let l = std::net::TcpListener::bind("[::1]:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut s = TcpStream::connect(v4).await.unwrap();
        login(&mut s, "phone", PASSWORD).await;
        assert_eq!(request(&mut s, 1, closed).await, refused(5));

        // BIND and UDP ASSOCIATE: 0x07.
        for cmd in [2, 3] {
            let mut s = TcpStream::connect(v4).await.unwrap();
            login(&mut s, "phone", PASSWORD).await;
            assert_eq!(request(&mut s, cmd, echo).await, refused(7));
        }

        // Unknown address type: 0x08.
        let mut s = TcpStream::connect(v4).await.unwrap();
        login(&mut s, "phone", PASSWORD).await;
        s.write_all(&[5, 1, 0, 9, 1, 2, 3, 4]).await.unwrap();
        assert_eq!(read_reply(&mut s).await, refused(8));

        shutdown.cancel();
        task.await.expect("join").expect("run");
        let text = metrics.render();
        for line in [
            "mpbond_socks_connections_total{outcome=\"relayed\"} 1",
            "mpbond_socks_connections_total{outcome=\"auth_failed\"} 1",
            "mpbond_socks_connections_total{outcome=\"not_allowed_by_ruleset\"} 1",
            "mpbond_socks_connections_total{outcome=\"connection_refused\"} 1",
            "mpbond_socks_connections_total{outcome=\"command_not_supported\"} 2",
            "mpbond_socks_connections_total{outcome=\"address_type_not_supported\"} 1",
            "mpbond_socks_bytes_total{direction=\"up\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    })
    .await;
}
