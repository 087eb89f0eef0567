//! The downstream queue of one UDP flow: encoded DATAGRAM capsules that the MPTCP
//! socket has not accepted yet, bounded in bytes.
//!
//! A datagram that does not fit is dropped (the caller counts it), so a full MPTCP
//! send buffer shows up as loss to the sender's congestion control, not as a growing
//! delay. The queue always takes one capsule when it is empty, so a 65,527-byte
//! datagram gets through a limit smaller than its capsule.

use mpbond_protocol::{encode_datagram, encode_sequenced, CapsuleError};

/// Capacity kept when the queue empties; a larger buffer is freed.
const KEEP_CAPACITY: usize = 4096;

/// Encoded capsules waiting for the socket.
#[derive(Debug)]
pub(crate) struct CapsuleQueue {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    head: usize,
    limit: usize,
}

/// Why a datagram was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueRefusal {
    /// The queue holds `limit` bytes already (or would after this capsule).
    Full,
    /// The payload cannot be a capsule (over 65,527 bytes).
    Encode(CapsuleError),
}

impl CapsuleQueue {
    /// A queue of at most `limit` bytes of capsules that starts with `lead` (the Convert
    /// reply, or nothing), written before any capsule.
    pub(crate) fn with_lead(limit: usize, lead: &[u8]) -> Self {
        Self {
            buf: lead.to_vec(),
            head: 0,
            // The lead does not take room from the capsules (a largest datagram still
            // fits behind it).
            limit: limit + lead.len(),
        }
    }

    /// Bytes waiting.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.head
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending() == 0
    }

    /// Encode `payload` as one DATAGRAM capsule at the tail, unless the queue is full.
    pub(crate) fn push(&mut self, payload: &[u8]) -> Result<(), QueueRefusal> {
        let len = mpbond_protocol::udp::datagram_capsule_len(payload.len());
        self.make_room(len)?;
        encode_datagram(payload, &mut self.buf).map_err(QueueRefusal::Encode)
    }

    /// Encode `payload` as one sequenced DATAGRAM capsule (a leg of a protected flow)
    /// at the tail, unless the queue is full.
    pub(crate) fn push_sequenced(&mut self, seq: u32, payload: &[u8]) -> Result<(), QueueRefusal> {
        let len = mpbond_protocol::udp::sequenced_capsule_len(payload.len());
        self.make_room(len)?;
        encode_sequenced(seq, payload, &mut self.buf).map_err(QueueRefusal::Encode)
    }

    /// Queue an encoded capsule (an FEC source or repair of a protected flow) at the
    /// tail, unless the queue is full.
    pub(crate) fn push_encoded(&mut self, capsule: &[u8]) -> Result<(), QueueRefusal> {
        self.make_room(capsule.len())?;
        self.buf.extend_from_slice(capsule);
        Ok(())
    }

    /// Whether a `len`-byte capsule fits; if so, compact the buffer for it.
    fn make_room(&mut self, len: usize) -> Result<(), QueueRefusal> {
        if !self.is_empty() && self.pending() + len > self.limit {
            return Err(QueueRefusal::Full);
        }
        if self.is_empty() {
            self.buf.clear();
            self.head = 0;
        } else if self.head >= self.limit {
            // Written bytes at the front outweigh the waiting ones: drop them once.
            self.buf.drain(..self.head);
            self.head = 0;
        }
        Ok(())
    }

    /// The bytes to write next.
    pub(crate) fn front(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    /// `n` bytes of [`front`](Self::front) were written.
    pub(crate) fn consume(&mut self, n: usize) {
        self.head = self.head.saturating_add(n).min(self.buf.len());
        if self.is_empty() {
            self.head = 0;
            if self.buf.capacity() > KEEP_CAPACITY {
                // An idle flow keeps no large buffer.
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mpbond_protocol::{decode_capsule, Capsule, MAX_UDP_PAYLOAD};

    use super::*;

    #[test]
    fn drops_when_full_and_takes_again_once_written() {
        let mut q = CapsuleQueue::with_lead(100, &[]);
        q.push(&[1; 40]).unwrap();
        q.push(&[2; 40]).unwrap();
        assert_eq!(q.pending(), 86);
        assert_eq!(q.push(&[3; 40]), Err(QueueRefusal::Full));
        // Half of the first capsule goes out: still full for another 40.
        q.consume(20);
        assert_eq!(q.push(&[3; 40]), Err(QueueRefusal::Full));
        q.consume(23);
        q.push(&[3; 40]).unwrap();
        let mut rest = q.front().to_vec();
        let mut got = Vec::new();
        while let Some((Capsule::Datagram(p), n)) = decode_capsule(&rest).unwrap() {
            got.push(p[0]);
            rest.drain(..n);
        }
        assert_eq!(got, [2, 3]);
        q.consume(usize::MAX);
        assert!(q.is_empty());
    }

    #[test]
    fn the_lead_goes_out_first() {
        let mut q = CapsuleQueue::with_lead(100, &[1, 1, 0x22, 0x63]);
        assert_eq!(q.pending(), 4);
        q.push(b"hi").unwrap();
        assert_eq!(q.front(), [1, 1, 0x22, 0x63, 0, 3, 0, b'h', b'i']);
        q.consume(9);
        assert!(q.is_empty());
        // The largest datagram fits behind the lead in a queue of its size.
        let big = vec![7; MAX_UDP_PAYLOAD];
        let capsule_len = mpbond_protocol::udp::datagram_capsule_len(big.len());
        let mut q = CapsuleQueue::with_lead(capsule_len, &[1, 1, 0x22, 0x63]);
        q.push(&big).unwrap();
    }

    #[test]
    fn an_empty_queue_takes_the_largest_datagram_and_refuses_larger() {
        let mut q = CapsuleQueue::with_lead(1024, &[]);
        q.push(&vec![7; MAX_UDP_PAYLOAD]).unwrap();
        assert_eq!(q.push(&[1]), Err(QueueRefusal::Full));
        q.consume(q.pending());
        assert!(matches!(
            q.push(&vec![7; MAX_UDP_PAYLOAD + 1]),
            Err(QueueRefusal::Encode(_))
        ));
        assert!(q.is_empty());
    }

    #[test]
    fn sequenced_capsules_queue_and_bound_alike() {
        let mut q = CapsuleQueue::with_lead(20, &[]);
        q.push_sequenced(7, b"hi").unwrap();
        assert_eq!(q.front(), [0, 7, 1, 0, 0, 0, 7, b'h', b'i']);
        q.push_sequenced(8, b"hi").unwrap();
        assert_eq!(q.push_sequenced(9, b"hi"), Err(QueueRefusal::Full));
    }

    #[test]
    fn memory_stays_bounded_under_partial_writes() {
        let mut q = CapsuleQueue::with_lead(1000, &[]);
        for _ in 0..10_000 {
            let _ = q.push(&[9; 300]);
            q.consume(250);
            assert!(q.buf.len() <= 2 * 1000 + 310, "{}", q.buf.len());
        }
    }
}
