//! Socket helpers: plain or MPTCP sockets, and asking whether a socket is MPTCP.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use mpbond_netlink::sockopt::{
    set_fastopen_connect, set_fastopen_listener, set_fastopen_no_cookie, set_rcvbuf_force,
    tcp_is_mptcp,
};
use socket2::{Domain, Protocol, Socket, Type};

/// Size of the read and write buffers the tools use.
pub const BUF_LEN: usize = 256 * 1024;

fn socket(addr: SocketAddr, mptcp: bool) -> io::Result<Socket> {
    let proto = if mptcp {
        Some(Protocol::MPTCP)
    } else {
        Some(Protocol::TCP)
    };
    Socket::new(Domain::for_address(addr), Type::STREAM, proto)
}

/// A listener on `addr` (v6only for IPv6 addresses); `tfo` accepts data in
/// the SYN without a cookie.
pub fn listen(addr: SocketAddr, mptcp: bool, tfo: bool) -> io::Result<TcpListener> {
    let s = socket(addr, mptcp)?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if tfo {
        set_fastopen_listener(&s, 256)?;
        set_fastopen_no_cookie(&s, true)?;
    }
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Connect to `addr` within `timeout`. With `tfo` the first write rides in
/// the SYN (TCP_FASTOPEN_CONNECT, no cookie), as the agent's Convert does.
/// `rcvbuf` fixes the receive buffer before the SYN (no autotuning).
pub fn connect(
    addr: SocketAddr,
    mptcp: bool,
    tfo: bool,
    rcvbuf: Option<u32>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let s = socket(addr, mptcp)?;
    if let Some(bytes) = rcvbuf {
        let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
        set_rcvbuf_force(&s, bytes)?;
    }
    if tfo {
        set_fastopen_connect(&s, true)?;
        set_fastopen_no_cookie(&s, true)?;
    }
    s.connect_timeout(&addr.into(), timeout)?;
    s.set_tcp_nodelay(true)?;
    Ok(s.into())
}

/// `TCP_IS_MPTCP`: Some(true) for an MPTCP socket, None if the kernel cannot tell.
pub fn is_mptcp(stream: &TcpStream) -> Option<bool> {
    tcp_is_mptcp(stream).ok()
}
