//! The I/O side of the accounting: the usage file, the boot id and the local date.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::{Date, Ledger};

/// The usage file's name inside `state_dir`.
pub const USAGE_FILE: &str = "usage.json";

/// Why the usage file could not be read or written.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a usage file: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The ledger in `path`; `Ok(None)` when there is no file yet.
pub fn load(path: &Path) -> Result<Option<Ledger>, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| StoreError::Parse {
            path: path.to_owned(),
            source,
        })
}

/// Write `ledger` to `path` atomically: a temporary file next to it, `fsync`, rename,
/// then `fsync` of the directory. The directory is created if missing.
pub fn save(path: &Path, ledger: &Ledger) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(ledger).map_err(|e| err(e.into()))?;
    let mut file = File::create(&tmp).map_err(err)?;
    file.write_all(&text).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(err)?;
    // The rename is durable once the directory is.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`); empty if unreadable, which makes
/// every start look like a reboot (the first sample then counts since boot).
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Today's date in the router's local time zone (`TZ`, or the C library's default).
pub fn local_date() -> Date {
    // SAFETY: `time` with a null pointer only returns the time; `localtime_r` writes
    // into the `tm` we own and reads the time zone, which nothing in the agent changes.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            libc::gmtime_r(&now, &mut tm);
        }
        tm
    };
    Date::new(tm.tm_year + 1900, (tm.tm_mon + 1) as u8, tm.tm_mday as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::Sample;

    #[test]
    fn the_file_round_trips_and_replaces_atomically() {
        let dir = std::env::temp_dir().join(format!("mpbond-usage-{}", std::process::id()));
        let path = dir.join("state").join(USAGE_FILE);
        assert!(load(&path).expect("no file is fine").is_none());
        let mut ledger = Ledger::new("boot");
        let day = Date::new(2026, 12, 6);
        ledger.record(
            "lte",
            Some(Sample {
                ifindex: 3,
                rx: 1,
                tx: 2,
            }),
            day,
            1,
        );
        ledger.record(
            "lte",
            Some(Sample {
                ifindex: 3,
                rx: 10,
                tx: 20,
            }),
            day,
            1,
        );
        save(&path, &ledger).expect("save");
        save(&path, &ledger).expect("save over it");
        assert_eq!(load(&path).expect("load"), Some(ledger));
        assert!(!path.with_extension("json.tmp").exists());
        fs::write(&path, "{").expect("write");
        assert!(matches!(load(&path), Err(StoreError::Parse { .. })));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_local_date_is_a_date() {
        let d = local_date();
        assert!(d.year >= 2024 && (1..=12).contains(&d.month) && (1..=31).contains(&d.day));
        assert!(!boot_id().is_empty());
    }
}
