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
//! Besides the nonces, each client has a **floor**: every timestamp at or below it is
//! refused without looking at the nonce. The floor rises when an entry is pruned (to
//! that entry's timestamp, so a clock stepped backwards cannot reopen a pruned nonce)
//! and is restored from the state a previous process left behind
//! ([`crate::auth::Verifier::restore`]), so a request accepted before a restart is
//! refused after it. The cache also tracks, per client, the highest timestamp accepted
//! (`high`) and the highest one made durable in advance (`reserved`); the verifier
//! decides from them when to write a reservation to its journal.
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
    /// The timestamp is at or below the client's floor.
    BelowFloor,
}

/// Per-client nonces still inside the window, and the client's marks.
#[derive(Debug, Default)]
struct Slot {
    nonces: HashSet<[u8; NONCE_LEN]>,
    /// Refuse every timestamp `<= floor`.
    floor: u64,
    /// Highest timestamp accepted, or the floor if higher.
    high: u64,
    /// Highest timestamp the journal allows this process to accept without a new
    /// reservation.
    reserved: u64,
}

/// The bounded `(client, nonce)` set with expiry.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    limits: ReplayLimits,
    /// Seconds an entry is kept after its timestamp (the verifier's window).
    window: u64,
    slot_of: HashMap<ClientId, u32>,
    slots: Vec<Slot>,
    /// `(expires_at, slot, nonce)`, smallest expiry on top.
    expiries: BinaryHeap<Reverse<(u64, u32, [u8; NONCE_LEN])>>,
}

