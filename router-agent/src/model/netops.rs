//! What the kernel should hold for the agent, and the operations that get it there.
//!
//! * [`Ownership`]: the table-id range, rule-priority range, route protocol and MPTCP
//!   endpoint ids the agent owns. It touches nothing outside them.
//! * [`Route`], [`Rule`], [`Endpoint`], [`Limits`] and [`KernelState`]: the owned objects,
//!   as plain values. The route protocol is not part of [`Route`]: the kernel backend stamps
//!   every route it adds with [`Ownership::route_protocol`] and dumps only those.
//! * [`NetOp`] and the [`NetBackend`] seam (STYLE practice 3). The real backend is
//!   `crate::net::Kernel`; [`RecordingBackend`] applies ops to an in-memory [`KernelState`]
//!   and logs them, so planner scenarios run in plain `cargo test` without root. It fails
//!   on operations the kernel would refuse (deleting what is not there, duplicates) and, in
//!   strict mode, on bad orderings (an endpoint added before its rule and route exist, or a
//!   rule or route removed while an endpoint still depends on it; a `DelRoute` directly
//!   followed by the `AddRoute` of the same key is a replacement and allowed).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::IpNet;
use thiserror::Error;

/// The metric of every route the agent installs. IPv6 turns metric 0 into 1024, so the
/// agent asks for 1024 explicitly and a dump compares equal to the plan.
pub const ROUTE_METRIC: u32 = 1024;

/// The kernel's limit on MPTCP endpoints and subflows (`MPTCP_PM_ADDR_MAX` is 8 in
/// practice: `subflows` and `add_addr_accepted` are capped at 8).
pub const MPTCP_MAX: u32 = 8;

/// The ranges the agent owns in the kernel. Everything else is left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    /// First routing table id; WAN slot `s` uses `table_base + s`.
    pub table_base: u32,
    /// Number of table ids owned, from `table_base`.
    pub table_count: u32,
    /// First `ip rule` priority; WAN slot `s` uses `rule_priority_base + s`.
    pub rule_priority_base: u32,
    /// Number of rule priorities owned, from `rule_priority_base`.
    pub rule_priority_count: u32,
    /// `rtm_protocol` stamped on every owned route (0x5d = 93, "mpbond").
    pub route_protocol: u8,
    /// MPTCP endpoint ids the agent uses.
    pub endpoint_ids: RangeInclusive<u8>,
}

impl Default for Ownership {
    fn default() -> Self {
        Ownership {
            table_base: 2000,
            table_count: 32,
            rule_priority_base: 2000,
            rule_priority_count: 64,
            route_protocol: 0x5d,
            endpoint_ids: 1..=8,
        }
    }
}

impl Ownership {
    /// Number of WAN slots: each slot needs one table and one rule priority.
    pub fn slot_count(&self) -> u32 {
        self.table_count.min(self.rule_priority_count)
    }

    /// The table of WAN slot `slot`, if the slot is in range.
    pub fn table(&self, slot: u32) -> Option<u32> {
        (slot < self.slot_count()).then(|| self.table_base.saturating_add(slot))
    }

    /// The rule priority of WAN slot `slot`, if the slot is in range.
    pub fn rule_priority(&self, slot: u32) -> Option<u32> {
        (slot < self.slot_count()).then(|| self.rule_priority_base.saturating_add(slot))
    }

    /// Whether `table` is one of ours.
    pub fn owns_table(&self, table: u32) -> bool {
        table >= self.table_base && table - self.table_base < self.table_count
    }

    /// Whether a rule priority is one of ours.
    pub fn owns_priority(&self, priority: u32) -> bool {
        priority >= self.rule_priority_base
            && priority - self.rule_priority_base < self.rule_priority_count
    }

    /// Whether an MPTCP endpoint id is one of ours.
    pub fn owns_endpoint_id(&self, id: u8) -> bool {
        self.endpoint_ids.contains(&id)
    }
}

/// A route in one of the agent's tables. `gateway: None` is a `dev` route.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub table: u32,
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub prefsrc: Option<IpAddr>,
    pub metric: u32,
}

impl Route {
    /// What the kernel treats as the route's identity: two routes with the same key cannot
    /// coexist (IPv4 refuses the second, IPv6 would merge them into a multipath route).
    pub fn key(&self) -> (u32, IpNet, u32) {
        (self.table, self.dst, self.metric)
    }
}

/// `from FROM lookup TABLE priority PRIORITY`; the family follows `from`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    pub priority: u32,
    pub from: IpNet,
    pub table: u32,
}

/// An MPTCP path-manager endpoint, always with the `subflow` flag.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub id: u8,
    pub addr: IpAddr,
    pub ifindex: u32,
    pub backup: bool,
}

/// The MPTCP path-manager limits (`ip mptcp limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Limits {
    pub subflows: u32,
    pub add_addr_accepted: u32,
}

/// The kernel objects the agent owns (and only those).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelState {
    pub routes: BTreeSet<Route>,
    pub rules: BTreeSet<Rule>,
    pub endpoints: BTreeSet<Endpoint>,
    /// `None`: the limits are not managed (or not known).
    pub limits: Option<Limits>,
}

/// One change to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetOp {
    AddRoute(Route),
    DelRoute(Route),
    AddRule(Rule),
    DelRule(Rule),
    AddEndpoint(Endpoint),
    DelEndpoint(Endpoint),
    SetLimits(Limits),
}

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
