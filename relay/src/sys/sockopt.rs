//! `SO_ORIGINAL_DST`/`IP6T_SO_ORIGINAL_DST`, the one socket option here; every other
//! option (and the one `setsockopt`/`getsockopt` wrapper) is `mpbond_netlink::sockopt`'s,
//! re-exported by [`super`].

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use mpbond_netlink::sockopt::Plain;

/// A raw descriptor borrowed for one call.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// getsockopt into a plain-old-data value `T`, through the shared wrapper.
fn get<T: Plain>(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
    mpbond_netlink::sockopt::get(&Fd(fd), level, name)
}

/// getsockopt(SOL_IP, SO_ORIGINAL_DST) as a `sockaddr_in`.
pub(crate) fn original_dst_v4(socket: &impl AsRawFd) -> io::Result<SocketAddr> {
    let sin: libc::sockaddr_in = get(socket.as_raw_fd(), libc::SOL_IP, libc::SO_ORIGINAL_DST)?;
    if libc::c_int::from(sin.sin_family) != libc::AF_INET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_ORIGINAL_DST: not AF_INET",
        ));
    }
    let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
    Ok(SocketAddr::V4(SocketAddrV4::new(
        ip,
        u16::from_be(sin.sin_port),
    )))
}

/// getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST) as a `sockaddr_in6`.
pub(crate) fn original_dst_v6(socket: &impl AsRawFd) -> io::Result<SocketAddr> {
    let sin6: libc::sockaddr_in6 = get(
        socket.as_raw_fd(),
        libc::SOL_IPV6,
        libc::IP6T_SO_ORIGINAL_DST,
    )?;
    if libc::c_int::from(sin6.sin6_family) != libc::AF_INET6 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "IP6T_SO_ORIGINAL_DST: not AF_INET6",
        ));
    }
    let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
    Ok(SocketAddr::V6(SocketAddrV6::new(
        ip,
        u16::from_be(sin6.sin6_port),
        sin6.sin6_flowinfo,
        sin6.sin6_scope_id,
    )))
}
