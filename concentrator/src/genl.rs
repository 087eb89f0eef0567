//! A tiny generic-netlink client, enough for the MPTCP path manager's limits.
//!
//! Shape: [`GenlSocket::open`] (the handle) → [`GenlSocket::family`] (resolve `mptcp_pm`
//! through `nlctrl`) → [`GenlSocket::execute`] (one request, its replies, its ACK). The
//! message encoding and parsing are pure functions, unit-tested without a kernel.

use std::io;

const NETLINK_GENERIC: i32 = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLMSG_HDR: usize = 16;
const GENL_HDR: usize = 4;

/// `mptcp_pm` genetlink family name and version.
pub const MPTCP_PM_NAME: &str = "mptcp_pm";
pub const MPTCP_PM_VER: u8 = 1;
/// `MPTCP_PM_CMD_SET_LIMITS` and `MPTCP_PM_CMD_GET_LIMITS`.
pub const MPTCP_PM_CMD_SET_LIMITS: u8 = 5;
pub const MPTCP_PM_CMD_GET_LIMITS: u8 = 6;
/// `MPTCP_PM_ATTR_RCV_ADD_ADDRS` (add_addr_accepted) and `MPTCP_PM_ATTR_SUBFLOWS`.
pub const MPTCP_PM_ATTR_RCV_ADD_ADDRS: u16 = 2;
pub const MPTCP_PM_ATTR_SUBFLOWS: u16 = 3;

/// A netlink attribute: type and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub kind: u16,
    pub value: Vec<u8>,
}

impl Attr {
    pub fn u32(kind: u16, v: u32) -> Attr {
        Attr {
            kind,
            value: v.to_ne_bytes().to_vec(),
        }
    }
    pub fn as_u32(&self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.value.get(..4)?.try_into().ok()?))
    }
    pub fn as_u16(&self) -> Option<u16> {
        Some(u16::from_ne_bytes(self.value.get(..2)?.try_into().ok()?))
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Encode one genetlink request.
pub fn encode(family: u16, cmd: u8, version: u8, seq: u32, attrs: &[Attr]) -> Vec<u8> {
    let mut out = vec![0u8; NLMSG_HDR];
    out.extend_from_slice(&[cmd, version, 0, 0]);
    for a in attrs {
        let len = 4 + a.value.len();
        out.extend_from_slice(&(len as u16).to_ne_bytes());
        out.extend_from_slice(&a.kind.to_ne_bytes());
        out.extend_from_slice(&a.value);
        out.resize(align4(out.len()), 0);
    }
    let total = out.len() as u32;
    out[0..4].copy_from_slice(&total.to_ne_bytes());
    out[4..6].copy_from_slice(&family.to_ne_bytes());
    out[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    out
}

/// One parsed netlink message from a reply datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A genetlink message's attributes.
    Data(Vec<Attr>),
    /// An ACK (errno 0) or an error (negative errno).
    Ack(i32),
    Done,
}

fn rd_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parse attributes; stops at the first malformed one.
pub fn parse_attrs(mut b: &[u8]) -> Vec<Attr> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let (Some(len), Some(kind)) = (rd_u16(b, 0), rd_u16(b, 2)) else {
            break;
        };
        let len = usize::from(len);
        if len < 4 || len > b.len() {
            break;
        }
        out.push(Attr {
            kind: kind & 0x3fff,
            value: b[4..len].to_vec(),
        });
        b = &b[align4(len).min(b.len())..];
    }
    out
}

/// Parse a datagram into messages. Malformed trailing bytes are ignored.
pub fn parse(mut b: &[u8]) -> Vec<Reply> {
    let mut out = Vec::new();
    while b.len() >= NLMSG_HDR {
        let (Some(len), Some(kind)) = (rd_u32(b, 0), rd_u16(b, 4)) else {
            break;
        };
        let len = len as usize;
        if len < NLMSG_HDR || len > b.len() {
            break;
        }
        let body = &b[NLMSG_HDR..len];
        match kind {
            NLMSG_ERROR => {
                let errno = rd_u32(body, 0).map(|e| e as i32).unwrap_or(-libc::EIO);
                out.push(Reply::Ack(errno));
            }
            NLMSG_DONE => out.push(Reply::Done),
            _ if body.len() >= GENL_HDR => out.push(Reply::Data(parse_attrs(&body[GENL_HDR..]))),
            _ => {}
        }
        b = &b[align4(len).min(b.len())..];
    }
    out
}

/// A generic netlink socket.
#[derive(Debug)]
pub struct GenlSocket {
    fd: std::os::fd::OwnedFd,
    seq: u32,
}

