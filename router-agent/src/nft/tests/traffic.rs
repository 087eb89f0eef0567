//! A real redirect through the table: a client namespace and a router namespace joined by
//! a veth pair. The router has the table with `lan_interfaces = [lan0]` and a listener on
//! the redirect port. The accepted socket's local address tells whether a connection was
//! redirected (the router's LAN address) or reached its own destination (bypassed).
//! A second test adds an fw4-like `inet fw4` table with a `dstnat` port forward, to show
//! the two coexist. A third keeps one redirected connection busy across fail-open and
//! back: it must neither stall nor be reset (nothing else in the router namespace uses
//! conntrack, so this also checks that the table keeps conntrack running by itself).
//!
//! ```text
//! client ns: cl0 192.168.50.2/24 2001:db8:50::2/64 ── veth ── router ns: lan0 .1 / ::1
//!                                                               lo 198.51.100.1 (bypassed)
//!                                                               forwarding on, no route out
//! ```

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::netns::{require_root_and_nft, wait_until, NetNs};
use crate::nft::{NftTable, RedirectSpec};

const PORT: u16 = 4851;
const TIMEOUT: Duration = Duration::from_secs(5);

fn spec(redirect: bool) -> RedirectSpec {
    RedirectSpec {
        table: "mpbond".into(),
        lan_interfaces: vec!["lan0".into()],
        port: PORT,
        bypass_dst: vec!["198.51.100.0/24".parse().expect("net")],
        bypass_src: vec![],
        redirect,
        udp: None,
        bypass_names: false,
    }
}

/// The client and router namespaces (fails the test without root, `ip` and `nft`).
fn topology() -> (NetNs, NetNs) {
    require_root_and_nft();
    let client = NetNs::new();
    let router = NetNs::new();
    router.ok(&[
        "ip",
        "link",
        "add",
        "lan0",
        "type",
        "veth",
        "peer",
        "name",
        "cl0",
        "netns",
        client.name(),
    ]);
    for cmd in [
        "ip link set lo up",
        "ip link set lan0 up",
        "ip addr add 192.168.50.1/24 dev lan0",
        "ip -6 addr add 2001:db8:50::1/64 dev lan0 nodad",
        "ip addr add 198.51.100.1/32 dev lo",
        // Routes what is not redirected; with no route out, the client gets an ICMP error.
        "sysctl -qw net.ipv4.ip_forward=1",
    ] {
        router.ok(&cmd.split(' ').collect::<Vec<_>>());
    }
    for cmd in [
        "ip link set lo up",
        "ip link set cl0 up",
        "ip addr add 192.168.50.2/24 dev cl0",
        "ip -6 addr add 2001:db8:50::2/64 dev cl0 nodad",
        "ip route add default via 192.168.50.1",
        "ip -6 route add default via 2001:db8:50::1",
    ] {
        client.ok(&cmd.split(' ').collect::<Vec<_>>());
    }
    (client, router)
}

/// Wait up to [`TIMEOUT`] for one connection on the nonblocking `listener`.
fn accept_within(listener: &TcpListener) -> Option<TcpStream> {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut pfd, 1, TIMEOUT.as_millis() as libc::c_int) };
    if ready != 1 {
        return None;
    }
    listener.accept().ok().map(|(stream, _)| stream)
}

/// Wait for one connection on `listener` and return the address it was accepted on.
fn accepted_on(listener: &TcpListener) -> Option<SocketAddr> {
    let local = accept_within(listener)?.local_addr().ok()?;
    Some(SocketAddr::new(local.ip().to_canonical(), local.port()))
}

/// The next connection on `listener` was accepted on `ip`, port [`PORT`].
#[track_caller]
fn assert_accepted_on(listener: &TcpListener, ip: &str) {
    let ip: IpAddr = ip.parse().expect("test address");
    assert_eq!(accepted_on(listener), Some(SocketAddr::new(ip, PORT)));
}

