//! Binding a request to one concentrator, and the journal that makes replay floors
//! survive a restart.
//!
//! A [`ServerId`] is the name a client dials, e.g. `vps.example.net:4850` (the agent's
//! `concentrator.host` and `port` joined by `:`). A bound cookie (format 2) mixes it into
//! the tag, so two concentrators that share a client key refuse each other's captured
//! requests. [`ServerBinding`] says which ids a concentrator answers to and whether it
//! still takes unbound (format 1) cookies.
//!
//! [`ReplayJournal`] is the seam at the disk: the verifier decides what must be durable
//! and when, the concentrator's implementation writes it.

use std::fmt;
use std::io;
use std::str::FromStr;

use thiserror::Error;

use crate::auth::ids::ClientId;

/// Longest server id, in bytes (it is written after a one-byte length).
pub const MAX_SERVER_ID_LEN: usize = 255;

/// The name of a concentrator as its clients dial it: 1–255 bytes of visible ASCII.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(String);

/// Why a string is not a valid [`ServerId`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ServerIdError {
    /// The id is empty.
    #[error("server id is empty")]
    Empty,
    /// The id is longer than 255 bytes.
    #[error("server id is {0} bytes long, more than 255")]
    TooLong(usize),
    /// The id has a character outside visible ASCII.
    #[error("server id has the character {0:?}, outside visible ASCII")]
    BadChar(char),
}

impl ServerId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's length as the one byte that comes before it in a bound cookie's MAC
    /// input.
    pub(crate) fn len_byte(&self) -> u8 {
        // The constructor guarantees 1..=255 bytes.
        u8::try_from(self.0.len()).unwrap_or(u8::MAX)
    }
}

impl FromStr for ServerId {
    type Err = ServerIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ServerIdError::Empty);
        }
        if s.len() > MAX_SERVER_ID_LEN {
            return Err(ServerIdError::TooLong(s.len()));
        }
        if let Some(bad) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(ServerIdError::BadChar(bad));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which server ids a verifier answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBinding {
    /// Bound cookies must name one of these (empty: every bound cookie fails).
    pub ids: Vec<ServerId>,
    /// Whether unbound (format 1) cookies are still accepted.
    pub accept_unbound: bool,
}

impl Default for ServerBinding {
    /// No ids; unbound cookies accepted (the behaviour before binding existed).
    fn default() -> Self {
        Self {
            ids: Vec::new(),
            accept_unbound: true,
        }
    }
}

/// Where a verifier makes its replay state durable. Called with the replay cache
/// locked, so records reach the journal in the order they were decided.
pub trait ReplayJournal: Send + Sync + fmt::Debug {
    /// Before returning, make durable that this process may accept timestamps of
    /// `client` up to `through`. After a crash, a new process refuses every timestamp
    /// of `client` at or below the highest `through` recorded.
    fn reserve(&mut self, client: &ClientId, through: u64) -> io::Result<()>;

    /// Record a clean stop: each client's highest accepted timestamp, which supersedes
    /// that client's earlier reservations. Reservations recorded later still count.
    fn stop(&mut self, marks: &[(ClientId, u64)]) -> io::Result<()>;
}
