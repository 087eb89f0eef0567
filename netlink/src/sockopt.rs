//! The one place that calls `setsockopt(2)` and `getsockopt(2)`.
//!
//! * [`set`] / [`get`] for any [`Plain`] value, [`set_int`] / [`get_int`] for the common
//!   `int` options;
//! * the options socket2 does not cover, with names: TCP Fast Open (server queue, client
//!   connect, no cookie), `TCP_IS_MPTCP`, `TCP_INFO`'s SYN-data bit, the first MPTCP
//!   subflow's state, and socket buffers with `*BUFFORCE`.
//!
//! Every other crate (the netlink socket here, `mpbond-relay`'s `sys`, the agent's feature
//! probe, the test bed's tools) goes through these.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::AsRawFd;

/// `TCP_FASTOPEN_CONNECT` (Linux 4.11): connect() defers the SYN to the first write.
pub const TCP_FASTOPEN_CONNECT: libc::c_int = 30;
/// `TCP_FASTOPEN_NO_COOKIE` (Linux 4.15): send or accept data in the SYN without a cookie.
pub const TCP_FASTOPEN_NO_COOKIE: libc::c_int = 34;
/// `TCP_IS_MPTCP` (Linux 5.16): 1 on a socket that is using MPTCP.
pub const TCP_IS_MPTCP: libc::c_int = 43;
/// `SOL_MPTCP` socket level (Linux 5.16).
pub const SOL_MPTCP: libc::c_int = 284;
/// `MPTCP_TCPINFO` (Linux 5.16): `tcp_info` of each subflow of an MPTCP socket.
pub const MPTCP_TCPINFO: libc::c_int = 2;
/// `MPTCP_FULL_INFO` (Linux 6.5; older UAPI headers lack it).
pub const MPTCP_FULL_INFO: libc::c_int = 4;
/// `TCP_SYN_RECV` from the kernel's `tcp_states.h`, as `tcpi_state` reports it.
pub const TCP_SYN_RECV: u8 = 3;
/// `TCPI_OPT_SYN_DATA` in `tcp_info.tcpi_options`: data in our SYN was acknowledged.
const TCPI_OPT_SYN_DATA: u8 = 32;

/// A C value that any bytes the kernel writes leave valid: integers, arrays of them, and
/// the plain C structs below.
///
/// # Safety
///
/// Every bit pattern must be a valid value of the type (no references, `bool`s, enums
/// or padding that matters).
pub unsafe trait Plain: Copy {}

// SAFETY: integers and C structs of integers; any bit pattern is valid.
unsafe impl Plain for libc::c_int {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: every bit pattern is a valid u8.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}
// SAFETY: as above.
unsafe impl Plain for libc::timeval {}
// SAFETY: as above.
unsafe impl Plain for libc::tcp_info {}
// SAFETY: as above.
unsafe impl Plain for libc::sockaddr_in {}
// SAFETY: as above.
unsafe impl Plain for libc::sockaddr_in6 {}
// SAFETY: an array of plain values is plain.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

/// `setsockopt(fd, level, name, &value, sizeof value)`.
pub fn set<T: Plain>(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` and we pass its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `setsockopt` of an `int`.
pub fn set_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    set(socket, level, name, &value)
}

/// `getsockopt` into a `T`; bytes the kernel does not write stay zero.
pub fn get<T: Plain>(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<T> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` has room for `len` bytes; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            value.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `T: Plain`, so the zeroed bytes and whatever the kernel wrote are valid.
    Ok(unsafe { value.assume_init() })
}

/// `getsockopt` of an `int`.
pub fn get_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    get(socket, level, name)
}

/// True for the errors a kernel gives for an option it does not know or allow here:
/// `ENOPROTOOPT`, `EOPNOTSUPP`.
pub fn is_enoprotoopt(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// setsockopt(SOL_TCP, TCP_FASTOPEN, qlen): accept data in the SYN, with `qlen` pending
/// Fast Open requests at most. Needs bit 0x2 of `net.ipv4.tcp_fastopen` in the netns.
pub fn set_fastopen_listener(socket: &impl AsRawFd, qlen: i32) -> io::Result<()> {
    set_int(socket, libc::SOL_TCP, libc::TCP_FASTOPEN, qlen)
}

/// setsockopt(SOL_TCP, TCP_FASTOPEN_CONNECT, on): connect() returns at once and the first
/// write sends the SYN with the data.
pub fn set_fastopen_connect(socket: &impl AsRawFd, on: bool) -> io::Result<()> {
    set_int(socket, libc::SOL_TCP, TCP_FASTOPEN_CONNECT, i32::from(on))
}

/// setsockopt(SOL_TCP, TCP_FASTOPEN_NO_COOKIE, on): no Fast Open cookie is needed, on
/// either side.
pub fn set_fastopen_no_cookie(socket: &impl AsRawFd, on: bool) -> io::Result<()> {
    set_int(socket, libc::SOL_TCP, TCP_FASTOPEN_NO_COOKIE, i32::from(on))
}

/// getsockopt(SOL_TCP, TCP_IS_MPTCP): whether the socket is using MPTCP. `false` is a
/// plain TCP socket or an MPTCP one that fell back; an error means the kernel cannot tell.
pub fn tcp_is_mptcp(socket: &impl AsRawFd) -> io::Result<bool> {
    get_int(socket, libc::SOL_TCP, TCP_IS_MPTCP).map(|v| v != 0)
}

/// Whether the peer acknowledged data we sent in the SYN (`TCPI_OPT_SYN_DATA` from
/// `TCP_INFO`). None if `TCP_INFO` is not available on this socket.
pub fn syn_data_acked(socket: &impl AsRawFd) -> Option<bool> {
    let info: libc::tcp_info = get(socket, libc::SOL_TCP, libc::TCP_INFO).ok()?;
    Some(info.tcpi_options & TCPI_OPT_SYN_DATA != 0)
}

/// `struct mptcp_subflow_data`, the header of the `MPTCP_TCPINFO` answer.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct SubflowData {
    size_subflow_data: u32,
    num_subflows: u32,
    size_kernel: u32,
    size_user: u32,
}

