//! The seam at the kernel (STYLE practice 3): [`NetBackend`] dumps what the agent owns
//! and applies one [`NetOp`]. The real backend is [`crate::net::Kernel`];
//! [`RecordingBackend`] applies ops to an in-memory [`KernelState`] and logs them, so
//! planner and reconcile scenarios run in plain `cargo test` without root. It fails on
//! operations the kernel would refuse (deleting what is not there, duplicates) and, in
//! strict mode, on bad orderings (an endpoint added before its rule and route exist, or a
//! rule or route removed while an endpoint still depends on it; a `DelRoute` directly
//! followed by the `AddRoute` of the same key is a replacement and allowed).

use std::future::Future;
use std::net::IpAddr;

use thiserror::Error;

use crate::model::netops::{KernelState, NetOp, MPTCP_MAX};

/// Why a kernel operation failed.
#[derive(Debug, Error)]
pub enum NetError {
    #[error("{op}: {source}")]
    Kernel {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// The seam at the kernel: dump what we own, apply one operation.
pub trait NetBackend {
    /// The objects the agent owns (by table range, priority range, protocol, endpoint ids).
    fn dump(&mut self) -> impl Future<Output = Result<KernelState, NetError>>;
    /// Apply one operation.
    fn apply(&mut self, op: &NetOp) -> impl Future<Output = Result<(), NetError>>;
}

/// An in-memory backend that applies ops to a [`KernelState`] and logs them.
#[derive(Clone, Debug)]
pub struct RecordingBackend {
    /// What the "kernel" holds now.
    pub state: KernelState,
    /// Every op applied successfully, in order.
    pub log: Vec<NetOp>,
    /// Check ordering invariants on top of the kernel's own refusals (see module docs).
    pub strict: bool,
}

impl Default for RecordingBackend {
    fn default() -> Self {
        RecordingBackend::new(KernelState::default())
    }
}

fn kernel_err(op: &NetOp, errno: i32) -> NetError {
    NetError::Kernel {
        op: format!("{op:?}"),
        source: std::io::Error::from_raw_os_error(errno),
    }
}

fn order_err(op: &NetOp, why: &str) -> NetError {
    NetError::Other(format!("bad ordering: {op:?}: {why}"))
}

impl RecordingBackend {
    /// A strict backend starting from `state`.
    pub fn new(state: KernelState) -> Self {
        RecordingBackend {
            state,
            log: Vec::new(),
            strict: true,
        }
    }

    /// A backend that only refuses what the kernel would refuse (no ordering checks).
    pub fn lenient(state: KernelState) -> Self {
        RecordingBackend {
            strict: false,
            ..RecordingBackend::new(state)
        }
    }

    /// Apply every op in order; stop at the first error.
    /// A `DelRoute` immediately followed by an `AddRoute` of the same kernel key is a
    /// replacement: the strict "last route" check does not apply to it.
    pub fn apply_all(&mut self, ops: &[NetOp]) -> Result<(), NetError> {
        for (i, op) in ops.iter().enumerate() {
            let replaced = match (op, ops.get(i + 1)) {
                (NetOp::DelRoute(old), Some(NetOp::AddRoute(new))) => old.key() == new.key(),
                _ => false,
            };
            let strict = self.strict;
            self.strict = strict && !replaced;
            let result = self.apply_now(op);
            self.strict = strict;
            result?;
        }
        Ok(())
    }

    /// Apply one op synchronously (the [`NetBackend`] futures are this, already ready).
    pub fn apply_now(&mut self, op: &NetOp) -> Result<(), NetError> {
        let s = &mut self.state;
        match op {
            NetOp::AddRoute(r) => {
                if s.routes.iter().any(|x| x.key() == r.key()) {
                    return Err(kernel_err(op, libc::EEXIST));
                }
                s.routes.insert(r.clone());
            }
            NetOp::DelRoute(r) => {
                if !s.routes.contains(r) {
                    return Err(kernel_err(op, libc::ESRCH));
                }
                if self.strict {
                    let left = s.routes.iter().filter(|x| x.table == r.table).count();
                    if left == 1 && depends_on_table(s, r.table) {
                        return Err(order_err(op, "last route of a table a live endpoint uses"));
                    }
                }
                s.routes.remove(r);
            }
            NetOp::AddRule(r) => {
                if !s.rules.insert(r.clone()) {
                    return Err(kernel_err(op, libc::EEXIST));
                }
            }
            NetOp::DelRule(r) => {
                if !s.rules.contains(r) {
                    return Err(kernel_err(op, libc::ENOENT));
                }
                if self.strict {
                    let orphan = s.endpoints.iter().any(|e| {
                        r.from.contains(&e.addr)
                            && !s.rules.iter().any(|o| o != r && o.from.contains(&e.addr))
                    });
                    if orphan {
                        return Err(order_err(op, "a live endpoint still uses this rule"));
                    }
                }
                s.rules.remove(r);
            }
            NetOp::AddEndpoint(e) => {
                if s.endpoints.iter().any(|x| x.id == e.id || x.addr == e.addr) {
                    return Err(kernel_err(op, libc::EINVAL));
                }
                if self.strict && !routed(s, e.addr) {
                    return Err(order_err(op, "no rule and route for its address yet"));
                }
                s.endpoints.insert(e.clone());
            }
            NetOp::DelEndpoint(e) => {
                if !s.endpoints.remove(e) {
                    return Err(kernel_err(op, libc::ENOENT));
                }
            }
            NetOp::SetBackup(e) => {
                let old = s
                    .endpoints
                    .iter()
                    .find(|x| x.id == e.id && x.addr == e.addr && x.ifindex == e.ifindex)
                    .cloned();
                let Some(old) = old else {
                    return Err(kernel_err(op, libc::ENOENT));
                };
                s.endpoints.remove(&old);
                s.endpoints.insert(e.clone());
            }
            NetOp::SetLimits(l) => {
                if l.subflows > MPTCP_MAX || l.add_addr_accepted > MPTCP_MAX {
                    return Err(kernel_err(op, libc::EINVAL));
                }
                s.limits = Some(*l);
            }
        }
        self.log.push(op.clone());
        Ok(())
    }
}

/// Whether some rule covers `addr` and points at a table holding at least one route.
fn routed(s: &KernelState, addr: IpAddr) -> bool {
    s.rules
        .iter()
        .any(|r| r.from.contains(&addr) && s.routes.iter().any(|x| x.table == r.table))
}

/// Whether a live endpoint reaches `table` through its rules and has no other routed rule.
fn depends_on_table(s: &KernelState, table: u32) -> bool {
    s.endpoints.iter().any(|e| {
        let mut tables = s
            .rules
            .iter()
            .filter(|r| r.from.contains(&e.addr))
            .map(|r| r.table);
        let uses = tables.clone().any(|t| t == table);
        let other = tables.any(|t| t != table && s.routes.iter().any(|x| x.table == t));
        uses && !other
    })
}

impl NetBackend for RecordingBackend {
    fn dump(&mut self) -> impl Future<Output = Result<KernelState, NetError>> {
        std::future::ready(Ok(self.state.clone()))
    }

    fn apply(&mut self, op: &NetOp) -> impl Future<Output = Result<(), NetError>> {
        std::future::ready(self.apply_now(op))
    }
}
