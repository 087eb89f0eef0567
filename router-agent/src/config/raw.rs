//! The raw config as written in the file: plain serde types with `deny_unknown_fields`.
//!
//! Nothing here is validated. [`super::Config::from_raw`] turns a [`RawConfig`] into the
//! typed [`super::Config`], naming the field of every problem it finds. The same struct
//! serves TOML and JSON (and, later, UCI).

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub concentrator: RawConcentrator,
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub bypass: RawBypass,
    #[serde(default)]
    pub health: RawHealth,
}

/// `[concentrator]`: where the VPS is and how we authenticate to it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConcentrator {
    pub host: String,
    pub port: Option<u64>,
    pub client_id: String,
    pub key: String,
}

impl std::fmt::Debug for RawConcentrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawConcentrator")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("key", &"***")
            .finish()
    }
}

/// `[proxy]`: the transparent listener and the redirect.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub listen_port: Option<u64>,
    pub lan_interfaces: Option<Vec<String>>,
    pub nft_table: Option<String>,
    pub max_connections: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub reply_timeout_ms: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
}

/// `[bypass]`: prefixes that are never redirected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBypass {
    #[serde(default)]
    pub destinations: Vec<String>,
    #[serde(default)]
    pub sources: Vec<String>,
}

/// `[health]`: the concentrator probe and the fail-open thresholds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub down_after: Option<u64>,
    pub up_after: Option<u64>,
}
