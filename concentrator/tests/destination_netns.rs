//! IPv6 forms of refused addresses, end to end (issue 19, item 2): a destination server
//! listens on each form in a namespace of its own, routed from the concentrator's
//! namespace over a veth pair, so the forms are neither local nor own addresses of the
//! concentrator. An authenticated client written independently of our crates
//! (`independent/convert_client.py`: Python's `struct`, `hmac`, `hashlib`) asks for each:
//!
//! * with the default policy every request gets Not Authorized (32) and no server sees
//!   a connection;
//! * with `policy.allow` opening each form, the same requests are served and every
//!   server sees its connection: the forms are routed, so the refusal above is the
//!   policy's doing.
//!
//! Needs root, `ip` and `python3`: `#[ignore = "needs root and netns"]`.

mod common;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;

use common::*;
use ipnet::IpNet;
use mpbond_testkit::{require_tools, Netns};

/// The forms the audit connected through the concentrator, and more of the same kind.
const FORMS: [&str; 12] = [
    "64:ff9b::a9fe:a9fe",        // NAT64 of 169.254.169.254 (cloud metadata)
    "64:ff9b::7f00:1",           // NAT64 of 127.0.0.1
    "64:ff9b:1::7f00:1",         // NAT64 local use of 127.0.0.1
    "64:ff9b:1:2::a00:1",        // NAT64 local use, not the /96 layout
    "::ffff:0:a00:2",            // IPv4-translated 10.0.0.2
    "::7f00:1",                  // IPv4-compatible 127.0.0.1
    "2002:7f00:1::",             // 6to4 of 127.0.0.1
    "2001:0:808:808::80ff:fffe", // Teredo, client 127.0.0.1
    "fec0::1",                   // site-local
    "100::1",                    // discard-only
    "5f00::1",                   // SRv6 SID
    "3fff::1",                   // documentation (RFC 9637)
];

const CONC_V6: &str = "fd00:19::1";
const DEST_V6: &str = "fd00:19::2";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/independent/convert_client.py")
}

/// Run the independent client inside the namespace `ns`, asking for each of `dests` in
/// turn, and return the replies as hex, in order.
fn ask(ns: &str, conc: SocketAddr, dests: &[SocketAddr]) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3"])
        .arg(script())
        .args([conc.ip().to_string(), conc.port().to_string()])
        .args(["home".to_owned(), key(1).to_hex()])
        .args(
            dests
                .iter()
                .flat_map(|d| [d.ip().to_string(), d.port().to_string()]),
        )
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "convert_client.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(replies.len(), dests.len(), "a reply per destination");
    replies
}

/// Two namespaces joined by a veth pair: the concentrator's, and the destinations'
/// with every form on its `lo`, routed from the first.
fn topology() -> (Netns, Netns) {
    let conc = Netns::with_lo("dest-conc");
    let dest = Netns::with_lo("dest-srv");
    conc.veth("v0", &dest, "v1");
    conc.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{CONC_V6}/64"),
        "dev",
        "v0",
        "nodad",
    ]);
    dest.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{DEST_V6}/64"),
        "dev",
        "v1",
        "nodad",
    ]);
    for form in FORMS {
        dest.ip(&["-6", "addr", "add", &format!("{form}/128"), "dev", "lo"]);
        conc.ip(&["-6", "route", "add", &format!("{form}/128"), "via", DEST_V6]);
    }
    (conc, dest)
}

/// One listener per form, inside `dest`.
fn servers(dest: &Netns) -> Vec<TcpListener> {
    dest.run(|| {
        FORMS
            .iter()
            .map(|form| {
                let ip: IpAddr = form.parse().unwrap();
                let l = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {form}: {e}"));
                l.set_nonblocking(true).unwrap();
                l
            })
            .collect()
    })
}

/// Start a concentrator in `conc` that allows `allow`, ask it for every server with the
/// independent client, and return the replies in order.
fn ask_all(conc: &Netns, allow: Vec<IpNet>, servers: &[TcpListener]) -> Vec<String> {
    // No drain: the relays of allowed requests (to servers that never accept) end at once.
    let mut config = config(
        "192.0.2.99/32",
        "drain_timeout_secs = 0",
        &client_toml("home", &key(1)),
    );
    config.policy.allow = allow;
    let dests: Vec<SocketAddr> = servers.iter().map(|l| l.local_addr().unwrap()).collect();
    let name = conc.name().to_owned();
    block_on_in(conc, || async {
        let server = start(config).await;
        let addr = server.addr;
        let replies = tokio::task::spawn_blocking(move || ask(&name, addr, &dests))
            .await
            .expect("client thread");
        server.stop().await;
        replies
    })
}

/// Whether `l` has a connection waiting.
fn connected(l: &TcpListener) -> bool {
    match l.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept: {e}"),
    }
}

const NOT_AUTHORIZED: &str = "010222631e012000";
const OK: &str = "01012263";

#[test]
#[ignore = "needs root and netns"]
fn ipv6_forms_of_refused_addresses_reach_nothing() {
    require_tools(&["ip", "python3"]);
    let (conc, dest) = topology();
    let servers = servers(&dest);

    let replies = ask_all(&conc, Vec::new(), &servers);
    for ((form, reply), server) in FORMS.iter().zip(&replies).zip(&servers) {
        assert_eq!(reply, NOT_AUTHORIZED, "{form}: the policy let it through");
        assert!(!connected(server), "{form}: the server saw a connection");
    }

    // Opened deliberately, every form is served: they are routed, and `allow` works.
    let allow = FORMS
        .iter()
        .map(|form| IpNet::from(form.parse::<IpAddr>().unwrap()))
        .collect();
    let replies = ask_all(&conc, allow, &servers);
    for ((form, reply), server) in FORMS.iter().zip(&replies).zip(&servers) {
        assert_eq!(reply, OK, "{form}: not served when allowed");
        assert!(connected(server), "{form}: allowed, but no connection");
    }
}
