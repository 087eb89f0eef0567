//! Helpers shared by the loopback tests: a relayed connection pair, a reproducible byte
//! stream, deadlines.

#![allow(dead_code)]

pub mod netns;

use std::future::Future;
use std::time::Duration;

use mpbond_relay::relay::{relay_with, Mode, RelayOpts, RelayStats};
use mpbond_testkit::Xorshift;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Every test step is bounded by this.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// `fut` under [`DEADLINE`], panicking with `what` on timeout.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// The `connect_with` paths whose write readiness is checked, as `(mptcp, fastopen,
/// first bytes)`: with and without data to send first, TCP and MPTCP, with and without
/// Fast Open.
pub const WRITABLE_CASES: [(bool, bool, &[u8]); 5] = [
    (false, false, b""),
    (false, false, b"x"),
    (false, true, b"x"),
    (true, false, b""),
    (true, true, b"x"),
];

/// A connected pair on 127.0.0.1: (connecting side, accepted side).
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.expect("connect"), accepted.expect("accept").0)
}

/// A connected MPTCP pair on 127.0.0.1: (connecting side, accepted side).
pub async fn mptcp_pair() -> (TcpStream, TcpStream) {
    use mpbond_relay::connect::{connect_with, ConnectOpts};
    let addr = "127.0.0.1:0".parse().expect("addr");
    let listener = mpbond_relay::sys::mptcp_listener(addr, 8, None).expect("mptcp listener");
    let dest = listener.local_addr().expect("local_addr");
    let opts = ConnectOpts {
        congestion: None,
        mptcp: true,
        fastopen: false,
        timeout: DEADLINE,
        mark: None,
        bind: None,
    };
    let (client, accepted) = tokio::join!(connect_with(dest, b"", &opts), listener.accept());
    let client = client.expect("mptcp connect");
    assert!(client.mptcp, "loopback MPTCP fell back to TCP");
    (client.stream, accepted.expect("accept").0)
}

/// `client` ⇄ [relay a | b] ⇄ `server`, with the relay running in its own task.
pub struct Relayed {
    pub client: TcpStream,
    pub server: TcpStream,
    pub relay: JoinHandle<RelayStats>,
}

impl Relayed {
    /// `(client, server, relay)`.
    pub fn into_parts(self) -> (TcpStream, TcpStream, JoinHandle<RelayStats>) {
        (self.client, self.server, self.relay)
    }
}

pub async fn relayed(opts: RelayOpts, mode: Mode) -> Relayed {
    let (client, a) = tcp_pair().await;
    let (b, server) = tcp_pair().await;
    relay_pairs(client, a, b, server, opts, mode)
}

/// Like [`relayed`], with the `b` side over MPTCP (the agent's upstream).
pub async fn relayed_mptcp(opts: RelayOpts, mode: Mode) -> Relayed {
    let (client, a) = tcp_pair().await;
    let (b, server) = mptcp_pair().await;
    relay_pairs(client, a, b, server, opts, mode)
}

fn relay_pairs(
    client: TcpStream,
    a: TcpStream,
    b: TcpStream,
    server: TcpStream,
    opts: RelayOpts,
    mode: Mode,
) -> Relayed {
    let relay = tokio::spawn(async move { relay_with(a, b, &opts, mode).await });
    Relayed {
        client,
        server,
        relay,
    }
}

/// A reproducible pseudo-random byte stream ([`Xorshift`] from `seed`), so the receiver
/// can check every byte without keeping a copy.
#[derive(Debug, Clone)]
pub struct Pattern(Xorshift);

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Pattern(Xorshift::new(seed))
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill(buf);
    }
}

/// Write `len` pattern bytes from `seed` in odd-sized chunks.
pub async fn send_pattern(w: &mut (impl AsyncWriteExt + Unpin), seed: u64, len: usize) {
    let mut pattern = Pattern::new(seed);
    let mut buf = vec![0; 100_003];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        pattern.fill(&mut buf[..n]);
        w.write_all(&buf[..n]).await.expect("write pattern");
        left -= n;
    }
}

/// Read to end of stream and check it is exactly `len` pattern bytes from `seed`.
pub async fn expect_pattern(r: &mut (impl AsyncReadExt + Unpin), seed: u64, len: usize) {
    let mut pattern = Pattern::new(seed);
    let mut buf = vec![0; 65_536];
    let mut want = vec![0; 65_536];
    let mut got = 0usize;
    loop {
        let n = r.read(&mut buf).await.expect("read pattern");
        if n == 0 {
            break;
        }
        assert!(got + n <= len, "more bytes than sent: {} > {len}", got + n);
        pattern.fill(&mut want[..n]);
        assert!(buf[..n] == want[..n], "corrupt data at offset {got}");
        got += n;
    }
    assert_eq!(got, len, "short stream");
}

/// Read until end of stream and return everything.
pub async fn read_to_end(r: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    r.read_to_end(&mut all).await?;
    Ok(all)
}
