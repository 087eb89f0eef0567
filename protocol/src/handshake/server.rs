//! [`ServerHandshake`]: the converter's side. One request in, one decision out.
//!
//! The checks run in this order, and the first that fails decides the code:
//!
//! 1. decode ([`DecodeError`]): 0 Unsupported Version, 1 Malformed Message;
//! 2. classify ([`Message::request`]): 2 Unsupported Message for an unknown or
//!    reply-only TLV, no Connect and no Info, two of them, or both, or a UDP TLV
//!    without a Connect TLV;
//! 3. authenticate ([`Verifier::verify`]): 3 Missing Cookie, 32 Not Authorized,
//!    64 Resource Exceeded (replay cache full).
//!
//! A refusal says whether the sender proved it holds a client key
//! ([`Decision::is_unauthenticated_refusal`]): a request refused in step 2 is still
//! authenticated (its cookie checked, its nonce spent) to learn it. Every failure of
//! step 1 or 3 is unauthenticated, a full replay cache included (a replayed capture can
//! meet it too). A converter in quiet mode sends nothing to such a sender, so a scanner
//! cannot tell the service from a closed port; authenticated clients get their codes.
//!
//! What follows a [`Decision::Connect`] (destination policy, connection limits, the
//! connect itself) is the converter's; it answers a failure there with
//! [`error_reply`](super::error_reply).

use std::net::SocketAddr;

use thiserror::Error;

use crate::auth::{AuthError, ClientId, Key, Verifier};
use crate::error::{DecodeError, ErrorCode};
use crate::message::Message;
use crate::request::{Request, RequestError};
use crate::udp::Group;

use super::{error_reply, info_reply, ok_reply, MessageReader, Received, Step};

/// Why a request is refused before the converter's own checks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    /// The bytes are not a Convert message.
    #[error("malformed request: {0}")]
    Decode(#[from] DecodeError),
    /// A Convert message, but not a request we serve.
    #[error("unsupported request: {0}")]
    Request(#[from] RequestError),
    /// The request failed authentication.
    #[error("authentication failed: {0}")]
    Auth(#[from] AuthError),
}

impl HandshakeError {
    /// The RFC 8803 error code to reply with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Decode(error) => error.error_code(),
            Self::Request(error) => error.error_code(),
            Self::Auth(error) => error.error_code(),
        }
    }

    /// A snake_case label for logs and metrics: the code's name, or for an
    /// authentication failure [`AuthError::reason`].
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Decode(_) | Self::Request(_) => self.error_code().name(),
            Self::Auth(error) => error.reason(),
        }
    }
}

/// What the converter does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An authenticated Connect. Connect to `dest` (after the converter's policy and
    /// limits), then send `reply` ahead of the destination's bytes; on a failure
    /// send [`error_reply`](super::error_reply) instead and close.
    Connect {
        /// The authenticated client.
        client: ClientId,
        /// Where to connect.
        dest: SocketAddr,
        /// The success reply.
        reply: Vec<u8>,
    },
    /// An authenticated UDP flow request. Open a UDP socket connected to `dest` (after
    /// the converter's policy and limits), send `reply`, then relay capsules
    /// ([`crate::udp`]) both ways; on a failure send
    /// [`error_reply`](super::error_reply) instead and close.
    Udp {
        /// The authenticated client.
        client: ClientId,
        /// The UDP destination.
        dest: SocketAddr,
        /// The flow group this flow is one leg of (the request's Group TLV), or
        /// `None` for a plain flow. A leg relays sequenced capsules
        /// ([`crate::udp::encode_sequenced`]) and shares the group's one UDP socket
        /// with the group's other legs of the same client.
        group: Option<Group>,
        /// The success reply.
        reply: Vec<u8>,
    },
    /// An authenticated Info probe: send `reply` (Supported TCP Extensions), then close.
    Info {
        /// The authenticated client.
        client: ClientId,
        /// The Info reply.
        reply: Vec<u8>,
    },
    /// Send `reply` (an Error TLV with `error`'s code), then close; or, in quiet mode
    /// and when `client` is `None`, close without a word.
    Refuse {
        /// Why.
        error: HandshakeError,
        /// The client, when the request authenticated although it is refused (a request
        /// the converter does not serve, from a key holder). `None` when the refusal
        /// came before or at authentication: the sender proved nothing.
        client: Option<ClientId>,
        /// The error reply.
        reply: Vec<u8>,
    },
}

