//! Socket tricks behind small functions: MPTCP and TCP listeners with TCP Fast Open,
//! `TCP_IS_MPTCP`, the original destination of a redirected connection, abortive close,
//! and the workspace's one reader of `net.ipv4.tcp_fastopen` ([`tcp_fastopen`]).
//!
//! The raw `getsockopt`/`setsockopt` calls live in `mpbond_netlink::sockopt` (the one
//! wrapper of the workspace, in the crate that depends on libc alone); the TCP options are
//! re-exported here, and this module gives them meaning. Sockets are built with `socket2`
//! (`Protocol::MPTCP` for MPTCP), then handed to tokio.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

pub use mpbond_netlink::sockopt::{
    first_subflow_state, is_enoprotoopt, set_fastopen_connect, set_fastopen_listener,
    set_fastopen_no_cookie, set_rcvbuf_force, set_sndbuf_force, syn_data_acked,
    TCP_FASTOPEN_CONNECT, TCP_FASTOPEN_NO_COOKIE, TCP_IS_MPTCP, TCP_SYN_RECV,
};

/// MPTCP (IPPROTO_MPTCP) listener, SO_REUSEADDR, v6only for v6 addrs, TCP_FASTOPEN=qlen
/// when Some(qlen). Must be called inside a tokio runtime.
///
/// The listener takes data in a SYN only with a valid Fast Open cookie: it never sets
/// `TCP_FASTOPEN_NO_COOKIE`. The kernel's cookie is a MAC of the client's address under a
/// per-namespace key, handed out in a SYN-ACK, so a sender that holds one has proved it
/// receives packets at its source address; a SYN with data and no (or a wrong) cookie
/// gets a SYN-ACK with a fresh cookie and nothing reaches `accept` before the three-way
/// handshake completes. Bit [`TFO_SERVER_COOKIE_NOT_REQD`] of `net.ipv4.tcp_fastopen`, or a
/// route with `fastopen_no_cookie`, would turn that check off for the whole namespace.
///
/// A kernel that refuses the Fast Open options on an MPTCP socket is logged at warn level
/// and the listener is returned without them: connections then still work, with the first
/// message one round trip later, but Linux 6.18 lets MPTCP clients that sent data in the
/// SYN fall back to plain TCP. The same is logged when the namespace's
/// `net.ipv4.tcp_fastopen` lacks bit 0x2 ([`server_fastopen_enabled`]).
pub fn mptcp_listener(
    addr: SocketAddr,
    backlog: i32,
    fastopen_qlen: Option<i32>,
) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(Protocol::MPTCP),
    )?;
    prepare_listener(&socket, addr)?;
    if let Some(qlen) = fastopen_qlen {
        match set_fastopen_listener(&socket, qlen) {
            Err(error) => {
                tracing::warn!(%addr, %error, "TCP Fast Open not available on the MPTCP listener");
            }
            Ok(()) if server_fastopen_enabled() == Some(false) => tracing::warn!(
                %addr,
                "net.ipv4.tcp_fastopen lacks bit 0x2: data in SYNs is dropped and MPTCP \
                 clients that use Fast Open fall back to plain TCP"
            ),
            Ok(()) => {}
        }
    }
    finish_listener(socket, addr, backlog)
}

/// Plain TCP listener (the agent's transparent listener), v6only for v6 addrs.
/// Must be called inside a tokio runtime.
pub fn tcp_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    prepare_listener(&socket, addr)?;
    finish_listener(socket, addr, backlog)
}

