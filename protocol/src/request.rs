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
//!
//! mpbond's Group TLV ([`Tlv::Group`]) makes a UDP request one leg of a protected
//! flow group ([`crate::udp::Group`]). A Group TLV without a UDP TLV, twice, or with
//! out-of-range leg values is an Unsupported Message.

use std::net::SocketAddr;

use thiserror::Error;

use crate::error::ErrorCode;
use crate::message::Message;
use crate::tlv::Tlv;
use crate::udp::{Group, GroupError};

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
        /// The flow group this flow is a leg of (a Group TLV), or `None` for a plain
        /// flow.
        group: Option<Group>,
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
    /// A Group TLV in a request that is not a UDP flow request.
    #[error("request has a Group TLV but no UDP TLV")]
    GroupWithoutUdp,
    /// More than one Group TLV.
    #[error("request has more than one Group TLV")]
    DuplicateGroup,
    /// A Group TLV whose leg values are out of range.
    #[error("bad Group TLV: {0}")]
    BadGroup(#[from] GroupError),
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
        let mut group = None;
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
                Tlv::Group(this) => {
                    this.validate()?;
                    if group.replace(*this).is_some() {
                        return Err(RequestError::DuplicateGroup);
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
            (Some(Request::Connect { dest, .. }), true) => Ok(Request::Udp { dest, group }),
            (_, true) => Err(RequestError::UdpWithoutConnect),
            (_, false) if group.is_some() => Err(RequestError::GroupWithoutUdp),
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
            Request::Udp { dest, group: None } => Ok(dest),
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
            Ok(Request::Udp {
                dest: dest(),
                group: None
            })
        );
    }

    #[test]
    fn group_tlv_makes_a_udp_request_a_leg() {
        let group = Group {
            id: 0xfeed,
            leg: 1,
            legs: 2,
        };
        let message = Message::udp_leg_request(dest(), group);
        assert_eq!(
            message.request(),
            Ok(Request::Udp {
                dest: dest(),
                group: Some(group)
            })
        );
        // Any order.
        let mut reversed = message.clone();
        reversed.tlvs.reverse();
        assert_eq!(reversed.request(), message.request());
    }

    #[test]
    fn group_tlv_outside_a_udp_request_or_twice_or_out_of_range_is_unsupported() {
        let connect = Message::connect(dest()).tlvs.remove(0);
        let group = Tlv::Group(Group {
            id: 1,
            leg: 0,
            legs: 2,
        });
        let bad = Tlv::Group(Group {
            id: 1,
            leg: 2,
            legs: 2,
        });
        let cases = [
            (
                vec![connect.clone(), group.clone()],
                RequestError::GroupWithoutUdp,
            ),
            (
                vec![Tlv::Info, group.clone()],
                RequestError::GroupWithoutUdp,
            ),
            (vec![group.clone()], RequestError::GroupWithoutUdp),
            (
                vec![connect.clone(), Tlv::Udp, group.clone(), group],
                RequestError::DuplicateGroup,
            ),
            (
                vec![connect, Tlv::Udp, bad],
                RequestError::BadGroup(GroupError::BadLeg { leg: 2, legs: 2 }),
            ),
        ];
        for (tlvs, want) in cases {
            let message = Message { tlvs };
            assert_eq!(message.request(), Err(want), "{message:?}");
            assert_eq!(want.error_code(), ErrorCode::UnsupportedMessage);
        }
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
