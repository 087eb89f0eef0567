//! [`Dedup`]: the receiver of a protected flow keeps the first copy of each
//! sequence number and drops the others.
//!
//! A sliding window of the last [`DEDUP_WINDOW`] sequence numbers below the
//! highest one seen, as a bitmap indexed by `seq % DEDUP_WINDOW`. Sequence
//! numbers are 32-bit and wrap; "newer" is RFC 1982 serial-number arithmetic
//! (`seq - highest` as a signed 32-bit difference), so the window slides through
//! `u32::MAX → 0` like anywhere else. A number more than the window behind the
//! highest is *too old* and dropped (it may or may not be a duplicate: the
//! window no longer knows), as is a number exactly 2^31 away (RFC 1982 leaves
//! that comparison undefined). Pure: no clock, no I/O.

/// How many sequence numbers behind the highest one seen [`Dedup`] remembers.
pub const DEDUP_WINDOW: u32 = 1024;

const WORDS: usize = (DEDUP_WINDOW / 64) as usize;

/// The receiver's duplicate filter for one direction of a protected flow.
#[derive(Debug, Clone, Default)]
pub struct Dedup {
    /// The highest sequence number accepted, `None` before the first.
    highest: Option<u32>,
    /// Bit `seq % DEDUP_WINDOW` is set when `seq` (within the window) was accepted.
    seen: [u64; WORDS],
    accepted: u64,
    duplicates: u64,
    too_old: u64,
}

impl Dedup {
    /// An empty filter: the first sequence number it sees is accepted, whatever it is.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `seq` is the first copy (deliver it) rather than a duplicate or too
    /// old (drop it). Counts each outcome.
    pub fn accept(&mut self, seq: u32) -> bool {
        let Some(highest) = self.highest else {
            self.slide_to(seq, DEDUP_WINDOW);
            return self.take(seq);
        };
        let ahead = seq.wrapping_sub(highest) as i32;
        if ahead > 0 {
            self.slide_to(seq, ahead.unsigned_abs());
            return self.take(seq);
        }
        let behind = ahead.unsigned_abs();
        if behind >= DEDUP_WINDOW || ahead == i32::MIN {
            self.too_old += 1;
            return false;
        }
        if self.is_seen(seq) {
            self.duplicates += 1;
            return false;
        }
        self.take(seq)
    }

    /// Whether `seq` was accepted and is still inside the window.
    pub fn has(&self, seq: u32) -> bool {
        let Some(highest) = self.highest else {
            return false;
        };
        let behind = highest.wrapping_sub(seq);
        behind < DEDUP_WINDOW && self.is_seen(seq)
    }

    /// The highest sequence number accepted so far.
    pub fn highest(&self) -> Option<u32> {
        self.highest
    }

    /// First copies accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Copies dropped because their sequence number was already accepted.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Datagrams dropped because they were too far behind the highest to tell.
    pub fn too_old(&self) -> u64 {
        self.too_old
    }

    /// Make `seq` the highest, `step` numbers past the old highest: forget the
    /// numbers the window leaves behind (all of them when `step` covers the window).
    fn slide_to(&mut self, seq: u32, step: u32) {
        if step >= DEDUP_WINDOW {
            self.seen = [0; WORDS];
        } else {
            for back in 0..step {
                self.clear(seq.wrapping_sub(back));
            }
        }
        self.highest = Some(seq);
    }

    fn take(&mut self, seq: u32) -> bool {
        let (word, bit) = Self::slot(seq);
        self.seen[word] |= bit;
        self.accepted += 1;
        true
    }

    fn is_seen(&self, seq: u32) -> bool {
        let (word, bit) = Self::slot(seq);
        self.seen[word] & bit != 0
    }

    fn clear(&mut self, seq: u32) {
        let (word, bit) = Self::slot(seq);
        self.seen[word] &= !bit;
    }

