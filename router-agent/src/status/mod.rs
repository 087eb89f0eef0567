//! Status: the agent's status model, the control socket that serves it, and the
//! `mpbond-agent status` client.
//!
//! ```text
//! state.rs    StatusModel (live state, time passed in) -> StatusDoc (docs/STATUS.md)
//! server.rs   ControlSocket: unix stream socket, one JSON document per connection
//! client.rs   status_command(): fetch from the socket, print JSON or the table
//! render.rs   the human table (pure)
//! render_protect.rs  its protected UDP flows' lines (pure)
//! convert.rs  From the control-plane model (model::wan, model::wan_health) to the status model
//! ```

pub mod client;
pub mod concentrators;
mod convert;
pub mod render;
pub mod render_protect;
pub mod server;
pub mod state;

pub use client::{status_command, ClientError, EXIT_NOT_RUNNING};
pub use server::{ControlError, ControlSocket, DEFAULT_SOCKET};
pub use state::{
    ConcentratorStatus, ConnectionCounts, KernelStatus, MeterStatus, StatusDoc, StatusModel,
    UsageStatus, WanChange, WanInfo, WanMode, WanState, WanStatus, SCHEMA,
};
