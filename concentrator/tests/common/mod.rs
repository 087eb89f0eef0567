//! Test harness: a concentrator on 127.0.0.1 port 0 run through the library (most tests
//! with [`home_config`]), an echo target, a client that seals Convert requests and reads
//! replies ([`request_home`] for client `home`), and MPTCP client options
//! ([`mptcp_client`]). For the tests that need a namespace: a runtime inside one
//! ([`block_on_in`]), a namespace with addresses of its own ([`veth_netns`]) and a
//! config listening there ([`config_on`]); and the concentrator binary in a namespace
//! ([`daemon`]).

#![allow(dead_code)]

pub mod daemon;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mpbond_concentrator::{Config, Handle, RunError, Server};
use mpbond_protocol::auth::{seal, ClientId, Key};
use mpbond_protocol::{ErrorCode, Message};
use mpbond_relay::connect::ConnectOpts;
use mpbond_testkit::{bounded, Netns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound for every test body.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn key(byte: u8) -> Key {
    Key::from_bytes([byte; 32])
}

pub fn client_toml(id: &str, key: &Key) -> String {
    format!("[[client]]\nid = \"{id}\"\nkey = \"{}\"\n", key.to_hex())
}

/// A config listening on 127.0.0.1:0 (metrics too) that allows destinations `allow`
/// (a prefix), with `limits` added to `[limits]` (handshake and connect timeouts of 3 s
/// and a 10 s drain unless it sets them) and `clients` TOML appended. It keeps no state
/// (`state_dir = ""`).
pub fn config(allow: &str, limits: &str, clients: &str) -> Config {
    let mut all_limits = limits.to_owned();
    for default in [
        "handshake_timeout_ms = 3000",
        "connect_timeout_ms = 3000",
        "drain_timeout_secs = 10",
    ] {
        let name = default.split(' ').next().unwrap_or_default();
        if !limits.contains(name) {
            all_limits.push_str(&format!("\n{default}"));
        }
    }
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\nmetrics = \"127.0.0.1:0\"\nstate_dir = \"\"\n[limits]\n{all_limits}\n[policy]\nallow = [\"{allow}\"]\n{clients}"
    );
    Config::parse(&text).unwrap_or_else(|e| panic!("test config: {e}\n{text}"))
}

/// The config most tests run: client `home` with [`key`]`(1)`, loopback destinations
/// allowed.
pub fn home_config() -> Config {
    config("127.0.0.0/8", "", &client_toml("home", &key(1)))
}

/// [`config`], listening on `listen` (e.g. an address of a [`veth_netns`]) instead.
pub fn config_on(listen: &str, allow: &str, limits: &str, clients: &str) -> Config {
    let mut config = config(allow, limits, clients);
    config.listen = vec![listen.parse().expect("a listen address")];
    config
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub handle: Handle,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), RunError>>,
}

pub async fn start(config: Config) -> TestServer {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addrs()[0];
    let metrics = server.metrics_addr().expect("metrics addr");
    let handle = server.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    TestServer {
        addr,
        metrics,
        handle,
        shutdown,
        task,
    }
}

