//! The replay cache behind [`crate::auth::Verifier`].
//!
//! It remembers each accepted `(client, nonce)` until the message's timestamp
//! leaves the acceptance window (`timestamp + window`); after that the skew
//! check refuses a replay on its own, so the entry can go.
//!
//! Memory is bounded two ways:
//! * expired entries are pruned on every check, oldest expiry first (a
//!   min-heap, so pruning is `O(log n)` per entry and nothing is scanned);
//! * a hard cap on all entries and a cap per client. When a cap is reached
//!   the cache **refuses** the new message (`AuthError::ReplayCacheFull`)
//!   rather than forgetting a nonce that is still inside the window, because
//!   forgetting would let that nonce be replayed. Only authenticated messages reach the
//!   cache, so only a key holder can fill it, and the per-client cap stops one
//!   client from starving the others.
//!
//! Each entry costs about 50–75 bytes (a 24-byte heap entry plus a hash-set
//! slot for the 12-byte nonce, with table slack), so the default cap of 2^20
//! entries stays under 80 MiB. Clients are interned to a `u32` slot so heap entries stay small
//! with thousands of clients.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use crate::auth::ClientId;

/// Length of the nonce in a cookie.
pub const NONCE_LEN: usize = 12;

/// Caps on the replay cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// Most `(client, nonce)` entries held at once, over all clients.
    pub max_entries: usize,
    /// Most entries held at once for one client.
    pub max_per_client: usize,
}

impl Default for ReplayLimits {
    fn default() -> Self {
        Self {
            max_entries: 1 << 20,
            max_per_client: 1 << 16,
        }
    }
}

/// Outcome of [`ReplayCache::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// New nonce, now remembered.
    Fresh,
    /// The nonce is already remembered for this client.
    Replay,
    /// A cap is reached; the nonce was not remembered and must be refused.
    Full,
}

/// Per-client nonces still inside the window.
#[derive(Debug, Default)]
struct Slot {
    nonces: HashSet<[u8; NONCE_LEN]>,
}

/// The bounded `(client, nonce)` set with expiry.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    limits: ReplayLimits,
    slot_of: HashMap<ClientId, u32>,
    slots: Vec<Slot>,
    /// `(expires_at, slot, nonce)`, smallest expiry on top.
    expiries: BinaryHeap<Reverse<(u64, u32, [u8; NONCE_LEN])>>,
}

impl ReplayCache {
    pub(crate) fn new(limits: ReplayLimits) -> Self {
        Self {
            limits,
            slot_of: HashMap::new(),
            slots: Vec::new(),
            expiries: BinaryHeap::new(),
        }
    }

    /// Entries held now (over all clients).
    pub(crate) fn len(&self) -> usize {
        self.expiries.len()
    }

    /// Drop every entry whose expiry is before `now`.
    pub(crate) fn prune(&mut self, now: u64) {
        while let Some(Reverse((expires_at, slot, nonce))) = self.expiries.peek().copied() {
            if expires_at >= now {
                break;
            }
            self.expiries.pop();
            if let Some(entry) = usize::try_from(slot)
                .ok()
                .and_then(|i| self.slots.get_mut(i))
            {
                entry.nonces.remove(&nonce);
                // Give back memory after a burst.
                if entry.nonces.capacity() > 64 && entry.nonces.len() < entry.nonces.capacity() / 4
                {
                    entry.nonces.shrink_to_fit();
                }
            }
        }
        if self.expiries.capacity() > 1024 && self.expiries.len() < self.expiries.capacity() / 4 {
            self.expiries.shrink_to_fit();
        }
    }

    /// Remember `nonce` for `client` until `expires_at` (inclusive), unless it
    /// is already there or a cap is reached. Call [`Self::prune`] first.
    pub(crate) fn insert(
        &mut self,
        client: &ClientId,
        nonce: [u8; NONCE_LEN],
        expires_at: u64,
    ) -> Insert {
        let slot_id = match self.slot_of.get(client) {
            Some(&id) => id,
            None => {
                let Ok(id) = u32::try_from(self.slots.len()) else {
                    return Insert::Full;
                };
                self.slots.push(Slot::default());
                self.slot_of.insert(client.clone(), id);
                id
            }
        };
        let Some(slot) = usize::try_from(slot_id)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        else {
            return Insert::Full;
        };
        if slot.nonces.contains(&nonce) {
            return Insert::Replay;
        }
        if self.expiries.len() >= self.limits.max_entries
            || slot.nonces.len() >= self.limits.max_per_client
        {
            return Insert::Full;
        }
        slot.nonces.insert(nonce);
        self.expiries.push(Reverse((expires_at, slot_id, nonce)));
        Insert::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> ClientId {
        name.parse().expect("valid id")
    }

    #[test]
    fn prunes_by_expiry_not_by_insertion_order() {
        let mut cache = ReplayCache::new(ReplayLimits::default());
        // A future-dated nonce first, then an older one.
        assert_eq!(cache.insert(&id("a"), [1; NONCE_LEN], 200), Insert::Fresh);
        assert_eq!(cache.insert(&id("a"), [2; NONCE_LEN], 100), Insert::Fresh);
        cache.prune(150);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.insert(&id("a"), [2; NONCE_LEN], 160), Insert::Fresh);
        assert_eq!(cache.insert(&id("a"), [1; NONCE_LEN], 200), Insert::Replay);
        // Expiry is inclusive: kept at `now == expires_at`.
        cache.prune(200);
        assert_eq!(cache.len(), 1);
        cache.prune(201);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn caps_refuse_and_replay_wins_over_full() {
        let mut cache = ReplayCache::new(ReplayLimits {
            max_entries: 2,
            max_per_client: 1,
        });
        assert_eq!(cache.insert(&id("a"), [1; NONCE_LEN], 10), Insert::Fresh);
        assert_eq!(cache.insert(&id("a"), [2; NONCE_LEN], 10), Insert::Full);
        assert_eq!(cache.insert(&id("a"), [1; NONCE_LEN], 10), Insert::Replay);
        assert_eq!(cache.insert(&id("b"), [1; NONCE_LEN], 10), Insert::Fresh);
        assert_eq!(cache.insert(&id("c"), [1; NONCE_LEN], 10), Insert::Full);
        assert_eq!(cache.len(), 2);
    }
}
