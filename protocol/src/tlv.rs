//! The Convert TLVs (RFC 8803 §5.2): their types, and how each is laid out.
//!
//! Every TLV starts with Type (8 bits) and Length (8 bits, in 32-bit words,
//! counting the type and length bytes). The value is padded with zero bytes to
//! a multiple of 4. Decoded variable-length values keep those padding bytes,
//! because the wire format cannot tell padding from value: a value whose TLV
//! is already a multiple of 4 bytes round-trips exactly.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::error::{DecodeError, EncodeError, ErrorCode};
use crate::udp::Group;

/// Type of the Info TLV.
pub const TLV_INFO: u8 = 0x01;
/// Type of the Connect TLV.
pub const TLV_CONNECT: u8 = 0x0a;
/// Type of the Extended TCP Header TLV.
pub const TLV_EXTENDED_TCP_HEADER: u8 = 0x14;
/// Type of the Supported TCP Extensions TLV.
pub const TLV_SUPPORTED_TCP_EXTENSIONS: u8 = 0x15;
/// Type of the Cookie TLV.
pub const TLV_COOKIE: u8 = 0x16;
/// Type of the Error TLV.
pub const TLV_ERROR: u8 = 0x1e;
/// Type of mpbond's UDP TLV (unassigned in RFC 8803's registry): the Connect TLV's
/// destination is a UDP flow, relayed as RFC 9297 capsules (see [`crate::udp`]).
pub const TLV_UDP: u8 = 0xd0;
/// Type of mpbond's Group TLV (unassigned in RFC 8803's registry): the UDP flow is
/// one leg of a protected flow group (see [`crate::udp::Group`]).
pub const TLV_GROUP: u8 = 0xd1;

/// Largest TLV: 255 32-bit words.
pub const MAX_TLV_LEN: usize = 255 * 4;

/// Bytes before the TCP options in a Connect TLV: type, length, port, address.
pub(crate) const CONNECT_FIXED_LEN: usize = 20;

/// One Convert TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tlv {
    /// 0x01: asks the converter which TCP extensions it supports.
    Info,
    /// 0x0a: the destination to connect to, and TCP options for that connection.
    /// IPv4 destinations travel as `::ffff:a.b.c.d` and decode as
    /// [`SocketAddr::V4`]; IPv6 flow info and scope id are not carried.
    Connect {
        /// The destination.
        dest: SocketAddr,
        /// Raw TCP options (with any padding) to use towards the destination.
        tcp_options: Vec<u8>,
    },
    /// 0x14: the TCP header (with options) the converter received from the destination.
    ExtendedTcpHeader(Vec<u8>),
    /// 0x15: the TCP option kinds the converter supports, one byte each.
    SupportedTcpExtensions(Vec<u8>),
    /// 0x16: an opaque cookie (see [`crate::auth`] for ours).
    Cookie(Vec<u8>),
    /// 0xd0 (mpbond's): the request's Connect TLV names a UDP destination. One
    /// 32-bit word: type, length 1, two zero bytes (ignored on receipt).
    Udp,
    /// 0xd1 (mpbond's): the UDP flow is one leg of a protected flow group. Three
    /// 32-bit words: type, length 3, leg, legs, 8-byte group id.
    Group(Group),
    /// 0x1e: an error, with its code-specific value.
    Error {
        /// The error code.
        code: ErrorCode,
        /// The code-specific value (with any padding).
        value: Vec<u8>,
    },
    /// Any other TLV type, kept as the bytes after type and length.
    Unknown {
        /// The TLV type.
        kind: u8,
        /// The bytes after the type and length bytes (with any padding).
        value: Vec<u8>,
    },
}