/// `/proc/sys` file of `net.ipv4.tcp_fastopen`.
pub const TCP_FASTOPEN_SYSCTL: &str = "/proc/sys/net/ipv4/tcp_fastopen";
/// The client bit of `net.ipv4.tcp_fastopen`: send data in the SYN.
pub const TFO_CLIENT: u32 = 0x1;
/// The server bit of `net.ipv4.tcp_fastopen`: accept data in the SYN.
pub const TFO_SERVER: u32 = 0x2;
/// `TFO_SERVER_COOKIE_NOT_REQD` of `net.ipv4.tcp_fastopen`: every listener takes data in a
/// SYN without a cookie, so a forged source address gets a socket (and, for the
/// concentrator, a session). The concentrator's host check reports it, `setup` clears it.
pub const TFO_SERVER_COOKIE_NOT_REQD: u32 = 0x200;

/// `net.ipv4.tcp_fastopen` of the calling thread's network namespace (`/proc/sys/net`
/// shows that one). The one reader of this sysctl in the workspace.
pub fn tcp_fastopen() -> io::Result<u32> {
    let text = std::fs::read_to_string(TCP_FASTOPEN_SYSCTL)?;
    parse_sysctl_int(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{TCP_FASTOPEN_SYSCTL} holds {:?}, not a number",
                text.trim()
            ),
        )
    })
}

/// A `/proc/sys` integer: decimal, or hexadecimal with `0x`.
pub fn parse_sysctl_int(text: &str) -> Option<u32> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Whether this network namespace accepts data in SYNs: [`TFO_SERVER`] in
/// [`tcp_fastopen`]. None if the sysctl cannot be read.
pub fn server_fastopen_enabled() -> Option<bool> {
    tcp_fastopen().ok().map(|v| v & TFO_SERVER != 0)
}

fn prepare_listener(socket: &Socket, addr: SocketAddr) -> io::Result<()> {
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    Ok(())
}

fn finish_listener(socket: Socket, addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    TcpListener::from_std(socket.into())
}

/// Some(true/false) from getsockopt(SOL_TCP, TCP_IS_MPTCP=43); None if the kernel lacks it.
///
/// `Some(false)` is a plain TCP socket, or an MPTCP socket that fell back to TCP because
/// the peer does not speak MPTCP.
pub fn is_mptcp(stream: &TcpStream) -> Option<bool> {
    match mpbond_netlink::sockopt::tcp_is_mptcp(stream) {
        Ok(value) => Some(value),
        Err(error) if is_enoprotoopt(&error) => None,
        Err(error) => {
            tracing::debug!(%error, "getsockopt(TCP_IS_MPTCP) failed");
            None
        }
    }
}

/// SO_ORIGINAL_DST (v4) or IP6T_SO_ORIGINAL_DST (v6) of a redirected connection.
///
/// The family is chosen from the socket's local address: IPv4 and IPv4-mapped IPv6 use
/// `SO_ORIGINAL_DST`, other IPv6 addresses `IP6T_SO_ORIGINAL_DST`. A connection that was
/// not redirected (no conntrack entry) gives an error (`ENOENT`), never a panic.
pub fn original_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    let socket = SockRef::from(stream);
    let original = if stream.local_addr()?.ip().to_canonical().is_ipv4() {
        socket.original_dst_v4()?
    } else {
        socket.original_dst_v6()?
    };
    original.as_socket().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "original destination is not an IP address",
        )
    })
}

/// Abortive close: SO_LINGER 0 then drop, so the peer gets RST.
pub fn reset(stream: TcpStream) {
    reset_ref(&stream);
    drop(stream);
}

/// Set SO_LINGER to {on, 0} so that the next close sends RST. The socket is closed when its
/// owner drops it.
pub(crate) fn reset_ref(stream: &TcpStream) {
    if let Err(error) = SockRef::from(stream).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(%error, "SO_LINGER 0 failed; the peer gets FIN instead of RST");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_integers_parse_in_decimal_and_hex() {
        assert_eq!(parse_sysctl_int("3\n"), Some(3));
        assert_eq!(parse_sysctl_int("0x403\n"), Some(0x403));
        assert_eq!(parse_sysctl_int("x"), None);
        assert_eq!(parse_sysctl_int(""), None);
    }
}
