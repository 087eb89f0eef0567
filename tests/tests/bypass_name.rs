//! Bypass by name, end to end in the namespace bed: dnsmasq in the router (Debian's
//! dnsmasq-base, built with nftset) is the LAN's resolver and reads the agent's `nftset=`
//! file; a resolver in the internet namespace answers for the test names. A LAN client
//! that resolves a listed name through the router reaches the server from the router's
//! WAN address (NAT), over TCP and UDP, also after the name's address changed; a name
//! not on the list still goes through the concentrator (the server sees the VPS). The
//! same over IPv6: the listed name's AAAA record is reached from the WAN's IPv6 address
//! (the bed's router masquerades IPv6 as IPv4), the unlisted name's from the VPS's.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mpbond;
use mpbond_tests::proc::{self, ChildGuard};
use mpbond_tests::topology::{
    wan_router_v4, wan_router_v6, LAN_ROUTER_V4, SERVER_V4, SERVER_V6, VPS_V4, VPS_V6,
};
use mpbond_tests::{Daemon, Fetch, Node, TestBed};

/// On the bypass list.
const LISTED: &str = "direct.test";
/// Not on it.
const UNLISTED: &str = "bonded.test";
/// The listed name's address before and after the change, and the unlisted name's.
const FIRST: Ipv4Addr = SERVER_V4;
const SECOND: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
const OTHER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 12);
/// The listed and the unlisted name's AAAA records.
const FIRST_V6: Ipv6Addr = SERVER_V6;
const OTHER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 0x12);
const TCP_PORT: u16 = 5001;
const UDP_PORT: u16 = 7007;
const LIMIT: Duration = Duration::from_secs(20);

