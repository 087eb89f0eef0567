//! The ledger: per-WAN byte totals for today and the billing month, from samples of the
//! kernel's device counters. Pure: the caller passes the local date and the samples.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Date;
use crate::model::wan::Metering;

/// One reading of a device's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The device's ifindex: a new one means a new device, whose counters start at zero.
    pub ifindex: u32,
    pub rx: u64,
    pub tx: u64,
}

/// One WAN's totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The day `today_*` counts.
    pub day: Date,
    /// The first day of the billing month `month_*` counts.
    pub period: Date,
    pub today_rx: u64,
    pub today_tx: u64,
    pub month_rx: u64,
    pub month_tx: u64,
    /// The last sample counted (None: none yet; the first one only sets the baseline).
    pub last: Option<Sample>,
}

impl Usage {
    fn new(today: Date, reset_day: u8) -> Usage {
        Usage {
            day: today,
            period: today.period_start(reset_day),
            today_rx: 0,
            today_tx: 0,
            month_rx: 0,
            month_tx: 0,
            last: None,
        }
    }

    /// Bytes received and sent this billing month.
    pub fn month_total(&self) -> u64 {
        self.month_rx.saturating_add(self.month_tx)
    }

    /// Start a new day or billing month if `today` is past the ones counted. A date
    /// earlier than the one counted (a router without a clock before NTP) rolls nothing.
    fn roll(&mut self, today: Date, reset_day: u8) {
        if today > self.day {
            self.day = today;
            self.today_rx = 0;
            self.today_tx = 0;
        }
        let period = self.day.period_start(reset_day);
        if period > self.period {
            self.period = period;
            self.month_rx = 0;
            self.month_tx = 0;
        }
    }

    fn add(&mut self, rx: u64, tx: u64) {
        self.today_rx = self.today_rx.saturating_add(rx);
        self.today_tx = self.today_tx.saturating_add(tx);
        self.month_rx = self.month_rx.saturating_add(rx);
        self.month_tx = self.month_tx.saturating_add(tx);
    }
}

/// Bytes since `last`, never negative: a counter that went backwards or a new ifindex
/// means new counters, which count from zero.
fn delta(last: Option<Sample>, now: Sample) -> (u64, u64) {
    match last {
        None => (0, 0),
        Some(l) if l.ifindex == now.ifindex && now.rx >= l.rx && now.tx >= l.tx => {
            (now.rx - l.rx, now.tx - l.tx)
        }
        Some(_) => (now.rx, now.tx),
    }
}

/// Every WAN's totals, and the boot their raw counters belong to. This is what the usage
/// file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// `/proc/sys/kernel/random/boot_id` when the raw counters were read.
    pub boot_id: String,
    pub wans: BTreeMap<String, Usage>,
}

impl Ledger {
    /// An empty ledger for this boot.
    pub fn new(boot_id: &str) -> Ledger {
        Ledger {
            boot_id: boot_id.to_owned(),
            wans: BTreeMap::new(),
        }
    }

    /// Continue a ledger read from the file in boot `boot_id`. After a reboot the saved
    /// raw counters are void: every device's counters restarted at zero, so the first
    /// sample counts all they carried since boot.
    pub fn resume(mut self, boot_id: &str) -> Ledger {
        if self.boot_id != boot_id {
            for usage in self.wans.values_mut() {
                if usage.last.is_some() {
                    usage.last = Some(Sample {
                        ifindex: 0,
                        rx: 0,
                        tx: 0,
                    });
                }
            }
            self.boot_id = boot_id.to_owned();
        }
        self
    }

    /// Count WAN `wan`'s `sample` (None: its device is gone; only the date rolls).
    pub fn record(&mut self, wan: &str, sample: Option<Sample>, today: Date, reset_day: u8) {
        let usage = self
            .wans
            .entry(wan.to_owned())
            .or_insert_with(|| Usage::new(today, reset_day));
        usage.roll(today, reset_day);
        if let Some(now) = sample {
            let (rx, tx) = delta(usage.last, now);
            usage.add(rx, tx);
            usage.last = Some(now);
        }
    }

    /// WAN `wan`'s totals.
    pub fn usage(&self, wan: &str) -> Option<&Usage> {
        self.wans.get(wan)
    }

    /// Whether WAN `wan` is past its allowance this billing month.
    pub fn is_over(&self, wan: &str, metering: &Metering) -> bool {
        match (metering.metered, metering.allowance, self.usage(wan)) {
            (true, Some(allowance), Some(u)) => u.month_total() >= allowance,
            _ => false,
        }
    }

    /// The WANs past their allowance, from each WAN's data plan.
    pub fn over_allowance<'a>(
        &self,
        plans: impl IntoIterator<Item = (&'a str, Metering)>,
    ) -> BTreeSet<String> {
        plans
            .into_iter()
            .filter(|(name, m)| self.is_over(name, m))
            .map(|(name, _)| name.to_owned())
            .collect()
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