impl ReplayCache {
    pub(crate) fn new(limits: ReplayLimits, window: u64) -> Self {
        Self {
            limits,
            window,
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
                // A clock stepped back must not reopen this nonce: nothing at or
                // below its timestamp is accepted any more.
                let timestamp = expires_at.saturating_sub(self.window);
                entry.floor = entry.floor.max(timestamp);
                entry.high = entry.high.max(entry.floor);
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

    /// The slot id of `client`, made on first use. `None` only past `u32::MAX` clients.
    fn slot_id(&mut self, client: &ClientId) -> Option<u32> {
        if let Some(&id) = self.slot_of.get(client) {
            return Some(id);
        }
        let id = u32::try_from(self.slots.len()).ok()?;
        self.slots.push(Slot::default());
        self.slot_of.insert(client.clone(), id);
        Some(id)
    }

    /// The slot of `client`, made on first use.
    fn slot_mut(&mut self, client: &ClientId) -> Option<&mut Slot> {
        let id = self.slot_id(client)?;
        self.slots.get_mut(usize::try_from(id).ok()?)
    }

    fn slot(&self, client: &ClientId) -> Option<&Slot> {
        let &id = self.slot_of.get(client)?;
        self.slots.get(usize::try_from(id).ok()?)
    }

    /// Remember `nonce` for `client` until `timestamp + window` (inclusive), unless
    /// the timestamp is at or below the client's floor, the nonce is already there or
    /// a cap is reached. Call [`Self::prune`] first.
    pub(crate) fn insert(
        &mut self,
        client: &ClientId,
        nonce: [u8; NONCE_LEN],
        timestamp: u64,
    ) -> Insert {
        let expires_at = timestamp.saturating_add(self.window);
        let full = self.expiries.len() >= self.limits.max_entries;
        let max_per_client = self.limits.max_per_client;
        let Some(slot_id) = self.slot_id(client) else {
            return Insert::Full;
        };
        let Some(slot) = usize::try_from(slot_id)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        else {
            return Insert::Full;
        };
        if timestamp <= slot.floor {
            return Insert::BelowFloor;
        }
        if slot.nonces.contains(&nonce) {
            return Insert::Replay;
        }
        if full || slot.nonces.len() >= max_per_client {
            return Insert::Full;
        }
        slot.nonces.insert(nonce);
        slot.high = slot.high.max(timestamp);
        self.expiries.push(Reverse((expires_at, slot_id, nonce)));
        Insert::Fresh
    }

    /// Whether accepting `timestamp` for `client` needs a new reservation first.
    pub(crate) fn needs_reservation(&self, client: &ClientId, timestamp: u64) -> bool {
        self.slot(client)
            .map_or(true, |slot| timestamp > slot.reserved)
    }

    /// The journal now allows `client` timestamps up to `through`.
    pub(crate) fn reserved(&mut self, client: &ClientId, through: u64) {
        if let Some(slot) = self.slot_mut(client) {
            slot.reserved = slot.reserved.max(through);
        }
    }

    /// Refuse every timestamp of `client` at or below `floor` (state restored from
    /// a previous process). Floors only rise.
    pub(crate) fn raise_floor(&mut self, client: &ClientId, floor: u64) {
        if let Some(slot) = self.slot_mut(client) {
            slot.floor = slot.floor.max(floor);
            slot.high = slot.high.max(slot.floor);
            slot.reserved = slot.reserved.max(slot.floor);
        }
    }

    /// Each client's highest accepted timestamp (or its floor, if higher), sorted.
    pub(crate) fn high_water_marks(&self) -> Vec<(ClientId, u64)> {
        let mut marks: Vec<(ClientId, u64)> = self
            .slot_of
            .iter()
            .filter_map(|(client, &id)| {
                let slot = self.slots.get(usize::try_from(id).ok()?)?;
                (slot.high > 0).then(|| (client.clone(), slot.high))
            })
            .collect();
        marks.sort();
        marks
    }

    /// After a clean stop was recorded at the high-water marks: every later accept
    /// above them needs a new reservation (written after the stop record).
    pub(crate) fn reservations_end_at_high_water(&mut self) {
        for slot in &mut self.slots {
            slot.reserved = slot.high;
        }
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
        // Window 0: an entry expires at its own timestamp.
        let mut cache = ReplayCache::new(ReplayLimits::default(), 0);
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
        let mut cache = ReplayCache::new(
            ReplayLimits {
                max_entries: 2,
                max_per_client: 1,
            },
            0,
        );
        assert_eq!(cache.insert(&id("a"), [1; NONCE_LEN], 10), Insert::Fresh);
        assert_eq!(cache.insert(&id("a"), [2; NONCE_LEN], 10), Insert::Full);
        assert_eq!(cache.insert(&id("a"), [1; NONCE_LEN], 10), Insert::Replay);
        assert_eq!(cache.insert(&id("b"), [1; NONCE_LEN], 10), Insert::Fresh);
        assert_eq!(cache.insert(&id("c"), [1; NONCE_LEN], 10), Insert::Full);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn pruning_raises_the_floor() {
        let mut cache = ReplayCache::new(ReplayLimits::default(), 60);
        assert_eq!(cache.insert(&id("a"), [1; NONCE_LEN], 100), Insert::Fresh);
        cache.prune(161);
        assert_eq!(cache.len(), 0);
        // The clock steps back: the pruned nonce stays refused, and so does anything
        // at or below its timestamp.
        assert_eq!(
            cache.insert(&id("a"), [1; NONCE_LEN], 100),
            Insert::BelowFloor
        );
        assert_eq!(
            cache.insert(&id("a"), [2; NONCE_LEN], 99),
            Insert::BelowFloor
        );
        assert_eq!(cache.insert(&id("a"), [2; NONCE_LEN], 101), Insert::Fresh);
        // Other clients are not affected.
        assert_eq!(cache.insert(&id("b"), [1; NONCE_LEN], 100), Insert::Fresh);
    }

    #[test]
    fn marks_and_reservations() {
        let mut cache = ReplayCache::new(ReplayLimits::default(), 60);
        cache.raise_floor(&id("a"), 50);
        assert_eq!(
            cache.insert(&id("a"), [1; NONCE_LEN], 50),
            Insert::BelowFloor
        );
        assert!(!cache.needs_reservation(&id("a"), 50));
        assert!(cache.needs_reservation(&id("a"), 51));
        assert_eq!(cache.insert(&id("a"), [1; NONCE_LEN], 70), Insert::Fresh);
        cache.reserved(&id("a"), 80);
        assert!(!cache.needs_reservation(&id("a"), 80));
        assert_eq!(cache.high_water_marks(), vec![(id("a"), 70)]);
        cache.reservations_end_at_high_water();
        assert!(cache.needs_reservation(&id("a"), 71));
    }
}
