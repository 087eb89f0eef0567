//! Deterministic test data: a byte stream fixed by a 64-bit seed.
//!
//! The stream is built from one 1 MiB block of [`Xorshift`] output, made once per
//! process. Stream position `p` lies in chunk `p / CHUNK_LEN`; every chunk is a
//! window of the block whose start is a hash of `(seed, chunk index)`. Filling
//! and checking are therefore `memcpy` and `memcmp` of 64 KiB pieces, fast even
//! in an unoptimised build, while reordered, duplicated or shifted data is
//! caught because each chunk starts at a pseudo-random byte offset.

use std::sync::OnceLock;

use mpbond_testkit::Xorshift;

/// Length of the random block that streams are cut from.
pub const BLOCK_LEN: usize = 1 << 20;
/// Length of one chunk of a stream.
pub const CHUNK_LEN: usize = 64 * 1024;

fn block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut rng = Xorshift::new(0x9e37_79b9_7f4a_7c15);
        let mut out = Vec::with_capacity(BLOCK_LEN + CHUNK_LEN);
        while out.len() < BLOCK_LEN + CHUNK_LEN {
            out.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        out.truncate(BLOCK_LEN + CHUNK_LEN);
        out
    })
}

/// splitmix64 finaliser: a good 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A cursor into the stream of one seed.
#[derive(Debug, Clone)]
pub struct Stream {
    seed: u64,
    pos: u64,
}

impl Stream {
    /// The stream of `seed`, at position 0.
    pub fn new(seed: u64) -> Self {
        Self { seed, pos: 0 }
    }

    /// Bytes produced or checked so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The block window that holds the next bytes, at most `max` long.
    fn next_piece(&self, max: usize) -> &'static [u8] {
        let chunk = self.pos / CHUNK_LEN as u64;
        let within = (self.pos % CHUNK_LEN as u64) as usize;
        let start = (mix(self.seed ^ mix(chunk)) % BLOCK_LEN as u64) as usize + within;
        let len = max.min(CHUNK_LEN - within);
        &block()[start..start + len]
    }

    /// Fill `buf` with the next `buf.len()` bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() {
            let piece = self.next_piece(buf.len() - done);
            buf[done..done + piece.len()].copy_from_slice(piece);
            done += piece.len();
            self.pos += piece.len() as u64;
        }
    }

    /// Compare `data` with the next bytes of the stream and advance past them.
    /// Returns the stream offset of the first differing byte, if any.
    pub fn check(&mut self, data: &[u8]) -> Option<u64> {
        let mut done = 0;
        let mut first_bad = None;
        while done < data.len() {
            let piece = self.next_piece(data.len() - done);
            let got = &data[done..done + piece.len()];
            if first_bad.is_none() && got != piece {
                let at = got.iter().zip(piece).position(|(a, b)| a != b).unwrap_or(0);
                first_bad = Some(self.pos + at as u64);
            }
            done += piece.len();
            self.pos += piece.len() as u64;
        }
        first_bad
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// A fresh random seed (falls back to the clock if the RNG is unavailable).
pub fn random_seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        mix(now ^ u64::from(std::process::id()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_deterministic_and_split_invariant() {
        let mut whole = vec![0u8; 300_000];
        Stream::new(7).fill(&mut whole);
        let mut parts = vec![0u8; 300_000];
        let mut s = Stream::new(7);
        for piece in parts.chunks_mut(12_345) {
            s.fill(piece);
        }
        assert_eq!(whole, parts);
        assert_eq!(s.position(), 300_000);
    }

    #[test]
    fn seeds_differ() {
        let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
        Stream::new(1).fill(&mut a);
        Stream::new(2).fill(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn check_finds_first_bad_byte() {
        let mut data = vec![0u8; 200_000];
        Stream::new(3).fill(&mut data);
        assert_eq!(Stream::new(3).check(&data), None);
        data[150_001] ^= 1;
        let mut s = Stream::new(3);
        assert_eq!(s.check(&data[..100_000]), None);
        assert_eq!(s.check(&data[100_000..]), Some(150_001));
    }

    #[test]
    fn swapped_chunks_are_caught() {
        let mut data = vec![0u8; 2 * CHUNK_LEN];
        Stream::new(9).fill(&mut data);
        let (a, b) = data.split_at_mut(CHUNK_LEN);
        a.swap_with_slice(b);
        assert!(Stream::new(9).check(&data).is_some());
    }

    #[test]
    fn hex_encodes() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}
