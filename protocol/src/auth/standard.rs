//! Standard RFC 8803 clients: converters that are not mpbond's agent (a Tessares-style
//! Convert client) and send no HMAC cookie of ours. Both modes are opt-in per client
//! and weaker than the default HMAC mode:
//!
//! * [`StandardAuth::StaticCookie`]: the request's Cookie TLV holds a fixed string. It
//!   is neither bound to a time nor to a nonce, so anyone who sees one request can
//!   replay it (or send requests of their own) for as long as the cookie is configured.
//! * [`StandardAuth::Source`]: any request from a source address inside the client's
//!   prefixes is that client's. Only as strong as the network that routes those
//!   addresses (a converter inside an operator's network).
//!
//! [`StandardClients::identify`] is consulted by the server handshake: a static cookie
//! is recognised before the HMAC check, a source prefix only when the HMAC check fails,
//! so a router that holds a key is always identified as itself.

use std::net::IpAddr;

use subtle::ConstantTimeEq;

use crate::auth::ids::ClientId;
use crate::message::Message;
use crate::tlv::Tlv;

/// An address prefix (`addr/len`), for [`StandardAuth::Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePrefix {
    addr: IpAddr,
    len: u8,
}

impl SourcePrefix {
    /// `None` if `len` is longer than the address.
    pub fn new(addr: IpAddr, len: u8) -> Option<SourcePrefix> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then_some(SourcePrefix {
            addr: addr.to_canonical(),
            len,
        })
    }

    /// Whether `ip` (v4-mapped IPv6 counts as IPv4) lies inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// How one standard client is recognised.
#[derive(Clone, PartialEq, Eq)]
pub enum StandardAuth {
    /// The Cookie TLV's value, zero padding removed, equals these bytes.
    StaticCookie(Vec<u8>),
    /// The connection comes from one of these prefixes.
    Source(Vec<SourcePrefix>),
}

impl std::fmt::Debug for StandardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::StaticCookie(_) => f.write_str("StaticCookie(***)"),
            Self::Source(prefixes) => f.debug_tuple("Source").field(prefixes).finish(),
        }
    }
}

/// The standard clients of a converter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StandardClients {
    clients: Vec<(ClientId, StandardAuth)>,
}

impl StandardClients {
    pub fn new(clients: Vec<(ClientId, StandardAuth)>) -> StandardClients {
        StandardClients { clients }
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The static-cookie client whose cookie `message` carries. Every configured cookie
    /// is compared (in constant time), so the time taken does not tell which matched.
    pub fn by_cookie(&self, message: &Message) -> Option<ClientId> {
        let value = message.tlvs.iter().find_map(|tlv| match tlv {
            Tlv::Cookie(value) => Some(value.as_slice()),
            _ => None,
        })?;
        let end = value.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let value = &value[..end];
        let mut found = None;
        for (id, auth) in &self.clients {
            if let StandardAuth::StaticCookie(cookie) = auth {
                let same = cookie.len() == value.len() && bool::from(cookie.ct_eq(value));
                if same && found.is_none() {
                    found = Some(id.clone());
                }
            }
        }
        found
    }

    /// The source-mode client whose prefixes hold `peer`.
    pub fn by_source(&self, peer: IpAddr) -> Option<ClientId> {
        self.clients.iter().find_map(|(id, auth)| match auth {
            StandardAuth::Source(prefixes) if prefixes.iter().any(|p| p.contains(peer)) => {
                Some(id.clone())
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients() -> StandardClients {
        let p = |s: &str, len| SourcePrefix::new(s.parse().unwrap(), len).unwrap();
        StandardClients::new(vec![
            (
                "tess".parse().unwrap(),
                StandardAuth::StaticCookie(b"op-secret".to_vec()),
            ),
            (
                "isp".parse().unwrap(),
                StandardAuth::Source(vec![p("198.51.100.0", 24), p("2001:db8:5::", 48)]),
            ),
        ])
    }

    fn with_cookie(value: &[u8]) -> Message {
        Message {
            tlvs: vec![Tlv::Info, Tlv::Cookie(value.to_vec())],
        }
    }

    #[test]
    fn static_cookie_matches_exactly_with_padding() {
        let c = clients();
        assert_eq!(
            c.by_cookie(&with_cookie(b"op-secret\0\0\0"))
                .unwrap()
                .as_str(),
            "tess"
        );
        assert_eq!(
            c.by_cookie(&with_cookie(b"op-secret")).unwrap().as_str(),
            "tess"
        );
        assert_eq!(c.by_cookie(&with_cookie(b"op-secreT\0\0\0")), None);
        assert_eq!(c.by_cookie(&with_cookie(b"op-secret2\0\0")), None);
        assert_eq!(c.by_cookie(&with_cookie(b"")), None);
        assert_eq!(
            c.by_cookie(&Message {
                tlvs: vec![Tlv::Info]
            }),
            None
        );
    }

    #[test]
    fn source_prefixes() {
        let c = clients();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(c.by_source(ip("198.51.100.7")).unwrap().as_str(), "isp");
        assert_eq!(
            c.by_source(ip("::ffff:198.51.100.7")).unwrap().as_str(),
            "isp"
        );
        assert_eq!(c.by_source(ip("2001:db8:5:1::9")).unwrap().as_str(), "isp");
        assert_eq!(c.by_source(ip("198.51.101.7")), None);
        assert_eq!(c.by_source(ip("2001:db8:6::1")), None);
        assert!(SourcePrefix::new(ip("10.0.0.0"), 33).is_none());
        let all = SourcePrefix::new(ip("0.0.0.0"), 0).unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        assert!(!all.contains(ip("2001:db8::1")));
    }

    #[test]
    fn debug_hides_the_cookie() {
        let text = format!("{:?}", clients());
        assert!(!text.contains("op-secret"), "{text}");
    }
}
