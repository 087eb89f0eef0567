//! Data accounting: bytes received and sent per WAN, today and this billing month, kept
//! across agent restarts and reboots.
//!
//! ```text
//! date.rs    Date: the civil date, the billing month a date falls in (reset_day)
//! ledger.rs  Ledger: pure; counter samples in, per-WAN totals and "over allowance" out
//! store.rs   the I/O: the usage file (atomic rename), the boot id, today's local date
//! ```
//!
//! The control plane samples the WANs' kernel counters (`IFLA_STATS64` from its rtnetlink
//! snapshot) every `control::COUNTERS_EVERY` and feeds them to the [`Ledger`] with the
//! local date as a value. The ledger counts deltas between samples, never negative: a
//! counter that went backwards, or a device with a new ifindex (re-created), counts from
//! zero; after a reboot (a new boot id) the first sample counts everything the device
//! carried since boot.
//!
//! The file (`state_dir/usage.json`) is written every [`SAVE_EVERY`] and at stop, by
//! rename, so a router's flash sees about 100 small writes a day. A power cut loses what
//! the WANs carried since the last write (at most [`SAVE_EVERY`]); an agent crash loses
//! nothing, because the file keeps the raw counters next to the totals and the next start
//! counts from them.

mod date;
mod ledger;
mod store;

use std::time::Duration;

pub use date::Date;
pub use ledger::{Ledger, Sample, Usage};
pub use store::{boot_id, load, local_date, save, StoreError, USAGE_FILE};

/// How often the usage file is written while the agent runs.
pub const SAVE_EVERY: Duration = Duration::from_secs(15 * 60);
