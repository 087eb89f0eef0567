//! [`Xorshift`]: xorshift64*, a tiny seeded generator for test cases and test data. The
//! same seed gives the same sequence on every machine, so a failure names a reproducible
//! case. Not for anything secret.

/// xorshift64* (Marsaglia's xorshift with Vigna's multiplier).
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator from `seed` (zero, the one state that never moves, is replaced).
    pub fn new(seed: u64) -> Self {
        Xorshift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The next byte (the top bits, the best mixed).
    pub fn next_byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }

    /// A value in `0..n` (`n` > 0; the tiny modulo bias does not matter for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.next_u64() % n
    }

    /// Fill `buf` with one byte per step.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for byte in buf {
            *byte = self.next_byte();
        }
    }

    /// `len` bytes, one per step: test data a receiver can check byte for byte.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.fill(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_zero_moves() {
        let (mut a, mut b) = (Xorshift::new(7), Xorshift::new(7));
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first[0], first[1]);
        let mut zero = Xorshift::new(0);
        assert_ne!(zero.next_u64(), 0);
        assert!((0..100).all(|_| a.below(10) < 10));
        let mut filled = [0u8; 16];
        Xorshift::new(9).fill(&mut filled);
        assert_eq!(Xorshift::new(9).bytes(16), filled);
    }
}
