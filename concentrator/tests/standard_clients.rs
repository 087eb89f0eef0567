//! Standard RFC 8803 clients end to end (issue 12, part 3): a concentrator on loopback
//! with an `auth = "static-cookie"` client and an `auth = "source"` client, asked by an
//! encoder independent of `mpbond-protocol` (`independent/standard_client.py`, Python's
//! `struct` only), and every reply checked byte by byte:
//!
//! * success `01 01 22 63`, then the relay works (the echo comes back);
//! * Error TLVs (`01 02 22 63 1e 01 CODE 00`): 32 for a wrong static cookie or a
//!   forbidden destination, 3 for no cookie outside the source prefixes, 2 for an
//!   Extended TCP Header TLV in a request;
//! * an Info request gets Supported TCP Extensions (`15 02 00 00 02 03 04 08`).
//!
//! Needs `python3`: `#[ignore = "needs python3"]`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use mpbond_testkit::{bounded, require_tools};

const COOKIE: &str = "tessares-static-cookie-0001";
const OK: &str = "01012263";
const NOT_AUTHORIZED: &str = "010222631e012000";
const MISSING_COOKIE: &str = "010222631e010300";
const UNSUPPORTED_MESSAGE: &str = "010222631e010200";
const INFO: &str = "010322631502000002030408";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/independent/standard_client.py")
}

/// Run the independent client and return what it printed.
async fn ask(conc: SocketAddr, kind: &str, dest: SocketAddr, cookie: Option<&str>) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(script())
        .args([
            conc.ip().to_string(),
            conc.port().to_string(),
            kind.to_owned(),
        ])
        .args([dest.ip().to_string(), dest.port().to_string()]);
    if let Some(cookie) = cookie {
        cmd.arg(cookie);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("python3 runs"))
        .await
        .expect("client thread");
    assert!(
        out.status.success(),
        "standard_client.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn config_with(clients: &str) -> mpbond_concentrator::Config {
    let mut config = config("127.0.0.1/32", "", clients);
    // Standard clients are told why they are refused.
    config.quiet = false;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3"]
async fn static_cookie_client_gets_rfc_8803_replies() {
    require_tools(&["python3"]);
    let clients = format!(
        "[[client]]\nid = \"home\"\nkey = \"{}\"\n[[client]]\nid = \"tess\"\nauth = \"static-cookie\"\ncookie = \"{COOKIE}\"\n",
        key(1).to_hex()
    );
    bounded(TEST_TIMEOUT, async {
        let server = start(config_with(&clients)).await;
        let (echo, count) = echo_target("127.0.0.1").await;
        let forbidden: SocketAddr = "127.0.0.2:80".parse().unwrap();

        assert_eq!(
            ask(server.addr, "connect", echo, Some(COOKIE)).await,
            format!("{OK} ping")
        );
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
        let wrong = COOKIE.replace("0001", "0002");
        assert_eq!(
            ask(server.addr, "connect", echo, Some(&wrong)).await,
            NOT_AUTHORIZED
        );
        assert_eq!(
            ask(server.addr, "connect", echo, None).await,
            MISSING_COOKIE
        );
        assert_eq!(
            ask(server.addr, "connect", forbidden, Some(COOKIE)).await,
            NOT_AUTHORIZED
        );
        assert_eq!(
            ask(server.addr, "connect-exth", echo, Some(COOKIE)).await,
            UNSUPPORTED_MESSAGE
        );
        assert_eq!(ask(server.addr, "info", echo, Some(COOKIE)).await, INFO);
        // Only the first request reached the destination.
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3"]
async fn source_client_needs_no_cookie() {
    require_tools(&["python3"]);
    bounded(TEST_TIMEOUT, async {
        let (echo, count) = echo_target("127.0.0.1").await;
        let source = "[[client]]\nid = \"isp\"\nauth = \"source\"\nsources = [\"127.0.0.0/8\"]\n";
        let server = start(config_with(source)).await;
        assert_eq!(
            ask(server.addr, "connect", echo, None).await,
            format!("{OK} ping")
        );
        assert_eq!(ask(server.addr, "info", echo, None).await, INFO);
        server.stop().await;

        // The same request from outside the prefixes is refused: no cookie.
        let elsewhere =
            "[[client]]\nid = \"isp\"\nauth = \"source\"\nsources = [\"192.0.2.0/24\"]\n";
        let server = start(config_with(elsewhere)).await;
        assert_eq!(
            ask(server.addr, "connect", echo, None).await,
            MISSING_COOKIE
        );
        server.stop().await;
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    })
    .await;
}
