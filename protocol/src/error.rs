//! Error types: the RFC 8803 error codes and the decode/encode errors.
//!
//! Every [`DecodeError`] knows the Convert error code that a converter should
//! reply with ([`DecodeError::error_code`]), following the table in
//! `docs/DESIGN.md`.

use thiserror::Error;

/// An RFC 8803 §5.2.8 error code, as carried in the Error TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: the version in the fixed header is not supported.
    UnsupportedVersion,
    /// 1: the message could not be parsed.
    MalformedMessage,
    /// 2: the message is well formed but asks for something unsupported.
    UnsupportedMessage,
    /// 3: the converter needs a Cookie TLV and there was none.
    MissingCookie,
    /// 32: the client is not allowed to use the converter (or this destination).
    NotAuthorized,
    /// 33: a TCP option in the Connect TLV is not supported.
    UnsupportedTcpOption,
    /// 64: the converter is out of some resource (e.g. a connection limit).
    ResourceExceeded,
    /// 65: the converter could not reach the destination in time.
    NetworkFailure,
    /// 96: the destination refused the connection (RST).
    ConnectionReset,
    /// 97: the destination is unreachable (ICMP).
    DestinationUnreachable,
    /// Any other code, kept as received.
    Other(u8),
}

impl ErrorCode {
    /// The code's numeric value on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::UnsupportedVersion => 0,
            Self::MalformedMessage => 1,
            Self::UnsupportedMessage => 2,
            Self::MissingCookie => 3,
            Self::NotAuthorized => 32,
            Self::UnsupportedTcpOption => 33,
            Self::ResourceExceeded => 64,
            Self::NetworkFailure => 65,
            Self::ConnectionReset => 96,
            Self::DestinationUnreachable => 97,
            Self::Other(code) => code,
        }
    }

    /// The code for a numeric value. Unknown values become [`ErrorCode::Other`],
    /// so `from_code(c).code() == c` for every `c`.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::UnsupportedVersion,
            1 => Self::MalformedMessage,
            2 => Self::UnsupportedMessage,
            3 => Self::MissingCookie,
            32 => Self::NotAuthorized,
            33 => Self::UnsupportedTcpOption,
            64 => Self::ResourceExceeded,
            65 => Self::NetworkFailure,
            96 => Self::ConnectionReset,
            97 => Self::DestinationUnreachable,
            other => Self::Other(other),
        }
    }

    /// A short snake_case name, for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::UnsupportedVersion => "unsupported_version",
            Self::MalformedMessage => "malformed_message",
            Self::UnsupportedMessage => "unsupported_message",
            Self::MissingCookie => "missing_cookie",
            Self::NotAuthorized => "not_authorized",
            Self::UnsupportedTcpOption => "unsupported_tcp_option",
            Self::ResourceExceeded => "resource_exceeded",
            Self::NetworkFailure => "network_failure",
            Self::ConnectionReset => "connection_reset",
            Self::DestinationUnreachable => "destination_unreachable",
            Self::Other(_) => "other",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// Why a byte sequence is not a valid Convert message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The fixed header's version is not [`crate::VERSION`].
    #[error("unsupported Convert version {0}")]
    UnsupportedVersion(u8),
    /// The fixed header's magic number is not [`crate::MAGIC`].
    #[error("bad Convert magic {0:#06x}")]
    BadMagic(u16),
    /// The fixed header's Total Length is 0 words (it must count the header).
    #[error("Convert total length is zero")]
    ZeroLength,
    /// A TLV's Length is 0 words (it must count its own type and length bytes).
    #[error("TLV type {kind:#04x} at offset {offset} has length zero")]
    TlvZeroLength {
        /// TLV type.
        kind: u8,
        /// Byte offset of the TLV in the message.
        offset: usize,
    },
    /// A TLV runs past the end given by the fixed header's Total Length.
    #[error("TLV type {kind:#04x} at offset {offset} overruns the message ({len} bytes, {remaining} left)")]
    TlvOverrun {
        /// TLV type.
        kind: u8,
        /// Byte offset of the TLV in the message.
        offset: usize,
        /// The TLV's length in bytes.
        len: usize,
        /// Bytes left in the message from `offset`.
        remaining: usize,
    },
    /// A known TLV is shorter than its fixed fields, or longer than allowed.
    #[error("TLV type {kind:#04x} at offset {offset} has invalid length {len} bytes")]
    TlvBadLength {
        /// TLV type.
        kind: u8,
        /// Byte offset of the TLV in the message.
        offset: usize,
        /// The TLV's length in bytes.
        len: usize,
    },
}

impl DecodeError {
    /// The RFC 8803 error code to reply with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            Self::BadMagic(_)
            | Self::ZeroLength
            | Self::TlvZeroLength { .. }
            | Self::TlvOverrun { .. }
            | Self::TlvBadLength { .. } => ErrorCode::MalformedMessage,
        }
    }
}

/// Why a [`crate::Message`] cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The encoded message would exceed [`crate::MAX_MESSAGE_LEN`] bytes.
    #[error("encoded Convert message is {len} bytes, more than the limit of {max}")]
    MessageTooLong {
        /// Encoded length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// One TLV would exceed 255 32-bit words.
    #[error("TLV type {kind:#04x} would be {len} bytes, more than 1020")]
    TlvTooLong {
        /// TLV type.
        kind: u8,
        /// Encoded length in bytes.
        len: usize,
    },
    /// A [`crate::Tlv::Unknown`] uses the type of a TLV this crate knows, so
    /// it would not decode back to itself.
    #[error("TLV type {0:#04x} is a known type and cannot be sent as Unknown")]
    KnownKindAsUnknown(u8),
    /// [`crate::auth::seal`] was given a message that already has a Cookie TLV.
    #[error("message already carries a Cookie TLV")]
    CookieAlreadyPresent,
}