/// In the router: our table from `spec(true)` and a nonblocking dual-stack listener on
/// the redirect port.
fn redirect_table_and_listener(router: &NetNs) -> (NftTable, TcpListener) {
    router.run(|| {
        let listener = TcpListener::bind(("::", PORT)).expect("dual-stack listener");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        (NftTable::create(&spec(true)).expect("create"), listener)
    })
}

fn connect_from(client: &NetNs, dest: &str) -> std::io::Result<TcpStream> {
    let dest: SocketAddr = dest.parse().expect("test address");
    client.run(|| TcpStream::connect_timeout(&dest, TIMEOUT))
}

#[test]
#[ignore = "needs root, ip and nft"]
fn lan_tcp_is_redirected_and_bypasses_are_not() {
    let (client, router) = topology();
    let (mut table, listener) = redirect_table_and_listener(&router);
    let _c = connect_from(&client, "203.0.113.10:80").expect("redirected v4 connect");
    assert_accepted_on(&listener, "192.168.50.1");

    let _c = connect_from(&client, "[2001:db8:200::10]:443").expect("redirected v6 connect");
    assert_accepted_on(&listener, "2001:db8:50::1");

    let _c = connect_from(&client, "198.51.100.1:4851").expect("bypassed connect");
    assert_accepted_on(&listener, "198.51.100.1");

    // Fail open: nothing is redirected; the router does not forward, so the connect fails.
    table.apply(&spec(false)).expect("fail open");
    assert!(
        connect_from(&client, "203.0.113.10:80").is_err(),
        "still redirected after fail-open"
    );

    table.apply(&spec(true)).expect("redirect again");
    let _c = connect_from(&client, "203.0.113.10:80").expect("redirected again");
    assert_accepted_on(&listener, "192.168.50.1");
}

/// fw4's `dstnat` chain (priority dstnat) still handles what we leave alone, and our
/// table changes nothing in fw4's.
#[test]
#[ignore = "needs root, ip and nft"]
fn fw4_dstnat_still_sees_what_we_leave_alone() {
    let (client, router) = topology();
    router.ok(&["nft", "add", "table", "inet", "fw4"]);
    let chain = "{ type nat hook prerouting priority dstnat; policy accept; }";
    router.ok(&["nft", "add", "chain", "inet", "fw4", "dstnat", chain]);
    let rule = "iifname lan0 tcp dport 8080 dnat ip to 198.51.100.1:4851";
    router.ok(&["nft", "add", "rule", "inet", "fw4", "dstnat", rule]);
    let fw4_before = router.ok(&["nft", "list", "table", "inet", "fw4"]);

    let (_table, listener) = redirect_table_and_listener(&router);
    // Bypassed by us, port-forwarded by "fw4".
    let _c = connect_from(&client, "198.51.100.2:8080").expect("fw4 dnat connect");
    assert_accepted_on(&listener, "198.51.100.1");
    // Redirected by us first: fw4's dnat does not apply on top.
    let _c = connect_from(&client, "203.0.113.10:8080").expect("redirected connect");
    assert_accepted_on(&listener, "192.168.50.1");

    let fw4_after = router.ok(&["nft", "list", "table", "inet", "fw4"]);
    assert_eq!(fw4_before, fw4_after);
}

/// Send `msg` on `a`, read it on `b`, then the other way: fails on a reset or a stall.
fn round_trip(a: &TcpStream, b: &TcpStream, msg: &[u8]) -> std::io::Result<()> {
    use std::io::{Read, Write};
    for (mut from, mut to) in [(a, b), (b, a)] {
        from.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        to.read_exact(&mut got)?;
        if got != msg {
            return Err(std::io::Error::other("data mismatch"));
        }
    }
    Ok(())
}

