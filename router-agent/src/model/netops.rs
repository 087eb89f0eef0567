//! What the kernel should hold for the agent, and the operations that get it there.
//!
//! * [`Ownership`]: the table-id range, rule-priority range, route protocol and MPTCP
//!   endpoint ids the agent owns. It touches nothing outside them.
//! * [`Route`], [`Rule`], [`Endpoint`], [`Limits`] and [`KernelState`]: the owned objects,
//!   as plain values. The route protocol is not part of [`Route`]: the kernel backend stamps
//!   every route it adds with [`Ownership::route_protocol`] and dumps only those.
//! * [`NetOp`]: one change. `crate::net::backend` has the seam that carries ops out
//!   (`NetBackend`: the real `crate::net::Kernel` and the in-memory `RecordingBackend`).
//!
//! Plain values only: no I/O type, no error type of the kernel's.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::IpNet;

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
    /// Turn the backup flag of an existing endpoint to `Endpoint::backup` in place
    /// (`SET_FLAGS`): its subflows stay, only the scheduler's preference changes.
    SetBackup(Endpoint),
    SetLimits(Limits),
}
