//! Outgoing connections that carry a first message: MPTCP or TCP, optionally in the SYN
//! with TCP Fast Open, optionally with a firewall mark.
//!
//! # Fast Open
//!
//! With `fastopen`, the socket gets `TCP_FASTOPEN_CONNECT`, and the kernel's cookie cache
//! (`ip tcp_metrics`, per source and destination address) decides what goes out:
//!
//! * **No cookie yet** (the first connection from this source address to this server, or
//!   after the server's key changed): `connect()` sends a SYN that asks for a cookie and
//!   carries no data; `first` follows the handshake, one round trip later, and the
//!   SYN-ACK's cookie is cached.
//! * **A cookie**: `connect()` returns at once without sending anything, and the first
//!   write sends the SYN with the cookie and `first` in it (0-RTT).
//!
//! `TCP_FASTOPEN_NO_COOKIE` is never set: the concentrator requires a real cookie (data in
//! a SYN without one is not taken, so a forged source address cannot make it do work),
//! and an MPTCP SYN whose data the server drops falls back to plain TCP on Linux 6.x.
//! A server that changed its cookie key (a reboot) drops the data of the next SYN from
//! each source once, which costs that one MPTCP connection its bonding; the SYN-ACK then
//! carries the new cookie.
//!
//! Either way a refused or unreachable destination does not show at `connect()` but only
//! afterwards, as `SO_ERROR` or as the error of a later read or write. [`connect_with`] therefore waits until the handshake has finished (the socket has
//! a peer) or failed (`SO_ERROR`) before it returns, so that callers see
//! `ConnectionRefused`, `HostUnreachable`/`NetworkUnreachable` or `TimedOut` exactly as on
//! the plain path.
//!
//! A server that does not take data in the SYN (no bit 0x2 in its `net.ipv4.tcp_fastopen`,
//! or no `TCP_FASTOPEN` on the listener) still gets `first`, one round trip later. But on
//! Linux 6.18 an MPTCP connection then falls back to plain TCP (the server counts
//! `MPCapableDataFallback`), which [`connect_with`] logs at warn level and reports as
//! `mptcp: false`.
//!
//! If the kernel refuses the Fast Open option (`ENOPROTOOPT`, `EOPNOTSUPP`, `EINVAL`), the
//! connection is made the ordinary way and [`Connected::fastopen`] is false. An empty
//! `first` never uses Fast Open (a deferred connect would wait for a write).
//!
//! # Socket buffers
//!
//! [`connect_with_buffers`] sets the caller's `SO_RCVBUF`/`SO_SNDBUF` before the SYN
//! (the agent sizes them to its paths' bandwidth-delay product, `core::buffers`). Without
//! them ([`connect_with`]) a Fast Open MPTCP socket still gets [`FASTOPEN_RCVBUF`] (see
//! docs/DESIGN.md, "Fast Open on MPTCP") and everything else is left to the kernel's
//! autotuning. A buffer set by hand is not autotuned.
//!
//! # Readiness
//!
//! Waiting for the handshake clears tokio's write readiness only through a `try_io` whose
//! check saw "still connecting", so the edge of a completed handshake is never swallowed
//! and the returned stream's `writable()` works (see the netns test with a dropped SYN).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::congestion::{self, CongestionName};
use crate::sys;

/// How [`connect_with`] makes its connection.
#[derive(Debug, Clone)]
pub struct ConnectOpts {
    /// Use IPPROTO_MPTCP. Where the kernel has no MPTCP, plain TCP is used instead.
    pub mptcp: bool,
    /// Send `first` in the SYN with TCP Fast Open where the kernel allows it.
    pub fastopen: bool,
    /// Bound on the whole operation: connect, write of `first`, and handshake.
    pub timeout: Duration,
    /// SO_MARK for policy routing (needs CAP_NET_ADMIN).
    pub mark: Option<u32>,
    /// Local address to bind before connecting (port 0). With per-address policy
    /// rules this picks the interface the SYN (and an MPTCP initial subflow) leaves on.
    pub bind: Option<std::net::IpAddr>,
    /// The congestion control of an MPTCP socket (set before the SYN, so every subflow
    /// starts with it); `None` or plain TCP: the kernel default.
    pub congestion: Option<CongestionName>,
}

/// Socket buffer sizes for [`connect_with_buffers`], in bytes as passed to `SO_RCVBUF` and
/// `SO_SNDBUF` (the kernel doubles them for its bookkeeping); `None`: kernel autotuning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketBuffers {
    pub rcvbuf: Option<u32>,
    pub sndbuf: Option<u32>,
}