    fn slot(seq: u32) -> (usize, u64) {
        let index = seq % DEDUP_WINDOW;
        ((index / 64) as usize, 1 << (index % 64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_copies_pass_and_second_copies_do_not() {
        let mut dedup = Dedup::new();
        for seq in 0..10 {
            assert!(dedup.accept(seq), "{seq}");
            assert!(!dedup.accept(seq), "{seq} again");
        }
        assert_eq!((dedup.accepted(), dedup.duplicates()), (10, 10));
        assert_eq!(dedup.highest(), Some(9));
    }

    #[test]
    fn the_first_number_may_be_anything_and_reordering_inside_the_window_is_fine() {
        let mut dedup = Dedup::new();
        assert!(dedup.accept(5_000));
        // Late first copies inside the window pass, once.
        assert!(dedup.accept(4_000));
        assert!(dedup.accept(4_999));
        assert!(!dedup.accept(4_000));
        // A gap, then its filling.
        assert!(dedup.accept(5_010));
        for seq in 5_001..5_010 {
            assert!(dedup.accept(seq), "{seq}");
        }
        assert_eq!(dedup.duplicates(), 1);
    }

    #[test]
    fn numbers_a_window_behind_are_too_old() {
        let mut dedup = Dedup::new();
        assert!(dedup.accept(DEDUP_WINDOW + 10));
        // Exactly the window behind: too old. One less: still known (unseen).
        assert!(!dedup.accept(10));
        assert!(dedup.accept(11));
        assert_eq!((dedup.too_old(), dedup.duplicates()), (1, 0));
    }

    #[test]
    fn the_window_slides_through_the_wrap() {
        let mut dedup = Dedup::new();
        let start = u32::MAX - 5;
        for step in 0..12u32 {
            let seq = start.wrapping_add(step);
            assert!(dedup.accept(seq), "{seq}");
        }
        assert_eq!(dedup.highest(), Some(5));
        // Numbers just before the wrap are behind, not ahead: duplicates.
        assert!(!dedup.accept(u32::MAX));
        assert!(!dedup.accept(u32::MAX - 5));
        assert_eq!(dedup.duplicates(), 2);
        // Behind the wrap and unseen: accepted once.
        assert!(dedup.accept(u32::MAX - 6));
        assert!(!dedup.accept(u32::MAX - 6));
    }

    #[test]
    fn a_jump_past_the_window_forgets_everything_and_half_the_space_away_is_too_old() {
        let mut dedup = Dedup::new();
        assert!(dedup.accept(1));
        assert!(dedup.accept(1 + 3 * DEDUP_WINDOW));
        // The bit of 1 shared its slot with 1 + 3 * window: cleared by the jump, but
        // 1 is too old now anyway.
        assert!(!dedup.accept(1));
        assert_eq!(dedup.too_old(), 1);
        // Exactly 2^31 away is undefined in RFC 1982: dropped as too old.
        assert!(!dedup.accept((1 + 3 * DEDUP_WINDOW).wrapping_add(1 << 31)));
        assert_eq!(dedup.too_old(), 2);
    }

    /// The model: a set of every number accepted, and the highest by serial order.
    fn model_accepts(seen: &mut Vec<u32>, highest: &mut Option<u32>, seq: u32) -> Option<bool> {
        if let Some(top) = *highest {
            let ahead = seq.wrapping_sub(top) as i32;
            if ahead <= 0 && (ahead.unsigned_abs() >= DEDUP_WINDOW || ahead == i32::MIN) {
                return None; // too old: the filter may drop it, checked separately
            }
            if ahead > 0 {
                *highest = Some(seq);
            }
        } else {
            *highest = Some(seq);
        }
        if seen.contains(&seq) {
            return Some(false);
        }
        seen.push(seq);
        Some(true)
    }

    proptest! {
        /// Two copies of a stream, each copy reordered a little and with losses, merged:
        /// every number inside the window is delivered exactly once, and the filter
        /// agrees with a set-based model on every datagram.
        #[test]
        fn filter_matches_a_set_model(
            start in any::<u32>(),
            steps in proptest::collection::vec((0u32..3000, any::<bool>()), 1..400),
        ) {
            let mut dedup = Dedup::new();
            let mut seen = Vec::new();
            let mut highest = None;
            for (offset, twice) in steps {
                let seq = start.wrapping_add(offset);
                for _ in 0..=u8::from(twice) {
                    let got = dedup.accept(seq);
                    match model_accepts(&mut seen, &mut highest, seq) {
                        Some(want) => prop_assert_eq!(got, want, "seq {}", seq),
                        None => prop_assert!(!got, "too old {} accepted", seq),
                    }
                }
            }
            prop_assert_eq!(dedup.highest(), highest);
            prop_assert_eq!(dedup.accepted(), seen.len() as u64);
        }
    }
}
