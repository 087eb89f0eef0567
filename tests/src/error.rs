//! The test bed's error type.

use std::path::PathBuf;

/// Everything that can go wrong while building or driving the test bed.
#[derive(Debug, thiserror::Error)]
pub enum BedError {
    /// A process could not be started.
    #[error("cannot run {cmd}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A command did not finish in time.
    #[error("`{cmd}` did not finish within {secs} s")]
    Timeout {
        /// The command line.
        cmd: String,
        /// The limit.
        secs: u64,
    },
    /// A file or socket of the test bed could not be used.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A binary the test bed needs is not built.
    #[error("{name} not found in {dir}: run `{hint}` first (or set MPBOND_BIN_DIR)")]
    MissingBinary {
        /// The binary's name.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// The command that builds it.
        hint: String,
    },
    /// A daemon exited before it signalled readiness.
    #[error("{name} exited ({status}) before READY=1; log tail:\n{log}")]
    DaemonExited {
        /// Which daemon.
        name: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// The end of its log.
        log: String,
    },
    /// A daemon did not signal readiness in time.
    #[error("{name} sent no READY=1 within {secs} s; log tail:\n{log}")]
    NotReady {
        /// Which daemon.
        name: String,
        /// The limit.
        secs: u64,
        /// The end of its log.
        log: String,
    },
    /// A tool printed something that is not the expected JSON.
    #[error("cannot parse the output of {cmd}: {output:?}")]
    BadOutput {
        /// The command line.
        cmd: String,
        /// What it printed.
        output: String,
        /// Why it did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A network namespace could not be created.
    #[error(transparent)]
    Netns(#[from] mpbond_testkit::NetnsError),
    /// The MIPS router VM failed or lacks a part.
    #[error(transparent)]
    Vm(#[from] crate::vm::VmError),
    /// The caller asked for something the test bed does not have.
    #[error("{0}")]
    Usage(String),
}
