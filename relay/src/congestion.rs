//! The congestion control of mpbond's own MPTCP sockets (`TCP_CONGESTION`).
//!
//! mpbond owns both ends of its MPTCP connections: the agent's upstream sockets send the
//! uploads and the concentrator's accepted sockets send the downloads. Set on the MPTCP
//! socket, `TCP_CONGESTION` (Linux ≥ 5.16) applies to every subflow, present and future,
//! whatever the host's `net.ipv4.tcp_congestion_control`. Plain TCP sockets (the LAN side,
//! the concentrator's connections to destinations) are never touched.
//!
//! [`CongestionName`] is the validated config value (`""`/`"system"` is `None`: the kernel
//! default). [`apply`] sets it: an algorithm the kernel does not have is logged
//! once, naming the module to load, and the connection goes on with the kernel default.
//! [`offered`] asks the kernel once, at load, and keeps only a name it offers.

use std::os::fd::AsRawFd;

use portable_atomic::{AtomicBool, Ordering::Relaxed};

/// The longest name the kernel takes (`TCP_CA_NAME_MAX` is 16 with the NUL).
pub const MAX_NAME: usize = 15;

/// A congestion control algorithm's name: 1–15 of `[a-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CongestionName(String);

/// Why a configured name is not a congestion control name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid congestion control {value:?}: expected \"system\" or a name of 1-15 characters of [a-z0-9_], e.g. \"bbr\"")]
pub struct CongestionNameError {
    pub value: String,
}

impl CongestionName {
    /// Parse a config value: `""` and `"system"` are `None` (the kernel default).
    pub fn parse(value: &str) -> Result<Option<CongestionName>, CongestionNameError> {
        let value = value.trim();
        if value.is_empty() || value == "system" {
            return Ok(None);
        }
        let ok = value.len() <= MAX_NAME
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Some(CongestionName(value.to_owned())))
        } else {
            Err(CongestionNameError {
                value: value.to_owned(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CongestionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether [`apply`] has warned in this process.
static WARNED: AtomicBool = AtomicBool::new(false);

/// Set `name` on `socket`, if any (`None`: the kernel default stays). A kernel that refuses
/// it is logged at warn level once per process, naming the module to load, and the socket
/// keeps the default: a connection never fails for it. Returns whether it was set.
pub fn apply(socket: &impl AsRawFd, name: Option<&CongestionName>) -> bool {
    let Some(name) = name else {
        return false;
    };
    match set(socket, name.as_str()) {
        Ok(()) => true,
        Err(error) => {
            warn_unavailable(name, &error);
            false
        }
    }
}

/// The one warning, once per process, for a name this kernel refuses: it names the module
/// to load, and the connections keep the kernel default.
fn warn_unavailable(name: &CongestionName, error: &std::io::Error) {
    if !WARNED.swap(true, Relaxed) {
        tracing::warn!(
            congestion = %name,
            %error,
            "congestion control not available; MPTCP connections keep the kernel \
             default (load it: `modprobe tcp_{name}`, on OpenWrt \
             `opkg install kmod-tcp-{name}`)"
        );
    }
}

/// `setsockopt(TCP_CONGESTION, name)`.
pub fn set(socket: &impl AsRawFd, name: &str) -> std::io::Result<()> {
    let mut buf = [0u8; MAX_NAME + 1];
    let bytes = name.as_bytes();
    let len = bytes.len().min(MAX_NAME);
    buf[..len].copy_from_slice(&bytes[..len]);
    mpbond_netlink::sockopt::set(socket, libc::IPPROTO_TCP, libc::TCP_CONGESTION, &buf)
}

/// `getsockopt(TCP_CONGESTION)`: the algorithm a socket uses.
pub fn get(socket: &impl AsRawFd) -> std::io::Result<String> {
    let buf: [u8; MAX_NAME + 1] =
        mpbond_netlink::sockopt::get(socket, libc::IPPROTO_TCP, libc::TCP_CONGESTION)?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// The algorithm a socket of this namespace gets with `name` applied: `name`, or the
/// kernel default when `name` is `None` or the kernel refuses it (warned as by [`apply`]).
/// Asked of a throw-away plain TCP socket: an MPTCP socket without subflows takes any name
/// and drops an unknown one silently when it connects (seen on Linux 6.18), so callers
/// that set the name before `connect` check it here first.
pub fn effective(name: Option<&CongestionName>) -> std::io::Result<String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    apply(&socket, name);
    get(&socket)
}

/// `name` if this kernel offers it, else `None` (the kernel default): asked once, at load,
/// of a throw-away plain TCP socket (setting it loads a module such as `tcp_bbr` when the
/// process may). A name the kernel refuses is a warning naming the module to load (once
/// per process, as [`apply`]'s), never an error: the connections keep the kernel default.
pub fn offered(name: Option<CongestionName>) -> Option<CongestionName> {
    use socket2::{Domain, Protocol, Socket, Type};
    let name = name?;
    let tried = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .and_then(|socket| set(&socket, name.as_str()));
    match tried {
        Ok(()) => Some(name),
        Err(error) => {
            warn_unavailable(&name, &error);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(CongestionName::parse("").unwrap(), None);
        assert_eq!(CongestionName::parse("system").unwrap(), None);
        assert_eq!(
            CongestionName::parse("bbr").unwrap().unwrap().as_str(),
            "bbr"
        );
        assert_eq!(
            CongestionName::parse(" cubic ").unwrap().unwrap().as_str(),
            "cubic"
        );
        for bad in ["BBR", "bb r", "a-b", "abcdefghijklmnop", "bbr\0"] {
            assert!(CongestionName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn set_and_get_on_a_tcp_socket() {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        // reno is built into every kernel.
        set(&socket, "reno").unwrap();
        assert_eq!(get(&socket).unwrap(), "reno");
        let unknown = CongestionName::parse("nosuchcc").unwrap();
        assert!(!apply(&socket, unknown.as_ref()));
        assert!(!apply(&socket, unknown.as_ref()));
        assert_eq!(get(&socket).unwrap(), "reno");
        assert!(!apply(&socket, None));
        assert!(apply(
            &socket,
            CongestionName::parse("reno").unwrap().as_ref()
        ));
        let reno = CongestionName::parse("reno").unwrap();
        assert_eq!(effective(reno.as_ref()).unwrap(), "reno");
        assert!(!effective(None).unwrap().is_empty());
    }

    #[test]
    fn only_an_offered_name_is_kept() {
        let reno = CongestionName::parse("reno").unwrap();
        assert_eq!(
            offered(reno.clone()),
            reno,
            "reno is built into every kernel"
        );
        assert_eq!(offered(CongestionName::parse("nosuchcc").unwrap()), None);
        assert_eq!(offered(None), None);
    }
}
