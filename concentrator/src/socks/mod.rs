//! SOCKS5 over MPTCP (issue 12, part 2): phones and laptops that speak MPTCP themselves
//! bond their own paths through the concentrator, without a router.
//!
//! An optional listener (`[socks] listen`, off by default; MPTCP, plain TCP when the
//! kernel has none) takes RFC 1928 CONNECT requests after RFC 1929 username/password
//! authentication: the username is a client's `id` and the password its
//! `socks_password` (`mpbond-concentrator add-client --socks` makes one). Requests for IPv4,
//! IPv6 and domain names are served; names are resolved here, and the destination policy
//! is checked on every resolved address before it is tried, so a name that resolves to a
//! forbidden address is refused with 0x02 like the address itself. The per-source limits,
//! the connection limits, the handshake and connect timeouts, the metrics and the splice
//! relay are the Convert path's.
//!
//! # Layout
//!
//! * [`wire`]: the messages (pure parsing and replies, no panics on any input).
//! * [`negotiation`]: the server's negotiation as a sans-IO state machine.
//! * [`target`]: which resolved addresses may be tried, and the reply code for a failed
//!   connect. Pure.
//! * [`session`]: the async shell: one connection, negotiation to relay.
//! * [`config`]: `[socks]` and the clients' passwords.
//! * [`metrics`]: the `mpbond_socks_*` counters.

pub mod config;
pub mod metrics;
pub mod negotiation;
pub mod session;
pub mod target;
pub mod wire;

pub use metrics::SocksMetrics;
