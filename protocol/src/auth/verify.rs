//! Sealing a request and verifying a sealed one.
//!
//! [`Verifier::verify`] is shared by every connection of a converter. Checks 1 to 5
//! (layout, key lookup, tag, clock) need no shared state and run unlocked; only the
//! replay cache (check 6: prune, then insert the nonce) is behind the verifier's mutex.

use std::sync::{Mutex, MutexGuard, PoisonError};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::auth::cookie::{self, COOKIE_TLV_HEADER, TAG_LEN};
use crate::auth::ids::{ClientId, Key};
use crate::error::{EncodeError, ErrorCode};
use crate::message::Message;
use crate::replay::{Insert, ReplayCache, ReplayLimits, NONCE_LEN};
use crate::tlv::{Tlv, TLV_COOKIE};
use crate::FIXED_HEADER_LEN;

type HmacSha256 = Hmac<Sha256>;

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
        }
    }

    /// The RFC 8803 error code to reply with: Missing Cookie (3),
    /// Resource Exceeded (64) for a full replay cache, else Not Authorized (32).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::MissingCookie => ErrorCode::MissingCookie,
            Self::ReplayCacheFull => ErrorCode::ResourceExceeded,
            _ => ErrorCode::NotAuthorized,
        }
    }
}

/// HMAC-SHA256 of `wire` with `TAG_LEN` bytes at `tag_at` taken as zero.
fn mac_over(key: &Key, wire: &[u8], tag_at: usize) -> Option<HmacSha256> {
    let (before, rest) = wire.split_at_checked(tag_at)?;
    let after = rest.get(TAG_LEN..)?;
    let mut mac = HmacSha256::new_from_slice(key.as_bytes()).ok()?;
    mac.update(before);
    mac.update(&[0u8; TAG_LEN]);
    mac.update(after);
    Some(mac)
}

/// Encode `message` with a Cookie TLV appended as its last TLV and the tag
/// filled in.
pub fn seal(
    message: &Message,
    client: &ClientId,
    key: &Key,
    now_unix_secs: u64,
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>, EncodeError> {
    if message.tlvs.iter().any(|tlv| matches!(tlv, Tlv::Cookie(_))) {
        return Err(EncodeError::CookieAlreadyPresent);
    }
    let (value, tag_in_value) = cookie::build(client, now_unix_secs, nonce);
    let cookie_at = message.encoded_len();
    let mut sealed = message.clone();
    sealed.tlvs.push(Tlv::Cookie(value));
    let mut wire = sealed.encode()?;
    let tag_at = cookie_at + COOKIE_TLV_HEADER + tag_in_value;
    // `wire` was just built with the zeroed tag at `tag_at`, so both lookups
    // succeed; the `if let` only avoids a panic path.
    if let Some(mac) = mac_over(key, &wire, tag_at) {
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
    replay: Mutex<ReplayCache>,
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
            replay: Mutex::new(ReplayCache::new(limits)),
        }
    }

    /// The acceptance window in seconds.
    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// The replay cache, locked. A panic elsewhere while it was held cannot
    /// leave it inconsistent (each method finishes its own updates), so a
    /// poisoned lock is used as is.
    fn replay(&self) -> MutexGuard<'_, ReplayCache> {
        self.replay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Nonces currently remembered (for metrics).
    pub fn replay_entries(&self) -> usize {
        self.replay().len()
    }

    /// Drop expired nonces. [`Verifier::verify`] does this itself; call it
    /// when idle to give memory back sooner.
    pub fn prune(&self, now_unix_secs: u64) {
        self.replay().prune(now_unix_secs);
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
        let mac = mac_over(&key, wire, tag_at).ok_or(AuthError::MalformedCookie)?;
        mac.verify_truncated_left(&parsed.tag)
            .map_err(|_| AuthError::BadTag)?;

        if now_unix_secs.abs_diff(parsed.timestamp) > self.window_secs {
            return Err(AuthError::Skew);
        }
        let expires_at = parsed.timestamp.saturating_add(self.window_secs);
        let mut replay = self.replay();
        replay.prune(now_unix_secs);
        match replay.insert(&parsed.client, parsed.nonce, expires_at) {
            Insert::Fresh => Ok(parsed.client),
            Insert::Replay => Err(AuthError::Replay),
            Insert::Full => Err(AuthError::ReplayCacheFull),
        }
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
