//! netifd over ubus: a small native client of the ubus unix-socket protocol and the
//! netifd model the control plane resolves WAN devices with (see `openwrt/UBUS.md`).
//!
//! ```text
//! blob.rs     libubox blob/blobmsg <-> serde_json::Value (pure)
//! wire.rs     ubus message header + attributes, decode → Incomplete/Complete (pure)
//! client.rs   tokio UnixStream client: hello, lookup, invoke, event listening
//! netifd.rs   `network.interface dump` → NetifdView; WAN name → l3_device (pure)
//! watch.rs    the task: listen + dump, re-dump on events, reconnect with backoff
//! ```
//!
//! Without a ubus socket (plain Linux, the test bed) none of this runs and the agent
//! uses rtnetlink alone.

pub mod blob;
pub mod client;
pub mod netifd;
pub mod watch;
pub mod wire;

pub use client::{find_socket, Client, Event, UbusError, DEFAULT_SOCKETS};
pub use netifd::{parse_dump, Iface, NetifdView, Resolved, Resolver};
pub use watch::{watch, WatchOpts};
