//! UDP flows through `Server::bind` / `run` on 127.0.0.1 port 0, in plain `cargo test`:
//! sockets only, nothing in the namespace is changed. The namespace tests with the
//! independent client are `udp_flows.rs`; these check the same paths with the crate's
//! own encoder on every run.

mod common;

use common::*;
use mpbond_protocol::{decode_capsule, encode_datagram, Capsule, ErrorCode, Message};
use mpbond_testkit::bounded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn one_client() -> mpbond_concentrator::Config {
    config("127.0.0.0/8", "", &client_toml("home", &key(1)))
}

/// A UDP echo server on 127.0.0.1 for the test's lifetime.
async fn udp_echo() -> std::net::SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// The next DATAGRAM's payload on `s`, skipping other capsules; None at EOF.
async fn next_datagram(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some((capsule, used)) = decode_capsule(buf).expect("well-formed capsules") {
            let payload = match capsule {
                Capsule::Datagram(p) => Some(p.to_vec()),
                _ => None,
            };
            buf.drain(..used);
            match payload {
                Some(p) => return Some(p),
                None => continue,
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match s.read(&mut chunk).await.unwrap() {
            0 => return None,
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_flow_echoes_both_ways_and_counts() {
    bounded(TEST_TIMEOUT, async {
        let server = start(one_client()).await;
        let echo = udp_echo().await;
        // The request and the first capsule in one write, as with Fast Open.
        let mut first = sealed(&Message::udp_request(echo), "home", &key(1));
        encode_datagram(b"first", &mut first).unwrap();
        let (mut s, code) = request(server.addr, &first).await;
        assert_eq!(code, None);
        let mut buf = Vec::new();
        assert_eq!(
            next_datagram(&mut s, &mut buf).await.as_deref(),
            Some(&b"first"[..])
        );
        for size in [0, 1, 1400, 20_000] {
            let payload = payload(size);
            let mut wire = Vec::new();
            encode_datagram(&payload, &mut wire).unwrap();
            s.write_all(&wire).await.unwrap();
            assert_eq!(next_datagram(&mut s, &mut buf).await, Some(payload));
        }
        s.shutdown().await.unwrap();
        assert_eq!(next_datagram(&mut s, &mut buf).await, None);
        server.wait_metric("mpbond_udp_flows_active 0").await;
        let text = server
            .wait_metric("mpbond_udp_datagrams_total{direction=\"down\"} 5")
            .await;
        assert!(text.contains("mpbond_udp_flows_total 1"), "{text}");
        assert!(
            text.contains("mpbond_udp_bytes_total{direction=\"up\"} 21406"),
            "{text}"
        );
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_flow_to_a_forbidden_destination_is_refused_with_32() {
    bounded(TEST_TIMEOUT, async {
        let server = start(one_client()).await;
        let forbidden = "10.9.8.7:443".parse().unwrap();
        let first = sealed(&Message::udp_request(forbidden), "home", &key(1));
        let (mut s, code) = request(server.addr, &first).await;
        assert_eq!(code, Some(ErrorCode::NotAuthorized));
        expect_eof(&mut s).await;
        let text = server
            .wait_metric("mpbond_udp_drops_total{reason=\"policy\"} 1")
            .await;
        assert!(text.contains("mpbond_policy_refusals_total 1"), "{text}");
        server.stop().await;
    })
    .await;
}
