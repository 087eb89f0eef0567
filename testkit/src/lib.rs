//! Test-only helpers shared by every mpbond crate (a dev-dependency, never shipped).
//!
//! Layout:
//! * [`netns`]: [`Netns`], a uniquely named network namespace deleted on drop (also when
//!   the test panics), with "run this closure / command inside it" helpers, and the sweep
//!   of namespaces left behind by a killed test process.
//! * [`netstat`]: the kernel's SNMP counters of a namespace, and how much one grew.
//! * [`fixtures`]: [`fixture_files`], a fixture folder's files, failing when it holds none.
//! * [`require`]: [`require_root`] and [`require_tools`], which fail the calling test with
//!   a clear message instead of letting it skip and pass.
//! * [`rng`]: [`Xorshift`], the one seeded generator the tests use for reproducible cases.
//! * [`poll`]: [`wait_until`], a condition checked until it holds or a deadline passes.
//! * [`limit`]: [`bounded`] and [`block_on_bounded`], an async test body under a time limit
//!   (a hang fails the test).
//! * [`tempdir`]: [`TempDir`], a uniquely named scratch directory removed on drop (kept
//!   with `MPBOND_KEEP_TMP`).
//! * [`curl`]: curl as a device that speaks MPTCP itself (`mptcpize run`), fetching
//!   through a SOCKS5 proxy in a namespace: the concentrator's SOCKS5 tests and bench
//!   case 20.
//!
//! A test that needs root or a tool is `#[ignore = "needs root and netns"]` (or names the
//! tool), and `tests/run.sh` runs it as root with `--include-ignored`. This crate depends
//! on no other workspace crate, so each of them can dev-depend on it.

pub mod curl;
pub mod fixtures;
pub mod limit;
pub mod netns;
pub mod netstat;
pub mod poll;
pub mod require;
pub mod rng;
pub mod tempdir;

pub use fixtures::fixture_files;
pub use limit::{block_on_bounded, bounded};
pub use netns::{Netns, NetnsError};
pub use poll::wait_until;
pub use require::{is_root, require_root, require_tools};
pub use rng::Xorshift;
pub use tempdir::{TempDir, TempDirError};
