//! TCP state of the sockets to one remote address, MPTCP subflows included, from one
//! `sock_diag` (inet_diag) dump with `INET_DIAG_INFO` (`struct tcp_info`).
//!
//! MPTCP subflows are TCP sockets in the kernel's TCP tables, so a TCP dump lists them
//! with their own source address (the WAN's) and TCP state. [`dump_to`] asks for the
//! established (and closing-with-data) TCP sockets of `dest`'s family and keeps those
//! whose remote end is `dest`; [`parse_dump`] is the pure parser. A blocking netlink
//! socket is used: the kernel answers a dump at once, from its own tables.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const INET_DIAG_INFO: u16 = 2;
const NLMSG_HDR: usize = 16;
const DIAG_MSG: usize = 72;
/// TCP states asked for: ESTABLISHED, FIN_WAIT1, CLOSE_WAIT (data may be in flight).
const STATES: u32 = (1 << 1) | (1 << 4) | (1 << 8);

/// One TCP socket (or MPTCP subflow) and what `tcp_info` says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSample {
    pub src: IpAddr,
    pub dst: SocketAddr,
    /// `tcpi_retransmits`: RTO retransmissions of the oldest unacknowledged segment.
    pub retransmits: u8,
    /// `tcpi_probes`: keepalive (or zero-window) probes sent and not answered.
    pub probes: u8,
    /// `tcpi_backoff`: RTO backoff exponent.
    pub backoff: u8,
    /// `tcpi_unacked`: segments sent and not acknowledged.
    pub unacked: u32,
    /// `tcpi_rtt`: smoothed RTT.
    pub rtt: Duration,
    pub since_data_sent: Duration,
    pub since_data_recv: Duration,
    pub since_ack_recv: Duration,
}

/// True for the TCP states sampled (`tcpi_state`): ESTABLISHED, FIN_WAIT1, CLOSE_WAIT.
pub fn is_sampled_state(state: u8) -> bool {
    state < 32 && STATES & (1 << state) != 0
}

/// Dump the TCP sockets whose remote end is `dest`.
pub fn dump_to(dest: SocketAddr) -> io::Result<Vec<TcpSample>> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let family = if dest.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let request = request(family as u8);
    // SAFETY: sending a buffer we own; the kernel is the default destination.
    let sent = unsafe { libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: receiving into a buffer we own, at most its length.
        let len = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if len < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        let len = usize::try_from(len).unwrap_or(0);
        if len == 0 {
            break;
        }
        match parse_dump(&buf[..len], dest, &mut out)? {
            true => break,
            false => continue,
        }
    }
    Ok(out)
}

/// The dump request: `nlmsghdr` + `inet_diag_req_v2` for TCP with `INET_DIAG_INFO`.
fn request(family: u8) -> Vec<u8> {
    let len = NLMSG_HDR + 56;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid
    m.push(family);
    m.push(libc::IPPROTO_TCP as u8);
    m.push(1 << (INET_DIAG_INFO - 1)); // idiag_ext
    m.push(0);
    m.extend_from_slice(&STATES.to_ne_bytes());
    m.resize(len, 0); // the socket id: all zero (a dump)
    m
}

/// Parse one buffer of the dump, adding the sockets to `dest` to `out`. True when the
/// dump is done.
pub fn parse_dump(buf: &[u8], dest: SocketAddr, out: &mut Vec<TcpSample>) -> io::Result<bool> {
    let mut at = 0;
    while at + NLMSG_HDR <= buf.len() {
        let len = u32_at(buf, at) as usize;
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        if len < NLMSG_HDR || at + len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad netlink length",
            ));
        }
        let body = &buf[at + NLMSG_HDR..at + len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = body
                    .get(..4)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                return Ok(true);
            }
            SOCK_DIAG_BY_FAMILY => {
                if let Some(sample) = parse_socket(body) {
                    if sample.dst == dest {
                        out.push(sample);
                    }
                }
            }
            _ => {}
        }
        at += align4(len);
    }
    Ok(false)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One `inet_diag_msg` with its attributes; `None` without a `tcp_info`.
