//! SOCKS5 messages (RFC 1928) and username/password authentication (RFC 1929). Pure: bytes
//! in, values out; no I/O, no panics on any input.
//!
//! Every `parse_*` function looks at the start of a buffer and answers `Ok(None)` when
//! the message is not whole yet, `Ok(Some((value, used)))` with the number of bytes it
//! used, or an error that knows the reply to send ([`WireError::reply`]). The buffering
//! lives in [`super::negotiation`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The SOCKS protocol version byte.
pub const VERSION: u8 = 5;
/// The RFC 1929 sub-negotiation version byte.
pub const USERPASS_VERSION: u8 = 1;
/// Method: username/password (RFC 1929).
pub const METHOD_USERPASS: u8 = 0x02;
/// Method: no acceptable methods.
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xff;
/// Command: CONNECT.
pub const CMD_CONNECT: u8 = 0x01;
const ATYP_V4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_V6: u8 = 0x04;

/// The REP field of a reply (RFC 1928 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyCode {
    Succeeded,
    GeneralFailure,
    NotAllowedByRuleset,
    NetworkUnreachable,
    HostUnreachable,
    ConnectionRefused,
    TtlExpired,
    CommandNotSupported,
    AddressTypeNotSupported,
}

impl ReplyCode {
    /// The byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            ReplyCode::Succeeded => 0x00,
            ReplyCode::GeneralFailure => 0x01,
            ReplyCode::NotAllowedByRuleset => 0x02,
            ReplyCode::NetworkUnreachable => 0x03,
            ReplyCode::HostUnreachable => 0x04,
            ReplyCode::ConnectionRefused => 0x05,
            ReplyCode::TtlExpired => 0x06,
            ReplyCode::CommandNotSupported => 0x07,
            ReplyCode::AddressTypeNotSupported => 0x08,
        }
    }

    /// Snake-case name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyCode::Succeeded => "succeeded",
            ReplyCode::GeneralFailure => "general_failure",
            ReplyCode::NotAllowedByRuleset => "not_allowed_by_ruleset",
            ReplyCode::NetworkUnreachable => "network_unreachable",
            ReplyCode::HostUnreachable => "host_unreachable",
            ReplyCode::ConnectionRefused => "connection_refused",
            ReplyCode::TtlExpired => "ttl_expired",
            ReplyCode::CommandNotSupported => "command_not_supported",
            ReplyCode::AddressTypeNotSupported => "address_type_not_supported",
        }
    }
}

/// Where the client wants to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An IPv4 or IPv6 address.
    Addr(SocketAddr),
    /// A domain name (1-255 bytes, checked to be a plausible host name) and port,
    /// resolved on the concentrator.
    Domain(String, u16),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Addr(a) => write!(f, "{a}"),
            Target::Domain(name, port) => write!(f, "{name}:{port}"),
        }
    }
}

/// Why a message is refused, and so what is sent back before closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not SOCKS5 (e.g. SOCKS4 or HTTP): closed without a reply.
    #[error("not SOCKS version 5 (first byte {0:#04x})")]
    Version(u8),
    /// The client offers no method we accept (we only take username/password).
    #[error("no acceptable authentication method offered")]
    NoAcceptableMethod,
    /// A bad RFC 1929 message: answered with status 0x01.
    #[error("malformed username/password message")]
    BadUserPass,
    /// A request with a command other than CONNECT.
    #[error("command {0:#04x} not supported")]
    Command(u8),
    /// A request with an unknown address type.
    #[error("address type {0:#04x} not supported")]
    AddressType(u8),
    /// A domain name that is empty or not a host name.
    #[error("invalid domain name")]
    BadDomain,
    /// A request with a non-zero reserved byte.
    #[error("malformed request")]
    BadRequest,
}

impl WireError {
    /// The bytes to send before closing, if any.
    pub fn reply(&self) -> Vec<u8> {
        match self {
            WireError::Version(_) => Vec::new(),
            WireError::NoAcceptableMethod => vec![VERSION, METHOD_NONE_ACCEPTABLE],
            WireError::BadUserPass => auth_status(false).to_vec(),
            WireError::Command(_) => reply(ReplyCode::CommandNotSupported, None),
            WireError::AddressType(_) => reply(ReplyCode::AddressTypeNotSupported, None),
            WireError::BadDomain => reply(ReplyCode::HostUnreachable, None),
            WireError::BadRequest => reply(ReplyCode::GeneralFailure, None),
        }
    }

    /// Snake-case name, for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            WireError::Version(_) => "not_socks5",
            WireError::NoAcceptableMethod => "no_acceptable_method",
            WireError::BadUserPass => "malformed_auth",
            WireError::Command(_) => "command_not_supported",
            WireError::AddressType(_) => "address_type_not_supported",
            WireError::BadDomain => "bad_domain",
            WireError::BadRequest => "malformed_request",
        }
    }
}

