//! From WANs to the kernel state the agent wants ([`plan`]), and from the state it has to
//! the operations that get there ([`diff`]).
//!
//! # Plan
//!
//! Every WAN whose mode is not `Off` and whose link is up gets a *slot* `s`: table
//! `table_base + s` and rule priority `rule_priority_base + s`. Its table holds
//! * the connected prefix of each address (none for a /32 or /128),
//! * per family with an address, the default route: via the gateway, or `dev` only for a
//!   point-to-point link or a main-table `default dev X`,
//! * the IPv6 routes the main table learnt from router advertisements on that device.
//!
//! and there is one rule per address, `from ADDR lookup TABLE`. These exist whatever the
//! health, so a WAN marked down by its probes can still be probed through itself.
//!
//! One MPTCP endpoint per usable address of a WAN whose mode is not `Off` and that is
//! not held back (`standby`, a metered WAN, `core::metered`): explicit id, `backup` for
//! backup mode, the WAN's ifindex. A WAN whose probes say `Down` keeps its
//! endpoints as they are ([`DownReaction::Keep`], the default): deleting them closed the
//! live subflows on that WAN and cost a running download a second dip seconds after the
//! kernel had already moved its traffic (docs/DESIGN.md, "Reaction to a dead WAN"); new
//! connections are steered away by their source address (`core::hedge`). At most
//! [`MPTCP_MAX`] (and no more than `Ownership::endpoint_ids` holds); the rest are reported
//! in [`Plan::warnings`]. Limits: `subflows = min(cap, max(2, endpoints))`.
//!
//! **Stable slots and ids.** [`plan_with`] takes a [`Slots`] map it reads and updates: a
//! WAN keeps its slot for as long as it is known (a slot of a WAN that vanished is reused
//! only when no slot is free), and an address keeps its endpoint id while it stays an
//! endpoint. So a new WAN or address never renumbers the others, and [`diff`] touches
//! only what changed. New WANs take the lowest free slot in name order, so [`plan`] (a
//! fresh map) numbers by sorted name.
//!
//! # Diff
//!
//! `SetLimits` (if changed) → `SetBackup` (an endpoint whose only change is its backup
//! flag: changed in place, its subflows stay) → `DelEndpoint` → `AddRoute` → `AddRule` → `AddEndpoint` →
//! `DelRule` → `DelRoute`. Endpoints go before the rules and routes they use, and are added
//! after them. A route whose kernel key (table, dst, metric) stays but whose gateway, device
//! or source changed is replaced by `DelRoute` immediately followed by `AddRoute`, after the
//! other new routes (a backend may turn the pair into one `NLM_F_REPLACE`). New device
//! routes (connected prefixes) are added before gateway routes, and removed after them, so
//! a gateway always resolves through the WAN's own table. A changed endpoint (address,
//! or ifindex) is `DelEndpoint` + `AddEndpoint`: the kernel cannot change an endpoint's
//! address, and re-adding re-creates subflows.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::netops::{
    Endpoint, KernelState, Limits, NetOp, Ownership, Route, Rule, MPTCP_MAX, ROUTE_METRIC,
};
use super::wan::{Health, Mode, Wan};

/// What becomes of the endpoints of a WAN whose probes say `Down` (its link still up).
/// `mptcp.down_reaction` in the config; docs/DESIGN.md has what each costs a running
/// download.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DownReaction {
    /// Leave the endpoints and their live subflows alone (the kernel's scheduler already
    /// avoids a stalled subflow); new connections start elsewhere (`core::hedge`).
    #[default]
    Keep,
    /// Flag them `backup` in place (`SET_FLAGS`).
    Backup,
    /// Delete them, which closes their subflows (what the agent used to do).
    Delete,
}

impl std::str::FromStr for DownReaction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep" => Ok(DownReaction::Keep),
            "backup" => Ok(DownReaction::Backup),
            "delete" => Ok(DownReaction::Delete),
            other => Err(format!("{other:?} is not one of keep, backup, delete")),
        }
    }
}

