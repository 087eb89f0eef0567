//! The control plane's data accounting: feeds the WANs' device counters to the
//! [`Ledger`] at every counter sample, publishes the totals and the data plans to the
//! status, tells the reconciler which WANs are past their allowance, and writes the usage
//! file every [`SAVE_EVERY`] and at stop (see [`crate::accounting`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tracing::{info, warn};

use crate::accounting::{self, Date, Ledger, Sample, SAVE_EVERY, USAGE_FILE};
use crate::model::wan::{Snapshot, Wan, WanSettings};
use crate::status::{MeterStatus, StatusModel, UsageStatus};

/// The ledger and where it is kept.
#[derive(Debug)]
pub struct UsageBook {
    ledger: Ledger,
    /// The usage file; None: `state_dir = ""`, nothing kept.
    path: Option<PathBuf>,
    saved_at: Instant,
    /// Something was counted since the last write.
    dirty: bool,
}

impl UsageBook {
    /// The ledger from `state_dir`'s usage file, continued in this boot; an empty one if
    /// there is none (or it cannot be read, which is logged).
    pub fn open(state_dir: Option<&Path>, now: Instant) -> UsageBook {
        let boot = accounting::boot_id();
        let path = state_dir.map(|d| d.join(USAGE_FILE));
        let ledger = match path.as_deref().map(accounting::load) {
            None => Ledger::new(&boot),
            Some(Ok(None)) => {
                info!("no data usage file yet: counting from now");
                Ledger::new(&boot)
            }
            Some(Ok(Some(ledger))) => {
                let rebooted = ledger.boot_id != boot;
                info!(wans = ledger.wans.len(), rebooted, "data usage read");
                ledger.resume(&boot)
            }
            Some(Err(error)) => {
                warn!(%error, "data usage file unreadable: counting from zero");
                Ledger::new(&boot)
            }
        };
        UsageBook {
            ledger,
            path,
            saved_at: now,
            dirty: false,
        }
    }

    /// A new state directory (a reload): write there from now on.
    pub fn move_to(&mut self, state_dir: Option<&Path>) {
        let path = state_dir.map(|d| d.join(USAGE_FILE));
        if path != self.path {
            self.path = path;
            self.dirty = true;
        }
    }

    /// Count the counters of `wans` in `snapshot` as of `today`; the WANs now past their
    /// allowance.
    pub fn sample(
        &mut self,
        wans: &[Wan],
        settings: &WanSettings,
        snapshot: &Snapshot,
        today: Date,
    ) -> BTreeSet<String> {
        for wan in wans {
            let sample = snapshot
                .links
                .iter()
                .find(|l| l.name == wan.device)
                .map(|l| Sample {
                    ifindex: l.ifindex,
                    rx: l.rx_bytes,
                    tx: l.tx_bytes,
                });
            let reset_day = settings.metering_for(&wan.name).reset_day;
            self.ledger.record(&wan.name, sample, today, reset_day);
        }
        self.dirty = true;
        self.over_allowance(settings)
    }

    /// The configured WANs past their allowance (auto-detected WANs are unmetered).
    pub fn over_allowance(&self, settings: &WanSettings) -> BTreeSet<String> {
        self.ledger
            .over_allowance(settings.wans.iter().map(|w| (w.name.as_str(), w.metering)))
    }

    /// Put each WAN's plan and usage into the status model.
    pub fn publish(&self, model: &mut StatusModel, wans: &[Wan], settings: &WanSettings) {
        for wan in wans {
            let plan = settings.metering_for(&wan.name);
            let usage = self.ledger.usage(&wan.name).map(|u| UsageStatus {
                day: u.day.to_string(),
                today_rx_bytes: u.today_rx,
                today_tx_bytes: u.today_tx,
                period_start: u.period.to_string(),
                month_rx_bytes: u.month_rx,
                month_tx_bytes: u.month_tx,
            });
            model.set_meter(
                &wan.name,
                MeterStatus {
                    metered: plan.metered,
                    standby: wan.standby,
                    over_allowance: self.ledger.is_over(&wan.name, &plan),
                    allowance_bytes: plan.allowance.filter(|_| plan.metered),
                    usage,
                },
            );
        }
    }

    /// Write the file if [`SAVE_EVERY`] has passed since the last write.
    pub fn save_if_due(&mut self, now: Instant) {
        if now.saturating_duration_since(self.saved_at) >= SAVE_EVERY {
            self.save(now);
        }
    }

    /// Write the file now (if anything was counted since the last write).
    pub fn save(&mut self, now: Instant) {
        let Some(path) = &self.path else { return };
        if !self.dirty {
            return;
        }
        self.saved_at = now;
        match accounting::save(path, &self.ledger) {
            Ok(()) => {
                self.dirty = false;
                tracing::debug!(path = %path.display(), "data usage written");
            }
            Err(error) => warn!(%error, "cannot write the data usage file"),
        }
    }
}
