//! Sealing a request and verifying a sealed one.
//!
//! [`Verifier::verify`] is shared by every connection of a converter. Checks 1 to 5
//! (layout, key lookup, tag, clock) need no shared state and run unlocked; only the
//! replay cache (check 6: prune, floor, then insert the nonce) and its journal are behind
//! the verifier's mutex.
//!
//! Replays across restarts: each client has a floor (see [`crate::replay`]). A verifier
//! with a [`ReplayJournal`] reserves ahead before it accepts a timestamp above what is
//! already durable: it records "this process may accept up to `timestamp +
//! RESERVE_AHEAD_SECS`", so at most one journal write per client every
//! [`RESERVE_AHEAD_SECS`] seconds. A later process [`restore`](Verifier::restore)s the
//! journal's floors and refuses every timestamp at or below them.

use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::auth::binding::{ReplayJournal, ServerBinding, ServerId};
use crate::auth::cookie::{self, COOKIE_FORMAT, COOKIE_FORMAT_BOUND, COOKIE_TLV_HEADER, TAG_LEN};
use crate::auth::ids::{ClientId, Key};
use crate::error::{EncodeError, ErrorCode};
use crate::message::Message;
use crate::replay::{Insert, ReplayCache, ReplayLimits, NONCE_LEN};
use crate::tlv::{Tlv, TLV_COOKIE};
use crate::FIXED_HEADER_LEN;

type HmacSha256 = Hmac<Sha256>;

/// How far ahead of an accepted timestamp a reservation reaches, in seconds. A crash
/// refuses a client for at most this long; a journal write happens at most this often
/// per active client.
pub const RESERVE_AHEAD_SECS: u64 = 10;

/// Why a request failed authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum AuthError {
    /// The message has no Cookie TLV.
    #[error("no Cookie TLV")]
    MissingCookie,
    /// The Cookie TLV is not last, is repeated, or does not follow our layout.
    #[error("malformed cookie")]
    MalformedCookie,
    /// The cookie names a client we have no key for.
    #[error("unknown client")]
    UnknownClient,
    /// The tag does not match.
    #[error("bad cookie tag")]
    BadTag,
    /// The timestamp is outside ±window of now.
    #[error("cookie timestamp outside the window")]
    Skew,
    /// The nonce was already used by this client within the window.
    #[error("replayed nonce")]
    Replay,
    /// The replay cache is full (globally or for this client), so the nonce
    /// cannot be remembered and the request is refused.
    #[error("replay cache full")]
    ReplayCacheFull,
    /// The timestamp is at or below the client's floor: a request from before a
    /// restart, or from before a pruned entry (a clock stepped back).
    #[error("timestamp at or below the client's replay floor")]
    BelowFloor,
    /// An unbound (format 1) cookie, and this server takes only bound ones.
    #[error("cookie not bound to a server id")]
    Unbound,
    /// The replay journal could not be written, so the request cannot be accepted
    /// safely.
    #[error("replay journal not writable")]
    JournalFailed,
}

impl AuthError {
    /// A snake_case label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingCookie => "missing_cookie",
            Self::MalformedCookie => "malformed_cookie",
            Self::UnknownClient => "unknown_client",
            Self::BadTag => "bad_tag",
            Self::Skew => "skew",
            Self::Replay => "replay",
            Self::ReplayCacheFull => "replay_cache_full",
            Self::BelowFloor => "replay_floor",
            Self::Unbound => "unbound",
            Self::JournalFailed => "journal_failed",
        }
    }

    /// The RFC 8803 error code to reply with: Missing Cookie (3),
    /// Resource Exceeded (64) for a full replay cache or an unwritable journal, else
    /// Not Authorized (32).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::MissingCookie => ErrorCode::MissingCookie,
            Self::ReplayCacheFull | Self::JournalFailed => ErrorCode::ResourceExceeded,
            _ => ErrorCode::NotAuthorized,
        }
    }
}

/// HMAC-SHA256 of `wire` with `TAG_LEN` bytes at `tag_at` taken as zero, after the
/// server id's prefix for a bound cookie.
fn mac_over(
    key: &Key,
    server: Option<&ServerId>,
    wire: &[u8],
    tag_at: usize,
) -> Option<HmacSha256> {
    let (before, rest) = wire.split_at_checked(tag_at)?;
    let after = rest.get(TAG_LEN..)?;
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).ok()?;
    if let Some(server) = server {
        mac.update(&[server.len_byte()]);
        mac.update(server.as_str().as_bytes());
    }
    mac.update(before);
    mac.update(&[0u8; TAG_LEN]);
    mac.update(after);
    Some(mac)
}

