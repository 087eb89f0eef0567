//! The test bed's network namespaces: [`mpbond_testkit::Netns`], the guard every
//! namespace test of the workspace uses (names `mpbt-<pid>-<counter>-<role>`, deleted on
//! drop, even on panic; stale ones swept by [`sweep_stale`] when the next bed is built;
//! [`cleanup_registered`] for a Ctrl-C handler).

pub use mpbond_testkit::netns::{cleanup_registered, sweep_stale, Netns, NetnsError, PREFIX};