/// A parse result: `None` while incomplete, else the value and the bytes it used.
pub type Parsed<T> = Result<Option<(T, usize)>, WireError>;

/// The method-selection message: whether username/password is among the methods.
pub fn parse_greeting(buf: &[u8]) -> Parsed<bool> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let Some(&n) = buf.get(1) else {
        return Ok(None);
    };
    let end = 2 + usize::from(n);
    let Some(methods) = buf.get(2..end) else {
        return Ok(None);
    };
    Ok(Some((methods.contains(&METHOD_USERPASS), end)))
}

/// The method-selection reply.
pub fn method_reply(userpass: bool) -> [u8; 2] {
    if userpass {
        [VERSION, METHOD_USERPASS]
    } else {
        [VERSION, METHOD_NONE_ACCEPTABLE]
    }
}

/// An RFC 1929 request: (username, password), as bytes.
pub fn parse_userpass(buf: &[u8]) -> Parsed<(Vec<u8>, Vec<u8>)> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    if version != USERPASS_VERSION {
        return Err(WireError::BadUserPass);
    }
    let Some(&ulen) = buf.get(1) else {
        return Ok(None);
    };
    let uend = 2 + usize::from(ulen);
    let Some(user) = buf.get(2..uend) else {
        return Ok(None);
    };
    let Some(&plen) = buf.get(uend) else {
        return Ok(None);
    };
    let pend = uend + 1 + usize::from(plen);
    let Some(pass) = buf.get(uend + 1..pend) else {
        return Ok(None);
    };
    if ulen == 0 {
        return Err(WireError::BadUserPass);
    }
    Ok(Some(((user.to_vec(), pass.to_vec()), pend)))
}

/// The RFC 1929 status reply: 0x00 success, 0x01 failure.
pub fn auth_status(ok: bool) -> [u8; 2] {
    [USERPASS_VERSION, if ok { 0x00 } else { 0x01 }]
}

/// A request (RFC 1928 section 4). Only CONNECT is accepted; a whole request with another
/// command is [`WireError::Command`].
pub fn parse_request(buf: &[u8]) -> Parsed<Target> {
    let Some(&version) = buf.first() else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let (Some(&cmd), Some(&rsv), Some(&atyp)) = (buf.get(1), buf.get(2), buf.get(3)) else {
        return Ok(None);
    };
    let (host, after) = match atyp {
        ATYP_V4 => match buf.get(4..8) {
            Some(b) => (
                Host::Ip(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
                8,
            ),
            None => return Ok(None),
        },
        ATYP_V6 => match buf.get(4..20).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
            Some(b) => (Host::Ip(IpAddr::V6(Ipv6Addr::from(b))), 20),
            None => return Ok(None),
        },
        ATYP_DOMAIN => {
            let Some(&len) = buf.get(4) else {
                return Ok(None);
            };
            let end = 5 + usize::from(len);
            match buf.get(5..end) {
                Some(name) => (Host::Name(name), end),
                None => return Ok(None),
            }
        }
        other => return Err(WireError::AddressType(other)),
    };
    let Some(port) = buf.get(after..after + 2) else {
        return Ok(None);
    };
    let port = u16::from_be_bytes([port[0], port[1]]);
    let used = after + 2;
    if rsv != 0 {
        return Err(WireError::BadRequest);
    }
    if cmd != CMD_CONNECT {
        return Err(WireError::Command(cmd));
    }
    let target = match host {
        Host::Ip(ip) => Target::Addr(SocketAddr::new(ip, port)),
        Host::Name(name) => match domain(name) {
            // A literal address sent as a name is used as the address.
            Some(name) => match name.parse::<IpAddr>() {
                Ok(ip) => Target::Addr(SocketAddr::new(ip, port)),
                Err(_) => Target::Domain(name, port),
            },
            None => return Err(WireError::BadDomain),
        },
    };
    Ok(Some((target, used)))
}

enum Host<'a> {
    Ip(IpAddr),
    Name(&'a [u8]),
}

/// A host name made of letters, digits, `-`, `_` and dots, 1-253 bytes; `None` otherwise.
/// A trailing dot is dropped.
fn domain(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    let ok = !raw.is_empty()
        && raw.len() <= 253
        && raw
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| String::from_utf8_lossy(raw).into_owned())
}