/// A dnsmasq in `node` listening on `listen`, with `args` added.
fn dnsmasq(bed: &TestBed, node: Node, tag: &str, listen: Ipv4Addr, args: &[String]) -> ChildGuard {
    let log = bed.dir().join(format!("dnsmasq-{tag}.log"));
    let mut all: Vec<String> = [
        "dnsmasq",
        "--no-daemon",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--port=53",
        "--bind-interfaces",
        "--user=root",
        "--log-queries",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.push(format!("--listen-address={listen}"));
    all.push(format!("--log-facility={}", log.display()));
    all.push(format!(
        "--pid-file={}",
        bed.dir().join(format!("dnsmasq-{tag}.pid")).display()
    ));
    all.extend(args.iter().cloned());
    let argv: Vec<&str> = all.iter().map(String::as_str).collect();
    let child = bed
        .spawn(node, &argv)
        .expect("dnsmasq runs (tests/setup.sh installs it)");
    let bound = proc::wait_until(LIMIT, || {
        bed.exec(node, "ss -Hlun sport = :53")
            .is_ok_and(|out| out.contains(&listen.to_string()))
    });
    assert!(bound, "dnsmasq {tag} did not bind {listen}:53");
    child
}

/// The internet's resolver: `LISTED` at `listed` and [`FIRST_V6`], `UNLISTED` at
/// [`OTHER`] and [`OTHER_V6`], TTL 1 s.
fn upstream(bed: &TestBed, listed: Ipv4Addr) -> ChildGuard {
    let args = [
        format!("--address=/{LISTED}/{listed}"),
        format!("--address=/{LISTED}/{FIRST_V6}"),
        format!("--address=/{UNLISTED}/{OTHER}"),
        format!("--address=/{UNLISTED}/{OTHER_V6}"),
        "--local-ttl=1".to_owned(),
    ];
    dnsmasq(bed, Node::Server, "upstream", SERVER_V4, &args)
}

/// `name`'s A record as the LAN client gets it from the router.
fn resolve(bed: &TestBed, name: &str) -> String {
    resolve_type(bed, name, "A")
}

/// `name`'s record of `kind` (`A`, `AAAA`) as the LAN client gets it from the router.
fn resolve_type(bed: &TestBed, name: &str, kind: &str) -> String {
    let cmd = format!("dig +short +time=2 +tries=3 @{LAN_ROUTER_V4} {name} {kind}");
    bed.exec(Node::Lan, &cmd)
        .expect("dig runs (tests/setup.sh installs dnsutils)")
        .trim()
        .to_owned()
}

/// The agent config with bypass by name for [`LISTED`], its dnsmasq file in `conf_dir`.
fn with_names(bed: &TestBed, conf_dir: &Path) -> String {
    let toml = bed.agent_config().to_toml();
    let plain = "[bypass]\ndestinations = []\nsources = []\n";
    assert!(
        toml.contains(plain),
        "the bed's config changed shape:\n{toml}"
    );
    let names = format!(
        "{plain}domains = [\"{LISTED}\"]\ndnsmasq_conf = \"{}\"\n",
        conf_dir.join("mpbond-bypass.conf").display()
    );
    toml.replace(plain, &names)
}

fn names_status(bed: &TestBed) -> serde_json::Value {
    bed.agent_status().expect("agent status")["bypass_names"].clone()
}

/// Where a TCP download and a UDP echo to `ip` come from, as the server sees them.
fn sources_seen(bed: &TestBed, ip: impl Into<IpAddr>) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let ip: IpAddr = ip.into();
    let tcp_at = SocketAddr::new(ip, TCP_PORT);
    let server = bed.serve(Node::Server, tcp_at, false).expect("tcp server");
    let fetch = Fetch::get(tcp_at, 200_000).timeout(LIMIT);
    let report = bed.fetch(Node::Lan, &fetch).expect("fetch runs");
    assert!(report.ok, "the download from {tcp_at} failed: {report:?}");
    let done = server.wait_for(LIMIT, |events| events.iter().any(|e| e.event == "accept"));
    assert!(done, "the server at {tcp_at} saw no connection");
    let tcp: Vec<IpAddr> = server
        .events()
        .iter()
        .filter(|e| e.event == "accept")
        .filter_map(|e| e.addr.parse::<SocketAddr>().ok())
        .map(|a| a.ip())
        .collect();
    server.stop();

    let udp_at = SocketAddr::new(ip, UDP_PORT);
    let echo = bed
        .udp_echo_server(Node::Server, udp_at)
        .expect("udp server");
    let report = bed.udp_echo(Node::Lan, udp_at, 20).expect("udp-echo runs");
    assert!(
        report.received >= 18,
        "echoes from {udp_at} lost: {report:?}"
    );
    let udp = echo.peers().iter().map(SocketAddr::ip).collect();
    (tcp, udp)
}

fn assert_direct(bed: &TestBed, ip: Ipv4Addr, agent: &Daemon) {
    let (tcp, udp) = sources_seen(bed, ip);
    let wan = IpAddr::from(wan_router_v4(1));
    println!("{ip}: tcp from {tcp:?}, udp from {udp:?}");
    let why = format!("{LISTED} at {ip} must leave by NAT\n{}", agent.log_tail(20));
    assert_eq!(tcp, [wan], "TCP: {why}");
    assert_eq!(udp, [wan], "UDP: {why}");
}

