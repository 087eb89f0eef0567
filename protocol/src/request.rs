//! What a converter makes of a decoded request, before authentication.
//!
//! A request must carry exactly one Connect TLV or one Info TLV, plus (for
//! mpbond) a Cookie TLV. Any TLV type this crate does not know, or a reply
//! TLV (Error, Supported TCP Extensions, Extended TCP Header) in a request,
//! makes it an Unsupported Message (RFC 8803 error 2), as does a request with
//! neither Connect nor Info, or with both. Cookie checks live in [`crate::auth`].

use std::net::SocketAddr;

use thiserror::Error;

use crate::error::ErrorCode;
use crate::message::Message;
use crate::tlv::Tlv;

/// What a valid request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Connect to `dest`, with these raw TCP options (usually empty).
    Connect {
        /// The destination.
        dest: SocketAddr,
        /// The Connect TLV's TCP options, padding included.
        tcp_options: &'a [u8],
    },
    /// Report the supported TCP extensions (mpbond's health probe).
    Info,
}

/// Why a decoded message is not a request we serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RequestError {
    /// A TLV type this crate does not know.
    #[error("unknown TLV type {0:#04x}")]
    UnknownTlv(u8),
    /// A reply-only TLV (Error, Supported TCP Extensions, Extended TCP Header).
    #[error("TLV type {0:#04x} is not valid in a request")]
    UnexpectedTlv(u8),
    /// Neither a Connect nor an Info TLV.
    #[error("request has neither a Connect nor an Info TLV")]
    NoAction,
    /// More than one Connect or Info TLV, or both.
    #[error("request has more than one Connect/Info TLV")]
    TooManyActions,
}

impl RequestError {
    /// The RFC 8803 error code to reply with: always Unsupported Message (2).
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::UnsupportedMessage
    }
}

impl Message {
    /// Classify a decoded request. See the module docs for the rules.
    pub fn request(&self) -> Result<Request<'_>, RequestError> {
        let mut action = None;
        for tlv in &self.tlvs {
            let this = match tlv {
                Tlv::Connect { dest, tcp_options } => Request::Connect {
                    dest: *dest,
                    tcp_options,
                },
                Tlv::Info => Request::Info,
                Tlv::Cookie(_) => continue,
                Tlv::Unknown { kind, .. } => return Err(RequestError::UnknownTlv(*kind)),
                other => return Err(RequestError::UnexpectedTlv(other.kind())),
            };
            if action.replace(this).is_some() {
                return Err(RequestError::TooManyActions);
            }
        }
        action.ok_or(RequestError::NoAction)
    }
}
