//! The destination's last bytes and the end of the stream leave the concentrator in one
//! segment (issue 11): the segment that carries the answer's last byte toward the client
//! also carries MPTCP's DATA_FIN, so losing the separate pure-ACK DATA_FIN costs nothing.
//!
//! Each test runs in a namespace of its own with only `lo`: the concentrator, an MPTCP
//! client, and a destination that writes its answer's last bytes and the end of stream
//! in one segment (`TCP_CORK`, write, `shutdown`). A
//! packet socket on `lo`, opened before the connection, keeps every packet; once the
//! client has read to the end, the packets toward the client are in its queue and are
//! read without waiting. Needs root: `#[ignore = "needs root and netns"]`.

mod common;

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;

use common::*;
use mpbond_relay::connect::connect_with;
use mpbond_testkit::Netns;
use tokio::io::AsyncReadExt;

/// MPTCP's TCP option kind, and its DSS subtype and flags (RFC 8684, 3.3).
const MPTCP_OPTION: u8 = 30;
const DSS: u8 = 2;
const DSS_MAPPING: u8 = 0x04;
const DSS_DATA_FIN: u8 = 0x10;

/// One TCP segment toward the client, as the packet socket saw it arrive.
#[derive(Debug)]
struct Segment {
    payload: usize,
    /// A DSS option with a mapping and DATA_FIN set.
    data_fin: bool,
}

/// An `AF_PACKET` socket on `lo` of the current namespace, receiving every packet as an
/// IP packet.
fn packet_socket() -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(proto)) };
    assert!(
        fd >= 0,
        "packet socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a new, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed sockaddr_ll is valid; the fields set below make it a bind to lo.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    // SAFETY: a NUL-terminated name.
    addr.sll_ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) } as i32;
    // SAFETY: addr is a sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind to lo: {}", std::io::Error::last_os_error());
    // Room for every packet of the test: loopback segments are up to 64 KiB.
    let size: libc::c_int = 32 << 20;
    // SAFETY: an int option of its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::addr_of!(size).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
    fd
}

/// Every queued packet that arrived (not the copy seen leaving) from `from` port to
/// `to` port, without waiting.
fn segments(fd: &OwnedFd, from: u16, to: u16) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: a zeroed sockaddr_ll is valid for recvfrom to fill.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: buf and addr are valid for the sizes given. A longer packet is cut to
        // `buf`, which holds its headers; its length comes from the IP header.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                std::ptr::addr_of_mut!(addr).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let error = std::io::Error::last_os_error();
            assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock, "{error}");
            return out;
        }
        if addr.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        if let Some(segment) = parse(&buf[..n as usize], from, to) {
            out.push(segment);
        }
    }
}

/// An IPv4 TCP segment from `from` port to `to` port, headers only.
fn parse(ip: &[u8], from: u16, to: u16) -> Option<Segment> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != libc::IPPROTO_TCP as u8 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let tcp = ip.get(ihl..)?;
    if tcp.len() < 20 {
        return None;
    }
    let (sport, dport) = (
        u16::from_be_bytes([tcp[0], tcp[1]]),
        u16::from_be_bytes([tcp[2], tcp[3]]),
    );
    if sport != from || dport != to {
        return None;
    }
    let doff = usize::from(tcp[12] >> 4) * 4;
    let mut options = tcp.get(20..doff)?;
    let mut data_fin = false;
    while let [kind, rest @ ..] = options {
        match *kind {
            0 => break,
            1 => options = rest,
            kind => {
                let len = usize::from(*rest.first()?);
                let option = options.get(..len)?;
                if kind == MPTCP_OPTION && len >= 4 && option[2] >> 4 == DSS {
                    let flags = option[3];
                    data_fin = flags & DSS_MAPPING != 0 && flags & DSS_DATA_FIN != 0;
                }
                options = options.get(len.max(2)..)?;
            }
        }
    }
    Some(Segment {
        payload: total - ihl - doff,
        data_fin,
    })
}

/// A destination that answers one connection with `first`, then, once `go` says the
/// client has it all, `last` and the end of stream in one segment (corked write, then
/// `shutdown`), as a server answering a small request often does.
fn answering_target(first: Vec<u8>, last: Vec<u8>, go: mpsc::Receiver<()>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        if !first.is_empty() {
            s.write_all(&first).expect("first part");
            if go.recv().is_err() {
                return;
            }
        }
        socket2::SockRef::from(&s).set_tcp_cork(true).expect("cork");
        s.write_all(&last).expect("last part");
        s.shutdown(Shutdown::Write).expect("shutdown");
        // Hold the socket until the concentrator passes on the client's end.
        let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
    });
    addr
}

/// Relay an answer of `first` then `last` bytes through the concentrator to an MPTCP
/// client; return the segments toward the client after it read the whole answer and
/// the end.
fn relayed_answer(first: usize, last: usize) -> Vec<Segment> {
    let ns = Netns::with_lo("lastseg");
    block_on_in(&ns, || async move {
        let mptcp = std::fs::read_to_string("/proc/sys/net/mptcp/enabled").expect("mptcp sysctl");
        assert_eq!(mptcp.trim(), "1", "MPTCP is off in a new namespace");
        let capture = packet_socket();
        let server = start(home_config()).await;
        let answer = payload(first + last);
        let (go, gone) = mpsc::channel();
        let target = answering_target(answer[..first].to_vec(), answer[first..].to_vec(), gone);
        let mut c = connect_with(server.addr, &home_connect(target), &mptcp_client(false))
            .await
            .expect("connect");
        assert!(c.mptcp, "the client's connection fell back to TCP");
        assert_eq!(read_reply(&mut c.stream).await.error_code(), None);
        let mut got = vec![0; first];
        c.stream.read_exact(&mut got).await.expect("the first part");
        // The concentrator has relayed the first part and waits for more: the last part
        // and the end arrive together, as one new event.
        go.send(()).expect("the destination is gone");
        c.stream
            .read_to_end(&mut got)
            .await
            .expect("read to the end");
        assert!(got == answer, "relayed {} bytes, not the answer", got.len());
        let client = c.stream.local_addr().expect("client addr").port();
        let found = segments(&capture, server.addr.port(), client);
        drop(c);
        server.stop().await;
        found
    })
}

/// The segment that carries the last byte toward the client also carries the DATA_FIN.
fn assert_last_bytes_carry_the_data_fin(found: &[Segment]) {
    let last = found
        .iter()
        .rev()
        .find(|s| s.payload > 0)
        .unwrap_or_else(|| panic!("no data segment toward the client: {found:?}"));
    assert!(
        last.data_fin,
        "the last data segment has no DATA_FIN; segments toward the client: {found:?}"
    );
}

/// A one-segment answer (case 13's small request: 1000 bytes): the concentrator's lead
/// (Convert reply and the first bytes in one write) sees the end with the bytes.
#[test]
#[ignore = "needs root and netns"]
fn a_small_answer_and_its_data_fin_leave_in_one_segment() {
    let found = relayed_answer(0, 1000);
    assert_last_bytes_carry_the_data_fin(&found);
}

/// A longer answer whose last bytes come after a pause, with the end: the pump, which
/// splices them, sees the end (`EPOLLRDHUP` with the wake-up) before they go out.
#[test]
#[ignore = "needs root and netns"]
fn a_spliced_answer_ends_with_its_data_fin() {
    let found = relayed_answer(300_000, 1000);
    assert_last_bytes_carry_the_data_fin(&found);
}
