//! The Fast Open key kept in the state directory keeps routers' cookies valid across a
//! reboot of the concentrator's host, simulated by replacing its network namespace (a
//! new namespace gets a new random key, as a booted kernel does):
//!
//! * a client learns the cookie of a VPS namespace whose key `fastopen_key::keep` made;
//! * a new VPS namespace at the same address with the key restored takes the client's
//!   next SYN data at once, and the connection stays MPTCP;
//! * the control: a new VPS namespace with a key of its own drops that SYN data and the
//!   MPTCP connection falls back to plain TCP (what every router saw after a reboot
//!   before the key was kept).
//!
//! Needs root and `ip`: `#[ignore = "needs root and netns"]`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::mptcp_client;
use mpbond_concentrator::fastopen_key::{self, Kept, TCP_FASTOPEN_KEY_SYSCTL};
use mpbond_relay::connect::connect_with;
use mpbond_relay::sys;
use mpbond_testkit::{require_tools, Netns, TempDir};
use tokio::io::AsyncReadExt;

const VPS_IP: &str = "11.0.0.1";
const CLIENT_IP: &str = "11.0.0.2";

/// How one Fast Open connection went, seen from the client.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    syn_data_acked: Option<bool>,
    mptcp: bool,
}

/// A VPS namespace at [`VPS_IP`], linked to `client` by the client's link `link` (the
/// caller deletes it before the "reboot"), with Fast Open on;
/// its key is kept in `dir` when given, else the kernel's own.
fn vps(client: &Netns, link: &str, dir: Option<&Path>) -> (Netns, Option<Kept>) {
    let vps = Netns::with_lo("tfo-key-vps");
    vps.sysctl("net/ipv4/tcp_fastopen", "3");
    client.veth(link, &vps, "v0");
    client.ip(&["addr", "add", &format!("{CLIENT_IP}/24"), "dev", link]);
    vps.ip(&["addr", "add", &format!("{VPS_IP}/24"), "dev", "v0"]);
    let kept = dir.map(|dir| {
        vps.run(|| fastopen_key::keep(dir, Path::new(TCP_FASTOPEN_KEY_SYSCTL)))
            .expect("keep the key")
    });
    (vps, kept)
}

/// An MPTCP Fast Open listener made inside `vps` (the socket stays in that namespace).
fn listener_in(vps: &Netns) -> std::net::TcpListener {
    vps.run(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let addr = format!("{VPS_IP}:0").parse().expect("addr");
            sys::mptcp_listener(addr, 16, Some(16))
                .expect("listener")
                .into_std()
                .expect("std listener")
        })
    })
}

/// One Fast Open MPTCP connection from `client` to `listener`, carrying `b"request"`.
fn connect_once(client: &Netns, listener: &std::net::TcpListener) -> Outcome {
    let listener = listener.try_clone().expect("clone listener");
    client.run(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let dest = listener.local_addr().expect("addr");
            let opts = mptcp_client(true);
            let bounded = tokio::time::timeout(Duration::from_secs(20), async {
                let (connected, accepted) =
                    tokio::join!(connect_with(dest, b"request", &opts), listener.accept());
                let connected = connected.expect("connect");
                let (mut accepted, _) = accepted.expect("accept");
                let mut got = [0u8; 7];
                accepted.read_exact(&mut got).await.expect("read");
                assert_eq!(&got, b"request");
                Outcome {
                    syn_data_acked: sys::syn_data_acked(&connected.stream),
                    mptcp: connected.mptcp,
                }
            });
            bounded.await.expect("connection timed out")
        })
    })
}

#[test]
#[ignore = "needs root and netns"]
fn a_kept_key_keeps_cookies_valid_across_a_reboot() {
    require_tools(&["ip"]);
    let state = TempDir::new("tfo-reboot");
    let dir = state.path();
    let client = Netns::with_lo("tfo-key-client");
    client.sysctl("net/ipv4/tcp_fastopen", "1");

    // Before the "reboot": the first connection learns the cookie, the second uses it.
    let (before, kept) = vps(&client, "c0", Some(dir));
    assert!(matches!(kept, Some(Kept::Created(_))), "{kept:?}");
    let listener = listener_in(&before);
    let learn = connect_once(&client, &listener);
    let use_it = connect_once(&client, &listener);
    assert_eq!(
        learn,
        Outcome {
            syn_data_acked: Some(false),
            mptcp: true
        }
    );
    assert_eq!(
        use_it,
        Outcome {
            syn_data_acked: Some(true),
            mptcp: true
        }
    );
    drop(listener);
    client.ip(&["link", "del", "c0"]);
    drop(before);

    // After it, with the key restored: the old cookie is taken at once.
    let (after, kept) = vps(&client, "c1", Some(dir));
    assert!(matches!(kept, Some(Kept::Restored(_))), "{kept:?}");
    let listener = listener_in(&after);
    let restored = connect_once(&client, &listener);
    assert_eq!(
        restored,
        Outcome {
            syn_data_acked: Some(true),
            mptcp: true
        },
        "the cookie from before the reboot"
    );
    drop(listener);
    client.ip(&["link", "del", "c1"]);
    drop(after);

    // The control: a new key drops the data of the cookie's SYN, and MPTCP falls back.
    let (fresh, _) = vps(&client, "c2", None);
    let listener = listener_in(&fresh);
    let stale = connect_once(&client, &listener);
    assert_eq!(
        stale,
        Outcome {
            syn_data_acked: Some(false),
            mptcp: false
        }
    );
    drop(listener);
    drop(fresh);
}
