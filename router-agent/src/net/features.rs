//! What this kernel's MPTCP can do, probed on throw-away sockets.
//!
//! | feature            | probe                                                   | since |
//! |--------------------|---------------------------------------------------------|-------|
//! | `mptcp`            | `socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP)` succeeds  | 5.6   |
//! | `tfo_mptcp`        | `setsockopt(TCP_FASTOPEN_CONNECT)` on an MPTCP socket, and a release ≥ 6.2 | 6.2 |
//! | `tcp_is_mptcp`     | `getsockopt(SOL_TCP, TCP_IS_MPTCP)` on an MPTCP socket  | absent on 6.1 |
//! | `mptcp_full_info`  | `getsockopt(SOL_MPTCP, MPTCP_FULL_INFO)`                | 6.5   |
//!
//! Linux 6.1 takes `TCP_FASTOPEN_CONNECT` on an MPTCP socket but sends the SYN without
//! the data and then reports plain TCP (checked on Debian's 6.1 in the MIPS router VM),
//! so the socket probe alone would find Fast Open there; a release below 6.2 (a release
//! that does not parse counts as new enough) overrules it.
//!
//! Only a missing `mptcp` is fatal to the agent; the rest degrade it, and
//! [`KernelFeatures::missing`] says how in plain words. `EOPNOTSUPP` / `ENOPROTOOPT`
//! (and `EINVAL` for the socket options) read as "missing"; the probe never fails.

use mpbond_netlink::sockopt::{
    self, set_fastopen_connect, tcp_is_mptcp, MPTCP_FULL_INFO, SOL_MPTCP,
};
use mpbond_relay::sys::{tcp_fastopen, TFO_CLIENT};
use socket2::{Domain, Protocol, Socket, Type};

/// The probe's findings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelFeatures {
    /// MPTCP sockets can be created. Without it the agent cannot bond at all.
    pub mptcp: bool,
    /// TCP Fast Open on MPTCP sockets (the Convert request rides in the SYN).
    pub tfo_mptcp: bool,
    /// `TCP_IS_MPTCP`: the agent can tell a fallback to plain TCP.
    pub tcp_is_mptcp: bool,
    /// `MPTCP_FULL_INFO`: per-subflow details in one call.
    pub mptcp_full_info: bool,
    /// `net.ipv4.tcp_fastopen` has the client bit (0x1). Without it the kernel refuses
    /// Fast Open whatever its version, so `tfo_mptcp` says nothing about the kernel.
    pub tfo_client_sysctl: bool,
    /// `uname -r`.
    pub release: String,
}

impl KernelFeatures {
    /// One plain-language line per missing feature, for the log and the status page.
    pub fn missing(&self) -> Vec<String> {
        let release = &self.release;
        let mut out = Vec::new();
        if !self.mptcp {
            out.push(format!(
                "MPTCP: sockets cannot be created on kernel {release} \
                 (CONFIG_MPTCP off or net.mptcp.enabled=0); the agent cannot bond"
            ));
            return out;
        }
        if !self.tfo_client_sysctl {
            out.push(
                "TCP Fast Open is off (net.ipv4.tcp_fastopen lacks the client bit 0x1): \
                 each connection costs one more round trip to the concentrator"
                    .to_string(),
            );
        } else if !self.tfo_mptcp {
            out.push(format!(
                "TCP Fast Open on MPTCP (Linux 6.2+) is missing on {release}: \
                 each connection costs one more round trip to the concentrator"
            ));
        }
        if !self.tcp_is_mptcp {
            out.push(format!(
                "TCP_IS_MPTCP on MPTCP sockets is missing on {release}: \
                 fallbacks to plain TCP are not detected or counted"
            ));
        }
        if !self.mptcp_full_info {
            out.push(format!(
                "MPTCP_FULL_INFO (Linux 6.5+) is missing on {release}: \
                 no per-subflow details in the status"
            ));
        }
        out
    }
}

