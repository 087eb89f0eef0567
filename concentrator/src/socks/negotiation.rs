//! The server side of a SOCKS5 negotiation as a sans-IO state machine: bytes in, bytes to
//! send and a decision out.
//!
//! Greeting → username/password (RFC 1929) → request. Only username/password is offered:
//! a client without it gets method 0xFF, a wrong password status 0x01, and both are then
//! closed. A client may send its messages back to back (pipelined); bytes after a whole
//! request are handed on as `early` data for the destination.

use mpbond_protocol::auth::ClientId;

use super::wire::{self, Target, WireError};

/// Why a negotiation ended without a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A malformed or unsupported message; its reply is in [`Step::send`].
    Wire(WireError),
    /// Unknown user or wrong password (RFC 1929 status 0x01 sent).
    Credentials,
}

impl Refusal {
    /// Snake-case name, for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::Wire(e) => e.as_str(),
            Refusal::Credentials => "auth_failed",
        }
    }
}

/// Where a negotiation stands after [`Negotiation::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Waiting for more bytes.
    Pending,
    /// Send [`Step::send`], then close.
    Refused(Refusal),
    /// An authenticated CONNECT: the shell resolves, checks and connects, then sends
    /// [`wire::reply`]. `early` are bytes the client sent after its request.
    Ready {
        client: ClientId,
        target: Target,
        early: Vec<u8>,
    },
}

/// What one call to [`Negotiation::receive`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Bytes to send now (method choice, auth status, or the refusal's reply).
    pub send: Vec<u8>,
    pub progress: Progress,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Greeting,
    Auth,
    Request(ClientId),
    Done,
}

/// One negotiation. Holds at most one unfinished message (≤ 513 bytes) between calls.
#[derive(Debug)]
pub struct Negotiation {
    stage: Stage,
    buf: Vec<u8>,
}

impl Default for Negotiation {
    fn default() -> Self {
        Negotiation::new()
    }
}

impl Negotiation {
    pub fn new() -> Negotiation {
        Negotiation {
            stage: Stage::Greeting,
            buf: Vec::new(),
        }
    }

