//! The Convert message: the fixed header followed by TLVs, and the
//! incremental decoder.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Version = 1  | Total Length  |     Magic Number = 0x2263     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         TLVs ...                              |
//! ```
//!
//! Total Length counts 32-bit words, the header included.

use std::net::SocketAddr;

use crate::error::{DecodeError, EncodeError, ErrorCode};
use crate::tlv::{Tlv, MAX_TLV_LEN};
use crate::{FIXED_HEADER_LEN, MAGIC, MAX_MESSAGE_LEN, VERSION};

/// A Convert message: the TLVs after the fixed header, in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The TLVs, in wire order.
    pub tlvs: Vec<Tlv>,
}

/// Result of [`decode`] on a buffer that holds no error so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The buffer holds the start of a message. At least `needed` more bytes
    /// are required (the exact count once the fixed header is in).
    Incomplete {
        /// Minimum number of further bytes needed (always at least 1).
        needed: usize,
    },
    /// A whole message was decoded from the first `len` bytes of the buffer.
    /// Bytes after `len` are not part of it (e.g. the relayed payload).
    Complete {
        /// The decoded message.
        message: Message,
        /// Bytes consumed: the header's Total Length in bytes.
        len: usize,
    },
}

impl Message {
    /// A request with one Connect TLV for `dest` and no TCP options.
    pub fn connect(dest: SocketAddr) -> Self {
        Self {
            tlvs: vec![Tlv::Connect {
                dest,
                tcp_options: Vec::new(),
            }],
        }
    }

    /// A UDP flow request: a Connect TLV for `dest` and mpbond's UDP TLV, ready
    /// for [`ClientHandshake::seal`](crate::ClientHandshake::seal) (which adds the
    /// Cookie TLV last). After the reply, both directions carry capsules
    /// ([`crate::udp`]).
    pub fn udp_request(dest: SocketAddr) -> Self {
        Self {
            tlvs: vec![
                Tlv::Connect {
                    dest,
                    tcp_options: Vec::new(),
                },
                Tlv::Udp,
            ],
        }
    }

    /// One leg of a protected UDP flow: [`udp_request`](Self::udp_request) plus
    /// mpbond's Group TLV naming the flow group and the leg. After the reply, both
    /// directions carry sequenced capsules ([`crate::udp::encode_sequenced`]).
    pub fn udp_leg_request(dest: SocketAddr, group: crate::udp::Group) -> Self {
        let mut message = Self::udp_request(dest);
        message.tlvs.push(Tlv::Group(group));
        message
    }

    /// A request with one Info TLV.
    pub fn info() -> Self {
        Self {
            tlvs: vec![Tlv::Info],
        }
    }

    /// The success reply: no TLVs, just the 4-byte fixed header.
    pub fn ok() -> Self {
        Self::default()
    }

    /// An error reply with one Error TLV carrying `code` and the RFC's
    /// default value: the supported version (`[1]`) for Unsupported Version,
    /// else a single zero byte. Either way the TLV is one 32-bit word, so the
    /// message decodes back to itself.
    pub fn error(code: ErrorCode) -> Self {
        let value = match code {
            ErrorCode::UnsupportedVersion => vec![VERSION],
            _ => vec![0],
        };
        Self::error_with(code, value)
    }

