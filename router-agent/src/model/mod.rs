//! Pure decisions: no I/O, no clock (time is a parameter), unit-tested.
//!
//! * [`plan`]: from the config and the concentrator's resolved addresses, the nft
//!   [`RedirectSpec`](crate::nft::RedirectSpec) the agent wants.
//! * [`health`]: the fail-open state machine fed by probe results.

pub mod failopen;
pub mod netops;
pub mod plan;
pub mod probe;
pub mod routing;
pub mod wan;

pub use failopen::{FailOpen, LinkState, Probe, Transition};
pub use plan::{redirect_spec, BUILTIN_BYPASS};
