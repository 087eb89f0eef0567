//! The bytes each subflow of an MPTCP socket carried, with its addresses: two
//! `getsockopt(SOL_MPTCP)` calls, `MPTCP_TCPINFO` (Linux 5.16: `tcp_info` per subflow,
//! of which `tcpi_bytes_acked` and `tcpi_bytes_received`) and `MPTCP_SUBFLOW_ADDRS`
//! (Linux 5.17: local and remote address per subflow). The kernel answers both in the
//! order of its subflow list; an answer whose subflow count changed between the calls is
//! not used (the next one is). `MPTCP_FULL_INFO` (6.5) would answer both in one call but
//! is missing on the 5.x and 6.1 kernels OpenWrt ships, so the pair is used everywhere.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use mpbond_netlink::sockopt::{MPTCP_TCPINFO, SOL_MPTCP};

use super::wan_bytes::SubflowSample;

/// `MPTCP_SUBFLOW_ADDRS` (Linux 5.17).
const MPTCP_SUBFLOW_ADDRS: libc::c_int = 3;
/// Most subflows read (the kernel's limit is 8 per connection).
const MAX_SUBFLOWS: usize = 8;
/// `struct mptcp_subflow_data`: size_subflow_data, num_subflows, size_kernel, size_user.
const HEADER: usize = 16;
/// The part of `struct tcp_info` read: up to and including `tcpi_bytes_received`.
const TCP_INFO_USED: usize = 136;
const BYTES_ACKED_AT: usize = 120;
const BYTES_RECEIVED_AT: usize = 128;
/// `struct mptcp_subflow_addrs`: two `sockaddr_storage`s, local then remote.
const ADDRS_SIZE: usize = 256;
const BUF_WORDS: usize = (HEADER + MAX_SUBFLOWS * ADDRS_SIZE) / 8;
// The buffer holds the largest answer of either option.
const _: () = assert!(HEADER + MAX_SUBFLOWS * ADDRS_SIZE == BUF_WORDS * 8);
const _: () = assert!(TCP_INFO_USED <= ADDRS_SIZE);

/// One `SOL_MPTCP` array answer: the subflow count and the elements' bytes, `elem` each
/// (an error when the kernel's elements are shorter).
fn subflow_array(
    socket: &impl AsRawFd,
    name: libc::c_int,
    elem: usize,
) -> io::Result<(usize, Vec<u8>)> {
    // u64 words: the header is 8-byte aligned (`__attribute__((aligned(8)))`).
    let mut buf = [0u64; BUF_WORDS];
    let len = HEADER + MAX_SUBFLOWS * elem;
    {
        let bytes = words_mut(&mut buf);
        bytes[0..4].copy_from_slice(&(HEADER as u32).to_ne_bytes());
        bytes[12..16].copy_from_slice(&(elem as u32).to_ne_bytes());
    }
    let mut optlen = len as libc::socklen_t;
    // SAFETY: `buf` is live and at least `len` bytes long; the kernel writes at most
    // `optlen` bytes. The header is input as well as output, so this cannot go through
    // `sockopt::get`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            SOL_MPTCP,
            name,
            buf.as_mut_ptr().cast(),
            &mut optlen,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes = words_mut(&mut buf);
    let word =
        |at: usize| u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let (total, stride) = (word(4) as usize, word(12) as usize);
    if stride < elem {
        // The kernel's element is shorter than the fields read: an old kernel.
        return Err(io::ErrorKind::Unsupported.into());
    }
    let got = ((optlen as usize).min(len).saturating_sub(HEADER) / stride).min(total);
    Ok((
        total,
        bytes[HEADER..HEADER + got * stride]
            .chunks_exact(stride)
            .flat_map(|e| &e[..elem])
            .copied()
            .collect(),
    ))
}

fn words_mut(buf: &mut [u64; BUF_WORDS]) -> &mut [u8] {
    // SAFETY: u64s reinterpreted as their bytes; u8 has no alignment or validity needs.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), BUF_WORDS * 8) }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A `sockaddr_storage` as written by the kernel (AF_INET or AF_INET6).
fn sockaddr(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(bytes[0..2].try_into().ok()?);
    let port = u16::from_be_bytes(bytes[2..4].try_into().ok()?);
    let ip = match i32::from(family) {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&bytes[4..8]).ok()?)),
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[8..24]).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The subflows of the MPTCP socket `socket` with their byte counters. An error when the
/// kernel lacks either option or the socket is not MPTCP; empty when the subflow list
/// changed between the two calls.
pub fn read(socket: &impl AsRawFd) -> io::Result<Vec<SubflowSample>> {
    read_with(socket, |local, remote, info| {
        Some(SubflowSample {
            local,
            remote,
            sent: u64_at(info, BYTES_ACKED_AT),
            received: u64_at(info, BYTES_RECEIVED_AT),
        })
    })
}

/// Each subflow of the MPTCP socket `socket` as `each(local, remote, tcp_info)` makes it
/// (`tcp_info`: the first 136 bytes of the kernel's `struct tcp_info`, up to and including
/// `tcpi_bytes_received`); errors and an empty answer as [`read`].
pub fn read_with<T>(
    socket: &impl AsRawFd,
    mut each: impl FnMut(SocketAddr, SocketAddr, &[u8]) -> Option<T>,
) -> io::Result<Vec<T>> {
    let (n_info, info) = subflow_array(socket, MPTCP_TCPINFO, TCP_INFO_USED)?;
    let (n_addrs, addrs) = subflow_array(socket, MPTCP_SUBFLOW_ADDRS, ADDRS_SIZE)?;
    if n_info != n_addrs {
        return Ok(Vec::new());
    }
    Ok(info
        .chunks_exact(TCP_INFO_USED)
        .zip(addrs.chunks_exact(ADDRS_SIZE))
        .filter_map(|(info, addrs)| {
            let local = sockaddr(&addrs[..ADDRS_SIZE / 2])?;
            let remote = sockaddr(&addrs[ADDRS_SIZE / 2..])?;
            each(local, remote, info)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs_parse_as_the_kernel_writes_them() {
        let mut v4 = [0u8; 128];
        v4[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&4850u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[192, 0, 2, 7]);
        assert_eq!(sockaddr(&v4), Some("192.0.2.7:4850".parse().unwrap()));
        let mut v6 = [0u8; 128];
        v6[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[8..24].copy_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(sockaddr(&v6), Some("[2001:db8::9]:443".parse().unwrap()));
        assert_eq!(sockaddr(&[0u8; 128]), None);
    }

    #[test]
    fn a_plain_udp_socket_has_no_subflows() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(read(&sock).is_err());
    }
}
