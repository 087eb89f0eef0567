//! [`MessageReader`]: one Convert message from pieces, and not a byte more.

use crate::error::DecodeError;
use crate::message::{decode, Decoded, Message};
use crate::FIXED_HEADER_LEN;

use super::{Received, Step};

/// Collects the bytes of one Convert message as they arrive.
///
/// It takes bytes only up to the end of the message (the fixed header says where
/// that is) and answers [`Step::NeedMore`] until the message is whole, then
/// [`Step::Done`] with the decoded message or the first [`DecodeError`]. A bad
/// version or magic fails as soon as its byte is in. Once done, further calls take
/// nothing and answer the same outcome again.
#[derive(Debug, Clone)]
pub struct MessageReader {
    wire: Vec<u8>,
    needed: usize,
}

impl Default for MessageReader {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageReader {
    /// A reader waiting for the fixed header.
    pub fn new() -> Self {
        Self {
            wire: Vec::with_capacity(64),
            needed: FIXED_HEADER_LEN,
        }
    }

    /// Bytes still needed: exact once the fixed header is in; 0 when done.
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// The bytes taken so far: the whole message once done (or the prefix that
    /// failed to decode).
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// Take bytes from the start of `bytes`, at most up to the end of the message.
    pub fn receive(&mut self, bytes: &[u8]) -> Received<Result<Message, DecodeError>> {
        let mut consumed = 0;
        loop {
            let rest = bytes.get(consumed..).unwrap_or_default();
            let take = rest.len().min(self.needed);
            self.wire
                .extend_from_slice(rest.get(..take).unwrap_or_default());
            consumed += take;
            match decode(&self.wire) {
                Ok(Decoded::Incomplete { needed }) => {
                    self.needed = needed;
                    if consumed == bytes.len() {
                        return Received {
                            consumed,
                            step: Step::NeedMore { needed },
                        };
                    }
                }
                Ok(Decoded::Complete { message, .. }) => {
                    self.needed = 0;
                    return Received {
                        consumed,
                        step: Step::Done(Ok(message)),
                    };
                }
                Err(error) => {
                    self.needed = 0;
                    return Received {
                        consumed,
                        step: Step::Done(Err(error)),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_end_of_the_message() {
        let mut wire = Message::info().encode().unwrap();
        let len = wire.len();
        wire.extend_from_slice(b"payload");
        let mut reader = MessageReader::new();
        let got = reader.receive(&wire);
        assert_eq!(got.consumed, len);
        assert_eq!(got.step, Step::Done(Ok(Message::info())));
        assert_eq!(reader.wire(), &wire[..len]);
        // Done: nothing more is taken, the outcome stays.
        let again = reader.receive(b"more");
        assert_eq!(again.consumed, 0);
        assert_eq!(again.step, Step::Done(Ok(Message::info())));
    }

    #[test]
    fn byte_by_byte_needs_exactly_what_is_missing() {
        let wire = Message::connect("192.0.2.1:80".parse().unwrap())
            .encode()
            .unwrap();
        let mut reader = MessageReader::new();
        for (i, byte) in wire.iter().enumerate() {
            let got = reader.receive(std::slice::from_ref(byte));
            assert_eq!(got.consumed, 1);
            if i + 1 < FIXED_HEADER_LEN {
                assert_eq!(
                    got.step,
                    Step::NeedMore {
                        needed: FIXED_HEADER_LEN - i - 1
                    }
                );
            } else if i + 1 < wire.len() {
                assert_eq!(
                    got.step,
                    Step::NeedMore {
                        needed: wire.len() - i - 1
                    }
                );
            } else {
                assert!(matches!(got.step, Step::Done(Ok(_))));
            }
        }
    }

    #[test]
    fn a_bad_version_fails_at_its_byte() {
        let mut reader = MessageReader::new();
        let got = reader.receive(&[2, 1, 0x22, 0x63]);
        assert_eq!(got.consumed, 4);
        assert_eq!(
            got.step,
            Step::Done(Err(DecodeError::UnsupportedVersion(2)))
        );
        assert_eq!(reader.needed(), 0);
    }

    #[test]
    fn empty_input_asks_for_the_header() {
        let got = MessageReader::new().receive(&[]);
        assert_eq!(got.consumed, 0);
        assert_eq!(
            got.step,
            Step::NeedMore {
                needed: FIXED_HEADER_LEN
            }
        );
    }
}