/// The desired kernel state and what could not be fitted into it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub desired: KernelState,
    /// e.g. "address 10.200.9.2 of WAN wan9 (endpoint #9) has no MPTCP endpoint: the
    /// kernel allows 8".
    pub warnings: Vec<String>,
    /// The table of each planned WAN, by name (for the status).
    pub tables: BTreeMap<String, u32>,
    /// The endpoint ids of each WAN, by name (for the status).
    pub endpoint_ids: BTreeMap<String, Vec<u8>>,
}

/// Slot and endpoint-id assignments kept between [`plan_with`] calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slots {
    /// WAN name → slot (table `table_base + slot`).
    pub slots: BTreeMap<String, u32>,
    /// Endpoint address → id.
    pub endpoint_ids: BTreeMap<IpAddr, u8>,
}

/// [`plan_with`] with fresh slots: slots follow sorted WAN names.
pub fn plan(wans: &[Wan], own: &Ownership, limits: Limits) -> Plan {
    plan_with(wans, own, limits, &mut Slots::default())
}

/// The desired state for `wans`; `limits` are the configured caps. See the module docs.
pub fn plan_with(wans: &[Wan], own: &Ownership, limits: Limits, slots: &mut Slots) -> Plan {
    plan_reacting(wans, own, limits, slots, DownReaction::default())
}

/// [`plan_with`], with `down` deciding what becomes of the endpoints of a WAN whose probes
/// say `Down`.
pub fn plan_reacting(
    wans: &[Wan],
    own: &Ownership,
    limits: Limits,
    slots: &mut Slots,
    down: DownReaction,
) -> Plan {
    let mut out = Plan::default();
    let active: Vec<&Wan> = wans
        .iter()
        .filter(|w| w.mode != Mode::Off && w.link_up)
        .collect();
    assign_slots(&active, own, slots, &mut out.warnings);

    let mut by_slot: Vec<(u32, &Wan)> = active
        .iter()
        .filter_map(|w| slots.slots.get(&w.name).map(|&s| (s, *w)))
        .collect();
    by_slot.sort_unstable_by_key(|(s, _)| *s);

    for &(slot, wan) in &by_slot {
        let (Some(table), Some(priority)) = (own.table(slot), own.rule_priority(slot)) else {
            continue;
        };
        out.tables.insert(wan.name.clone(), table);
        wan_routes(wan, table, &mut out.desired.routes);
        for addr in &wan.addresses {
            out.desired.rules.insert(Rule {
                priority,
                from: IpNet::from(addr.addr()),
                table,
            });
        }
    }

    let endpoints = assign_endpoints(&by_slot, own, slots, down, &mut out.warnings);
    for (wan, e) in endpoints {
        out.endpoint_ids
            .entry(wan.name.clone())
            .or_default()
            .push(e.id);
        out.desired.endpoints.insert(e);
    }

    let n = out.desired.endpoints.len() as u32;
    let cap = limits.subflows.min(MPTCP_MAX);
    out.desired.limits = Some(Limits {
        subflows: cap.min(n.max(2)),
        add_addr_accepted: limits.add_addr_accepted.min(MPTCP_MAX),
    });
    out
}

fn assign_slots(active: &[&Wan], own: &Ownership, slots: &mut Slots, warnings: &mut Vec<String>) {
    let count = own.slot_count();
    slots.slots.retain(|_, s| *s < count);
    let mut new: Vec<&str> = active
        .iter()
        .map(|w| w.name.as_str())
        .filter(|n| !slots.slots.contains_key(*n))
        .collect();
    new.sort_unstable();
    new.dedup();
    for name in new {
        let used: BTreeSet<u32> = slots.slots.values().copied().collect();
        let slot = match (0..count).find(|s| !used.contains(s)) {
            Some(s) => s,
            None => {
                // Reclaim the lowest slot of a WAN that is gone.
                let gone = slots
                    .slots
                    .iter()
                    .filter(|(n, _)| !active.iter().any(|w| &w.name == *n))
                    .min_by_key(|(_, s)| **s)
                    .map(|(n, s)| (n.clone(), *s));
                let Some((old, s)) = gone else {
                    warnings.push(format!(
                        "WAN {name} has no routing table: all {count} owned tables are in use"
                    ));
                    continue;
                };
                slots.slots.remove(&old);
                s
            }
        };
        slots.slots.insert(name.to_owned(), slot);
    }
}

