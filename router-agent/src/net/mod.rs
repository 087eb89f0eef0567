//! Kernel I/O that carries out the model's decisions. Only syscall results are decided
//! here; policy lives in `crate::model`.
//!
//! # Layout
//!
//! ```text
//! backend.rs    the NetBackend seam, NetError, and the in-memory RecordingBackend
//! kernel.rs     Kernel: the NetBackend over rtnetlink + mptcp_pm; snapshot(), cleanup()
//! rtnl.rs       Rtnl: an ACK-checked rtnetlink socket; owned routes and rules
//! rtnl_msg.rs   model Route/Rule <-> rtnetlink messages; recognise ours in a dump (no socket)
//! snapshot.rs   links, addresses and main-table routes -> model Snapshot
//! monitor.rs    rtnetlink multicast -> "something changed" nudges
//! mptcp_pm.rs   the MPTCP path manager: request → execute(), with the model's types
//! sysctl.rs     rp_filter per WAN, the CPE MPTCP sysctls
//! sock_diag.rs  tcp_info of the TCP sockets (MPTCP subflows too) to one address
//! features.rs   probe what this kernel's MPTCP can do
//! ```
//!
//! The bytes and the sockets are `mpbond-netlink`'s (one codec for the whole workspace);
//! this module adds the model's types, the ownership checks and the operation names in
//! errors. Every socket lives in the network namespace of the thread that opens it and is
//! registered with the caller's tokio runtime.

pub mod backend;
pub mod features;
pub mod kernel;
pub mod monitor;
pub mod mptcp_pm;
pub mod rtnl;
pub mod rtnl_msg;
pub mod snapshot;
pub mod sock_diag;
pub mod sysctl;

/// The model types this module reads and writes, under one name.
mod types {
    pub use crate::model::netops::*;
    pub use crate::model::wan::{AddrInfo, LinkInfo, RouteInfo, Snapshot};
    pub use crate::net::backend::{NetBackend, NetError};
}

use std::fmt::Display;
use std::io;

pub use kernel::Kernel;
pub use monitor::{monitor, Monitor};

use types::NetError;

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

/// A netlink error for `op`: the errno (kernel's or socket's), with the kernel's extended
/// ACK text in the operation's name when there is one.
pub(crate) fn nl_err(op: &str, error: mpbond_netlink::Error) -> NetError {
    match error {
        mpbond_netlink::Error::Kernel {
            errno,
            detail: Some(detail),
        } => kernel_err(
            &format!("{op} ({detail})"),
            io::Error::from_raw_os_error(errno),
        ),
        other => kernel_err(op, other.into()),
    }
}
