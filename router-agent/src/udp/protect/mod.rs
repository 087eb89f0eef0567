//! Protected UDP flows (`[[udp.rule]] action = "protect"`): a real-time flow (a call, a
//! game) carried over two WANs at once, so a WAN that drops, black-holes or loses
//! packets costs it nothing.
//!
//! ```text
//! LAN client ──UDP──▶ dispatcher (udp/mod.rs): the rule says protect
//!   flow task (flow.rs): seq n ──▶ leg 0: TCP from WAN A ──▶ concentrator: flow group
//!                                  leg 1: TCP from WAN B ──▶   (client id, group id),
//!                        ◀── first copy of each seq ◀──       one socket to the server
//! ```
//!
//! * `legs.rs` (pure, simulated-time tests in `legs_tests.rs`): which WANs carry the
//!   legs (the decision core's ranking, `core::protect`), when a leg is replaced (its
//!   WAN is no longer ranked, or it stalls while a spare WAN is), the downstream dedup,
//!   loss per leg and after the merge; when to give up protection;
//! * `leg.rs`: one leg's connection: plain TCP bound to its WAN's address, the UDP
//!   request with the Group TLV, sequenced capsules both ways;
//! * `flow.rs`: the flow task around the book; the bonded fallback;
//! * `stats.rs`: what `status` shows (the `protected` object).
//!
//! In `mode = "duplicate"` (the default) each datagram goes out on both legs with one
//! sequence number (a DATAGRAM capsule of context 1, `protocol::udp`); the concentrator
//! sends each of the server's datagrams on every leg. Protection costs one extra copy of
//! every datagram each way, counted as protection bytes. In `mode = "fec"` each datagram
//! goes once (an FEC source, context 2) on the legs in turn, with an XOR repair
//! (context 3) per block of up to 16 (its time bound follows the stream's rate,
//! 100–400 ms: `protocol::udp::fec`); the concentrator does the same
//! downstream. A source a leg's TCP connection has not had acknowledged in time goes
//! again on another leg (`leg.rs`, `protocol::udp::LateWatch`). The repairs' bytes and
//! those second copies are the protection bytes. The entry point is
//! `flow::run_with_mode` (`flow::run` for `duplicate`). A flow whose protection cannot be set up (fewer than two usable
//! WANs, a concentrator without the Group TLV: Unsupported Message) is carried as a
//! plain bonded flow; after such a refusal flows classed `protect` are bonded for
//! `book::NO_UDP_MEMORY`.

pub mod flow;
pub mod leg;
pub mod legs;
pub mod stats;

pub use stats::{ProtectSnapshot, ProtectStats};
