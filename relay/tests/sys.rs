//! Loopback tests of `sys`, `connect` and `notify` in the current network namespace.
//! They change no configuration: listeners on 127.0.0.1 port 0 and a unix socket in a
//! fresh temporary directory.

mod common;

use std::io;
use std::time::Duration;

use common::{tcp_pair, within};
use mpbond_relay::connect::{connect_with, ConnectOpts, Connected};
use mpbond_relay::sys;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn opts(mptcp: bool, fastopen: bool) -> ConnectOpts {
    ConnectOpts {
        congestion: None,
        mptcp,
        fastopen,
        timeout: Duration::from_secs(10),
        mark: None,
        bind: None,
    }
}

/// `connect_with(first)` to a fresh 127.0.0.1 listener (MPTCP when `mptcp`, with a Fast
/// Open queue), and the accepted side.
async fn connect_to_loopback(
    mptcp: bool,
    fastopen: bool,
    first: &[u8],
) -> (Connected, tokio::net::TcpStream) {
    let addr = "127.0.0.1:0".parse().expect("addr");
    let listener = if mptcp {
        sys::mptcp_listener(addr, 16, Some(16))
    } else {
        sys::tcp_listener(addr, 16)
    }
    .expect("listen");
    let dest = listener.local_addr().expect("local_addr");
    let how = opts(mptcp, fastopen);
    let (connected, accepted) = within("connect", async {
        tokio::join!(connect_with(dest, first, &how), listener.accept())
    })
    .await;
    let (accepted, _) = accepted.expect("accept");
    (connected.expect("connect_with"), accepted)
}

/// A 127.0.0.1 port with nothing listening on it.
async fn closed_port() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local_addr")
}

#[tokio::test]
async fn original_dst_of_a_plain_connection_is_an_error() {
    let (client, accepted) = tcp_pair().await;
    assert!(sys::original_dst(&accepted).is_err());
    assert!(sys::original_dst(&client).is_err());
}

#[tokio::test]
async fn original_dst_on_ipv6_is_an_error_not_a_panic() {
    let listener = sys::tcp_listener("[::1]:0".parse().expect("addr"), 8)
        .unwrap_or_else(|e| panic!("no IPv6 loopback ([::1]): {e}; mpbond needs IPv6"));
    let addr = listener.local_addr().expect("local_addr");
    let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let (_client, (accepted, _)) = (client.expect("connect"), accepted.expect("accept"));
    assert!(sys::original_dst(&accepted).is_err());
}

#[tokio::test]
async fn plain_tcp_is_not_mptcp() {
    let (client, accepted) = tcp_pair().await;
    assert_ne!(sys::is_mptcp(&client), Some(true));
    assert_ne!(sys::is_mptcp(&accepted), Some(true));
}

#[tokio::test]
async fn connect_to_closed_port_is_refused() {
    let dest = closed_port().await;
    for (mptcp, fastopen) in [(false, false), (false, true), (true, false), (true, true)] {
        let result = within(
            "connect",
            connect_with(dest, b"first", &opts(mptcp, fastopen)),
        )
        .await;
        let error = result.expect_err("nothing listens there");
        assert_eq!(
            error.kind(),
            io::ErrorKind::ConnectionRefused,
            "mptcp={mptcp} tfo={fastopen}: {error}"
        );
    }
}

/// A listener with backlog 0 that never accepts: after one queued connection, SYNs are
/// dropped, so a connect can only time out.
#[tokio::test]
async fn connect_to_a_full_backlog_times_out() {
    let listener = sys::tcp_listener("127.0.0.1:0".parse().expect("addr"), 0).expect("listen");
    let dest = listener.local_addr().expect("local_addr");
    let mut fillers = Vec::new();
    for _ in 0..2 {
        let quick = ConnectOpts {
            congestion: None,
            timeout: Duration::from_millis(300),
            ..opts(false, false)
        };
        if let Ok(c) = connect_with(dest, b"", &quick).await {
            fillers.push(c);
        }
    }
    for fastopen in [false, true] {
        let short = ConnectOpts {
            congestion: None,
            timeout: Duration::from_millis(400),
            ..opts(false, fastopen)
        };
        let error = within("timeout", connect_with(dest, b"first", &short))
            .await
            .expect_err("the backlog is full");
        assert_eq!(
            error.kind(),
            io::ErrorKind::TimedOut,
            "tfo={fastopen}: {error}"
        );
    }
}