    /// Take `input`; `check(user, password)` names the client whose credential matches.
    /// After a `Refused` or `Ready`, further calls return `Pending` and send nothing.
    pub fn receive(
        &mut self,
        input: &[u8],
        check: impl Fn(&[u8], &[u8]) -> Option<ClientId>,
    ) -> Step {
        let mut send = Vec::new();
        if self.stage == Stage::Done {
            return Step {
                send,
                progress: Progress::Pending,
            };
        }
        self.buf.extend_from_slice(input);
        loop {
            let result = match &self.stage {
                Stage::Greeting => wire::parse_greeting(&self.buf).map(|p| {
                    p.map(|(userpass, used)| {
                        send.extend_from_slice(&wire::method_reply(userpass));
                        let next = if userpass { Some(Stage::Auth) } else { None };
                        (next, used)
                    })
                }),
                Stage::Auth => wire::parse_userpass(&self.buf).map(|p| {
                    p.map(|((user, pass), used)| {
                        let client = check(&user, &pass);
                        send.extend_from_slice(&wire::auth_status(client.is_some()));
                        (client.map(Stage::Request), used)
                    })
                }),
                Stage::Request(client) => match wire::parse_request(&self.buf) {
                    Ok(Some((target, used))) => {
                        let client = client.clone();
                        self.stage = Stage::Done;
                        let early = self.buf.split_off(used);
                        self.buf = Vec::new();
                        return Step {
                            send,
                            progress: Progress::Ready {
                                client,
                                target,
                                early,
                            },
                        };
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                },
                Stage::Done => Ok(None),
            };
            match result {
                Ok(None) => {
                    return Step {
                        send,
                        progress: Progress::Pending,
                    }
                }
                Ok(Some((Some(next), used))) => {
                    self.buf.drain(..used);
                    self.stage = next;
                }
                Ok(Some((None, _))) => {
                    let refusal = match self.stage {
                        Stage::Greeting => Refusal::Wire(WireError::NoAcceptableMethod),
                        _ => Refusal::Credentials,
                    };
                    return self.refuse(send, refusal);
                }
                Err(e) => {
                    send.extend_from_slice(&e.reply());
                    return self.refuse(send, Refusal::Wire(e));
                }
            }
        }
    }

    fn refuse(&mut self, send: Vec<u8>, refusal: Refusal) -> Step {
        self.stage = Stage::Done;
        self.buf = Vec::new();
        Step {
            send,
            progress: Progress::Refused(refusal),
        }
    }
}

/// Compare a configured password with a given one in time that depends only on their
/// lengths.
pub fn password_matches(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> ClientId {
        "home".parse().unwrap()
    }

    fn check(user: &[u8], pass: &[u8]) -> Option<ClientId> {
        (user == b"home" && password_matches(b"secret", pass)).then(home)
    }

    const GREETING: [u8; 4] = [5, 2, 0, 2];
    const AUTH: [u8; 14] = [
        1, 4, b'h', b'o', b'm', b'e', 6, b's', b'e', b'c', b'r', b'e', b't', 0,
    ];
    const REQUEST: [u8; 10] = [5, 1, 0, 1, 192, 0, 2, 1, 0, 80];

    #[test]
    fn byte_by_byte_to_a_request() {
        let mut n = Negotiation::new();
        let mut sent = Vec::new();
        let auth = &AUTH[..13];
        let all: Vec<u8> = [&GREETING[..], auth, &REQUEST[..], b"GET"].concat();
        let mut last = Progress::Pending;
        for b in all.iter().take(all.len() - 3) {
            let step = n.receive(&[*b], check);
            sent.extend(step.send);
            last = step.progress;
        }
        assert_eq!(sent, vec![5, 2, 1, 0]);
        assert_eq!(
            last,
            Progress::Ready {
                client: home(),
                target: Target::Addr("192.0.2.1:80".parse().unwrap()),
                early: Vec::new(),
            }
        );
        assert_eq!(n.receive(b"x", check).progress, Progress::Pending);
    }

    #[test]
    fn pipelined_messages_and_early_data() {
        let mut n = Negotiation::new();
        let all: Vec<u8> = [&GREETING[..], &AUTH[..13], &REQUEST[..], b"GET"].concat();
        let step = n.receive(&all, check);
        assert_eq!(step.send, vec![5, 2, 1, 0]);
        let Progress::Ready { early, .. } = step.progress else {
            panic!("{:?}", step.progress);
        };
        assert_eq!(early, b"GET");
    }

    #[test]
    fn wrong_password_gets_status_1() {
        let mut n = Negotiation::new();
        let mut auth = AUTH[..13].to_vec();
        auth[12] = b'x';
        let step = n.receive(&[&GREETING[..], &auth].concat(), check);
        assert_eq!(step.send, vec![5, 2, 1, 1]);
        assert_eq!(step.progress, Progress::Refused(Refusal::Credentials));
    }

    #[test]
    fn no_userpass_method_gets_ff() {
        let mut n = Negotiation::new();
        let step = n.receive(&[5, 1, 0], check);
        assert_eq!(step.send, vec![5, 0xff]);
        assert_eq!(
            step.progress,
            Progress::Refused(Refusal::Wire(WireError::NoAcceptableMethod))
        );
    }

    #[test]
    fn unsupported_command_gets_7() {
        let mut n = Negotiation::new();
        let mut req = REQUEST;
        req[1] = 3; // UDP ASSOCIATE
        let step = n.receive(&[&GREETING[..], &AUTH[..13], &req].concat(), check);
        assert_eq!(&step.send[..4], &[5, 2, 1, 0]);
        assert_eq!(&step.send[4..6], &[5, 7]);
        assert!(matches!(step.progress, Progress::Refused(_)));
    }

    #[test]
    fn not_socks5_gets_nothing() {
        let mut n = Negotiation::new();
        let step = n.receive(b"GET / HTTP/1.1\r\n", check);
        assert!(step.send.is_empty());
        assert_eq!(
            step.progress,
            Progress::Refused(Refusal::Wire(WireError::Version(b'G')))
        );
    }

    #[test]
    fn passwords_compare_exactly() {
        assert!(password_matches(b"abc", b"abc"));
        assert!(!password_matches(b"abc", b"abd"));
        assert!(!password_matches(b"abc", b"abcd"));
        assert!(!password_matches(b"abc", b""));
    }
}