/// A connection made by [`connect_with`], with `first` written.
#[derive(Debug)]
pub struct Connected {
    /// The connected socket, registered with tokio.
    pub stream: TcpStream,
    /// The Fast Open path was used: `first` went out with `TCP_FASTOPEN_CONNECT`, so it
    /// rode in the SYN if the kernel held a cookie for the server and the server took it.
    /// See [`crate::sys::syn_data_acked`] for whether it did.
    pub fastopen: bool,
    /// The connection uses MPTCP (`TCP_IS_MPTCP`); false after a fallback to TCP.
    pub mptcp: bool,
}

/// Connect and send `first` (the Convert request). With fastopen it uses
/// TCP_FASTOPEN_CONNECT so `first` rides in the SYN once a cookie is cached; where the kernel refuses TFO on MPTCP it falls back to connect + write. With
/// mptcp=false it is plain TCP. All of `first` is written before it returns.
///
/// It returns once the handshake has completed, so a failed connection surfaces here as
/// `ConnectionRefused`, `HostUnreachable`, `NetworkUnreachable` or `TimedOut` (also when
/// `opts.timeout` expires). Must be called inside a tokio runtime.
pub async fn connect_with(
    dest: SocketAddr,
    first: &[u8],
    opts: &ConnectOpts,
) -> io::Result<Connected> {
    connect_with_buffers(dest, first, opts, None).await
}

/// [`connect_with`] with the socket buffers the caller decided (`Some`: exactly these,
/// set before the SYN, so the caller owns the Fast Open workaround too; `None`: the
/// default, [`FASTOPEN_RCVBUF`] on a Fast Open MPTCP socket and autotuning otherwise).
pub async fn connect_with_buffers(
    dest: SocketAddr,
    first: &[u8],
    opts: &ConnectOpts,
    buffers: Option<SocketBuffers>,
) -> io::Result<Connected> {
    let inner = connect_inner(dest, first, opts, buffers);
    match tokio::time::timeout(opts.timeout, inner).await {
        Ok(result) => result,
        Err(_elapsed) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect to {dest} timed out after {:?}", opts.timeout),
        )),
    }
}

/// Receive buffer of a Fast Open MPTCP socket unless the caller sizes it (see
/// connect_inner).
pub const FASTOPEN_RCVBUF: u32 = 4 << 20;

