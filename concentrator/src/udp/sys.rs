//! The one system call the UDP relay makes that tokio and socket2 do not offer:
//! `sendmmsg(2)` on a connected UDP socket, many datagrams in one call.

use std::io;
use std::os::fd::AsRawFd;

use tokio::net::UdpSocket;

/// Most datagrams sent in one call.
pub(crate) const MAX_BATCH: usize = 64;

/// Send `datagrams` (at most [`MAX_BATCH`]) on the connected socket `udp`, now, in one
/// call: how many went. Straight to the socket, not through tokio's readiness (a full
/// send buffer fails the call with `WouldBlock` and the caller drops what is left).
pub(crate) fn send_batch(udp: &UdpSocket, datagrams: &[&[u8]]) -> io::Result<usize> {
    let n = datagrams.len().min(MAX_BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut iovecs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_BATCH];
    // SAFETY: mmsghdr is plain data; all-zero is a valid value (no name, no control).
    let mut headers: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for ((datagram, iovec), header) in datagrams.iter().zip(&mut iovecs).zip(&mut headers).take(n) {
        iovec.iov_base = datagram.as_ptr().cast_mut().cast();
        iovec.iov_len = datagram.len();
        header.msg_hdr.msg_iov = iovec;
        header.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `headers[..n]` point at `iovecs[..n]`, which point at the caller's slices;
    // all outlive the call, and the kernel only reads them (and writes msg_len).
    let sent = unsafe {
        libc::sendmmsg(
            udp.as_raw_fd(),
            headers.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}