impl TestServer {
    pub async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        r.expect("server stops").expect("join").expect("run ok");
    }

    /// GET /metrics.
    pub async fn scrape(&self) -> String {
        let mut s = TcpStream::connect(self.metrics).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Poll /metrics until `line` appears (metrics are updated as connections close).
    pub async fn wait_metric(&self, line: &str) -> String {
        loop {
            let text = self.scrape().await;
            if text.lines().any(|l| l == line) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An echo target: echoes every connection and forwards half-close. Returns its address
/// and a counter of accepted connections.
pub async fn echo_target(ip: &str) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, count)
}

/// A std listener (non-blocking) to check that nobody connected.
pub fn silent_target(ip: &str) -> std::net::TcpListener {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

pub fn assert_no_connection(l: &std::net::TcpListener) {
    match l.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("target got a connection: {other:?}"),
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn nonce() -> [u8; 12] {
    let mut n = [0u8; 12];
    getrandom::fill(&mut n).unwrap();
    n
}

pub fn sealed(message: &Message, id: &str, key: &Key) -> Vec<u8> {
    let id: ClientId = id.parse().unwrap();
    seal(message, &id, key, now(), nonce()).unwrap()
}

/// Read one Convert reply, exactly.
pub async fn read_reply(s: &mut TcpStream) -> Message {
    mpbond_relay::message::read_message(s)
        .await
        .expect("one whole Convert reply")
        .message
}

/// Client `home`'s sealed Connect request for `dest` (with [`key`]`(1)`).
pub fn home_connect(dest: SocketAddr) -> Vec<u8> {
    sealed(&Message::connect(dest), "home", &key(1))
}

/// [`request`] with [`home_connect`]`(dest)`.
pub async fn request_home(server: SocketAddr, dest: SocketAddr) -> (TcpStream, Option<ErrorCode>) {
    request(server, &home_connect(dest)).await
}

/// Connect plainly, send `first`, and return the reply's error code (None for ok).
pub async fn request(server: SocketAddr, first: &[u8]) -> (TcpStream, Option<ErrorCode>) {
    let mut s = TcpStream::connect(server).await.unwrap();
    s.write_all(first).await.unwrap();
    let reply = read_reply(&mut s).await;
    let code = reply.error_code();
    (s, code)
}

/// Connect plainly, send `first`, and read to the end: quiet mode closes (FIN or reset)
/// without sending a byte. Returns the bytes received, which must be none.
pub async fn request_silenced(server: SocketAddr, first: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server).await.unwrap();
    // The concentrator may close while this is still being written.
    let _ = s.write_all(first).await;
    let mut got = Vec::new();
    match s.read_to_end(&mut got).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading a quiet refusal: {e}"),
    }
    got
}

/// After an error reply the concentrator closes: expect EOF.
pub async fn expect_eof(s: &mut TcpStream) {
    let mut rest = Vec::new();
    let _ = s.shutdown().await;
    s.read_to_end(&mut rest).await.expect("clean close");
    assert!(
        rest.is_empty(),
        "unexpected bytes after the reply: {rest:?}"
    );
}

/// Send `payload`, half-close, and read everything back (the echo target returns it).
pub async fn echo_round(mut s: TcpStream, payload: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = s.split();
    let write = async {
        w.write_all(payload).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let read = r.read_to_end(&mut back);
    let (_, n) = tokio::join!(write, read);
    n.unwrap();
    back
}

pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Run `body` (bounded by [`TEST_TIMEOUT`]) on a two-worker tokio runtime inside `ns`,
/// and return what it returns. The runtime is built on the thread that entered the
/// namespace, so its worker threads start there too.
pub fn block_on_in<T: Send, F: Future<Output = T>>(
    ns: &Netns,
    body: impl FnOnce() -> F + Send,
) -> T {
    ns.run(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(bounded(TEST_TIMEOUT, body()))
    })
}

/// A namespace (`lo` up) for a concentrator with addresses of its own: a veth pair with
/// both ends in it, `d0` and `d1`, up, and each of `addrs` on `d0` as a /24, so those
/// prefixes are routed over a link the test owns.
pub fn veth_netns(role: &str, addrs: &[&str]) -> Netns {
    let ns = Netns::with_lo(role);
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    ns.ip(&["link", "set", "d1", "up"]);
    ns.ip(&["link", "set", "d0", "up"]);
    for addr in addrs {
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "d0"]);
    }
    ns
}

/// The options of an MPTCP client, with Fast Open or without.
pub fn mptcp_client(fastopen: bool) -> ConnectOpts {
    ConnectOpts {
        congestion: None,
        mptcp: true,
        fastopen,
        timeout: Duration::from_secs(10),
        mark: None,
        bind: None,
    }
}