async fn connect_inner(
    dest: SocketAddr,
    first: &[u8],
    opts: &ConnectOpts,
    buffers: Option<SocketBuffers>,
) -> io::Result<Connected> {
    let socket = new_socket(dest, opts.mptcp)?;
    if let Some(mark) = opts.mark {
        socket.set_mark(mark)?;
    }
    if let Some(ip) = opts.bind {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    if opts.mptcp {
        congestion::apply(&socket, opts.congestion.as_ref());
    }
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    // A deferred connect sends its SYN with the first write: no bytes, no Fast Open.
    let fastopen = opts.fastopen && !first.is_empty() && enable_fastopen(&socket)?;
    if let Some(buffers) = buffers {
        set_buffers(&socket, buffers);
    } else if fastopen && opts.mptcp {
        // Linux (seen on 6.18) starts a passive Fast Open MPTCP socket with its send-window
        // edge at our SYN's window shifted by our window scale. With 2+ subflows the server
        // then overruns our real window, and only MPTCP-level retransmits (one ~32 KB
        // mapping per RTO) repair it: a download crawls. A large fixed buffer, set before
        // the SYN, makes our first advertised window cover the overrun. docs/DESIGN.md
        // ("Fast Open on MPTCP") has the analysis. Cost: no autotuning on this socket.
        if let Err(error) = sys::set_rcvbuf_force(&socket, FASTOPEN_RCVBUF as i32) {
            tracing::debug!(%error, "cannot enlarge the Fast Open receive buffer");
        }
    }

    match socket.connect(&dest.into()) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return Err(error),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;

    if fastopen {
        // The first write sends SYN + data; more data waits for the handshake.
        write_all(&stream, first).await?;
        wait_connected(&stream).await?;
    } else {
        wait_connected(&stream).await?;
        write_all(&stream, first).await?;
    }
    // A kernel that cannot tell (no TCP_IS_MPTCP on MPTCP sockets, Linux 6.1) gives
    // what was asked for: a fallback is then not detected, as the agent's status says.
    let mptcp = sys::is_mptcp(&stream).unwrap_or(opts.mptcp);
    if opts.mptcp && fastopen && !mptcp && sys::syn_data_acked(&stream) == Some(false) {
        // Linux falls back to plain TCP when the server drops the data of an MP_CAPABLE
        // SYN (MPTcpExt MPCapableDataFallback): the server lacks bit 0x2 of
        // net.ipv4.tcp_fastopen or TCP_FASTOPEN on its listener, or no longer takes our
        // cached cookie (its key changed, say at a reboot; the SYN-ACK brought a new one).
        tracing::warn!(
            %dest,
            "the server ignored the data in the SYN and MPTCP fell back to TCP; \
             once after a server reboot this is a stale Fast Open cookie, otherwise \
             enable TCP Fast Open on the server or connect without fastopen"
        );
    }
    Ok(Connected {
        stream,
        fastopen,
        mptcp,
    })
}

/// Set the buffers asked for (`SO_*BUFFORCE`, else the `net.core.*mem_max`-capped
/// `SO_*BUF`). A refusal leaves autotuning on: slower at worst, so it is only logged.
fn set_buffers(socket: &Socket, buffers: SocketBuffers) {
    let clamp = |bytes: u32| i32::try_from(bytes).unwrap_or(i32::MAX);
    if let Some(bytes) = buffers.rcvbuf {
        if let Err(error) = sys::set_rcvbuf_force(socket, clamp(bytes)) {
            tracing::debug!(%error, bytes, "cannot set the receive buffer");
        }
    }
    if let Some(bytes) = buffers.sndbuf {
        if let Err(error) = sys::set_sndbuf_force(socket, clamp(bytes)) {
            tracing::debug!(%error, bytes, "cannot set the send buffer");
        }
    }
}

fn new_socket(dest: SocketAddr, mptcp: bool) -> io::Result<Socket> {
    let domain = Domain::for_address(dest);
    if mptcp {
        match Socket::new(domain, Type::STREAM, Some(Protocol::MPTCP)) {
            Ok(socket) => return Ok(socket),
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EPROTONOSUPPORT | libc::ENOPROTOOPT | libc::EINVAL)
                ) =>
            {
                tracing::warn!(%error, "MPTCP socket unavailable, using plain TCP");
            }
            Err(error) => return Err(error),
        }
    }
    Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
}

/// Turn on TFO_CONNECT (cookies from the kernel's cache, never NO_COOKIE). Ok(false) if
/// the kernel refuses it (`ENOPROTOOPT`, `EOPNOTSUPP`, `EINVAL`); other errors are returned.
fn enable_fastopen(socket: &Socket) -> io::Result<bool> {
    match sys::set_fastopen_connect(socket, true) {
        Ok(()) => Ok(true),
        Err(error) if sys::is_enoprotoopt(&error) || error.raw_os_error() == Some(libc::EINVAL) => {
            tracing::debug!(%error, "TCP Fast Open refused, connecting without it");
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Write all of `buf`. `EINPROGRESS` (a deferred Fast Open connect that could not put data
/// in the SYN) and `EAGAIN` both mean: wait until writable and try again.
async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        let result = stream.try_io(Interest::WRITABLE, || {
            let written = SockRef::from(stream).send_with_flags(buf, libc::MSG_NOSIGNAL);
            match written {
                Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                other => other,
            }
        });
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n.min(buf.len())..],
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Wait until the handshake has finished: the socket has a peer, or `SO_ERROR` is set.
///
/// The state check runs inside `try_io`, so write readiness is cleared only when the check
/// itself saw "still connecting", and tokio keeps any edge that arrived after it. Clearing
/// readiness any other way could swallow the edge of the finished handshake and leave
/// every later `writable()` of this stream waiting forever.
async fn wait_connected(stream: &TcpStream) -> io::Result<()> {
    loop {
        let ready = stream.ready(Interest::WRITABLE).await?;
        match stream.try_io(Interest::WRITABLE, || handshake_done(stream)) {
            Ok(()) => return Ok(()),
            // Closed states are never cleared: a socket that hung up without an error
            // must not be waited on again.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock && ready.is_write_closed() => {
                return Err(io::ErrorKind::NotConnected.into());
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
}

/// Ok once connected, `WouldBlock` while connecting, the socket error if it failed.
fn handshake_done(stream: &TcpStream) -> io::Result<()> {
    if let Some(error) = stream.take_error()? {
        return Err(error);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(()),
        Err(error) if error.raw_os_error() == Some(libc::ENOTCONN) => {
            Err(io::ErrorKind::WouldBlock.into())
        }
        Err(error) => Err(error),
    }
}
