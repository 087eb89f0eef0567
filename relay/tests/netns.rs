//! Root-only tests in a throw-away network namespace (see `common::netns`): TCP Fast Open
//! with and without MPTCP, proved by the namespace's TcpExt counters (the first connection
//! learns the server's cookie, the second carries it and its data in the SYN), and
//! unreachable destinations. They are `#[ignore = "needs root and netns"]`: `tests/run.sh` runs them
//! as root with `--include-ignored`, and without root they fail.

mod common;

use std::io;
use std::time::Duration;

use common::netns::{in_new_netns, ip, nft};
use mpbond_relay::connect::{connect_with, ConnectOpts};
use mpbond_relay::sys;
use mpbond_testkit::netstat::{self, grown};
use tokio::io::AsyncReadExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn opts(mptcp: bool) -> ConnectOpts {
    ConnectOpts {
        congestion: None,
        mptcp,
        fastopen: true,
        timeout: Duration::from_secs(10),
        mark: None,
        bind: None,
    }
}

/// What one Fast Open connection did, for the assertions and the log.
#[derive(Debug)]
struct TfoRun {
    fastopen: bool,
    client_mptcp: bool,
    server_mptcp: Option<bool>,
    syn_data_acked: Option<bool>,
    cookie_requested: u64,
    passive: u64,
    active: u64,
    mp_capable_syn_rx: u64,
    /// Every MPTcpExt counter that moved, for the log.
    mptcp_counters: Vec<(String, u64)>,
}

/// A listener that takes data in SYNs with a Fast Open cookie. The kernel caches cookies
/// per source and destination address, so the MPTCP listener gets an address of its own
/// (127.0.0.2) and learns its cookie afresh.
fn tfo_listener(mptcp: bool) -> tokio::net::TcpListener {
    let ip = if mptcp { "127.0.0.2" } else { "127.0.0.1" };
    let addr = format!("{ip}:0").parse().expect("addr");
    if mptcp {
        sys::mptcp_listener(addr, 64, Some(64)).expect("mptcp listener")
    } else {
        let listener = sys::tcp_listener(addr, 64).expect("tcp listener");
        sys::set_fastopen_listener(&listener, 64).expect("TCP_FASTOPEN");
        listener
    }
}

/// Two Fast Open connections to one fresh listener: (first, second).
async fn tfo_twice(mptcp: bool) -> (TfoRun, TfoRun) {
    let listener = tfo_listener(mptcp);
    (
        tfo_once(&listener, mptcp).await,
        tfo_once(&listener, mptcp).await,
    )
}

async fn tfo_once(listener: &tokio::net::TcpListener, mptcp: bool) -> TfoRun {
    let dest = listener.local_addr().expect("local_addr");
    let before = netstat::counters();
    let how = opts(mptcp);
    let (connected, accepted) = common::within("tfo connect", async {
        tokio::join!(
            connect_with(dest, b"CONVERT-REQUEST", &how),
            listener.accept()
        )
    })
    .await;
    let connected = connected.expect("connect_with");
    let (mut accepted, _) = accepted.expect("accept");
    let mut first = [0; 15];
    common::within("first", accepted.read_exact(&mut first))
        .await
        .expect("read first");
    assert_eq!(&first, b"CONVERT-REQUEST");
    let after = netstat::counters();
    TfoRun {
        fastopen: connected.fastopen,
        client_mptcp: connected.mptcp,
        server_mptcp: sys::is_mptcp(&accepted),
        syn_data_acked: sys::syn_data_acked(&connected.stream),
        cookie_requested: grown(&before, &after, "TcpExt.TCPFastOpenCookieReqd"),
        passive: grown(&before, &after, "TcpExt.TCPFastOpenPassive"),
        active: grown(&before, &after, "TcpExt.TCPFastOpenActive"),
        mp_capable_syn_rx: grown(&before, &after, "MPTcpExt.MPCapableSYNRX"),
        mptcp_counters: moved(&before, &after, "MPTcpExt."),
    }
}

