//! `[udp]`: UDP flows, their per-client limits and idle timeouts.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `enabled` | `true` | relay UDP flows; `false` refuses them with code 2, as a concentrator without UDP would, and the agent sends them by NAT |
//! | `max_flows_per_client` | 1024 | concurrent UDP flows of one client (each also counts as a connection against `[limits]`) |
//! | `datagrams_per_sec_per_client` | 100000 | upstream datagrams a second of one client, all its flows together (a token bucket) |
//! | `datagram_burst_per_client` | 10000 | the bucket's size |
//! | `idle_timeout_secs` | 120 | a flow with no datagram either way for this long ends (FIN) |
//! | `dns_idle_timeout_secs` | 30 | the same for flows to port 53 |
//! | `queue_bytes` | 65536 | the downstream queue of encoded capsules the MPTCP socket has not taken yet; a datagram that does not fit is dropped |

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// `[udp]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUdp {
    pub enabled: Option<bool>,
    pub max_flows_per_client: Option<u64>,
    pub datagrams_per_sec_per_client: Option<u64>,
    pub datagram_burst_per_client: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub dns_idle_timeout_secs: Option<u64>,
    pub queue_bytes: Option<u64>,
}

/// `[udp]`, validated. See the module docs for the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    pub enabled: bool,
    pub max_flows_per_client: usize,
    pub datagrams_per_sec_per_client: u32,
    pub datagram_burst_per_client: u32,
    pub idle_timeout: Duration,
    pub dns_idle_timeout: Duration,
    pub queue_bytes: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            enabled: true,
            max_flows_per_client: 1024,
            datagrams_per_sec_per_client: 100_000,
            datagram_burst_per_client: 10_000,
            idle_timeout: Duration::from_secs(120),
            dns_idle_timeout: Duration::from_secs(30),
            queue_bytes: 65_536,
        }
    }
}

impl UdpConfig {
    /// The idle timeout of a flow to `port`.
    pub fn idle_timeout_for(&self, port: u16) -> Duration {
        if port == 53 {
            self.dns_idle_timeout
        } else {
            self.idle_timeout
        }
    }
}

fn range(
    name: &str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    crate::config::in_range(&format!("udp.{name}"), value, default, min, max)
}

/// Validate `[udp]`.
pub fn validate(raw: &RawUdp) -> Result<UdpConfig, ConfigError> {
    let d = UdpConfig::default();
    let flows = range(
        "max_flows_per_client",
        raw.max_flows_per_client,
        d.max_flows_per_client as u64,
        1,
        1_000_000,
    )?;
    let rate = range(
        "datagrams_per_sec_per_client",
        raw.datagrams_per_sec_per_client,
        u64::from(d.datagrams_per_sec_per_client),
        1,
        10_000_000,
    )?;
    let burst = range(
        "datagram_burst_per_client",
        raw.datagram_burst_per_client,
        u64::from(d.datagram_burst_per_client),
        1,
        10_000_000,
    )?;
    let idle = range(
        "idle_timeout_secs",
        raw.idle_timeout_secs,
        d.idle_timeout.as_secs(),
        1,
        86_400,
    )?;
    let dns_idle = range(
        "dns_idle_timeout_secs",
        raw.dns_idle_timeout_secs,
        d.dns_idle_timeout.as_secs(),
        1,
        86_400,
    )?;
    let queue = range(
        "queue_bytes",
        raw.queue_bytes,
        d.queue_bytes as u64,
        2048,
        16 << 20,
    )?;
    Ok(UdpConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        max_flows_per_client: usize::try_from(flows).unwrap_or(usize::MAX),
        datagrams_per_sec_per_client: u32::try_from(rate).unwrap_or(u32::MAX),
        datagram_burst_per_client: u32::try_from(burst).unwrap_or(u32::MAX),
        idle_timeout: Duration::from_secs(idle),
        dns_idle_timeout: Duration::from_secs(dns_idle),
        queue_bytes: usize::try_from(queue).unwrap_or(usize::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ranges() {
        assert_eq!(validate(&RawUdp::default()).unwrap(), UdpConfig::default());
        let raw = RawUdp {
            max_flows_per_client: Some(0),
            ..RawUdp::default()
        };
        let error = validate(&raw).unwrap_err().to_string();
        assert!(error.starts_with("udp.max_flows_per_client:"), "{error}");
        let raw = RawUdp {
            idle_timeout_secs: Some(5),
            dns_idle_timeout_secs: Some(2),
            ..RawUdp::default()
        };
        let config = validate(&raw).unwrap();
        assert_eq!(config.idle_timeout_for(443), Duration::from_secs(5));
        assert_eq!(config.idle_timeout_for(53), Duration::from_secs(2));
    }
}
