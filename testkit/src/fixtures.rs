//! [`fixture_files`]: a fixture folder's files, for tests that check every one of them.
//! A folder that cannot be read or holds none fails the test, so a misnamed or emptied
//! folder never passes by checking nothing.

use std::path::{Path, PathBuf};

/// The files in `dir` that `keep` accepts, sorted by name; fails the calling test when
/// `dir` cannot be read or none is kept.
#[track_caller]
pub fn fixture_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| keep(p))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no fixtures", dir.display());
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TempDir;

    #[test]
    fn kept_files_come_sorted_and_an_empty_folder_fails() {
        let dir = TempDir::new("fixtures-test");
        for name in ["b.toml", "a.toml", "a.toml.expect"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let got = fixture_files(dir.path(), |p| p.extension().is_some_and(|x| x == "toml"));
        assert_eq!(got, [dir.join("a.toml"), dir.join("b.toml")]);
        let none = std::panic::catch_unwind(|| fixture_files(dir.path(), |_| false));
        assert!(none.is_err(), "no fixture kept must fail");
    }
}