/// Stream from `far` to `near` (a download) while `during` runs, then for `window` (the
/// time nf_tables takes to free replaced rules, tens of ms, fits well in it) and until
/// `near` has read another `after` bytes; returns the bytes read, or the reader's error.
/// Both streams stay open and empty for more.
fn download_while(
    near: &TcpStream,
    far: &TcpStream,
    after: u64,
    window: Duration,
    during: impl FnOnce(),
) -> std::io::Result<u64> {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let done = AtomicBool::new(false);
    let read = AtomicU64::new(0);
    let written = AtomicU64::new(u64::MAX);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let chunk = [0x5au8; 16 * 1024];
            let mut far = far;
            let mut sent = 0u64;
            let mut result = Ok(());
            while !done.load(Relaxed) && result.is_ok() {
                result = far.write_all(&chunk);
                sent += chunk.len() as u64;
            }
            written.store(sent, Relaxed);
            result
        });
        let reader = s.spawn(|| {
            let mut buf = [0u8; 64 * 1024];
            let mut near = near;
            // Short reads, so that it sees `written` once the writer has stopped.
            near.set_read_timeout(Some(Duration::from_millis(20)))?;
            let mut idle_since = std::time::Instant::now();
            while read.load(Relaxed) < written.load(Relaxed) {
                match near.read(&mut buf) {
                    Ok(0) => return Err(std::io::Error::other("early EOF")),
                    Ok(n) => {
                        read.fetch_add(n as u64, Relaxed);
                        idle_since = std::time::Instant::now();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if idle_since.elapsed() >= TIMEOUT {
                            return Err(e);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            near.set_read_timeout(Some(TIMEOUT))?;
            Ok(read.load(Relaxed))
        });
        let flowing = |from: u64| wait_until(TIMEOUT, || read.load(Relaxed) >= from + after);
        let ok = flowing(0);
        during();
        let (mark, since) = (read.load(Relaxed), std::time::Instant::now());
        let ok = ok && flowing(mark) && wait_until(TIMEOUT, || since.elapsed() >= window);
        let ok = ok && flowing(read.load(Relaxed));
        done.store(true, Relaxed);
        let writer = writer.join();
        let result = reader
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("reader panicked")));
        writer.unwrap_or_else(|_| Err(std::io::Error::other("writer panicked")))?;
        match result {
            Ok(n) if !ok => Err(std::io::Error::other(format!("download stalled at {n}"))),
            other => other,
        }
    })
}

/// A connection redirected before a fail-open keeps working through it and through the
/// redirect coming back: the kernel must keep translating it (its conntrack entry and NAT
/// binding), although new connections are no longer redirected.
#[test]
#[ignore = "needs root, ip and nft"]
fn established_redirected_connection_survives_fail_open() {
    let (client, router) = topology();
    let (mut table, listener) = redirect_table_and_listener(&router);
    let near = connect_from(&client, "203.0.113.10:80").expect("redirected connect");
    let far = accept_within(&listener).expect("redirected connection not accepted");
    far.set_nonblocking(false).expect("blocking stream");
    for s in [&near, &far] {
        s.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
        s.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
    }
    round_trip(&near, &far, b"before").expect("data before fail-open");

    // nf_tables frees the replaced rules after the commit, so watch the connection for a
    // while after each switch, with a download in flight.
    const MIB: u64 = 1 << 20;
    let window = Duration::from_millis(300);
    let down = download_while(&near, &far, MIB, window, || {
        table.apply(&spec(false)).expect("fail open")
    });
    assert!(down.is_ok(), "download across fail-open: {down:?}");
    round_trip(&near, &far, b"during fail-open").expect("data after fail-open");
    assert!(
        connect_from(&client, "203.0.113.10:80").is_err(),
        "a new connection is still redirected after fail-open"
    );

    let down = download_while(&near, &far, MIB, window, || {
        table.apply(&spec(true)).expect("redirect again")
    });
    assert!(down.is_ok(), "download across redirect again: {down:?}");
    round_trip(&near, &far, b"redirect back").expect("data after redirect again");
}