fn insert_route(routes: &mut BTreeSet<Route>, route: Route) {
    if !routes.iter().any(|r| r.key() == route.key()) {
        routes.insert(route);
    }
}

fn wan_routes(wan: &Wan, table: u32, routes: &mut BTreeSet<Route>) {
    let route = |dst: IpNet, gateway: Option<IpAddr>| Route {
        table,
        dst,
        gateway,
        oif: wan.ifindex,
        prefsrc: None,
        metric: ROUTE_METRIC,
    };
    for addr in &wan.addresses {
        if addr.prefix_len() < addr.max_prefix_len() {
            insert_route(routes, route(addr.trunc(), None));
        }
    }
    let has4 = wan.addresses.iter().any(|a| matches!(a, IpNet::V4(_)));
    let has6 = wan.addresses.iter().any(|a| matches!(a, IpNet::V6(_)));
    if has4 {
        let dst = IpNet::V4(Default::default());
        match wan.gateway4 {
            Some(gw) => insert_route(routes, route(dst, Some(gw.into()))),
            None if wan.point_to_point || wan.dev_default4 => {
                insert_route(routes, route(dst, None))
            }
            None => {}
        }
    }
    if has6 {
        let dst = IpNet::V6(Default::default());
        match wan.gateway6 {
            Some(gw) => insert_route(routes, route(dst, Some(gw.into()))),
            None if wan.point_to_point || wan.dev_default6 => {
                insert_route(routes, route(dst, None))
            }
            None => {}
        }
        for &(dst, gateway) in &wan.ra_routes {
            insert_route(routes, route(dst, gateway));
        }
    }
}

