//! Socket helpers: plain or MPTCP sockets, and asking whether a socket is MPTCP.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

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

const TCP_FASTOPEN: libc::c_int = 23;
const TCP_FASTOPEN_CONNECT: libc::c_int = 30;
const TCP_FASTOPEN_NO_COOKIE: libc::c_int = 34;

fn set_int(fd: &impl AsRawFd, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
    set_opt(fd, libc::SOL_TCP, opt, val)
}

/// setsockopt(SOL_SOCKET, opt, val).
fn set_sock_int(fd: &impl AsRawFd, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
    set_opt(fd, libc::SOL_SOCKET, opt, val)
}

fn set_opt(
    fd: &impl AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: val is a valid c_int for the duration of the call; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
        set_int(&s, TCP_FASTOPEN, 256)?;
        set_int(&s, TCP_FASTOPEN_NO_COOKIE, 1)?;
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
        set_sock_int(&s, libc::SO_RCVBUFFORCE, bytes)
            .or_else(|_| set_sock_int(&s, libc::SO_RCVBUF, bytes))?;
    }
    if tfo {
        set_int(&s, TCP_FASTOPEN_CONNECT, 1)?;
        set_int(&s, TCP_FASTOPEN_NO_COOKIE, 1)?;
    }
    s.connect_timeout(&addr.into(), timeout)?;
    s.set_tcp_nodelay(true)?;
    Ok(s.into())
}

/// `TCP_IS_MPTCP` (43): Some(true) for an MPTCP socket, None if the kernel cannot tell.
pub fn is_mptcp(stream: &TcpStream) -> Option<bool> {
    const TCP_IS_MPTCP: libc::c_int = 43;
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: val and len are valid for writes of the sizes given; the fd is open.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_TCP,
            TCP_IS_MPTCP,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(val != 0)
}
