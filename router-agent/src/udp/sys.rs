//! The socket tricks of UDP interception, behind small functions:
//!
//! * [`bind_listener`]: the transparent socket nft's `tproxy` hands new flows to
//!   (`IP_TRANSPARENT`, `IP_RECVORIGDSTADDR`; the IPv6 twins on `[::]`, v6only);
//! * [`recv_from_orig`]: one datagram with its client and its original destination (the
//!   `IP_ORIGDSTADDR` / `IPV6_ORIGDSTADDR` control message);
//! * [`flow_socket`]: a socket bound (transparently) to the original destination and
//!   connected to the client. Replies leave from the address the client wrote to, and the
//!   kernel's tproxy lookup finds this socket first for the flow's later datagrams.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// `IP_RECVORIGDSTADDR` / `IP_ORIGDSTADDR` (the same number).
const IP_RECVORIGDSTADDR: libc::c_int = 20;
/// `IPV6_RECVORIGDSTADDR` / `IPV6_ORIGDSTADDR`.
const IPV6_RECVORIGDSTADDR: libc::c_int = 74;
/// `IPV6_TRANSPARENT`.
const IPV6_TRANSPARENT: libc::c_int = 75;

fn set_int(sock: &Socket, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid fd and a pointer to a live c_int of the given length.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A UDP socket of `v6`'s family, transparent, non-blocking, reusable.
fn transparent(v6: bool) -> io::Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    if v6 {
        sock.set_only_v6(true)?;
        set_int(&sock, libc::SOL_IPV6, IPV6_TRANSPARENT)?;
    } else {
        sock.set_ip_transparent_v4(true)?;
    }
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// The transparent listener for `v6`'s family on `port` (all addresses).
pub fn bind_listener(port: u16, v6: bool) -> io::Result<UdpSocket> {
    let sock = transparent(v6)?;
    if v6 {
        set_int(&sock, libc::SOL_IPV6, IPV6_RECVORIGDSTADDR)?;
        let addr = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0);
        sock.bind(&SockAddr::from(addr))?;
    } else {
        set_int(&sock, libc::SOL_IP, IP_RECVORIGDSTADDR)?;
        sock.bind(&SockAddr::from(SocketAddrV4::new(
            Ipv4Addr::UNSPECIFIED,
            port,
        )))?;
    }
    // A deep receive buffer: a burst of new flows must not be dropped here.
    let _ = sock.set_recv_buffer_size(1 << 20);
    UdpSocket::from_std(sock.into())
}

/// A socket bound to `local` (a foreign address: the flow's original destination) and
/// connected to `client`.
pub fn flow_socket(local: SocketAddr, client: SocketAddr) -> io::Result<UdpSocket> {
    let sock = transparent(local.is_ipv6())?;
    sock.bind(&SockAddr::from(local))?;
    sock.connect(&SockAddr::from(client))?;
    let _ = sock.set_recv_buffer_size(256 * 1024);
    UdpSocket::from_std(sock.into())
}

/// One datagram, its sender and its original destination, into `buf`. A datagram
/// without the control message (not tproxied) reports the socket's own address.
pub async fn recv_from_orig(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, SocketAddr)> {
    loop {
        sock.readable().await?;
        match sock.try_io(Interest::READABLE, || recvmsg_orig(sock, buf)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

fn recvmsg_orig(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, SocketAddr)> {
    // SAFETY: zeroed plain-old-data structs, filled by the kernel below.
    let mut from: libc::sockaddr_storage = unsafe { zeroed() };
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 16]>() as _;
    // SAFETY: msg points at live buffers of the lengths it states.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    if n > buf.len() || msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram truncated",
        ));
    }
    // SAFETY: the kernel wrote a sockaddr of msg_namelen bytes.
    let client = unsafe { to_socket_addr(&from) }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no sender address"))?;
    let mut orig = None;
    // SAFETY: walking the control buffer the kernel filled, with the libc macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            let data = libc::CMSG_DATA(cmsg);
            if level == libc::SOL_IP && kind == IP_RECVORIGDSTADDR {
                let sin: libc::sockaddr_in = std::ptr::read_unaligned(data.cast());
                orig = Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )));
            } else if level == libc::SOL_IPV6 && kind == IPV6_RECVORIGDSTADDR {
                let sin6: libc::sockaddr_in6 = std::ptr::read_unaligned(data.cast());
                orig = Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    0,
                    0,
                )));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let orig = match orig {
        Some(orig) => orig,
        None => sock.local_addr()?,
    };
    Ok((n, client, orig))
}

/// # Safety
/// `storage` holds a sockaddr the kernel wrote.
unsafe fn to_socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(storage as *const _ as *const _) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 = unsafe { &*(storage as *const _ as *const _) };
            let addr = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            // A v4-mapped sender on a dual-stack socket is an IPv4 client.
            let addr = match addr.to_ipv4_mapped() {
                Some(v4) => return Some(SocketAddr::new(v4.into(), u16::from_be(sin6.sin6_port))),
                None => addr,
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                addr,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
