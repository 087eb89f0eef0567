//! Quiet mode on loopback (127.0.0.1, port 0; nothing in the namespace changes): a
//! request that fails authentication gets no byte back, so a scanner cannot tell the
//! service from any other port that closes on it; with `quiet = false` every refusal is
//! an RFC 8803 Error TLV, as before; authenticated clients get their codes either way.

mod common;

use common::*;
use mpbond_concentrator::Config;
use mpbond_protocol::auth::{seal, ClientId};
use mpbond_protocol::{ErrorCode, Message, Tlv};
use mpbond_testkit::bounded;

fn quiet_config(quiet: bool) -> Config {
    let mut config = home_config();
    config.quiet = quiet;
    config
}

/// What a scanner or an attacker without a key sends, with the code each one gets when
/// the concentrator is not quiet.
fn strangers(dest: std::net::SocketAddr, replayed: &[u8]) -> Vec<(&'static str, Vec<u8>, u8)> {
    let home: ClientId = "home".parse().unwrap();
    let stale = seal(
        &Message::connect(dest),
        &home,
        &key(1),
        now() - 3600,
        nonce(),
    )
    .unwrap();
    let unsupported = Message {
        tlvs: vec![Tlv::Info, Tlv::Info],
    };
    vec![
        ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 0),
        (
            "tls",
            vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01],
            0,
        ),
        ("bad_magic", vec![1, 1, 0x12, 0x34], 1),
        ("bad_length", vec![1, 2, 0x22, 0x63, 0x0a, 0x00, 0, 0], 1),
        ("no_cookie", Message::connect(dest).encode().unwrap(), 3),
        (
            "wrong_key",
            sealed(&Message::connect(dest), "home", &key(2)),
            32,
        ),
        (
            "unknown_client",
            sealed(&Message::connect(dest), "stranger", &key(1)),
            32,
        ),
        ("stale", stale, 32),
        ("replay", replayed.to_vec(), 32),
        ("unsupported_unsealed", unsupported.encode().unwrap(), 2),
        (
            "unsupported_wrong_key",
            sealed(&unsupported, "home", &key(3)),
            2,
        ),
    ]
}

/// A valid request, used once so that it can be replayed.
async fn used_request(server: &TestServer) -> Vec<u8> {
    let (target, _) = echo_target("127.0.0.1").await;
    let first = home_connect(target);
    let (s, code) = request(server.addr, &first).await;
    assert_eq!(code, None, "the first use is served");
    assert_eq!(echo_round(s, b"once").await, b"once");
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanner_gets_silence() {
    bounded(TEST_TIMEOUT, async {
        let server = start(quiet_config(true)).await;
        let target = silent_target("127.0.0.1");
        let replayed = used_request(&server).await;
        let cases = strangers(target.local_addr().unwrap(), &replayed);
        for (name, bytes, _) in &cases {
            let got = request_silenced(server.addr, bytes).await;
            assert!(got.is_empty(), "{name}: answered {got:?}");
        }
        assert_no_connection(&target);
        server
            .wait_metric(&format!("mpbond_quiet_refusals_total {}", cases.len()))
            .await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_false_answers_every_refusal() {
    bounded(TEST_TIMEOUT, async {
        let server = start(quiet_config(false)).await;
        let target = silent_target("127.0.0.1");
        let replayed = used_request(&server).await;
        for (name, bytes, want) in strangers(target.local_addr().unwrap(), &replayed) {
            let (mut s, code) = request(server.addr, &bytes).await;
            assert_eq!(code.map(ErrorCode::code), Some(want), "{name}");
            expect_eof(&mut s).await;
        }
        assert_no_connection(&target);
        server.wait_metric("mpbond_quiet_refusals_total 0").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_clients_still_get_their_codes_in_quiet_mode() {
    bounded(TEST_TIMEOUT, async {
        let server = start(quiet_config(true)).await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let metadata = "169.254.169.254:80".parse().unwrap();
        let nat64_metadata = "[64:ff9b::a9fe:a9fe]:80".parse().unwrap();
        let unsupported = Message {
            tlvs: vec![Tlv::Info, Tlv::Info],
        };
        for (message, want) in [
            (Message::connect(metadata), ErrorCode::NotAuthorized),
            (Message::connect(nat64_metadata), ErrorCode::NotAuthorized),
            (Message::connect(closed), ErrorCode::ConnectionReset),
            (unsupported, ErrorCode::UnsupportedMessage),
        ] {
            let (mut s, code) = request(server.addr, &sealed(&message, "home", &key(1))).await;
            assert_eq!(code, Some(want), "{message:?}");
            expect_eof(&mut s).await;
        }
        server.wait_metric("mpbond_policy_refusals_total 2").await;
        server.wait_metric("mpbond_quiet_refusals_total 0").await;
        server.stop().await;
    })
    .await;
}