/// The `MPTCP_TCPINFO` answer, asked for one subflow only.
#[repr(C)]
#[derive(Clone, Copy)]
struct FirstSubflow {
    header: SubflowData,
    info: libc::tcp_info,
}

/// `tcpi_state` of an MPTCP socket's first subflow (`MPTCP_TCPINFO`). None when the
/// socket is not MPTCP, has no subflow, or the kernel lacks the option.
pub fn first_subflow_state(socket: &impl AsRawFd) -> Option<u8> {
    // SAFETY: all-zero bytes are a valid FirstSubflow (plain integers only).
    let mut buf: FirstSubflow = unsafe { std::mem::zeroed() };
    buf.header.size_subflow_data = size_of::<SubflowData>() as u32;
    buf.header.size_user = size_of::<libc::tcp_info>() as u32;
    let mut len = size_of::<FirstSubflow>() as libc::socklen_t;
    // SAFETY: `buf` is live and `len` is its exact size; the kernel writes at most that.
    // The header is input as well as output, so this cannot go through `get`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            SOL_MPTCP,
            MPTCP_TCPINFO,
            std::ptr::from_mut(&mut buf).cast(),
            &mut len,
        )
    };
    (rc == 0 && buf.header.num_subflows > 0).then_some(buf.info.tcpi_state)
}

/// setsockopt(SOL_SOCKET, SO_RCVBUFFORCE) (needs CAP_NET_ADMIN), else SO_RCVBUF, which
/// `net.core.rmem_max` caps. Either one fixes the buffer and turns off its autotuning.
pub fn set_rcvbuf_force(socket: &impl AsRawFd, bytes: i32) -> io::Result<()> {
    set_int(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes)
        .or_else(|_| set_int(socket, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes))
}

/// setsockopt(SOL_SOCKET, SO_SNDBUFFORCE), else SO_SNDBUF (capped by `net.core.wmem_max`).
pub fn set_sndbuf_force(socket: &impl AsRawFd, bytes: i32) -> io::Result<()> {
    set_int(socket, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, bytes)
        .or_else(|_| set_int(socket, libc::SOL_SOCKET, libc::SO_SNDBUF, bytes))
}

/// Bytes the TCP socket `socket` holds that its peer has not acknowledged, sent or not
/// (`ioctl(SIOCOUTQ)`).
pub fn unacked_bytes(socket: &impl AsRawFd) -> io::Result<u64> {
    let mut value: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int to the pointer.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut value) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(value).unwrap_or(0))
}

/// The TCP socket's smoothed RTT and its mean deviation (`TCP_INFO`'s `tcpi_rtt`,
/// `tcpi_rttvar`); `None` before the first sample or on an error.
pub fn tcp_rtt(socket: &impl AsRawFd) -> Option<(std::time::Duration, std::time::Duration)> {
    let info: libc::tcp_info = get(socket, libc::IPPROTO_TCP, libc::TCP_INFO).ok()?;
    (info.tcpi_rtt > 0).then(|| {
        (
            std::time::Duration::from_micros(info.tcpi_rtt.into()),
            std::time::Duration::from_micros(info.tcpi_rttvar.into()),
        )
    })
}

/// Send any ACK the TCP socket `socket` has held back now, and leave delayed-ACK mode
/// (`TCP_QUICKACK`, which the kernel clears again by itself: set it after each read).
pub fn quickack(socket: &impl AsRawFd) -> io::Result<()> {
    set_int(socket, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn an_int_option_round_trips() {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
        set_int(&sock, libc::SOL_SOCKET, libc::SO_BROADCAST, 1).expect("set");
        assert_eq!(
            get_int(&sock, libc::SOL_SOCKET, libc::SO_BROADCAST).ok(),
            Some(1)
        );
        set_int(&sock, libc::SOL_SOCKET, libc::SO_BROADCAST, 0).expect("set");
        assert_eq!(
            get_int(&sock, libc::SOL_SOCKET, libc::SO_BROADCAST).ok(),
            Some(0)
        );
    }

    #[test]
    fn a_tcp_option_on_udp_is_an_error() {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
        let err = set_fastopen_connect(&sock, true).expect_err("not TCP");
        assert!(is_enoprotoopt(&err), "{err}");
        assert_eq!(first_subflow_state(&sock), None);
    }
}