#[test]
#[ignore = "needs root and netns"]
fn listed_names_leave_by_nat_also_after_their_address_changes() {
    let (bed, _conc, mut agent) = mpbond(&[40, 60]);
    for ip in [SECOND, OTHER] {
        bed.exec(Node::Server, &format!("ip addr add {ip}/32 dev lo"))
            .expect("second server address");
    }
    bed.exec(
        Node::Server,
        &format!("ip -6 addr add {OTHER_V6}/128 dev lo nodad"),
    )
    .expect("second server IPv6 address");
    let mut resolver = upstream(&bed, FIRST);

    // Bypass by name comes with a reload: the companion table, then the dnsmasq file.
    let conf_dir: PathBuf = bed.dir().join("dnsmasq.d");
    agent
        .rewrite_config(&with_names(&bed, &conf_dir))
        .expect("config rewritten");
    agent.sighup().expect("SIGHUP sent");
    let active = proc::wait_until(LIMIT, || {
        names_status(&bed)["resolver_active"].as_bool() == Some(true)
    });
    assert!(
        active,
        "bypass by name is not active: {}\n{}",
        names_status(&bed),
        agent.log_tail(20)
    );
    let conf = std::fs::read_to_string(conf_dir.join("mpbond-bypass.conf")).expect("file");
    assert!(conf.contains(&format!("nftset=/{LISTED}/")), "{conf}");

    let conf_arg = format!("--conf-dir={}", conf_dir.display());
    let server_arg = format!("--server={SERVER_V4}");
    let _router_dns = dnsmasq(
        &bed,
        Node::Router,
        "router",
        LAN_ROUTER_V4,
        &[conf_arg, server_arg],
    );

    // The listed name: direct, TCP and UDP.
    assert_eq!(resolve(&bed, LISTED), FIRST.to_string());
    let status = names_status(&bed);
    println!("bypass_names status: {status}");
    assert_eq!(status["domains"], serde_json::json!([LISTED]));
    assert!(status["ipv4_addresses"].as_u64() >= Some(1), "{status}");
    assert_direct(&bed, FIRST, &agent);

    // A name not on the list: through the concentrator.
    assert_eq!(resolve(&bed, UNLISTED), OTHER.to_string());
    let (tcp, udp) = sources_seen(&bed, OTHER);
    println!("{OTHER}: tcp from {tcp:?}, udp from {udp:?}");
    assert_eq!(tcp, [IpAddr::from(VPS_V4)], "{UNLISTED} is bonded (TCP)");
    assert_eq!(udp, [IpAddr::from(VPS_V4)], "{UNLISTED} is bonded (UDP)");

    // IPv6: the listed name's AAAA record leaves by the WAN's IPv6 address, the
    // unlisted one's through the concentrator.
    assert_eq!(resolve_type(&bed, LISTED, "AAAA"), FIRST_V6.to_string());
    let status = names_status(&bed);
    assert!(status["ipv6_addresses"].as_u64() >= Some(1), "{status}");
    let (tcp, udp) = sources_seen(&bed, FIRST_V6);
    println!("{FIRST_V6}: tcp from {tcp:?}, udp from {udp:?}");
    let wan6 = IpAddr::from(wan_router_v6(1));
    let why = format!(
        "{LISTED} at {FIRST_V6} must leave by NAT\n{}",
        agent.log_tail(20)
    );
    assert_eq!(tcp, [wan6], "TCP over IPv6: {why}");
    assert_eq!(udp, [wan6], "UDP over IPv6: {why}");
    assert_eq!(resolve_type(&bed, UNLISTED, "AAAA"), OTHER_V6.to_string());
    let (tcp, udp) = sources_seen(&bed, OTHER_V6);
    println!("{OTHER_V6}: tcp from {tcp:?}, udp from {udp:?}");
    assert_eq!(
        tcp,
        [IpAddr::from(VPS_V6)],
        "{UNLISTED} is bonded (TCP, IPv6)"
    );
    assert_eq!(
        udp,
        [IpAddr::from(VPS_V6)],
        "{UNLISTED} is bonded (UDP, IPv6)"
    );

    // The listed name moves: the new address is direct too, once resolved again.
    resolver.kill();
    let _resolver = upstream(&bed, SECOND);
    let moved = proc::wait_until(LIMIT, || resolve(&bed, LISTED) == SECOND.to_string());
    assert!(moved, "the router's dnsmasq still answers the old address");
    assert_direct(&bed, SECOND, &agent);

    // At stop the agent removes the dnsmasq file and both tables.
    agent.stop(Duration::from_secs(10));
    assert!(
        !conf_dir.join("mpbond-bypass.conf").exists(),
        "the file stays"
    );
    let tables = bed.exec(Node::Router, "nft list tables").expect("nft");
    assert!(!tables.contains("mpbond"), "{tables}");
}
