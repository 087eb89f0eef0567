//! UDP flows (issue 9): one authenticated MPTCP connection per UDP flow, relayed to one
//! connected UDP socket as RFC 9297 DATAGRAM capsules (`docs/PROTOCOL.md`, "UDP flows").
//!
//! The decisions are made elsewhere, as for TCP: `mpbond_protocol`'s `ServerHandshake`
//! answers `Decision::Udp` for an authenticated UDP request, the destination goes through
//! the same [`crate::policy`] and [`crate::admission`] limits as a TCP connect, and then
//! this module's own limits apply.
//!
//! * [`config`]: `[udp]` (limits, idle timeouts, queue size) and its defaults.
//! * [`limits`]: per-client flow count and datagram token bucket. Pure.
//! * [`queue`]: the bounded downstream queue of encoded capsules. Pure.
//! * [`relay`]: one flow's relay loop (capsules ↔ datagrams).
//! * [`serve`]: a flow from the decision to its end: policy, limits, the socket, the
//!   reply, the relay, the close.
//! * [`group`]: protected flows' flow groups: one socket, dedup and sequence counter
//!   per (client, group id), shared by the group's legs; the directory of live groups.
//! * [`group_fec`]: a flow group in `fec` mode: upstream recovery, downstream blocks
//!   spread over the live legs.
//! * [`leg`]: one leg of a protected flow: join the group, relay sequenced capsules.
//! * [`sys`]: `sendmmsg`, many datagrams in one call.
//! * [`metrics`]: the `mpbond_udp_*` families.

pub mod config;
pub(crate) mod group;
pub(crate) mod group_fec;
pub(crate) mod leg;
pub(crate) mod limits;
pub mod metrics;
pub(crate) mod queue;
pub(crate) mod relay;
pub(crate) mod serve;
pub(crate) mod sys;

pub use config::{RawUdp, UdpConfig};
pub(crate) use group::FlowGroups;
pub(crate) use limits::UdpClients;
pub use metrics::{DropReason, UdpMetrics};
