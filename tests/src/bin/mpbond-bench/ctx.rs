//! What every case gets ([`Ctx`]) and what every case may fail with
//! ([`BenchError`]).
//!
//! The contract between `main.rs` and the case modules: each exposes
//! `pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError>`. A case builds
//! its own [`mpbond_tests::TestBed`] (one at a time per process), measures,
//! and returns one [`crate::report::Figure`] per reported quantity.

use std::path::{Path, PathBuf};

use mpbond_tests::BedError;

use crate::report::Mode;

/// The run's settings, shared by every case. (Some parts serve cases 4–7 only.)
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Short (CI: small transfers, one run) or full (the documented figures).
    pub mode: Mode,
    /// Our release binaries: `mpbond-agent`, `mpbond-concentrator`, `mpbond-tb`.
    /// `main` also exports it as `MPBOND_BIN_DIR`, so the test bed starts these.
    pub bin_dir: PathBuf,
    /// The directory holding shadowsocks-rust's `sslocal` and `ssserver`.
    pub ss_bin: PathBuf,
    /// Where cases put captures, logs and peer configs (created by `main`).
    pub out_dir: PathBuf,
    /// `--soak-minutes`: case 11's length (it then runs in short mode too).
    pub soak_minutes: Option<u64>,
}

#[allow(dead_code)]
impl Ctx {
    /// Interleaved repetitions of each comparison (`mode.runs()`).
    pub fn runs(&self) -> usize {
        self.mode.runs()
    }

    /// Pick the short or the full value of a size or count.
    pub fn pick<T>(&self, short: T, full: T) -> T {
        match self.mode {
            Mode::Short => short,
            Mode::Full => full,
        }
    }

    /// Path of one of our binaries (`mpbond-agent`, ...), checked to exist.
    pub fn bin(&self, name: &str) -> Result<PathBuf, BenchError> {
        existing(&self.bin_dir, name)
    }

    /// Path of `sslocal` or `ssserver`, checked to exist.
    pub fn ss(&self, name: &str) -> Result<PathBuf, BenchError> {
        existing(&self.ss_bin, name)
    }

    /// A path under [`Ctx::out_dir`].
    pub fn out(&self, file: &str) -> PathBuf {
        self.out_dir.join(file)
    }
}

fn existing(dir: &Path, name: &str) -> Result<PathBuf, BenchError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(BenchError::MissingTool {
            name: name.to_owned(),
            dir: dir.to_owned(),
        })
    }
}

/// Why a case could not produce its figures.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The test bed (namespaces, daemons, tools) failed.
    #[error(transparent)]
    Bed(#[from] BedError),
    /// A binary the suite needs is missing.
    #[error("{name} not found in {}", dir.display())]
    MissingTool {
        /// The binary's name.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A file of the suite could not be read or written.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A measurement ran but its result is unusable (failed transfer, bad
    /// hash, a tool's unexpected output).
    #[error("{case}: {what}")]
    Measure {
        /// Which case.
        case: &'static str,
        /// What went wrong.
        what: String,
    },
}

impl BenchError {
    /// A [`BenchError::Measure`].
    pub fn measure(case: &'static str, what: impl Into<String>) -> Self {
        Self::Measure {
            case,
            what: what.into(),
        }
    }
}
