//! The concentrator's own addresses as destinations, in a namespace of their own: an
//! address added after start is refused as soon as the kernel announces it, and a
//! configured `public_address` is refused, including the hairpin of a 1:1 NAT (an nft
//! DNAT from the "public" address to the concentrator's listener).
//!
//! The addresses are from 11.0.0.0/8, public unicast (the destination classifier refuses
//! the documentation ranges on its own, which would hide what these tests check); nothing
//! leaves the namespace.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use mpbond_concentrator::{Config, Handle};
use mpbond_protocol::ErrorCode;

/// Bound on waiting for the address watcher; not a timing assertion.
const WATCH_WAIT: Duration = Duration::from_secs(10);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The address of the concentrator's namespace (`veth_netns`), so 11.0.0.0/24 is
/// routed.
const OWN: &str = "11.0.0.1";

/// Client `home` on `listen`, with `public` as the configured `public_address` list.
/// (Loopback destinations are allowed too, which none of these tests asks for.)
fn listening_on(listen: &str, public: &[&str]) -> Config {
    let mut config = config_on(listen, "127.0.0.0/8", "", &client_toml("home", &key(1)));
    config.identity.public_address = public.iter().map(|p| ip(p)).collect();
    config
}

/// Wait (bounded) until the server's own-address set satisfies `want`.
async fn wait_own(handle: &Handle, want: impl Fn(&[IpAddr]) -> bool) {
    let mut changed = handle.own_addresses_changed();
    let waited = tokio::time::timeout(WATCH_WAIT, async {
        loop {
            if want(&handle.own_addresses()) {
                return;
            }
            changed.changed().await.expect("server alive");
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "own addresses never changed: {:?}",
        handle.own_addresses()
    );
}

#[test]
#[ignore = "needs root and netns"]
fn an_address_added_after_start_is_refused() {
    let ns = veth_netns("own-added", &[OWN]);
    block_on_in(&ns, || async {
        let server = start(listening_on("127.0.0.1:0", &[])).await;
        let added = ip("11.0.0.7");
        assert!(!server.handle.own_addresses().contains(&added));

        ns.ip(&["addr", "add", "11.0.0.7/32", "dev", "d0"]);
        wait_own(&server.handle, |own| own.contains(&added)).await;

        let target = silent_target("11.0.0.7");
        let dest = target.local_addr().unwrap();
        let (_, code) = request_home(server.addr, dest).await;
        assert_eq!(code, Some(ErrorCode::NotAuthorized));
        assert_no_connection(&target);

        // And it is forgotten once removed.
        ns.ip(&["addr", "del", "11.0.0.7/32", "dev", "d0"]);
        wait_own(&server.handle, |own| !own.contains(&added)).await;
        server.stop().await;
    });
}

#[test]
#[ignore = "needs root and netns"]
fn a_configured_public_address_is_refused() {
    let ns = veth_netns("own-public", &[OWN]);
    block_on_in(&ns, || async {
        // 11.0.0.8 is on the interface only so that a target can listen there.
        ns.ip(&["addr", "add", "11.0.0.8/32", "dev", "d0"]);
        let target = silent_target("11.0.0.8");
        let dest = target.local_addr().unwrap();
        let server = start(listening_on("127.0.0.1:0", &["11.0.0.9"])).await;
        let own = server.handle.own_addresses();
        assert!(own.contains(&ip("11.0.0.9")), "{own:?}");

        let hairpin = std::net::SocketAddr::new(ip("11.0.0.9"), dest.port());
        let (_, code) = request_home(server.addr, hairpin).await;
        assert_eq!(code, Some(ErrorCode::NotAuthorized));
        server.stop().await;
        assert_no_connection(&target);
    });
}

#[test]
#[ignore = "needs root and netns"]
fn a_hairpin_through_a_dnat_is_refused() {
    let ns = veth_netns("own-hairpin", &[OWN]);
    block_on_in(&ns, || async {
        // The concentrator listens on its private address 11.0.0.1; the provider's
        // 1:1 NAT maps the public 11.0.0.9 to it (here an nft DNAT on output).
        // Without public_address (the control) the request loops back into the
        // concentrator through the DNAT.
        let server = start(listening_on("11.0.0.1:0", &[])).await;
        let listen = server.addr;
        ns.nft(&format!(
            "table ip hairpin {{\n chain out {{\n  type nat hook output priority -100;\n  \
             ip daddr 11.0.0.9 tcp dport {port} dnat to 11.0.0.1:{port}\n }}\n}}\n",
            port = listen.port()
        ));
        let public = std::net::SocketAddr::new(ip("11.0.0.9"), listen.port());
        let first = home_connect(public);
        let (_looped, code) = request(listen, &first).await;
        assert_eq!(
            code, None,
            "the control: the hairpin reaches the concentrator"
        );

        // The operator lists the public address: the same request is refused.
        let summary = server
            .handle
            .reload(listening_on("11.0.0.1:0", &["11.0.0.9"]));
        assert!(
            server.handle.own_addresses().contains(&ip("11.0.0.9")),
            "{summary}"
        );
        let again = home_connect(public);
        let (_, code) = request(listen, &again).await;
        assert_eq!(code, Some(ErrorCode::NotAuthorized));
        drop(_looped);
        server.stop().await;
    });
}