    /// An error reply with one Error TLV carrying `code` and `value`.
    pub fn error_with(code: ErrorCode, value: Vec<u8>) -> Self {
        Self {
            tlvs: vec![Tlv::Error { code, value }],
        }
    }

    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        FIXED_HEADER_LEN + self.tlvs.iter().map(Tlv::encoded_len).sum::<usize>()
    }

    /// Encode the header and every TLV.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if let Some(tlv) = self.tlvs.iter().find(|t| t.encoded_len() > MAX_TLV_LEN) {
            return Err(EncodeError::TlvTooLong {
                kind: tlv.kind(),
                len: tlv.encoded_len(),
            });
        }
        let len = self.encoded_len();
        if len > MAX_MESSAGE_LEN {
            return Err(EncodeError::MessageTooLong {
                len,
                max: MAX_MESSAGE_LEN,
            });
        }
        let mut out = Vec::with_capacity(len);
        out.push(VERSION);
        // len <= 1020, so len / 4 <= 255.
        out.push((len / 4) as u8);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        for tlv in &self.tlvs {
            tlv.encode_into(&mut out)?;
        }
        Ok(out)
    }

    /// The destination of the first Connect TLV, if any.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.tlvs.iter().find_map(|tlv| match tlv {
            Tlv::Connect { dest, .. } => Some(*dest),
            _ => None,
        })
    }

    /// The first Group TLV, if any.
    pub fn group(&self) -> Option<crate::udp::Group> {
        self.tlvs.iter().find_map(|tlv| match tlv {
            Tlv::Group(group) => Some(*group),
            _ => None,
        })
    }

    /// The code of the first Error TLV, if any.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.tlvs.iter().find_map(|tlv| match tlv {
            Tlv::Error { code, .. } => Some(*code),
            _ => None,
        })
    }

    /// Whether the message has an Info TLV.
    pub fn is_info(&self) -> bool {
        self.tlvs.iter().any(|tlv| matches!(tlv, Tlv::Info))
    }

    /// The value of the first Cookie TLV, if any.
    pub fn cookie(&self) -> Option<&[u8]> {
        self.tlvs.iter().find_map(|tlv| match tlv {
            Tlv::Cookie(value) => Some(value.as_slice()),
            _ => None,
        })
    }

    /// The type of the first TLV that this crate does not know, if any.
    pub fn first_unknown_kind(&self) -> Option<u8> {
        self.tlvs.iter().find_map(|tlv| match tlv {
            Tlv::Unknown { kind, .. } => Some(*kind),
            _ => None,
        })
    }
}

/// Total message length in bytes, from the 4-byte fixed header.
///
/// Checks the version, the magic number and that the length is not zero.
pub fn message_len(header: [u8; 4]) -> Result<usize, DecodeError> {
    let [version, words, magic_hi, magic_lo] = header;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    if words == 0 {
        return Err(DecodeError::ZeroLength);
    }
    let magic = u16::from_be_bytes([magic_hi, magic_lo]);
    if magic != MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    Ok(usize::from(words) * 4)
}

/// Check the header bytes that are present in a buffer shorter than the
/// header, so a bad stream fails as early as possible.
fn check_partial_header(buf: &[u8]) -> Result<(), DecodeError> {
    if let Some(&version) = buf.first() {
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
    }
    if buf.get(1) == Some(&0) {
        return Err(DecodeError::ZeroLength);
    }
    if let Some(&hi) = buf.get(2) {
        let [want_hi, _] = MAGIC.to_be_bytes();
        if hi != want_hi {
            return Err(DecodeError::BadMagic(u16::from(hi) << 8));
        }
    }
    Ok(())
}

/// Decode one Convert message from the start of `buf`.
///
/// Returns [`Decoded::Incomplete`] while bytes are missing, and never panics.
/// Bytes after the message are left alone; [`Decoded::Complete::len`] says
/// where the message ends.
pub fn decode(buf: &[u8]) -> Result<Decoded, DecodeError> {
    let Some(header) = buf.first_chunk::<FIXED_HEADER_LEN>() else {
        check_partial_header(buf)?;
        return Ok(Decoded::Incomplete {
            needed: FIXED_HEADER_LEN - buf.len(),
        });
    };
    let len = message_len(*header)?;
    let Some(whole) = buf.get(..len) else {
        return Ok(Decoded::Incomplete {
            needed: len - buf.len(),
        });
    };
    let mut tlvs = Vec::new();
    let mut offset = FIXED_HEADER_LEN;
    while let Some(rest) = whole.get(offset..).filter(|rest| !rest.is_empty()) {
        let kind = rest.first().copied().unwrap_or(0);
        let words = rest.get(1).copied().ok_or(DecodeError::TlvOverrun {
            kind,
            offset,
            len: 0,
            remaining: rest.len(),
        })?;
        if words == 0 {
            return Err(DecodeError::TlvZeroLength { kind, offset });
        }
        let tlv_len = usize::from(words) * 4;
        let bytes = rest.get(..tlv_len).ok_or(DecodeError::TlvOverrun {
            kind,
            offset,
            len: tlv_len,
            remaining: rest.len(),
        })?;
        tlvs.push(Tlv::decode(bytes, offset)?);
        offset += tlv_len;
    }
    Ok(Decoded::Complete {
        message: Message { tlvs },
        len,
    })
}
