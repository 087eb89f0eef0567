//! [`Kernel`]: the real [`NetBackend`], over rtnetlink and the MPTCP path manager.
//!
//! `dump()` returns only what the agent owns: routes in the owned tables with the owned
//! protocol, rules in the owned priority range, endpoints with owned ids, and the
//! (namespace-wide) limits. `apply()` carries out one [`NetOp`] and refuses any object
//! outside the owned ranges. [`Kernel::cleanup`] removes every owned route, rule and
//! endpoint, for a clean exit and for a start after a crash.
//!
//! `Kernel::connect` must run inside a tokio runtime, in the network namespace it will
//! manage: both netlink sockets are opened there and registered with the runtime.

use std::io;

use tracing::{debug, warn};

use super::mptcp_pm::PmHandle;
use super::rtnl::Rtnl;
use super::types::{Endpoint, KernelState, NetBackend, NetError, NetOp, Ownership, Snapshot};
use super::{other_err, snapshot};

/// The kernel backend.
#[derive(Debug)]
pub struct Kernel {
    own: Ownership,
    rtnl: Rtnl,
    pm: PmHandle,
}

impl Kernel {
    /// Open the rtnetlink socket and the path-manager client. Fails only if a socket
    /// cannot be opened or the kernel has no MPTCP path manager.
    pub async fn connect(own: Ownership) -> Result<Kernel, NetError> {
        let rtnl = Rtnl::connect()?;
        let pm = PmHandle::connect().await?;
        Ok(Kernel { own, rtnl, pm })
    }

    /// What the agent owns.
    pub fn ownership(&self) -> &Ownership {
        &self.own
    }

    /// The rtnetlink socket.
    pub fn rtnl(&self) -> &Rtnl {
        &self.rtnl
    }

    /// The path-manager client (e.g. `set_backup`, `events`).
    pub fn pm(&self) -> &PmHandle {
        &self.pm
    }

    /// Links, addresses and main-table routes.
    pub async fn snapshot(&self) -> Result<Snapshot, NetError> {
        snapshot::snapshot(&self.rtnl).await
    }

    /// Remove every owned endpoint, rule and route (in that order). Objects that vanish
    /// meanwhile (`ENOENT`/`ESRCH`, e.g. routes flushed by a link going down) count as
    /// removed, if a final dump confirms that nothing owned is left. Tries everything, then
    /// reports the first failure; `Ok` is the count.
    pub async fn cleanup(&mut self) -> Result<usize, NetError> {
        let state = self.dump().await?;
        let mut ops: Vec<NetOp> = Vec::new();
        ops.extend(state.endpoints.into_iter().map(NetOp::DelEndpoint));
        ops.extend(state.rules.into_iter().map(NetOp::DelRule));
        ops.extend(state.routes.into_iter().map(NetOp::DelRoute));
        let mut removed = 0;
        let mut first_error = None;
        for op in &ops {
            match self.apply(op).await {
                Ok(()) => removed += 1,
                Err(e) if is_gone(&e) => {
                    debug!(?op, "already gone");
                    removed += 1;
                }
                Err(e) => {
                    warn!(error = %e, "cleanup step failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        // "Gone" answers are trusted only if a fresh dump agrees.
        let left = self.dump().await?;
        let count = left.routes.len() + left.rules.len() + left.endpoints.len();
        if count > 0 {
            return Err(NetError::Other(format!(
                "{count} owned objects remain after cleanup: {left:?}"
            )));
        }
        Ok(removed)
    }

    fn check_endpoint(&self, ep: &Endpoint, op: &str) -> Result<(), NetError> {
        if self.own.owns_endpoint_id(ep.id) {
            Ok(())
        } else {
            Err(other_err(
                op,
                "endpoint id outside the owned range: refused",
            ))
        }
    }
}

/// Did the object disappear before we got to it?
fn is_gone(e: &NetError) -> bool {
    match e {
        NetError::Kernel { source, .. } => {
            source.kind() == io::ErrorKind::NotFound
                || source.raw_os_error() == Some(libc::ENOENT)
                || source.raw_os_error() == Some(libc::ESRCH)
        }
        NetError::Other(_) => false,
    }
}

impl NetBackend for Kernel {
    async fn dump(&mut self) -> Result<KernelState, NetError> {
        let routes = self.rtnl.dump_routes(&self.own).await?;
        let rules = self.rtnl.dump_rules(&self.own).await?;
        let endpoints = self
            .pm
            .dump_endpoints()
            .await?
            .into_iter()
            .filter(|ep| self.own.owns_endpoint_id(ep.id))
            .collect();
        let limits = Some(self.pm.get_limits().await?);
        Ok(KernelState {
            routes,
            rules,
            endpoints,
            limits,
        })
    }

    async fn apply(&mut self, op: &NetOp) -> Result<(), NetError> {
        let (h, own) = (&self.rtnl, &self.own);
        match op {
            NetOp::AddRoute(r) => h.add_route(own, r).await,
            NetOp::DelRoute(r) => h.del_route(own, r).await,
            NetOp::AddRule(r) => h.add_rule(own, r).await,
            NetOp::DelRule(r) => h.del_rule(own, r).await,
            NetOp::AddEndpoint(ep) => {
                self.check_endpoint(ep, "adding an MPTCP endpoint")?;
                self.pm.add_endpoint(ep).execute().await
            }
            NetOp::DelEndpoint(ep) => {
                self.check_endpoint(ep, "deleting an MPTCP endpoint")?;
                self.pm.del_endpoint(ep.id).execute().await
            }
            NetOp::SetBackup(ep) => {
                self.check_endpoint(ep, "flagging an MPTCP endpoint")?;
                self.pm.set_backup(ep.id, ep.backup).execute().await
            }
            NetOp::SetLimits(limits) => self.pm.set_limits(*limits).execute().await,
        }
    }
}
