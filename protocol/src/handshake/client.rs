//! [`ClientHandshake`]: the agent's side. Seal one request, read the reply to it.

use thiserror::Error;

use crate::auth::{seal, seal_bound, ClientId, Key, ServerId, NONCE_LEN};
use crate::error::{DecodeError, EncodeError, ErrorCode};
use crate::message::Message;
use crate::request::{Request, RequestError};
use crate::tlv::Tlv;

use super::{MessageReader, Received, Step};

/// What the request asked for, which decides how its reply is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A Connect (TCP or UDP): a reply without an Error TLV means connected.
    Connect,
    /// An Info probe: the reply must list the supported TCP extensions.
    Info,
}

impl Asked {
    /// What `request` asks for; an error if it is not a Convert request.
    fn of(request: &Message) -> Result<Asked, RequestError> {
        Ok(match request.request()? {
            Request::Connect { .. } | Request::Udp { .. } => Asked::Connect,
            Request::Info => Asked::Info,
        })
    }
}

/// A reply that says yes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// The converter connected; the destination's bytes follow the reply.
    Connected,
    /// The converter answered the Info probe with these TCP option kinds (with any
    /// zero padding).
    Supported {
        /// The Supported TCP Extensions value.
        tcp_options: Vec<u8>,
    },
}

/// A reply that says no, or that is no reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    /// The reply carries an Error TLV.
    #[error("the concentrator refused: {0}")]
    Refused(ErrorCode),
    /// The bytes are not a Convert message.
    #[error("malformed Convert reply: {0}")]
    Malformed(#[from] DecodeError),
    /// The reply to an Info probe lists no Supported TCP Extensions.
    #[error("the Info reply lists no supported TCP extensions")]
    NoExtensions,
}

impl ReplyError {
    /// The converter's error code, if it refused.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused(code) => Some(*code),
            _ => None,
        }
    }
}

/// Why a request could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SealError {
    /// The message is not a request a converter serves (see [`Message::request`]).
    #[error("not a Convert request: {0}")]
    Request(#[from] RequestError),
    /// The sealed message does not encode.
    #[error("cannot encode the request: {0}")]
    Encode(#[from] EncodeError),
}

/// The client's handshake for one connection: the sealed request went out, the reply
/// comes in.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    asked: Asked,
    reader: MessageReader,
}

impl ClientHandshake {
    /// Seal `request` (one Connect or one Info TLV) for `client`, and the handshake
    /// that reads its reply. Send the returned bytes (in the SYN, with Fast Open).
    pub fn seal(
        request: &Message,
        client: &ClientId,
        key: &Key,
        now_unix_secs: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<(Self, Vec<u8>), SealError> {
        let asked = Asked::of(request)?;
        let wire = seal(request, client, key, now_unix_secs, nonce)?;
        Ok((Self::expecting(asked), wire))
    }

    /// Like [`ClientHandshake::seal`], with the cookie bound to `server` (the name the
    /// client dials, e.g. `vps.example.net:4850`): a concentrator that does not answer
    /// to that name refuses it, even if it has the client's key.
    pub fn seal_bound(
        request: &Message,
        client: &ClientId,
        key: &Key,
        server: &ServerId,
        now_unix_secs: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<(Self, Vec<u8>), SealError> {
        let asked = Asked::of(request)?;
        let wire = seal_bound(request, client, key, server, now_unix_secs, nonce)?;
        Ok((Self::expecting(asked), wire))
    }

    /// The handshake for a request sent by other means (a test's hand-made bytes).
    pub fn expecting(asked: Asked) -> Self {
        Self {
            asked,
            reader: MessageReader::new(),
        }
    }

    /// What the request asked for.
    pub fn asked(&self) -> Asked {
        self.asked
    }

    /// Bytes still needed before the reply is whole (exact once the fixed header is
    /// in); 0 once done. Reading at most this many never takes the destination's bytes.
    pub fn needed(&self) -> usize {
        self.reader.needed()
    }

    /// Take the converter's bytes, up to the end of the reply, and read it once whole.
    pub fn receive(&mut self, bytes: &[u8]) -> Received<Result<Accepted, ReplyError>> {
        let Received { consumed, step } = self.reader.receive(bytes);
        let step = match step {
            Step::NeedMore { needed } => Step::NeedMore { needed },
            Step::Done(Err(error)) => Step::Done(Err(ReplyError::Malformed(error))),
            Step::Done(Ok(reply)) => Step::Done(self.read(&reply)),
        };
        Received { consumed, step }
    }

    fn read(&self, reply: &Message) -> Result<Accepted, ReplyError> {
        if let Some(code) = reply.error_code() {
            return Err(ReplyError::Refused(code));
        }
        match self.asked {
            Asked::Connect => Ok(Accepted::Connected),
            Asked::Info => reply
                .tlvs
                .iter()
                .find_map(|tlv| match tlv {
                    Tlv::SupportedTcpExtensions(kinds) => Some(Accepted::Supported {
                        tcp_options: kinds.clone(),
                    }),
                    _ => None,
                })
                .ok_or(ReplyError::NoExtensions),
        }
    }
}