impl Tlv {
    /// The TLV's type byte.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Info => TLV_INFO,
            Self::Connect { .. } => TLV_CONNECT,
            Self::ExtendedTcpHeader(_) => TLV_EXTENDED_TCP_HEADER,
            Self::SupportedTcpExtensions(_) => TLV_SUPPORTED_TCP_EXTENSIONS,
            Self::Cookie(_) => TLV_COOKIE,
            Self::Error { .. } => TLV_ERROR,
            Self::Udp => TLV_UDP,
            Self::Group(_) => TLV_GROUP,
            Self::Unknown { kind, .. } => *kind,
        }
    }

    /// Whether this crate decodes `kind` into a dedicated variant.
    pub fn is_known_kind(kind: u8) -> bool {
        matches!(
            kind,
            TLV_INFO
                | TLV_CONNECT
                | TLV_EXTENDED_TCP_HEADER
                | TLV_SUPPORTED_TCP_EXTENSIONS
                | TLV_COOKIE
                | TLV_ERROR
                | TLV_UDP
                | TLV_GROUP
        )
    }

    /// Encoded length in bytes, padding included.
    pub fn encoded_len(&self) -> usize {
        pad4(2 + self.body_len())
    }

    /// Length of everything after the type and length bytes, before padding.
    fn body_len(&self) -> usize {
        match self {
            Self::Info | Self::Udp => 2,
            Self::Group(_) => Group::TLV_LEN - 2,
            Self::Connect { tcp_options, .. } => CONNECT_FIXED_LEN - 2 + tcp_options.len(),
            Self::ExtendedTcpHeader(v) | Self::SupportedTcpExtensions(v) | Self::Cookie(v) => {
                2 + v.len()
            }
            Self::Error { value, .. } => 1 + value.len(),
            Self::Unknown { value, .. } => value.len(),
        }
    }

    /// Append the encoded TLV, padding included, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = self.encoded_len();
        if len > MAX_TLV_LEN {
            return Err(EncodeError::TlvTooLong {
                kind: self.kind(),
                len,
            });
        }
        if let Self::Unknown { kind, .. } = self {
            if Self::is_known_kind(*kind) {
                return Err(EncodeError::KnownKindAsUnknown(*kind));
            }
        }
        let start = out.len();
        out.push(self.kind());
        // len <= 1020, so len / 4 <= 255.
        out.push((len / 4) as u8);
        match self {
            Self::Info | Self::Udp => out.extend_from_slice(&[0, 0]),
            Self::Group(group) => out.extend_from_slice(&group.body()),
            Self::Connect { dest, tcp_options } => {
                out.extend_from_slice(&dest.port().to_be_bytes());
                out.extend_from_slice(&wire_ipv6(dest.ip()).octets());
                out.extend_from_slice(tcp_options);
            }
            Self::ExtendedTcpHeader(v) | Self::SupportedTcpExtensions(v) | Self::Cookie(v) => {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(v);
            }
            Self::Error { code, value } => {
                out.push(code.code());
                out.extend_from_slice(value);
            }
            Self::Unknown { value, .. } => out.extend_from_slice(value),
        }
        out.resize(start + len, 0);
        Ok(())
    }

    /// Decode one whole TLV. `bytes` is exactly the TLV (its Length words) and
    /// `offset` its position in the message, for error reports.
    pub(crate) fn decode(bytes: &[u8], offset: usize) -> Result<Self, DecodeError> {
        let (&kind, rest) = bytes.split_first().ok_or(DecodeError::TlvOverrun {
            kind: 0,
            offset,
            len: 0,
            remaining: 0,
        })?;
        let bad_length = || DecodeError::TlvBadLength {
            kind,
            offset,
            len: bytes.len(),
        };
        // Skip the length byte; the caller sliced `bytes` by it.
        let body = rest.get(1..).ok_or_else(bad_length)?;
        // Value after the 16-bit Unassigned/Zero field. Receivers ignore that field.
        let after_reserved = || body.get(2..).ok_or_else(bad_length);
        let tlv = match kind {
            TLV_INFO => {
                if bytes.len() != 4 {
                    return Err(bad_length());
                }
                Self::Info
            }
            TLV_UDP => {
                if bytes.len() != 4 {
                    return Err(bad_length());
                }
                Self::Udp
            }
            TLV_GROUP => {
                if bytes.len() != Group::TLV_LEN {
                    return Err(bad_length());
                }
                Self::Group(Group::from_body(body).ok_or_else(bad_length)?)
            }
            TLV_CONNECT => {
                let (port, rest) = body.split_first_chunk::<2>().ok_or_else(bad_length)?;
                let (addr, options) = rest.split_first_chunk::<16>().ok_or_else(bad_length)?;
                let ip = IpAddr::V6(Ipv6Addr::from(*addr)).to_canonical();
                Self::Connect {
                    dest: SocketAddr::new(ip, u16::from_be_bytes(*port)),
                    tcp_options: options.to_vec(),
                }
            }
            TLV_EXTENDED_TCP_HEADER => Self::ExtendedTcpHeader(after_reserved()?.to_vec()),
            TLV_SUPPORTED_TCP_EXTENSIONS => {
                Self::SupportedTcpExtensions(after_reserved()?.to_vec())
            }
            TLV_COOKIE => Self::Cookie(after_reserved()?.to_vec()),
            TLV_ERROR => {
                let (&code, value) = body.split_first().ok_or_else(bad_length)?;
                Self::Error {
                    code: ErrorCode::from_code(code),
                    value: value.to_vec(),
                }
            }
            kind => Self::Unknown {
                kind,
                value: body.to_vec(),
            },
        };
        Ok(tlv)
    }
}

/// `len` rounded up to a multiple of 4.
pub(crate) fn pad4(len: usize) -> usize {
    len.div_ceil(4) * 4
}

/// The IPv4-mapped form used on the wire for an IPv4 address.
pub fn wire_ipv6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}