/// `first` arrives first on every path, whether or not the server does Fast Open.
#[tokio::test]
async fn connect_with_writes_first_then_carries_data() {
    for (mptcp, fastopen) in [(false, false), (false, true), (true, false), (true, true)] {
        let (mut connected, mut accepted) = connect_to_loopback(mptcp, fastopen, b"convert!").await;
        // Linux falls back to TCP when an MP_CAPABLE SYN's data is dropped. Without a
        // cached cookie the client asks for one and sends no data in the SYN, and a
        // server without Fast Open never hands one out: nothing is dropped either way.
        let stays_mptcp = mptcp;
        assert_eq!(
            connected.mptcp, stays_mptcp,
            "client: mptcp={mptcp} tfo={fastopen}"
        );
        assert_eq!(
            sys::is_mptcp(&accepted),
            Some(stays_mptcp),
            "server: mptcp={mptcp} tfo={fastopen}"
        );
        connected
            .stream
            .write_all(b" then data")
            .await
            .expect("write");
        connected.stream.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        within("read", accepted.read_to_end(&mut got))
            .await
            .expect("read");
        assert_eq!(got, b"convert! then data", "mptcp={mptcp} tfo={fastopen}");
    }
}

#[tokio::test]
async fn ipv6_listener_is_v6only() {
    let listener = sys::tcp_listener("[::]:0".parse().expect("addr"), 8)
        .unwrap_or_else(|e| panic!("no IPv6 listener on [::]: {e}; mpbond needs IPv6"));
    let socket = socket2::SockRef::from(&listener);
    assert!(socket.only_v6().expect("IPV6_V6ONLY"));
    assert!(socket.reuse_address().expect("SO_REUSEADDR"));
}

#[test]
fn notify_reaches_path_and_abstract_sockets() {
    use std::os::unix::net::UnixDatagram;
    let unique = format!(
        "mpbond-relay-notify-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    let dir = std::env::temp_dir().join(unique.replace([' ', ':', '{', '}', ','], "_"));
    std::fs::create_dir(&dir).expect("temp dir");
    let path = dir.join("notify.sock");
    let receiver = UnixDatagram::bind(&path).expect("bind path");
    receiver
        .set_read_timeout(Some(common::DEADLINE))
        .expect("timeout");
    mpbond_relay::notify::notify_to(path.as_os_str(), "READY=1").expect("notify path");
    let mut buf = [0; 64];
    let n = receiver.recv(&mut buf).expect("recv");
    assert_eq!(&buf[..n], b"READY=1");
    let _ = std::fs::remove_dir_all(&dir);

    use std::os::linux::net::SocketAddrExt;
    let name = format!("mpbond-relay-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
    let receiver = UnixDatagram::bind_addr(&addr).expect("bind abstract");
    receiver
        .set_read_timeout(Some(common::DEADLINE))
        .expect("timeout");
    mpbond_relay::notify::notify_to(format!("@{name}").as_ref(), "STOPPING=1")
        .expect("notify abstract");
    let n = receiver.recv(&mut buf).expect("recv");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

/// connect_with must leave the socket's write readiness usable: a `writable()` right after
/// it returns at once (an edge swallowed while waiting for the handshake would hang here).
#[tokio::test]
async fn connected_stream_is_writable_at_once() {
    for (mptcp, fastopen, first) in common::WRITABLE_CASES {
        let (connected, _accepted) = connect_to_loopback(mptcp, fastopen, first).await;
        let ready = tokio::time::timeout(Duration::from_secs(2), connected.stream.writable()).await;
        assert!(
            ready.is_ok(),
            "writable() hangs: mptcp={mptcp} tfo={fastopen} first={first:?}"
        );
    }
}
