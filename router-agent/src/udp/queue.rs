//! The bounded queue of encoded capsules a flow has not yet handed to its MPTCP socket.
//!
//! A relay never lets datagrams pile up behind a full send buffer: the queue holds at
//! most `limit` bytes, and a datagram that does not fit is dropped (and counted by the
//! caller), so QUIC's congestion control sees loss, not a growing delay. Sans-IO.

use mpbond_protocol::{encode_datagram, CapsuleError};

/// Capsules waiting for the socket, oldest first, as one byte run.
#[derive(Debug)]
pub struct CapsuleQueue {
    bytes: Vec<u8>,
    /// Bytes of `bytes` already written.
    sent: usize,
    limit: usize,
}

/// Why a datagram was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("capsule queue full")]
    Full,
    #[error(transparent)]
    Capsule(#[from] CapsuleError),
}

impl CapsuleQueue {
    /// An empty queue that holds at most `limit` bytes.
    pub fn new(limit: usize) -> CapsuleQueue {
        CapsuleQueue {
            bytes: Vec::new(),
            sent: 0,
            limit,
        }
    }

    /// Append `payload` as one DATAGRAM capsule, or refuse it whole.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), QueueError> {
        let capsule_len = mpbond_protocol::udp::datagram_capsule_len(payload.len());
        if self.len() + capsule_len > self.limit {
            return Err(QueueError::Full);
        }
        if self.sent > 0 && self.sent == self.bytes.len() {
            self.clear();
        }
        encode_datagram(payload, &mut self.bytes)?;
        Ok(())
    }

    /// The bytes not yet written.
    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    /// `n` bytes of [`pending`](Self::pending) were written.
    pub fn consume(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.bytes.len());
        if self.sent == self.bytes.len() {
            self.clear();
        } else if self.sent > self.limit {
            // Keep the buffer from growing: move the unsent tail to the front.
            self.bytes.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.bytes.len() - self.sent
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.sent = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpbond_protocol::{decode_capsule, Capsule};

    #[test]
    fn drops_what_does_not_fit_and_keeps_order() {
        let mut q = CapsuleQueue::new(1000);
        let payload = [7u8; 200];
        let mut queued = 0;
        while q.push(&payload).is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 4, "four 203-byte capsules fit in 1000 bytes");
        assert_eq!(q.push(&payload), Err(QueueError::Full));
        let Some((Capsule::Datagram(first), used)) = decode_capsule(q.pending()).expect("valid")
        else {
            panic!("a datagram first")
        };
        assert_eq!(first, &payload[..]);
        q.consume(used);
        assert!(q.push(&payload).is_ok(), "room again once written");
        assert_eq!(q.len(), 4 * used);
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut q = CapsuleQueue::new(10_000);
        q.push(b"hello").expect("fits");
        let whole = q.pending().to_vec();
        q.consume(3);
        assert_eq!(q.pending(), &whole[3..]);
        q.consume(whole.len() - 3);
        assert!(q.is_empty());
    }

    #[test]
    fn oversized_payloads_are_refused() {
        let mut q = CapsuleQueue::new(1 << 20);
        let big = vec![0u8; mpbond_protocol::MAX_UDP_PAYLOAD + 1];
        assert!(matches!(q.push(&big), Err(QueueError::Capsule(_))));
    }
}