impl Decision {
    fn refuse(error: impl Into<HandshakeError>, client: Option<ClientId>) -> Self {
        let error = error.into();
        let reply = error_reply(error.error_code());
        Self::Refuse {
            error,
            client,
            reply,
        }
    }

    /// A refusal of a sender that did not prove it holds a client key (bad magic,
    /// version or lengths, no cookie, unknown client, bad tag, stale timestamp, replayed
    /// nonce, full replay cache, or an unsupported request that does not authenticate
    /// either). A quiet converter closes these without an RFC 8803 error.
    pub fn is_unauthenticated_refusal(&self) -> bool {
        matches!(self, Self::Refuse { client: None, .. })
    }

    /// The bytes to send to the client.
    pub fn reply(&self) -> &[u8] {
        match self {
            Self::Connect { reply, .. }
            | Self::Udp { reply, .. }
            | Self::Info { reply, .. }
            | Self::Refuse { reply, .. } => reply,
        }
    }
}

/// The converter's handshake for one connection.
///
/// Built with the shared [`Verifier`], the key table (as a lookup) and the TCP option
/// kinds to list in an Info reply. Feed it the client's bytes with
/// [`receive`](Self::receive) until it answers [`Step::Done`]; the decision is then
/// final, and later calls take nothing and answer it again (the nonce is not checked
/// twice).
pub struct ServerHandshake<'a, K> {
    verifier: &'a Verifier,
    key_for: K,
    supported_tcp_options: &'a [u8],
    reader: MessageReader,
    decision: Option<Decision>,
}

impl<K> std::fmt::Debug for ServerHandshake<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("reader", &self.reader)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

impl<'a, K> ServerHandshake<'a, K>
where
    K: Fn(&ClientId) -> Option<Key>,
{
    /// A handshake waiting for the request. `supported_tcp_options` are the TCP option
    /// kinds the converter uses towards destinations, listed in the Info reply.
    pub fn new(verifier: &'a Verifier, key_for: K, supported_tcp_options: &'a [u8]) -> Self {
        Self {
            verifier,
            key_for,
            supported_tcp_options,
            reader: MessageReader::new(),
            decision: None,
        }
    }

    /// Bytes still needed before a decision (exact once the fixed header is in); 0
    /// once decided.
    pub fn needed(&self) -> usize {
        self.reader.needed()
    }

    /// Take the client's bytes, up to the end of the request, and decide once it is
    /// whole. `now_unix_secs` is the current time, for the cookie's clock check.
    pub fn receive(&mut self, bytes: &[u8], now_unix_secs: u64) -> Received<Decision> {
        if let Some(decision) = &self.decision {
            return Received {
                consumed: 0,
                step: Step::Done(decision.clone()),
            };
        }
        let Received { consumed, step } = self.reader.receive(bytes);
        let decision = match step {
            Step::NeedMore { needed } => {
                return Received {
                    consumed,
                    step: Step::NeedMore { needed },
                }
            }
            Step::Done(Err(error)) => Decision::refuse(error, None),
            Step::Done(Ok(message)) => self.decide(&message, now_unix_secs),
        };
        self.decision = Some(decision.clone());
        Received {
            consumed,
            step: Step::Done(decision),
        }
    }

    fn decide(&self, message: &Message, now_unix_secs: u64) -> Decision {
        let wire = self.reader.wire();
        let request = match message.request() {
            Ok(request) => request,
            Err(error) => {
                // The code is 2 either way; authenticating tells a client from a stranger.
                let client = self
                    .verifier
                    .verify(wire, message, now_unix_secs, &self.key_for)
                    .ok();
                return Decision::refuse(error, client);
            }
        };
        let client = match self
            .verifier
            .verify(wire, message, now_unix_secs, &self.key_for)
        {
            Ok(client) => client,
            Err(error) => return Decision::refuse(error, None),
        };
        match request {
            Request::Connect { dest, .. } => Decision::Connect {
                client,
                dest,
                reply: ok_reply(),
            },
            Request::Udp { dest, group } => Decision::Udp {
                client,
                dest,
                group,
                reply: ok_reply(),
            },
            Request::Info => Decision::Info {
                client,
                reply: info_reply(self.supported_tcp_options),
            },
        }
    }
}
