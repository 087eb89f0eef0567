//! Pure models: no I/O, no clock (time is a parameter), no I/O types; unit-tested.
//! The decision core ([`crate::core`]) and the control plane's reconcile decide with them.
//!
//! * [`failopen`]: the fail-open state machine fed by concentrator probe verdicts.
//! * [`plan`]: the nft [`RedirectSpec`](plan::RedirectSpec) the agent wants, from the
//!   config and the concentrator's resolved addresses.
//! * [`wan`]: the WANs discovered from a kernel snapshot; [`wan_book`]: their per-WAN
//!   health over time ([`probe`]: one WAN's probe state machine) and probe targets.
//! * [`routing`]: desired tables, rules, endpoints; [`netops`]: the owned objects and the
//!   operations (`NetOp`) that `crate::net::backend` carries out.

pub mod failopen;
pub mod netops;
pub mod plan;
pub mod routing;
pub mod udp_plan;
pub mod wan;
pub mod wan_book;
pub mod wan_health;

pub use failopen::{FailOpen, LinkState, Probe, Switch};
pub use plan::{redirect_spec, BUILTIN_BYPASS};
