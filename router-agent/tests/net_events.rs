//! mptcp_pm events: a subflow over a second path, set up through `Kernel`, shows up as
//! `SUB_ESTABLISHED` on the event stream.
//!
//! ```text
//!   cli                                srv
//!   c1 10.1.1.1/24 ------------------- s1 10.1.1.2/24   (MPTCP listener on 10.1.1.2)
//!   c2 10.1.2.1/24 ------------------- s2 10.1.2.2/24
//! ```
//! The client connects to 10.1.1.2 over c1. Its endpoint 10.1.2.1 (dev c2, subflow),
//! with an owned table and rule that send 10.1.2.1's traffic via c2, makes the kernel
//! open a second subflow.

mod net_ns;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use futures::StreamExt;
use mpbond_agent::model::netops::{Endpoint, Limits, NetOp, Route, Rule};
use mpbond_agent::net::backend::NetBackend;
use mpbond_agent::net::mptcp_pm::{PmEvent, PmEventKind};
use mpbond_agent::net::{sysctl, Kernel};
use net_ns::{ifindex, ownership, Netns};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const LIMIT: Duration = Duration::from_secs(30);

fn server(ready: mpsc::Sender<()>) -> std::io::Result<Vec<u8>> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP))?;
    sock.set_reuse_address(true)?;
    let addr: SocketAddr = "10.1.1.2:4850".parse().map_err(std::io::Error::other)?;
    sock.bind(&SockAddr::from(addr))?;
    sock.listen(4)?;
    let _ = ready.send(());
    let (conn, _) = sock.accept()?;
    conn.set_read_timeout(Some(LIMIT))?;
    let mut stream = std::net::TcpStream::from(conn);
    let mut got = vec![0u8; 5];
    stream.read_exact(&mut got)?;
    stream.write_all(b"world")?;
    stream.read_to_end(&mut got)?;
    Ok(got)
}

#[test]
#[ignore = "needs root and netns"]
fn subflow_on_the_second_path_is_reported() {
    let cli = Netns::new();
    let srv = Netns::new();
    cli.veth_to("c1", &srv, "s1");
    cli.veth_to("c2", &srv, "s2");
    cli.ip(&["addr", "add", "10.1.1.1/24", "dev", "c1"]);
    cli.ip(&["addr", "add", "10.1.2.1/24", "dev", "c2"]);
    srv.ip(&["addr", "add", "10.1.1.2/24", "dev", "s1"]);
    srv.ip(&["addr", "add", "10.1.2.2/24", "dev", "s2"]);
    srv.ip(&[
        "mptcp",
        "limits",
        "set",
        "subflows",
        "4",
        "add_addr_accepted",
        "0",
    ]);

    let (ready_tx, ready_rx) = mpsc::channel();
    let server = srv.spawn(move || server(ready_tx));
    ready_rx.recv_timeout(LIMIT).expect("server listening");

    let events = cli.run(LIMIT, || async {
        let mut kernel = Kernel::connect(ownership()).await.expect("connect");
        let c2 = ifindex("c2");
        sysctl::set_rp_filter_loose("c2").expect("rp_filter");
        let ops = [
            NetOp::SetLimits(Limits {
                subflows: 4,
                add_addr_accepted: 0,
            }),
            NetOp::AddRoute(Route {
                table: 2000,
                dst: "10.1.1.0/24".parse().expect("net"),
                gateway: Some("10.1.2.2".parse().expect("ip")),
                oif: c2,
                prefsrc: None,
                metric: 1024,
            }),
            NetOp::AddRule(Rule {
                priority: 2000,
                from: "10.1.2.1/32".parse().expect("net"),
                table: 2000,
            }),
            NetOp::AddEndpoint(Endpoint {
                id: 1,
                addr: "10.1.2.1".parse().expect("ip"),
                ifindex: c2,
                backup: false,
            }),
        ];
        for op in &ops {
            kernel
                .apply(op)
                .await
                .unwrap_or_else(|e| panic!("{op:?}: {e}"));
        }
        let mut events = kernel.pm().events().await.expect("subscribe");

        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP)).expect("mptcp");
        let dest: SocketAddr = "10.1.1.2:4850".parse().expect("addr");
        sock.connect(&SockAddr::from(dest)).expect("connect");
        let mut stream = std::net::TcpStream::from(sock);
        stream.write_all(b"hello").expect("write");
        let mut reply = [0u8; 5];
        stream.set_read_timeout(Some(LIMIT)).expect("timeout");
        stream.read_exact(&mut reply).expect("reply");

        let mut seen: Vec<PmEvent> = Vec::new();
        while !seen.iter().any(|e| e.kind == PmEventKind::SubEstablished) {
            let ev = events.next().await.expect("event stream open");
            seen.push(ev);
        }
        drop(stream);
        let token = seen.last().map(|e| e.token).expect("an event");
        while !seen
            .iter()
            .any(|e| e.kind == PmEventKind::Closed && e.token == token)
        {
            seen.push(events.next().await.expect("event stream open"));
        }
        kernel.cleanup().await.expect("cleanup");
        (seen, c2)
    });
    let got = server.join().expect("server thread").expect("server io");
    assert_eq!(got, b"hello");

    let (seen, c2) = events;
    let sub = seen
        .iter()
        .find(|e| e.kind == PmEventKind::SubEstablished)
        .expect("sub established");
    assert_eq!(sub.saddr, Some("10.1.2.1".parse().expect("ip")));
    assert_eq!(sub.daddr, Some("10.1.1.2".parse().expect("ip")));
    assert_eq!(sub.dport, Some(4850));
    assert_eq!(
        (sub.ifindex, sub.loc_id, sub.backup),
        (Some(c2), Some(1), Some(false))
    );
    let est = seen.iter().find(|e| e.kind == PmEventKind::Established);
    assert!(
        est.is_some_and(
            |e| e.token == sub.token && e.saddr == Some("10.1.1.1".parse().expect("ip"))
        ),
        "{seen:?}"
    );
}