fn parse_socket(body: &[u8]) -> Option<TcpSample> {
    if body.len() < DIAG_MSG {
        return None;
    }
    let family = i32::from(body[0]);
    let dport = u16::from_be_bytes([body[6], body[7]]);
    let (src, dst): (IpAddr, IpAddr) = if family == libc::AF_INET {
        let a: [u8; 4] = body[8..12].try_into().ok()?;
        let b: [u8; 4] = body[24..28].try_into().ok()?;
        (Ipv4Addr::from(a).into(), Ipv4Addr::from(b).into())
    } else {
        let a: [u8; 16] = body[8..24].try_into().ok()?;
        let b: [u8; 16] = body[24..40].try_into().ok()?;
        (Ipv6Addr::from(a).into(), Ipv6Addr::from(b).into())
    };
    let mut at = DIAG_MSG;
    while at + 4 <= body.len() {
        let len = usize::from(u16::from_ne_bytes([body[at], body[at + 1]]));
        let kind = u16::from_ne_bytes([body[at + 2], body[at + 3]]);
        if len < 4 || at + len > body.len() {
            return None;
        }
        if kind == INET_DIAG_INFO {
            return tcp_info(&body[at + 4..at + len], src, SocketAddr::new(dst, dport));
        }
        at += align4(len);
    }
    None
}

/// The fields we use of `struct tcp_info` (offsets from `linux/tcp.h`), from a dump or
/// from `getsockopt` (`proxy::upstreams`).
pub fn tcp_info(info: &[u8], src: IpAddr, dst: SocketAddr) -> Option<TcpSample> {
    if info.len() < 72 {
        return None;
    }
    let ms = |at: usize| Duration::from_millis(u64::from(u32_at(info, at)));
    Some(TcpSample {
        src,
        dst,
        retransmits: info[2],
        probes: info[3],
        backoff: info[4],
        unacked: u32_at(info, 24),
        since_data_sent: ms(44),
        since_data_recv: ms(52),
        since_ack_recv: ms(56),
        rtt: Duration::from_micros(u64::from(u32_at(info, 68))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One dump message for a subflow 10.0.0.2:40000 → 192.0.2.1:4850, and DONE.
    fn dump() -> Vec<u8> {
        let mut info = vec![0u8; 104];
        info[2] = 2; // retransmits
        info[3] = 3; // probes
        info[4] = 1; // backoff
        info[24..28].copy_from_slice(&5u32.to_ne_bytes());
        info[44..48].copy_from_slice(&10u32.to_ne_bytes());
        info[52..56].copy_from_slice(&20u32.to_ne_bytes());
        info[56..60].copy_from_slice(&900u32.to_ne_bytes());
        info[68..72].copy_from_slice(&25_000u32.to_ne_bytes());
        let mut msg = vec![0u8; DIAG_MSG];
        msg[0] = libc::AF_INET as u8;
        msg[1] = 1;
        msg[4..6].copy_from_slice(&40000u16.to_be_bytes());
        msg[6..8].copy_from_slice(&4850u16.to_be_bytes());
        msg[8..12].copy_from_slice(&[10, 0, 0, 2]);
        msg[24..28].copy_from_slice(&[192, 0, 2, 1]);
        let attr_len = (4 + info.len()) as u16;
        msg.extend_from_slice(&attr_len.to_ne_bytes());
        msg.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        msg.extend_from_slice(&info);
        let mut out = Vec::new();
        for (kind, body) in [(SOCK_DIAG_BY_FAMILY, msg), (NLMSG_DONE, vec![0u8; 4])] {
            let len = (NLMSG_HDR + body.len()) as u32;
            out.extend_from_slice(&len.to_ne_bytes());
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(&[0u8; 10]);
            out.extend_from_slice(&body);
            out.resize(align4(out.len()), 0);
        }
        out
    }

    #[test]
    fn a_subflow_to_the_concentrator_is_parsed() {
        let dest: SocketAddr = "192.0.2.1:4850".parse().unwrap();
        let mut out = Vec::new();
        assert!(parse_dump(&dump(), dest, &mut out).unwrap());
        assert_eq!(
            out,
            [TcpSample {
                src: "10.0.0.2".parse().unwrap(),
                dst: dest,
                retransmits: 2,
                probes: 3,
                backoff: 1,
                unacked: 5,
                rtt: Duration::from_millis(25),
                since_data_sent: Duration::from_millis(10),
                since_data_recv: Duration::from_millis(20),
                since_ack_recv: Duration::from_millis(900),
            }]
        );
        let mut other = Vec::new();
        let elsewhere: SocketAddr = "192.0.2.1:443".parse().unwrap();
        assert!(parse_dump(&dump(), elsewhere, &mut other).unwrap());
        assert!(other.is_empty(), "only sockets to the concentrator");
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let dest: SocketAddr = "192.0.2.1:4850".parse().unwrap();
        let whole = dump();
        for len in 0..whole.len() {
            let mut out = Vec::new();
            let _ = parse_dump(&whole[..len], dest, &mut out);
        }
    }
}
