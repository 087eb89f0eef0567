//! Raw `getsockopt`/`setsockopt` wrappers for the options socket2 does not cover:
//! TCP Fast Open (server queue, client connect, no-cookie), `TCP_IS_MPTCP` and the
//! `TCP_INFO` options byte. (The original destination comes from socket2.)
//!
//! Every `unsafe` block here passes a correctly sized, initialised value and its length to
//! the kernel, which writes at most that many bytes.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, RawFd};

/// `TCP_FASTOPEN_CONNECT` (Linux 4.11): connect() defers the SYN to the first write.
pub const TCP_FASTOPEN_CONNECT: libc::c_int = 30;
/// `TCP_FASTOPEN_NO_COOKIE` (Linux 4.15): send or accept data in the SYN without a cookie.
pub const TCP_FASTOPEN_NO_COOKIE: libc::c_int = 34;
/// `TCP_IS_MPTCP` (Linux 5.16): 1 on a socket that is using MPTCP.
pub const TCP_IS_MPTCP: libc::c_int = 43;
/// `TCPI_OPT_SYN_DATA` in `tcp_info.tcpi_options`: data in our SYN was acknowledged.
const TCPI_OPT_SYN_DATA: u8 = 32;

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

/// Whether the peer acknowledged data we sent in the SYN (`TCPI_OPT_SYN_DATA` from
/// `TCP_INFO`). None if `TCP_INFO` is not available on this socket.
pub fn syn_data_acked(socket: &impl AsRawFd) -> Option<bool> {
    let info: libc::tcp_info = get(socket.as_raw_fd(), libc::SOL_TCP, libc::TCP_INFO).ok()?;
    Some(info.tcpi_options & TCPI_OPT_SYN_DATA != 0)
}

/// `TCP_SYN_RECV` from the kernel's `tcp_states.h`, as `tcpi_state` reports it.
pub const TCP_SYN_RECV: u8 = 3;
/// `SOL_MPTCP` socket level (Linux 5.16).
const SOL_MPTCP: libc::c_int = 284;
/// `MPTCP_TCPINFO` (Linux 5.16): `tcp_info` of each subflow of an MPTCP socket.
const MPTCP_TCPINFO: libc::c_int = 2;

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

/// setsockopt(SOL_SOCKET, SO_RCVBUFFORCE) (needs CAP_NET_ADMIN), else SO_RCVBUF, which
/// `net.core.rmem_max` caps. Either one fixes the buffer and turns off its autotuning.
pub fn set_rcvbuf_force(socket: &impl AsRawFd, bytes: i32) -> io::Result<()> {
    set_int(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes)
        .or_else(|_| set_int(socket, libc::SOL_SOCKET, libc::SO_RCVBUF, bytes))
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
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            SOL_MPTCP,
            MPTCP_TCPINFO,
            (&mut buf as *mut FirstSubflow).cast(),
            &mut len,
        )
    };
    (rc == 0 && buf.header.num_subflows > 0).then_some(buf.info.tcpi_state)
}

pub(crate) fn set_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: i32,
) -> io::Result<()> {
    let value: libc::c_int = value;
    // SAFETY: `value` is a live c_int and we pass its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn get_int(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<i32> {
    get::<libc::c_int>(socket.as_raw_fd(), level, name)
}

/// getsockopt into a plain-old-data value `T`; bytes the kernel does not write stay zero.
fn get<T: Copy>(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
    let mut value = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` has room for `len` bytes; the kernel writes at most `len` bytes.
    let rc = unsafe { libc::getsockopt(fd, level, name, value.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: T is only instantiated with C structs and integers, for which all-zero bytes
    // (and any bytes the kernel wrote) are valid.
    Ok(unsafe { value.assume_init() })
}