/// A reply to a request. `bound` is BND.ADDR/BND.PORT (zeros of IPv4 when `None`).
pub fn reply(code: ReplyCode, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    let mut out = Vec::with_capacity(22);
    out.extend_from_slice(&[VERSION, code.code(), 0]);
    match bound.ip().to_canonical() {
        IpAddr::V4(v4) => {
            out.push(ATYP_V4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(ATYP_V6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting() {
        assert_eq!(parse_greeting(&[]), Ok(None));
        assert_eq!(parse_greeting(&[5]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 0]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 0, 2, 9]), Ok(Some((true, 4))));
        assert_eq!(parse_greeting(&[5, 1, 0]), Ok(Some((false, 3))));
        assert_eq!(parse_greeting(&[5, 0]), Ok(Some((false, 2))));
        assert_eq!(parse_greeting(&[4, 1]), Err(WireError::Version(4)));
        assert_eq!(method_reply(true), [5, 2]);
        assert_eq!(method_reply(false), [5, 0xff]);
    }

    #[test]
    fn userpass() {
        let msg = [1, 4, b'h', b'o', b'm', b'e', 2, b'p', b'w', 7];
        assert_eq!(
            parse_userpass(&msg),
            Ok(Some(((b"home".to_vec(), b"pw".to_vec()), 9)))
        );
        for n in 0..9 {
            assert_eq!(parse_userpass(&msg[..n]), Ok(None), "{n}");
        }
        assert_eq!(parse_userpass(&[5, 1]), Err(WireError::BadUserPass));
        assert_eq!(parse_userpass(&[1, 0, 0]), Err(WireError::BadUserPass));
        assert_eq!(
            parse_userpass(&[1, 1, b'a', 0]),
            Ok(Some(((b"a".to_vec(), Vec::new()), 4)))
        );
        assert_eq!(auth_status(true), [1, 0]);
        assert_eq!(auth_status(false), [1, 1]);
    }

    #[test]
    fn requests() {
        let v4 = [5, 1, 0, 1, 192, 0, 2, 1, 0x1f, 0x90];
        let want = Target::Addr("192.0.2.1:8080".parse().unwrap());
        assert_eq!(parse_request(&v4), Ok(Some((want, 10))));
        for n in 0..v4.len() {
            assert_eq!(parse_request(&v4[..n]), Ok(None), "{n}");
        }
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0, 80]);
        let want = Target::Addr("[2001:db8::1]:80".parse().unwrap());
        assert_eq!(parse_request(&v6), Ok(Some((want, 22))));
        let mut name = vec![5, 1, 0, 3, 12];
        name.extend_from_slice(b"example.com.");
        name.extend_from_slice(&[1, 187]);
        let want = Target::Domain("example.com".into(), 443);
        assert_eq!(parse_request(&name), Ok(Some((want, 19))));
        let mut lit = vec![5, 1, 0, 3, 8];
        lit.extend_from_slice(b"10.0.0.1");
        lit.extend_from_slice(&[0, 80]);
        let want = Target::Addr("10.0.0.1:80".parse().unwrap());
        assert_eq!(parse_request(&lit), Ok(Some((want, 15))));
    }

    #[test]
    fn refused_requests_name_their_reply() {
        let bind = [5, 2, 0, 1, 1, 2, 3, 4, 0, 80];
        assert_eq!(parse_request(&bind), Err(WireError::Command(2)));
        assert_eq!(WireError::Command(2).reply()[1], 0x07);
        assert_eq!(
            parse_request(&[5, 1, 0, 9, 1, 2]),
            Err(WireError::AddressType(9))
        );
        assert_eq!(WireError::AddressType(9).reply()[1], 0x08);
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 0, 0, 80]),
            Err(WireError::BadDomain)
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 3, b'a', b' ', b'b', 0, 80]),
            Err(WireError::BadDomain)
        );
        assert_eq!(
            parse_request(&[5, 1, 7, 1, 1, 2, 3, 4, 0, 80]),
            Err(WireError::BadRequest)
        );
        assert_eq!(WireError::NoAcceptableMethod.reply(), vec![5, 0xff]);
        assert!(WireError::Version(4).reply().is_empty());
    }

    #[test]
    fn replies() {
        assert_eq!(
            reply(ReplyCode::NotAllowedByRuleset, None),
            vec![5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        let r = reply(
            ReplyCode::Succeeded,
            Some("[2001:db8::2]:4000".parse().unwrap()),
        );
        assert_eq!(r.len(), 22);
        assert_eq!(&r[..4], &[5, 0, 0, 4]);
        assert_eq!(&r[20..], &[0x0f, 0xa0]);
        let mapped = reply(
            ReplyCode::Succeeded,
            Some("[::ffff:192.0.2.5]:1".parse().unwrap()),
        );
        assert_eq!(mapped, vec![5, 0, 0, 1, 192, 0, 2, 5, 0, 1]);
    }

    #[test]
    fn no_panic_on_any_short_input() {
        // Every buffer of up to 3 bytes, and a deterministic sweep of longer ones.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut buf = Vec::new();
        for round in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            buf.clear();
            for i in 0..len {
                buf.push((state.rotate_left(i as u32 * 8) & 0xff) as u8);
            }
            if round % 3 == 0 && !buf.is_empty() {
                buf[0] = 5;
            }
            let _ = parse_greeting(&buf);
            let _ = parse_userpass(&buf);
            let _ = parse_request(&buf);
        }
    }
}
