//! Standard RFC 8803 clients (issue 12, part 3): per-client, opt-in authentication for
//! Convert clients that are not mpbond's agent and send no HMAC cookie of ours.
//!
//! ```toml
//! [[client]]
//! id = "tessares-cpe"
//! auth = "static-cookie"
//! cookie = "a-long-random-string"     # the Cookie TLV's value, as the client sends it
//!
//! [[client]]
//! id = "operator-converter"
//! auth = "source"
//! sources = ["198.51.100.0/24", "2001:db8:5::/48"]
//! ```
//!
//! Both are weaker than the default `auth = "hmac"`: a static cookie is not bound to a
//! time or a nonce, so anyone who sees one request can replay it or make their own; a
//! source prefix is only as strong as the network that routes it. Such clients need no
//! `key`. The decisions are `mpbond_protocol::auth::standard`'s; this module validates the
//! config and builds their table.

use ipnet::IpNet;
use mpbond_protocol::auth::{SourcePrefix, StandardAuth, StandardClients};

use crate::config::{field, Client, ConfigError, FieldError, RawClient};

/// Longest static cookie: what one Cookie TLV holds (255 words less its 4-byte header).
pub const MAX_COOKIE_LEN: usize = 255 * 4 - 4;

/// How one client's Convert requests authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// mpbond's HMAC cookie (the default).
    #[default]
    Hmac,
    /// A standard RFC 8803 client.
    Standard(StandardAuth),
}

impl ClientAuth {
    pub fn is_hmac(&self) -> bool {
        *self == ClientAuth::Hmac
    }
}

/// The `auth`, `cookie` and `sources` of `client[i]`, checked against the clients before
/// it (static cookies must differ).
pub(crate) fn validate(
    i: usize,
    raw: &RawClient,
    before: &[Client],
) -> Result<ClientAuth, ConfigError> {
    let err = |name: &str, what| field(format!("client[{i}].{name}"), FieldError::Auth(what));
    match raw.auth.as_deref().unwrap_or("hmac") {
        "hmac" => {
            if raw.cookie.is_some() {
                return Err(err("cookie", "only with auth = \"static-cookie\""));
            }
            if !raw.sources.is_empty() {
                return Err(err("sources", "only with auth = \"source\""));
            }
            Ok(ClientAuth::Hmac)
        }
        "static-cookie" => {
            if !raw.sources.is_empty() {
                return Err(err("sources", "only with auth = \"source\""));
            }
            let cookie = raw
                .cookie
                .as_deref()
                .ok_or_else(|| err("cookie", "required with auth = \"static-cookie\""))?;
            let ok = (16..=MAX_COOKIE_LEN).contains(&cookie.len())
                && cookie.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(err(
                    "cookie",
                    "expected 16-1016 printable ASCII characters without spaces",
                ));
            }
            let bytes = cookie.as_bytes().to_vec();
            let taken = before.iter().any(|c| {
                matches!(&c.auth, ClientAuth::Standard(StandardAuth::StaticCookie(b)) if *b == bytes)
            });
            if taken {
                return Err(err("cookie", "another client has this cookie"));
            }
            Ok(ClientAuth::Standard(StandardAuth::StaticCookie(bytes)))
        }
        "source" => {
            if raw.cookie.is_some() {
                return Err(err("cookie", "only with auth = \"static-cookie\""));
            }
            if raw.sources.is_empty() {
                return Err(err("sources", "required with auth = \"source\""));
            }
            let mut prefixes = Vec::with_capacity(raw.sources.len());
            for (j, value) in raw.sources.iter().enumerate() {
                let net = value
                    .parse::<IpNet>()
                    .or_else(|e| {
                        value
                            .parse::<std::net::IpAddr>()
                            .map(IpNet::from)
                            .map_err(|_| e)
                    })
                    .map_err(|source| {
                        let value = value.clone();
                        field(
                            format!("client[{i}].sources[{j}]"),
                            FieldError::Prefix { value, source },
                        )
                    })?;
                let net = crate::policy::canonical_net(net.trunc());
                if let Some(p) = SourcePrefix::new(net.addr(), net.prefix_len()) {
                    prefixes.push(p);
                }
            }
            Ok(ClientAuth::Standard(StandardAuth::Source(prefixes)))
        }
        _ => Err(err(
            "auth",
            "expected \"hmac\", \"static-cookie\" or \"source\"",
        )),
    }
}

/// The standard clients among `clients`, for the server handshake.
pub fn standard_clients(clients: &[Client]) -> StandardClients {
    StandardClients::new(
        clients
            .iter()
            .filter_map(|c| match &c.auth {
                ClientAuth::Standard(auth) => Some((c.id.clone(), auth.clone())),
                ClientAuth::Hmac => None,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn modes_parse() {
        let cfg = Config::parse(&format!(
            "[[client]]\nid = \"home\"\nkey = \"{KEY}\"\n[[client]]\nid = \"tess\"\nauth = \"static-cookie\"\ncookie = \"0123456789abcdef-op\"\n[[client]]\nid = \"isp\"\nauth = \"source\"\nsources = [\"198.51.100.0/24\", \"2001:db8::1\"]\n"
        ))
        .unwrap();
        assert!(cfg.clients[0].auth.is_hmac());
        let standard = standard_clients(&cfg.clients);
        let ip = |s: &str| s.parse().unwrap();
        assert_eq!(
            standard.by_source(ip("198.51.100.9")).unwrap().as_str(),
            "isp"
        );
        assert_eq!(
            standard.by_source(ip("2001:db8::1")).unwrap().as_str(),
            "isp"
        );
        assert_eq!(standard.by_source(ip("2001:db8::2")), None);
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("0123456789abcdef-op"), "{debug}");
    }

    #[test]
    fn bad_combinations_name_their_field() {
        for (body, name) in [
            ("auth = \"static-cookie\"\n", "client[0].cookie"),
            (
                "auth = \"static-cookie\"\ncookie = \"short\"\n",
                "client[0].cookie",
            ),
            ("auth = \"source\"\n", "client[0].sources"),
            (
                "auth = \"source\"\nsources = [\"nope\"]\n",
                "client[0].sources[0]",
            ),
            ("auth = \"other\"\n", "client[0].auth"),
            (
                &format!("key = \"{KEY}\"\ncookie = \"0123456789abcdef\"\n"),
                "client[0].cookie",
            ),
            ("key = \"\"\n", "client[0].key"),
        ] {
            let e = Config::parse(&format!("[[client]]\nid = \"a\"\n{body}"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(name), "{body}: {e}");
        }
        let twice = "[[client]]\nid = \"a\"\nauth = \"static-cookie\"\ncookie = \"0123456789abcdef\"\n[[client]]\nid = \"b\"\nauth = \"static-cookie\"\ncookie = \"0123456789abcdef\"\n";
        let e = Config::parse(twice).unwrap_err().to_string();
        assert!(e.starts_with("client[1].cookie"), "{e}");
    }
}