fn moved(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
    prefix: &str,
) -> Vec<(String, u64)> {
    let mut moved: Vec<_> = after
        .keys()
        .filter(|k| k.starts_with(prefix))
        .map(|k| {
            (
                k.trim_start_matches(prefix).to_owned(),
                grown(before, after, k),
            )
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    moved.sort();
    moved
}

#[test]
#[ignore = "needs root and netns"]
fn fastopen_learns_a_cookie_then_puts_first_message_in_the_syn() {
    let result = in_new_netns(3, || {
        runtime().block_on(async { (tfo_twice(false).await, tfo_twice(true).await) })
    });
    let ((tcp_first, tcp), (mptcp_first, mptcp)) = result;
    eprintln!("plain TCP + TFO: {tcp_first:?}\n then {tcp:?}");
    eprintln!("MPTCP + TFO:     {mptcp_first:?}\n then {mptcp:?}");
    for (name, first) in [("tcp", &tcp_first), ("mptcp", &mptcp_first)] {
        assert!(first.fastopen, "{name}: the Fast Open option was refused");
        assert_eq!(first.cookie_requested, 1, "{name}: no cookie was asked for");
        assert_eq!(first.passive, 0, "{name}: data taken without a cookie");
        assert_eq!(first.syn_data_acked, Some(false), "{name}");
    }
    for (name, run) in [("tcp", &tcp), ("mptcp", &mptcp)] {
        assert!(run.fastopen, "{name}: the Fast Open option was refused");
        assert_eq!(run.passive, 1, "{name}: the server took no data from a SYN");
        assert_eq!(
            run.active, 1,
            "{name}: the client's SYN data was not acknowledged"
        );
        assert_eq!(run.syn_data_acked, Some(true), "{name}");
    }
    assert_eq!((tcp.client_mptcp, tcp.server_mptcp), (false, Some(false)));
    for run in [&mptcp_first, &mptcp] {
        assert_eq!(run.mp_capable_syn_rx, 1, "the SYN did not carry MP_CAPABLE");
        assert_eq!((run.client_mptcp, run.server_mptcp), (true, Some(true)));
    }
}

/// Without bit 0x2 of tcp_fastopen the server ignores SYN data; the message must still
/// arrive, one round trip later.
#[test]
#[ignore = "needs root and netns"]
fn fastopen_without_server_support_still_delivers() {
    let result = in_new_netns(1, || {
        runtime().block_on(async { (tfo_twice(false).await, tfo_twice(true).await) })
    });
    let ((tcp_first, tcp), (mptcp_first, mptcp)) = result;
    eprintln!("plain TCP, server without TFO: {tcp:?}");
    eprintln!("MPTCP, server without TFO:     {mptcp:?}");
    let passive: u64 = [&tcp_first, &tcp, &mptcp_first, &mptcp]
        .iter()
        .map(|run| run.passive)
        .sum();
    assert_eq!(passive, 0);
    if !mptcp.client_mptcp {
        eprintln!("NOTE: MPTCP fell back to TCP: {:?}", mptcp.mptcp_counters);
    }
}

#[test]
#[ignore = "needs root and netns"]
fn unreachable_destinations_map_to_their_error_kinds() {
    let result = in_new_netns(3, || {
        ip(&["route", "add", "unreachable", "198.51.100.0/24"]);
        runtime().block_on(async {
            let mut kinds = Vec::new();
            for mptcp in [false, true] {
                for (dest, want) in [
                    ("10.9.9.9:80", io::ErrorKind::NetworkUnreachable),
                    ("198.51.100.7:80", io::ErrorKind::HostUnreachable),
                ] {
                    let how = ConnectOpts {
                        congestion: None,
                        fastopen: false,
                        ..opts(mptcp)
                    };
                    for how in [how.clone(), opts(mptcp)] {
                        let dest = dest.parse().expect("addr");
                        let error = connect_with(dest, b"x", &how)
                            .await
                            .expect_err("unreachable");
                        kinds.push((dest, how.mptcp, how.fastopen, error.kind(), want));
                    }
                }
            }
            kinds
        })
    });
    let kinds = result;
    for (dest, mptcp, fastopen, got, want) in kinds {
        assert_eq!(got, want, "{dest} mptcp={mptcp} tfo={fastopen}");
    }
}

/// A connection redirected by nft reports the address it was sent to, over IPv4 and IPv6.
#[test]
#[ignore = "needs root and netns"]
fn original_dst_of_a_redirected_connection() {
    let result = in_new_netns(1, || {
        runtime().block_on(async {
            let v4 = sys::tcp_listener("127.0.0.1:0".parse().expect("addr"), 8).expect("listen v4");
            let v6 = sys::tcp_listener("[::1]:0".parse().expect("addr"), 8).expect("listen v6");
            let port4 = v4.local_addr().expect("addr").port();
            let port6 = v6.local_addr().expect("addr").port();
            nft(&format!(
                "table inet mpbond_relay_test {{
                    chain out {{
                        type nat hook output priority -100; policy accept;
                        ip daddr 127.0.0.2 tcp dport 9999 redirect to :{port4}
                        ip6 daddr ::1 tcp dport 9999 redirect to :{port6}
                    }}
                }}"
            ));
            let mut found = Vec::new();
            for (target, listener) in [("127.0.0.2:9999", &v4), ("[::1]:9999", &v6)] {
                let target: std::net::SocketAddr = target.parse().expect("addr");
                let (client, accepted) = common::within("redirected connect", async {
                    tokio::join!(tokio::net::TcpStream::connect(target), listener.accept())
                })
                .await;
                let _client = client.expect("connect");
                let (accepted, _) = accepted.expect("accept");
                found.push((target, sys::original_dst(&accepted).expect("original_dst")));
            }
            found
        })
    });
    let found = result;
    for (target, original) in found {
        assert_eq!(original, target);
    }
}

