//! The probe responder on loopback (127.0.0.1, port 0; nothing in the namespace
//! changes): a valid probe datagram gets its 25-byte reply on the listen port number
//! over UDP; forged, stale, unknown, cut, padded and garbage datagrams get silence; a
//! source that sends faster than `[probe] rate_per_source` gets no more answers than
//! that; every datagram is counted in `mpbond_probe_datagrams_total`. Once with
//! mpbond's own encoder, once with an independent one in Python
//! (`tests/independent/probe_client.py`).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use mpbond_protocol::auth::ClientId;
use mpbond_protocol::probe;
use tokio::net::UdpSocket;

const SILENCE: Duration = Duration::from_millis(300);

fn probe_config(rate: u32) -> mpbond_concentrator::Config {
    let clients = client_toml("home", &key(1)) + &format!("[probe]\nrate_per_source = {rate}\n");
    config("127.0.0.0/8", "", &clients)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Send `datagram`, return the answer (None: silence).
async fn exchange(socket: &UdpSocket, datagram: &[u8]) -> Option<Vec<u8>> {
    socket.send(datagram).await.unwrap();
    let mut buf = [0u8; 512];
    match tokio::time::timeout(SILENCE, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        Ok(Err(e)) => panic!("recv: {e}"),
        Err(_) => None,
    }
}

async fn connected(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server).await.unwrap();
    socket
}

#[tokio::test]
async fn valid_probes_are_answered_and_everything_else_gets_silence() {
    let server = start(probe_config(100)).await;
    let socket = connected(server.addr).await;
    let home: ClientId = "home".parse().unwrap();
    let stamp = now_ms();
    let request = probe::encode_request(&home, &key(1), stamp);
    let reply = exchange(&socket, &request).await.expect("an answer");
    assert_eq!(reply.len(), probe::REPLY_LEN);
    assert!(reply.len() < request.len(), "never larger than the request");
    let tag = probe::request_tag(&request).unwrap();
    probe::verify_reply(&reply, &key(1), stamp, &tag).expect("a valid reply");

    let stranger: ClientId = "stranger".parse().unwrap();
    let mut flipped = probe::encode_request(&home, &key(1), stamp + 1);
    flipped[10] ^= 1; // in the stamp
    let valid = probe::encode_request(&home, &key(1), stamp + 2);
    let silent: Vec<(&str, Vec<u8>)> = vec![
        (
            "wrong key",
            probe::encode_request(&home, &key(2), stamp + 3),
        ),
        (
            "unknown client",
            probe::encode_request(&stranger, &key(1), stamp + 4),
        ),
        (
            "stale",
            probe::encode_request(&home, &key(1), stamp - 3_600_000),
        ),
        ("flipped", flipped),
        ("short", valid[..valid.len() - 1].to_vec()),
        ("long", [valid.clone(), vec![0]].concat()),
        ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, datagram) in &silent {
        assert_eq!(exchange(&socket, datagram).await, None, "{what}");
    }
    let text = server
        .wait_metric("mpbond_probe_datagrams_total{result=\"answered\"} 1")
        .await;
    assert!(
        text.contains("mpbond_probe_datagrams_total{result=\"bad_tag\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("mpbond_probe_datagrams_total{result=\"unknown_client\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mpbond_probe_datagrams_total{result=\"skew\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mpbond_probe_datagrams_total{result=\"malformed\"} 4"),
        "{text}"
    );
    assert!(
        !text.contains("mpbond_connections_total 1"),
        "no TCP connection per probe"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_source_gets_no_more_answers_than_its_rate() {
    let server = start(probe_config(5)).await;
    let socket = connected(server.addr).await;
    let home: ClientId = "home".parse().unwrap();
    let stamp = now_ms();
    let mut answered = 0;
    for i in 0..20 {
        let request = probe::encode_request(&home, &key(1), stamp + i);
        socket.send(&request).await.unwrap();
    }
    let mut buf = [0u8; 64];
    while let Ok(Ok(_)) = tokio::time::timeout(SILENCE, socket.recv(&mut buf)).await {
        answered += 1;
    }
    // The burst is the rate; the 20 datagrams take well under a second to send, so at
    // most a few tokens refill meanwhile.
    assert!((5..=8).contains(&answered), "{answered} answers");
    let text = server.scrape().await;
    assert!(
        text.contains("mpbond_probe_datagrams_total{result=\"rate_limited\"}"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_probe_port_can_be_turned_off() {
    let clients = client_toml("home", &key(1)) + "[probe]\nenabled = false\n";
    let server = start(config("127.0.0.0/8", "", &clients)).await;
    let socket = connected(server.addr).await;
    let home: ClientId = "home".parse().unwrap();
    let request = probe::encode_request(&home, &key(1), now_ms());
    socket.send(&request).await.unwrap();
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(SILENCE, socket.recv(&mut buf)).await;
    // Nothing listens: silence, or the ICMP port unreachable as an error.
    assert!(!matches!(got, Ok(Ok(_))), "{got:?}");
    server.stop().await;
}

fn python(server: SocketAddr, kind: &str, count: u32) -> Vec<String> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/independent/probe_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(server.ip().to_string())
        .arg(server.port().to_string())
        .arg("home")
        .arg(key(1).to_hex())
        .arg(kind)
        .arg(count.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "probe_client.py {kind}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3"]
async fn an_independent_client_is_answered_and_forgeries_get_silence() {
    let server = start(probe_config(100)).await;
    let addr = server.addr;
    let run = move |kind: &'static str, count: u32| {
        tokio::task::spawn_blocking(move || python(addr, kind, count))
    };
    assert_eq!(run("valid", 3).await.unwrap(), ["answer"; 3]);
    for kind in [
        "wrong_key",
        "unknown_client",
        "stale",
        "flipped",
        "short",
        "long",
        "garbage",
        "convert",
    ] {
        assert_eq!(run(kind, 1).await.unwrap(), ["silence"], "{kind}");
    }
    server.stop().await;
}
