//! Per-client authentication of Convert requests.
//!
//! The agent [`seal`]s each request: it appends a Cookie TLV that names the
//! client, the time and a random nonce, and a tag, HMAC-SHA256 over the whole
//! encoded message (with the tag bytes zeroed) under the client's key. The
//! concentrator's [`Verifier`] checks, in this order: a Cookie TLV is present
//! and last, its layout, the client is known, the tag (in constant time), the
//! timestamp is within ±window of now, and the `(client, nonce)` pair was not
//! seen within the window, nor at or below the client's floor (which survives
//! restarts through a [`ReplayJournal`]). A bound cookie ([`seal_bound`]) also
//! names the server, so only that concentrator accepts it. See
//! `docs/PROTOCOL.md` for the bytes and the replay guarantee.
//!
//! Layout: [`ids`] (client ids and keys), [`cookie`] (the cookie bytes),
//! [`binding`] (server ids and the journal seam), `verify` ([`seal`] and
//! [`Verifier`]), [`standard`] (the weaker opt-in modes for standard RFC 8803 clients:
//! a static cookie, or the source address) and [`crate::replay`] (the cache and the
//! floors).

pub mod binding;
pub mod cookie;
pub mod ids;
pub mod standard;
mod verify;

pub use crate::replay::{ReplayLimits, NONCE_LEN};
pub use binding::{ReplayJournal, ServerBinding, ServerId, ServerIdError, MAX_SERVER_ID_LEN};
pub use cookie::{COOKIE_FORMAT, COOKIE_FORMAT_BOUND, TAG_LEN};
pub use ids::{ClientId, ClientIdError, Key, KeyError, KEY_LEN, MAX_CLIENT_ID_LEN};
pub use standard::{SourcePrefix, StandardAuth, StandardClients};
pub use verify::{seal, seal_bound, AuthError, Verifier, RESERVE_AHEAD_SECS};
