//! [`TempDir`]: a scratch directory of the test's own, removed on drop (also when the
//! test panics).
//!
//! Names are `$TMPDIR/mpbond-<tag>-<pid>-<counter>`, so tests running at the same time (in
//! one process or in several) never share one. `MPBOND_KEEP_TMP` (any value) keeps every
//! directory for a look after the run and prints where it is. [`cleanup_registered`]
//! removes every live one of this process, for a Ctrl-C handler that exits without
//! unwinding.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static REGISTRY: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The directory could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create {}", path.display())]
pub struct TempDirError {
    /// The directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// A directory of the test's own, empty when made, removed on drop unless
/// `MPBOND_KEEP_TMP` is set.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Create `$TMPDIR/mpbond-<tag>-<pid>-<counter>`, empty; panics when that is not
    /// possible.
    #[track_caller]
    pub fn new(tag: &str) -> TempDir {
        Self::try_new(tag).unwrap_or_else(|e| panic!("cannot make the test's directory: {e}"))
    }

    /// Like [`TempDir::new`], with the error returned.
    pub fn try_new(tag: &str) -> Result<TempDir, TempDirError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("mpbond-{tag}-{}-{n}", std::process::id()));
        // A directory of a dead process with the same pid would not be empty.
        let _ = std::fs::remove_dir_all(&path);
        if let Err(source) = std::fs::create_dir_all(&path) {
            return Err(TempDirError { path, source });
        }
        registry().push(path.clone());
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` inside the directory.
    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        self.path.join(path)
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        registry().retain(|d| d != &self.path);
        if std::env::var_os("MPBOND_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            eprintln!("mpbond-testkit: kept {}", self.path.display());
        }
    }
}

/// Remove every directory of this process that is still live (for a signal handler
/// thread; the guards' own drops then find nothing left to remove).
pub fn cleanup_registered() {
    let dirs = std::mem::take(&mut *registry());
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn registry() -> MutexGuard<'static, Vec<PathBuf>> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_directory_is_new_empty_and_removed_on_drop() {
        let a = TempDir::new("tempdir-test");
        let b = TempDir::new("tempdir-test");
        assert_ne!(a.path(), b.path());
        assert!(a.path().is_dir());
        assert_eq!(std::fs::read_dir(a.path()).unwrap().count(), 0);
        std::fs::write(a.join("f"), b"x").unwrap();
        let kept = std::env::var_os("MPBOND_KEEP_TMP").is_some();
        let path = a.path().to_owned();
        drop(a);
        assert_eq!(path.exists(), kept);
        if kept {
            let _ = std::fs::remove_dir_all(path);
        }
    }

    #[test]
    fn a_panicking_test_still_removes_its_directory() {
        let path = std::panic::catch_unwind(|| {
            let dir = TempDir::new("tempdir-panic");
            let path = dir.path().to_owned();
            std::panic::panic_any(path);
        })
        .unwrap_err()
        .downcast::<PathBuf>()
        .unwrap();
        if std::env::var_os("MPBOND_KEEP_TMP").is_none() {
            assert!(!path.exists());
        }
    }
}