/// Probe the features of the kernel (in the calling thread's network namespace).
pub fn probe() -> KernelFeatures {
    let release = release();
    let Ok(sock) = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::MPTCP)) else {
        return KernelFeatures {
            release,
            ..KernelFeatures::default()
        };
    };
    KernelFeatures {
        mptcp: true,
        tfo_mptcp: set_fastopen_connect(&sock, true).is_ok() && fast_open_release(&release),
        tcp_is_mptcp: tcp_is_mptcp(&sock).unwrap_or(false),
        // With zeroed input (no subflow or tcp_info arrays asked for), into a buffer
        // larger than any `struct mptcp_full_info`; the kernel clamps the length.
        mptcp_full_info: sockopt::get::<[u64; 128]>(&sock, SOL_MPTCP, MPTCP_FULL_INFO).is_ok(),
        tfo_client_sysctl: tfo_client_sysctl(),
        release,
    }
}

/// Whether kernel `release` can carry data in an MPTCP SYN: 6.2 or newer, or a release
/// that does not parse (then the socket probe decides).
pub fn fast_open_release(release: &str) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= (6, 2),
        _ => true,
    }
}

/// Whether `net.ipv4.tcp_fastopen` (in the calling thread's namespace) has the client
/// bit. An unreadable file counts as set: then the socket probe alone decides.
fn tfo_client_sysctl() -> bool {
    tcp_fastopen().map_or(true, |v| v & TFO_CLIENT != 0)
}

/// `uname -r`, or `"unknown"`.
pub fn release() -> String {
    // SAFETY: utsname is plain data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".to_owned();
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_open_needs_6_2() {
        assert!(!fast_open_release("6.1.0-50-4kc-malta"));
        assert!(!fast_open_release("5.15.167"));
        assert!(fast_open_release("6.2.0"));
        assert!(fast_open_release("6.18.44-fc-v1272"));
        assert!(fast_open_release("7.0"));
        assert!(fast_open_release("unknown"));
    }

    #[test]
    fn a_6_1_kernel_names_fast_open_and_its_round_trip() {
        let f = KernelFeatures {
            mptcp: true,
            tfo_mptcp: false,
            tcp_is_mptcp: false,
            mptcp_full_info: false,
            tfo_client_sysctl: true,
            release: "6.1.0-50-4kc-malta".into(),
        };
        let lines = f.missing();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("TCP Fast Open on MPTCP (Linux 6.2+) is missing on 6.1.0"));
        assert!(lines[0].contains("one more round trip"));
    }

    #[test]
    fn missing_mptcp_is_the_only_line() {
        let f = KernelFeatures {
            release: "6.6.0".into(),
            ..KernelFeatures::default()
        };
        let lines = f.missing();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("cannot bond"), "{lines:?}");
    }

    #[test]
    fn a_6_6_kernel_reports_what_it_lacks() {
        let f = KernelFeatures {
            mptcp: true,
            tfo_mptcp: true,
            tcp_is_mptcp: true,
            mptcp_full_info: false,
            tfo_client_sysctl: true,
            release: "6.6.73".into(),
        };
        let lines = f.missing();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("MPTCP_FULL_INFO"), "{lines:?}");
    }

    #[test]
    fn fast_open_off_by_sysctl_is_not_blamed_on_the_kernel() {
        let f = KernelFeatures {
            mptcp: true,
            tcp_is_mptcp: true,
            mptcp_full_info: true,
            release: "6.18.0".into(),
            ..KernelFeatures::default()
        };
        let lines = f.missing();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("lacks the client bit"), "{lines:?}");
        let lines = KernelFeatures {
            tfo_client_sysctl: true,
            ..f
        }
        .missing();
        assert!(lines[0].contains("Linux 6.2+"), "{lines:?}");
    }

    #[test]
    fn release_is_the_running_kernels() {
        let osrelease = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
        assert_eq!(release(), osrelease.trim());
    }
}