impl GenlSocket {
    /// Open and bind a `NETLINK_GENERIC` socket.
    pub fn open() -> io::Result<GenlSocket> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a correctly sized timeval on our own fd.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(GenlSocket { fd, seq: 1 })
    }

    /// Resolve a family name to its id.
    pub fn family(&mut self, name: &str) -> io::Result<u16> {
        let mut value = name.as_bytes().to_vec();
        value.push(0);
        let replies = self.execute(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            1,
            &[Attr {
                kind: CTRL_ATTR_FAMILY_NAME,
                value,
            }],
        )?;
        replies
            .iter()
            .flatten()
            .find(|a| a.kind == CTRL_ATTR_FAMILY_ID)
            .and_then(Attr::as_u16)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "nlctrl reply without a family id",
                )
            })
    }

    /// Send one request and collect its data replies until the ACK.
    pub fn execute(
        &mut self,
        family: u16,
        cmd: u8,
        version: u8,
        attrs: &[Attr],
    ) -> io::Result<Vec<Vec<Attr>>> {
        use std::os::fd::AsRawFd;
        self.seq = self.seq.wrapping_add(1);
        let msg = encode(family, cmd, version, self.seq, attrs);
        // SAFETY: `msg` is a valid buffer; sockaddr_nl is zeroed (kernel, pid 0).
        let sent = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut data = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: recv into our own buffer of the given length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            for reply in parse(&buf[..n as usize]) {
                match reply {
                    Reply::Data(attrs) => data.push(attrs),
                    Reply::Ack(0) | Reply::Done => return Ok(data),
                    Reply::Ack(errno) => return Err(io::Error::from_raw_os_error(-errno)),
                }
            }
        }
    }
}

/// The MPTCP path-manager limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MptcpLimits {
    pub subflows: u32,
    pub add_addr_accepted: u32,
}

/// Read the current MPTCP limits.
pub fn get_limits(sock: &mut GenlSocket, family: u16) -> io::Result<MptcpLimits> {
    let replies = sock.execute(family, MPTCP_PM_CMD_GET_LIMITS, MPTCP_PM_VER, &[])?;
    let find = |kind| {
        replies
            .iter()
            .flatten()
            .find(|a| a.kind == kind)
            .and_then(Attr::as_u32)
    };
    Ok(MptcpLimits {
        subflows: find(MPTCP_PM_ATTR_SUBFLOWS).unwrap_or(0),
        add_addr_accepted: find(MPTCP_PM_ATTR_RCV_ADD_ADDRS).unwrap_or(0),
    })
}

/// Set the MPTCP limits.
pub fn set_limits(sock: &mut GenlSocket, family: u16, limits: MptcpLimits) -> io::Result<()> {
    let attrs = [
        Attr::u32(MPTCP_PM_ATTR_RCV_ADD_ADDRS, limits.add_addr_accepted),
        Attr::u32(MPTCP_PM_ATTR_SUBFLOWS, limits.subflows),
    ];
    sock.execute(family, MPTCP_PM_CMD_SET_LIMITS, MPTCP_PM_VER, &attrs)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_set_limits() {
        let attrs = [
            Attr::u32(MPTCP_PM_ATTR_RCV_ADD_ADDRS, 8),
            Attr::u32(MPTCP_PM_ATTR_SUBFLOWS, 8),
        ];
        let m = encode(0x1234, MPTCP_PM_CMD_SET_LIMITS, 1, 7, &attrs);
        assert_eq!(m.len(), 16 + 4 + 8 + 8);
        assert_eq!(rd_u32(&m, 0), Some(36));
        assert_eq!(rd_u16(&m, 4), Some(0x1234));
        assert_eq!(rd_u16(&m, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(rd_u32(&m, 8), Some(7));
        assert_eq!(&m[16..20], &[5, 1, 0, 0]);
        assert_eq!(parse_attrs(&m[20..]), attrs.to_vec());
    }

    #[test]
    fn encode_pads_strings() {
        let m = encode(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            1,
            1,
            &[Attr {
                kind: 2,
                value: b"mptcp_pm\0".to_vec(),
            }],
        );
        assert_eq!(m.len(), 16 + 4 + 4 + 12);
        assert_eq!(parse_attrs(&m[20..])[0].value, b"mptcp_pm\0");
    }

    #[test]
    fn parse_ack_error_and_garbage() {
        let mut ack = vec![0u8; 16];
        ack[0..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        ack.extend_from_slice(&[0u8; 16]);
        assert_eq!(parse(&ack), vec![Reply::Ack(-libc::EPERM)]);
        assert_eq!(parse(&ack[..10]), vec![]);
        assert_eq!(parse(&[0xff; 40]), vec![]);
        assert_eq!(parse_attrs(&[0xff, 0xff, 0, 0, 1]), vec![]);
    }
}
