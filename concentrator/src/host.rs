//! Facts about the host: its own addresses (for the policy) and whether the kernel settings
//! the concentrator wants are in place (MPTCP enabled, TFO server bit, Fast Open cookies
//! required). Read-only.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use mpbond_relay::sys::{
    parse_sysctl_int as parse_sysctl, TCP_FASTOPEN_SYSCTL, TFO_SERVER, TFO_SERVER_COOKIE_NOT_REQD,
};

/// `/proc/sys` file for `net.mptcp.enabled`.
pub const MPTCP_ENABLED: &str = "/proc/sys/net/mptcp/enabled";

/// Every address configured on the host's interfaces (`getifaddrs`).
pub fn own_addresses() -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we own and free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list returned by getifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family tells its real type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: family AF_INET means the storage is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            } else if family == libc::AF_INET6 {
                // SAFETY: family AF_INET6 means the storage is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    Ok(out)
}

/// A kernel setting that is not as the concentrator wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostIssue {
    /// `/proc/sys/net/mptcp` is missing: the kernel has no MPTCP at all.
    NoMptcp,
    /// `net.mptcp.enabled` is 0.
    MptcpDisabled,
    /// `net.ipv4.tcp_fastopen` lacks the server bit (0x2); the value found is given.
    NoTfoServer(u32),
    /// `net.ipv4.tcp_fastopen` has [`TFO_SERVER_COOKIE_NOT_REQD`] (0x200): data in a SYN is
    /// taken without a cookie, so a forged source address gets a session.
    CookieNotRequired(u32),
    /// A file could not be read.
    Unreadable(String),
}

impl fmt::Display for HostIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostIssue::NoMptcp => f.write_str(
                "this kernel has no MPTCP (/proc/sys/net/mptcp is missing); clients will fall back to plain TCP over one path",
            ),
            HostIssue::MptcpDisabled => f.write_str(
                "net.mptcp.enabled is 0: MPTCP is off, clients fall back to plain TCP over one path",
            ),
            HostIssue::NoTfoServer(v) => write!(
                f,
                "net.ipv4.tcp_fastopen is {v:#x}, without the server bit 0x2: a Fast Open client's MPTCP connection falls back to plain TCP (no bonding) until the agent turns Fast Open off, and then each connection costs an extra round trip"
            ),
            HostIssue::CookieNotRequired(v) => write!(
                f,
                "net.ipv4.tcp_fastopen is {v:#x}, with bit 0x200 (no cookie required): data in a SYN from any source address, forged ones included, opens a session before the sender proved it owns the address; clear the bit (`mpbond-concentrator setup` does)"
            ),
            HostIssue::Unreadable(what) => write!(f, "cannot read {what}"),
        }
    }
}

/// What is missing from the host's kernel settings. Empty means all good.
pub fn check() -> Vec<HostIssue> {
    issues(
        std::fs::read_to_string(MPTCP_ENABLED),
        mpbond_relay::sys::tcp_fastopen(),
    )
}

/// [`check`] on what was read: the text of `net.mptcp.enabled` and the value of
/// `net.ipv4.tcp_fastopen`.
pub fn issues(mptcp_enabled: io::Result<String>, tcp_fastopen: io::Result<u32>) -> Vec<HostIssue> {
    let mut issues = Vec::new();
    match mptcp_enabled {
        Ok(text) => {
            if parse_sysctl(&text) != Some(1) {
                issues.push(HostIssue::MptcpDisabled);
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => issues.push(HostIssue::NoMptcp),
        Err(_) => issues.push(HostIssue::Unreadable(MPTCP_ENABLED.to_owned())),
    }
    match tcp_fastopen {
        Ok(v) => {
            if v & TFO_SERVER == 0 {
                issues.push(HostIssue::NoTfoServer(v));
            }
            if v & TFO_SERVER_COOKIE_NOT_REQD != 0 {
                issues.push(HostIssue::CookieNotRequired(v));
            }
        }
        Err(_) => issues.push(HostIssue::Unreadable(TCP_FASTOPEN_SYSCTL.to_owned())),
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_addresses_include_loopback() {
        let addrs = own_addresses().unwrap();
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
    }

    #[test]
    fn check_reports_missing_settings() {
        let gone = || io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(
            issues(Ok("0\n".into()), Ok(1)),
            vec![HostIssue::MptcpDisabled, HostIssue::NoTfoServer(1)]
        );
        assert_eq!(issues(Ok("1\n".into()), Ok(3)), vec![]);
        assert_eq!(
            issues(Ok("1\n".into()), Ok(0x203)),
            vec![HostIssue::CookieNotRequired(0x203)]
        );
        assert_eq!(issues(Err(gone()), Ok(3)), vec![HostIssue::NoMptcp]);
        let unreadable = HostIssue::Unreadable(TCP_FASTOPEN_SYSCTL.to_owned());
        assert_eq!(issues(Ok("1".into()), Err(gone())), vec![unreadable]);
    }
}