/// `mark` sets SO_MARK on the outgoing socket.
#[test]
#[ignore = "needs root and netns"]
fn connect_with_sets_the_mark() {
    let result = in_new_netns(1, || {
        runtime().block_on(async {
            let listener =
                sys::tcp_listener("127.0.0.1:0".parse().expect("addr"), 8).expect("listen");
            let dest = listener.local_addr().expect("addr");
            let how = ConnectOpts {
                congestion: None,
                mark: Some(0x4d50),
                bind: None,
                fastopen: false,
                ..opts(false)
            };
            let (connected, accepted) = common::within("connect", async {
                tokio::join!(connect_with(dest, b"x", &how), listener.accept())
            })
            .await;
            let _accepted = accepted.expect("accept");
            let connected = connected.expect("connect_with");
            socket2::SockRef::from(&connected.stream)
                .mark()
                .expect("SO_MARK")
        })
    });
    assert_eq!(result, 0x4d50);
}

/// Every first SYN is dropped, so the handshake completes a second later while
/// connect_with waits for it. The stream must still report write readiness afterwards: an
/// edge swallowed while waiting would make every later `writable()` hang.
#[test]
#[ignore = "needs root and netns"]
fn connect_with_keeps_write_readiness_when_the_handshake_is_slow() {
    let result = in_new_netns(3, || {
        nft("table inet mpbond_relay_test {
                chain in {
                    type filter hook input priority 0; policy accept;
                    tcp flags & (syn | ack) == syn numgen inc mod 2 == 0 drop
                }
            }");
        runtime().block_on(async {
            let mut hangs = Vec::new();
            for (mptcp, fastopen, first) in common::WRITABLE_CASES {
                let addr = "127.0.0.1:0".parse().expect("addr");
                let listener = sys::mptcp_listener(addr, 16, Some(16)).expect("listen");
                let dest = listener.local_addr().expect("local_addr");
                let how = ConnectOpts {
                    congestion: None,
                    fastopen,
                    ..opts(mptcp)
                };
                let (connected, accepted) = common::within("connect", async {
                    tokio::join!(connect_with(dest, first, &how), listener.accept())
                })
                .await;
                let connected = connected.expect("connect_with");
                let _accepted = accepted.expect("accept");
                let wait = Duration::from_secs(2);
                if tokio::time::timeout(wait, connected.stream.writable())
                    .await
                    .is_err()
                {
                    hangs.push((mptcp, fastopen, first.len()));
                }
            }
            hangs
        })
    });
    let hangs = result;
    assert!(
        hangs.is_empty(),
        "writable() hangs for (mptcp, tfo, first): {hangs:?}"
    );
}
