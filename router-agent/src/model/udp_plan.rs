//! The UDP half of the nft plan: which LAN UDP is tproxied to the agent's transparent
//! UDP socket, which leaves by NAT and which is refused (`[udp]`, `config/udp.rs`).
//!
//! The bypass lists (built-in, the concentrator, the user's) are the TCP redirect's
//! ([`super::plan::RedirectSpec`]); UDP adds the `[udp]` rules and default. While the
//! concentrator is unreachable (fail open) `bond` (and `protect`) means `direct`: nothing is tproxied,
//! but `block` still blocks.

use crate::config::udp::{UdpAction, UdpRule};
use crate::config::Config;

/// The UDP part of the table the agent wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpRedirect {
    /// The transparent UDP socket's port.
    pub port: u16,
    /// The mark that sends tproxied packets to the local route table.
    pub fwmark: u32,
    /// Destination rules, in order; the first match decides.
    pub rules: Vec<UdpRule>,
    /// What UDP that matches no rule gets.
    pub default: UdpAction,
}

/// The UDP redirect of `config`, or `None` with `[udp] enabled = false`.
pub fn udp_redirect(config: &Config) -> Option<UdpRedirect> {
    let udp = &config.udp;
    udp.enabled.then(|| UdpRedirect {
        port: udp.listen_port,
        fwmark: udp.fwmark,
        rules: udp.rules.clone(),
        default: udp.default,
    })
}
