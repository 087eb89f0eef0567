//! What a converter makes of a decoded request, before authentication.
//!
//! A request must carry exactly one Connect TLV or one Info TLV, plus (for
//! mpbond) a Cookie TLV. Any TLV type this crate does not know, or a reply
//! TLV (Error, Supported TCP Extensions, Extended TCP Header) in a request,
//! makes it an Unsupported Message (RFC 8803 error 2), as does a request with
//! neither Connect nor Info, or with both. Cookie checks live in [`crate::auth`].
//!
//! mpbond's UDP TLV ([`Tlv::Udp`]) next to one Connect TLV turns the request into
//! a UDP flow ([`Request::Udp`]); the Connect TLV's TCP options, if any, are
//! ignored. A UDP TLV without a Connect TLV, with an Info TLV, or twice, is an
//! Unsupported Message too.

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
    /// Relay one UDP flow to `dest` as RFC 9297 DATAGRAM capsules (see
    /// [`crate::udp`]).
    Udp {
        /// The UDP destination.
        dest: SocketAddr,
    },
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
    /// A UDP TLV without a Connect TLV (alone, or with an Info TLV).
    #[error("request has a UDP TLV but no Connect TLV")]
    UdpWithoutConnect,
    /// More than one UDP TLV.
    #[error("request has more than one UDP TLV")]
    DuplicateUdp,
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
        let mut udp = false;
        for tlv in &self.tlvs {
            let this = match tlv {
                Tlv::Connect { dest, tcp_options } => Request::Connect {
                    dest: *dest,
                    tcp_options,
                },
                Tlv::Info => Request::Info,
                Tlv::Cookie(_) => continue,
                Tlv::Udp => {
                    if std::mem::replace(&mut udp, true) {
                        return Err(RequestError::DuplicateUdp);
                    }
                    continue;
                }
                Tlv::Unknown { kind, .. } => return Err(RequestError::UnknownTlv(*kind)),
                other => return Err(RequestError::UnexpectedTlv(other.kind())),
            };
            if action.replace(this).is_some() {
                return Err(RequestError::TooManyActions);
            }
        }
        match (action, udp) {
            (Some(Request::Connect { dest, .. }), true) => Ok(Request::Udp { dest }),
            (_, true) => Err(RequestError::UdpWithoutConnect),
            (action, false) => action.ok_or(RequestError::NoAction),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> SocketAddr {
        "198.51.100.7:443".parse().unwrap()
    }

    fn classify(tlvs: Vec<Tlv>) -> Result<SocketAddr, RequestError> {
        match (Message { tlvs }).request()? {
            Request::Udp { dest } => Ok(dest),
            other => panic!("not a UDP request: {other:?}"),
        }
    }

    #[test]
    fn connect_with_the_udp_tlv_is_a_udp_request_in_either_order() {
        let connect = Message::connect(dest()).tlvs.remove(0);
        assert_eq!(classify(vec![connect.clone(), Tlv::Udp]), Ok(dest()));
        assert_eq!(classify(vec![Tlv::Udp, connect]), Ok(dest()));
        assert_eq!(
            Message::udp_request(dest()).request(),
            Ok(Request::Udp { dest: dest() })
        );
    }

    #[test]
    fn udp_tlv_without_connect_or_with_info_or_twice_is_unsupported() {
        let connect = Message::connect(dest()).tlvs.remove(0);
        let cases = [
            (vec![Tlv::Udp], RequestError::UdpWithoutConnect),
            (vec![Tlv::Info, Tlv::Udp], RequestError::UdpWithoutConnect),
            (
                vec![connect.clone(), Tlv::Udp, Tlv::Udp],
                RequestError::DuplicateUdp,
            ),
            (
                vec![connect, Tlv::Info, Tlv::Udp],
                RequestError::TooManyActions,
            ),
        ];
        for (tlvs, want) in cases {
            let message = Message { tlvs };
            assert_eq!(message.request(), Err(want), "{message:?}");
            assert_eq!(want.error_code(), ErrorCode::UnsupportedMessage);
        }
    }
}
