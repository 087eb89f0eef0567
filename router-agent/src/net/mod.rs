//! Kernel I/O that carries out the model's decisions. Only syscall results are decided
//! here; policy lives in `crate::model`.
//!
//! # Layout
//!
//! ```text
//! kernel.rs     Kernel: the NetBackend over rtnetlink + mptcp_pm; snapshot(), cleanup()
//! rtnl.rs       Rtnl: an ACK-checked rtnetlink connection; owned routes and rules
//! rtnl_msg.rs   route and rule messages: build ours, recognise ours in a dump (no socket)
//! snapshot.rs   links, addresses and main-table routes -> model Snapshot
//! monitor.rs    rtnetlink multicast -> "something changed" nudges
//! mptcp_pm.rs   generic-netlink client of the MPTCP path manager, and its event stream
//! pm_wire.rs    the mptcp_pm message and attribute bytes (no socket)
//! sysctl.rs     rp_filter per WAN, the CPE MPTCP sysctls
//! features.rs   probe what this kernel's MPTCP can do
//! ```
//!
//! Every socket lives in the network namespace of the thread that opens it, and every
//! connection task runs on the caller's tokio runtime.

pub mod features;
pub mod kernel;
pub mod monitor;
pub mod mptcp_pm;
mod pm_wire;
pub mod rtnl;
pub mod rtnl_msg;
pub mod snapshot;
pub mod sysctl;

/// The model types this module reads and writes, under one name.
mod model {
    pub use crate::model::netops::*;
    pub use crate::model::wan::{AddrInfo, LinkInfo, RouteInfo, Snapshot};
}

use std::fmt::Display;
use std::io;

use tokio::task::JoinHandle;

pub use kernel::Kernel;
pub use monitor::{monitor, Monitor};

use model::NetError;

/// A spawned connection task, aborted when its owner is dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A kernel error for `op`.
pub(crate) fn kernel_err(op: &str, source: io::Error) -> NetError {
    NetError::Kernel {
        op: op.to_owned(),
        source,
    }
}

/// A failure that is not an errno (e.g. the netlink connection task is gone).
pub(crate) fn other_err(op: &str, error: impl Display) -> NetError {
    NetError::Other(format!("{op}: {error}"))
}

/// An rtnetlink error for `op`: the kernel's errno if it sent one.
pub(crate) fn rtnl_err(op: &str, error: rtnetlink::Error) -> NetError {
    match error {
        rtnetlink::Error::NetlinkError(msg) => kernel_err(op, msg.to_io()),
        other => other_err(op, other),
    }
}