/// Encode `message` with an unbound (format 1) Cookie TLV appended as its last TLV
/// and the tag filled in. See [`seal_bound`] for a cookie only one server accepts.
pub fn seal(
    message: &Message,
    client: &ClientId,
    key: &Key,
    now_unix_secs: u64,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, EncodeError> {
    seal_with(message, client, key, None, now_unix_secs, nonce)
}

/// Like [`seal`], with a bound (format 2) cookie: only a verifier whose
/// [`ServerBinding`] lists `server` accepts it.
pub fn seal_bound(
    message: &Message,
    client: &ClientId,
    key: &Key,
    server: &ServerId,
    now_unix_secs: u64,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, EncodeError> {
    seal_with(message, client, key, Some(server), now_unix_secs, nonce)
}

fn seal_with(
    message: &Message,
    client: &ClientId,
    key: &Key,
    server: Option<&ServerId>,
    now_unix_secs: u64,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, EncodeError> {
    if message.tlvs.iter().any(|tlv| matches!(tlv, Tlv::Cookie(_))) {
        return Err(EncodeError::CookieAlreadyPresent);
    }
    let format = if server.is_some() {
        COOKIE_FORMAT_BOUND
    } else {
        COOKIE_FORMAT
    };
    let (value, tag_in_value) = cookie::build(format, client, now_unix_secs, nonce);
    let cookie_at = message.encoded_len();
    let mut sealed = message.clone();
    sealed.tlvs.push(Tlv::Cookie(value));
    let mut wire = sealed.encode()?;
    let tag_at = cookie_at + COOKIE_TLV_HEADER + tag_in_value;
    // `wire` was just built with the zeroed tag at `tag_at`, so both lookups
    // succeed; the `if let` only avoids a panic path.
    if let Some(mac) = mac_over(key, server, &wire, tag_at) {
        let tag = mac.finalize().into_bytes();
        if let (Some(dst), Some(src)) = (wire.get_mut(tag_at..tag_at + TAG_LEN), tag.get(..TAG_LEN))
        {
            dst.copy_from_slice(src);
        }
    }
    Ok(wire)
}

/// Offset in `wire` of its last TLV, walking the TLV headers. `None` if the
/// walk does not land exactly on the end of the message.
fn last_tlv_offset(wire: &[u8]) -> Option<usize> {
    let mut offset = FIXED_HEADER_LEN;
    let mut last = None;
    while offset < wire.len() {
        let words = usize::from(*wire.get(offset + 1)?);
        if words == 0 {
            return None;
        }
        last = Some(offset);
        offset += words * 4;
    }
    (offset == wire.len()).then_some(last).flatten()
}

/// Checks sealed requests and remembers their nonces. Share one between all
/// connections (`&self` everywhere): only the replay cache is locked, and only
/// for the prune and the insert.
#[derive(Debug)]
pub struct Verifier {
    window_secs: u64,
    binding: ServerBinding,
    replay: Mutex<Replay>,
}

/// The replay cache and the journal that makes its floors durable, locked together.
#[derive(Debug)]
struct Replay {
    cache: ReplayCache,
    journal: Option<Box<dyn ReplayJournal>>,
}

impl Verifier {
    /// A verifier accepting timestamps within ±`window_secs`, with the
    /// default [`ReplayLimits`].
    pub fn new(window_secs: u64) -> Self {
        Self::with_limits(window_secs, ReplayLimits::default())
    }

    /// A verifier with explicit replay-cache caps.
    pub fn with_limits(window_secs: u64, limits: ReplayLimits) -> Self {
        Self {
            window_secs,
            binding: ServerBinding::default(),
            replay: Mutex::new(Replay {
                cache: ReplayCache::new(limits, window_secs),
                journal: None,
            }),
        }
    }

    /// The same verifier, answering to `binding`'s server ids.
    pub fn with_binding(mut self, binding: ServerBinding) -> Self {
        self.binding = binding;
        self
    }

    /// The same verifier, reserving ahead in `journal` before it accepts a timestamp
    /// (see the module docs). Without a journal nothing survives the process.
    pub fn with_journal(self, journal: Box<dyn ReplayJournal>) -> Self {
        self.replay().journal = Some(journal);
        self
    }

    /// Refuse every timestamp at or below each client's floor, as read back from a
    /// journal a previous process wrote. Floors only rise.
    pub fn restore(&self, floors: impl IntoIterator<Item = (ClientId, u64)>) {
        let mut replay = self.replay();
        for (client, floor) in floors {
            replay.cache.raise_floor(&client, floor);
        }
    }

    /// Each client's highest accepted timestamp (or its floor, if higher).
    pub fn high_water_marks(&self) -> Vec<(ClientId, u64)> {
        self.replay().cache.high_water_marks()
    }

    /// Record a clean stop in the journal: the exact high-water marks, so a planned
    /// restart refuses nothing a client sends after it. Requests verified later still
    /// reserve (after the stop record), so nothing is lost if some arrive.
    pub fn stop(&self) -> io::Result<()> {
        let mut replay = self.replay();
        let Replay { cache, journal } = &mut *replay;
        let Some(journal) = journal else {
            return Ok(());
        };
        journal.stop(&cache.high_water_marks())?;
        cache.reservations_end_at_high_water();
        Ok(())
    }

    /// The acceptance window in seconds.
    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// The replay cache, locked. A panic elsewhere while it was held cannot
    /// leave it inconsistent (each method finishes its own updates), so a
    /// poisoned lock is used as is.
    fn replay(&self) -> MutexGuard<'_, Replay> {
        self.replay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Nonces currently remembered (for metrics).
    pub fn replay_entries(&self) -> usize {
        self.replay().cache.len()
    }

    /// Drop expired nonces. [`Verifier::verify`] does this itself; call it
    /// when idle to give memory back sooner.
    pub fn prune(&self, now_unix_secs: u64) {
        self.replay().cache.prune(now_unix_secs);
    }

    /// Verify a sealed request and remember its nonce.
    ///
    /// `wire` is the exact bytes of the message (bytes after the header's
    /// Total Length are ignored), `message` its decoded form.
    pub fn verify(
        &self,
        wire: &[u8],
        message: &Message,
        now_unix_secs: u64,
        key_for: impl FnOnce(&ClientId) -> Option<Key>,
    ) -> Result<ClientId, AuthError> {
        let cookies = message
            .tlvs
            .iter()
            .filter(|tlv| matches!(tlv, Tlv::Cookie(_)))
            .count();
        if cookies == 0 {
            return Err(AuthError::MissingCookie);
        }
        let Some(Tlv::Cookie(value)) = message.tlvs.last() else {
            return Err(AuthError::MalformedCookie);
        };
        if cookies != 1 {
            return Err(AuthError::MalformedCookie);
        }
        let parsed = cookie::parse(value).ok_or(AuthError::MalformedCookie)?;

        // The tag is checked over `wire`; make sure it is the message we were
        // given: same length, and its last TLV is this very cookie.
        let wire_len = wire
            .get(1)
            .map(|&words| usize::from(words) * 4)
            .ok_or(AuthError::MalformedCookie)?;
        let wire = wire.get(..wire_len).ok_or(AuthError::MalformedCookie)?;
        if wire_len != message.encoded_len() {
            return Err(AuthError::MalformedCookie);
        }
        let cookie_at = last_tlv_offset(wire).ok_or(AuthError::MalformedCookie)?;
        let wire_value = wire
            .get(cookie_at + COOKIE_TLV_HEADER..)
            .ok_or(AuthError::MalformedCookie)?;
        if wire.get(cookie_at) != Some(&TLV_COOKIE) || wire_value != value.as_slice() {
            return Err(AuthError::MalformedCookie);
        }

        let key = key_for(&parsed.client).ok_or(AuthError::UnknownClient)?;
        let tag_at = cookie_at + COOKIE_TLV_HEADER + parsed.tag_offset;
        self.check_tag(&key, parsed.format, wire, tag_at, &parsed.tag)?;

        if now_unix_secs.abs_diff(parsed.timestamp) > self.window_secs {
            return Err(AuthError::Skew);
        }
        let mut replay = self.replay();
        let Replay { cache, journal } = &mut *replay;
        cache.prune(now_unix_secs);
        match cache.insert(&parsed.client, parsed.nonce, parsed.timestamp) {
            Insert::Fresh => {}
            Insert::Replay => return Err(AuthError::Replay),
            Insert::Full => return Err(AuthError::ReplayCacheFull),
            Insert::BelowFloor => return Err(AuthError::BelowFloor),
        }
        if let Some(journal) = journal {
            if cache.needs_reservation(&parsed.client, parsed.timestamp) {
                let through = parsed.timestamp.saturating_add(RESERVE_AHEAD_SECS);
                journal
                    .reserve(&parsed.client, through)
                    .map_err(|_| AuthError::JournalFailed)?;
                cache.reserved(&parsed.client, through);
            }
        }
        Ok(parsed.client)
    }

    /// Check the tag of a cookie of `format`: unbound against the message alone (if
    /// this verifier still accepts those), bound against each of its server ids.
    fn check_tag(
        &self,
        key: &Key,
        format: u8,
        wire: &[u8],
        tag_at: usize,
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthError> {
        let matches = |server: Option<&ServerId>| {
            mac_over(key, server, wire, tag_at)
                .is_some_and(|mac| mac.verify_truncated_left(tag).is_ok())
        };
        let good = if format == COOKIE_FORMAT_BOUND {
            self.binding.ids.iter().any(|id| matches(Some(id)))
        } else {
            matches(None)
        };
        if !good {
            return Err(AuthError::BadTag);
        }
        if format != COOKIE_FORMAT_BOUND && !self.binding.accept_unbound {
            return Err(AuthError::Unbound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One verifier serves every connection of a converter, from any thread.
    #[test]
    fn a_verifier_is_shared_by_reference() {
        fn shared<T: Send + Sync>(_: &T) {}
        shared(&Verifier::new(60));
    }
}
