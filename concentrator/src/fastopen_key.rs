//! The TCP Fast Open cookie key, kept across reboots.
//!
//! The kernel makes `net.ipv4.tcp_fastopen_key` (per network namespace) at random on first
//! use, so after a reboot every router's cached cookie is stale: its next connection per
//! WAN address has its SYN data dropped, which on Linux 6.x turns that MPTCP connection
//! into plain TCP, and the agent then connects without Fast Open until its next Fast Open
//! probe. `mpbond-concentrator setup` therefore keeps the key in the state directory
//! (`tcp_fastopen_key`, mode 0600, made once from the system's random source) and writes
//! it to the kernel on every start, so cookies stay valid across reboots. Deleting the
//! file makes a new key at the next start (every cookie then becomes stale once).
//!
//! The file holds the kernel's own text form: four groups of 8 hex digits joined by `-`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `/proc/sys` file of the Fast Open cookie key.
pub const TCP_FASTOPEN_KEY_SYSCTL: &str = "/proc/sys/net/ipv4/tcp_fastopen_key";
/// The key's file name in the state directory.
pub const KEY_FILE: &str = "tcp_fastopen_key";

/// Why the key could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum FastOpenKeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} does not hold a Fast Open key (4 groups of 8 hex digits joined by '-')")]
    Malformed { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no random bytes for a new key: {0}")]
    Random(String),
}

/// What [`keep`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// The key in the file was written to the kernel.
    Restored(PathBuf),
    /// A new key was made, saved to the file and written to the kernel.
    Created(PathBuf),
}

/// Load the key from `dir` (or make and save a new one) and write it to `sysctl`
/// (normally [`TCP_FASTOPEN_KEY_SYSCTL`]).
pub fn keep(dir: &Path, sysctl: &Path) -> Result<Kept, FastOpenKeyError> {
    let path = dir.join(KEY_FILE);
    let (key, kept) = match fs::read_to_string(&path) {
        Ok(text) => {
            let key =
                parse(&text).ok_or_else(|| FastOpenKeyError::Malformed { path: path.clone() })?;
            (key, Kept::Restored(path.clone()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = new_key()?;
            save(&path, &key)?;
            (key, Kept::Created(path.clone()))
        }
        Err(source) => return Err(FastOpenKeyError::Read { path, source }),
    };
    fs::write(sysctl, format!("{}\n", format(&key))).map_err(|source| FastOpenKeyError::Write {
        path: sysctl.to_owned(),
        source,
    })?;
    Ok(kept)
}

/// The kernel's text form of a key.
pub fn format(key: &[u8; 16]) -> String {
    key.chunks(4)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// A key in the kernel's text form (only the primary key; surrounding space ignored).
pub fn parse(text: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = text.trim().split('-').collect();
    if groups.len() != 4 || groups.iter().any(|g| g.len() != 8) {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, group) in groups.iter().enumerate() {
        let word = u32::from_str_radix(group, 16).ok()?;
        key[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
    }
    Some(key)
}

fn new_key() -> Result<[u8; 16], FastOpenKeyError> {
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).map_err(|e| FastOpenKeyError::Random(e.to_string()))?;
    Ok(key)
}

/// Write the key to a temporary file (0600) and rename it into place.
fn save(path: &Path, key: &[u8; 16]) -> Result<(), FastOpenKeyError> {
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(format!("{}\n", format(key)).as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|source| FastOpenKeyError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let mut n = [0u8; 8];
        getrandom::fill(&mut n).unwrap();
        let unique = u64::from_ne_bytes(n);
        let dir = std::env::temp_dir().join(format!("mpbond-tfo-key-{name}-{unique:016x}"));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_text_form_round_trips() {
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(format(&key), "00010203-04050607-08090a0b-0c0d0e0f");
        assert_eq!(parse(" 00010203-04050607-08090a0b-0c0d0e0f\n"), Some(key));
        assert_eq!(parse("00010203-04050607-08090a0b"), None);
        assert_eq!(parse("0001020-304050607-08090a0b-0c0d0e0f"), None);
        assert_eq!(parse("0001020x-04050607-08090a0b-0c0d0e0f"), None);
    }

    #[test]
    fn a_key_is_made_once_then_restored() {
        let dir = temp_dir("keep");
        let sysctl = dir.join("sysctl");
        let first = keep(&dir, &sysctl).unwrap();
        assert_eq!(first, Kept::Created(dir.join(KEY_FILE)));
        let written = fs::read_to_string(&sysctl).unwrap();
        let saved = fs::read_to_string(dir.join(KEY_FILE)).unwrap();
        assert_eq!(written, saved);
        let mode = fs::metadata(dir.join(KEY_FILE)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        fs::write(&sysctl, "").unwrap();
        assert_eq!(
            keep(&dir, &sysctl).unwrap(),
            Kept::Restored(dir.join(KEY_FILE))
        );
        assert_eq!(fs::read_to_string(&sysctl).unwrap(), saved);
        fs::write(dir.join(KEY_FILE), "garbage").unwrap();
        assert!(matches!(
            keep(&dir, &sysctl),
            Err(FastOpenKeyError::Malformed { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