fn assign_endpoints<'a>(
    by_slot: &[(u32, &'a Wan)],
    own: &Ownership,
    slots: &mut Slots,
    down: DownReaction,
    warnings: &mut Vec<String>,
) -> Vec<(&'a Wan, Endpoint)> {
    // Candidates in slot order; an address on two WANs goes to the first only.
    let mut candidates: Vec<(&Wan, IpAddr)> = Vec::new();
    for &(_, wan) in by_slot {
        let deleted = wan.health == Health::Down && down == DownReaction::Delete;
        if wan.mode == Mode::Off || deleted || wan.standby {
            continue;
        }
        for addr in wan.addresses.iter().map(IpNet::addr) {
            match candidates.iter().find(|(_, a)| *a == addr) {
                Some((first, _)) => warnings.push(format!(
                    "address {addr} of WAN {} is also on WAN {}: no second endpoint",
                    wan.name, first.name
                )),
                None => candidates.push((wan, addr)),
            }
        }
    }
    let max = (own.endpoint_ids.clone().count() as u32).min(MPTCP_MAX) as usize;
    let allowed: Vec<u8> = own.endpoint_ids.clone().take(max).collect();
    slots
        .endpoint_ids
        .retain(|a, id| allowed.contains(id) && candidates.iter().any(|(_, c)| c == a));
    let mut out = Vec::new();
    for (nth, (wan, addr)) in candidates.into_iter().enumerate() {
        let id = match slots.endpoint_ids.get(&addr) {
            Some(&id) => Some(id),
            None => {
                let free = allowed
                    .iter()
                    .copied()
                    .find(|id| !slots.endpoint_ids.values().any(|u| u == id));
                if let Some(id) = free {
                    slots.endpoint_ids.insert(addr, id);
                }
                free
            }
        };
        let Some(id) = id else {
            warnings.push(format!(
                "address {addr} of WAN {} (endpoint #{}) has no MPTCP endpoint: the kernel allows {max}",
                wan.name,
                nth + 1
            ));
            continue;
        };
        let endpoint = Endpoint {
            id,
            addr,
            ifindex: wan.ifindex,
            backup: wan.mode == Mode::Backup
                || (wan.health == Health::Down && down == DownReaction::Backup),
        };
        out.push((wan, endpoint));
    }
    out
}

/// The ordered operations that turn `current` into `desired` (see the module docs).
/// `diff(x, x)` is empty.
pub fn diff(current: &KernelState, desired: &KernelState) -> Vec<NetOp> {
    let mut ops = Vec::new();
    if let Some(limits) = desired.limits {
        if current.limits != Some(limits) {
            ops.push(NetOp::SetLimits(limits));
        }
    }
    // Only the backup flag differs: flip it in place.
    let same_but_flag = |a: &Endpoint, b: &Endpoint| {
        a.id == b.id && a.addr == b.addr && a.ifindex == b.ifindex && a.backup != b.backup
    };
    let flipped: Vec<&Endpoint> = desired
        .endpoints
        .difference(&current.endpoints)
        .filter(|d| current.endpoints.iter().any(|c| same_but_flag(c, d)))
        .collect();
    ops.extend(flipped.iter().map(|e| NetOp::SetBackup((*e).clone())));
    let is_flipped = |e: &Endpoint| flipped.iter().any(|f| f.id == e.id && f.addr == e.addr);
    for e in current.endpoints.difference(&desired.endpoints) {
        if !is_flipped(e) {
            ops.push(NetOp::DelEndpoint(e.clone()));
        }
    }
    // New routes first, then replacements (so a table is never left empty in between).
    let mut adds = Vec::new();
    let mut replacements = Vec::new();
    for r in desired.routes.difference(&current.routes) {
        match current
            .routes
            .iter()
            .find(|o| o.key() == r.key() && !desired.routes.contains(o))
        {
            Some(old) => {
                replacements.push(NetOp::DelRoute(old.clone()));
                replacements.push(NetOp::AddRoute(r.clone()));
            }
            None => adds.push(r),
        }
    }
    // Device routes (connected prefixes) before the gateway routes that resolve through them.
    adds.sort_by_key(|r| r.gateway.is_some());
    ops.extend(adds.into_iter().cloned().map(NetOp::AddRoute));
    ops.append(&mut replacements);
    for r in desired.rules.difference(&current.rules) {
        ops.push(NetOp::AddRule(r.clone()));
    }
    for e in desired.endpoints.difference(&current.endpoints) {
        if !is_flipped(e) {
            ops.push(NetOp::AddEndpoint(e.clone()));
        }
    }
    for r in current.rules.difference(&desired.rules) {
        ops.push(NetOp::DelRule(r.clone()));
    }
    let mut stale: Vec<&Route> = current
        .routes
        .difference(&desired.routes)
        .filter(|r| !desired.routes.iter().any(|d| d.key() == r.key()))
        .collect();
    // Gateway routes before the device routes they resolve through.
    stale.sort_by_key(|r| r.gateway.is_none());
    ops.extend(stale.into_iter().cloned().map(NetOp::DelRoute));
    ops
}

/// Force the endpoints of `wan` in `state` to be deleted and re-added, so the kernel
/// creates subflows on the path again (it never re-creates one that died on its own). Use
/// when a WAN recovers while its endpoints looked unchanged. `state` is what the kernel
/// holds; applying the ops leaves it unchanged.
pub fn refresh_endpoints(state: &KernelState, wan: &Wan) -> Vec<NetOp> {
    let mine: Vec<&Endpoint> = state
        .endpoints
        .iter()
        .filter(|e| e.ifindex == wan.ifindex || wan.addresses.iter().any(|a| a.addr() == e.addr))
        .collect();
    let dels = mine.iter().map(|e| NetOp::DelEndpoint((*e).clone()));
    let adds = mine.iter().map(|e| NetOp::AddEndpoint((*e).clone()));
    dels.chain(adds).collect()
}

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod invariants;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
