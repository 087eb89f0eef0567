//! `[path_quality]`: when a WAN that hurts the bond becomes a backup endpoint
//! ([`crate::core::path_quality`]). Every knob has a default; `enabled = false` turns
//! the control off.

use std::time::Duration;

use serde::Deserialize;

use super::{field, range, ConfigError, FieldError};
use crate::core::path_quality::QualitySettings;

/// `[path_quality]` as serde reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPathQuality {
    /// Default true.
    pub enabled: Option<bool>,
    /// A WAN whose RTT is at least this many times the best WAN's (and slow) is bad.
    pub rtt_ratio: Option<u64>,
    /// ... and at least this many milliseconds more than the best.
    pub min_rtt_gap_ms: Option<u64>,
    /// ... and moving at most this percentage of the busiest other WAN's rate.
    pub rate_share_pct: Option<u64>,
    /// Probe loss (percent) that is bad by itself.
    pub loss_pct: Option<u64>,
    /// Bad this long: demoted to backup.
    pub demote_after_secs: Option<u64>,
    /// Good this long: restored.
    pub restore_after_secs: Option<u64>,
}

pub(super) fn path_quality(r: RawPathQuality) -> Result<QualitySettings, ConfigError> {
    let d = QualitySettings::default();
    let secs = |name: &str, value: Option<u64>, default: Duration| {
        range(name, value, default.as_secs(), 1, 3600).map(Duration::from_secs)
    };
    let pct = |name: &str, value: Option<u64>, default: u32| {
        range(name, value, default.into(), 1, 100).map(|v| v as u32)
    };
    let ratio = range(
        "path_quality.rtt_ratio",
        r.rtt_ratio,
        d.rtt_ratio.into(),
        2,
        100,
    )?;
    let gap_ms = d.min_rtt_gap.as_millis() as u64;
    let gap = range(
        "path_quality.min_rtt_gap_ms",
        r.min_rtt_gap_ms,
        gap_ms,
        0,
        10_000,
    )?;
    let out = QualitySettings {
        enabled: r.enabled.unwrap_or(d.enabled),
        rtt_ratio: ratio as u32,
        min_rtt_gap: Duration::from_millis(gap),
        rate_share_pct: pct(
            "path_quality.rate_share_pct",
            r.rate_share_pct,
            d.rate_share_pct,
        )?,
        loss_pct: pct("path_quality.loss_pct", r.loss_pct, d.loss_pct)?,
        demote_after: secs(
            "path_quality.demote_after_secs",
            r.demote_after_secs,
            d.demote_after,
        )?,
        restore_after: secs(
            "path_quality.restore_after_secs",
            r.restore_after_secs,
            d.restore_after,
        )?,
    };
    if out.restore_after < out.demote_after {
        let why = "shorter than demote_after_secs: a WAN would flap".to_owned();
        return Err(field(
            "path_quality.restore_after_secs",
            FieldError::Invalid(why),
        ));
    }
    Ok(out)
}
