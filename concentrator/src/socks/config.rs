//! `[socks]` and the clients' SOCKS5 passwords, in two layers like the rest of the config.
//!
//! ```toml
//! [socks]
//! listen = ["0.0.0.0:1080", "[::]:1080"]   # off when empty (the default)
//!
//! [[client]]
//! id = "phone"
//! key = "…"
//! socks_password = "…"                      # username = id
//! ```

use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::config::{field, parse_addr, ConfigError, FieldError};

/// `[socks]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSocks {
    #[serde(default)]
    pub listen: Vec<String>,
}

/// `[socks]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocksConfig {
    /// Addresses of the SOCKS5 listeners (MPTCP, plain TCP if the kernel has no MPTCP).
    /// Empty: no SOCKS5 listener.
    pub listen: Vec<SocketAddr>,
}

/// A SOCKS5 password: 8-255 printable ASCII characters without spaces. Prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SocksPassword(String);

impl SocksPassword {
    /// Length of the passwords `add-client --socks` generates.
    pub const GENERATED_LEN: usize = 24;

    pub fn new(value: &str) -> Option<SocksPassword> {
        let ok = (8..=255).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| SocksPassword(value.to_owned()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A random password of [`Self::GENERATED_LEN`] letters and digits.
    pub fn generate() -> Result<SocksPassword, getrandom::Error> {
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let mut out = String::with_capacity(Self::GENERATED_LEN);
        while out.len() < Self::GENERATED_LEN {
            let mut byte = [0u8; 1];
            getrandom::fill(&mut byte)?;
            // Rejection sampling keeps every character equally likely.
            let limit = 256 - 256 % ALPHABET.len();
            if usize::from(byte[0]) < limit {
                out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
            }
        }
        Ok(SocksPassword(out))
    }
}

impl fmt::Debug for SocksPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

pub(crate) fn validate(raw: &RawSocks) -> Result<SocksConfig, ConfigError> {
    let mut listen: Vec<SocketAddr> = Vec::with_capacity(raw.listen.len());
    for (i, value) in raw.listen.iter().enumerate() {
        let addr = parse_addr(value).map_err(|e| field(format!("socks.listen[{i}]"), e))?;
        if let Some(j) = listen.iter().position(|a| *a == addr) {
            let other = format!("socks.listen[{j}]");
            return Err(field(
                format!("socks.listen[{i}]"),
                FieldError::Duplicate { other },
            ));
        }
        listen.push(addr);
    }
    Ok(SocksConfig { listen })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn off_by_default() {
        assert!(Config::parse("").unwrap().socks.listen.is_empty());
    }

    #[test]
    fn listen_and_passwords() {
        let text = format!(
            "[socks]\nlisten = [\"127.0.0.1:1080\", \"[::1]:1080\"]\n[[client]]\nid = \"phone\"\nkey = \"{KEY}\"\nsocks_password = \"correct-horse\"\n"
        );
        let cfg = Config::parse(&text).unwrap();
        assert_eq!(cfg.socks.listen.len(), 2);
        let pw = cfg.clients[0].socks_password.as_ref().unwrap();
        assert_eq!(pw.as_str(), "correct-horse");
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("correct-horse"), "{debug}");
    }

    #[test]
    fn bad_values_name_their_field() {
        for (bad, name) in [
            (
                "[socks]\nlisten = [\"nope\"]\n".to_owned(),
                "socks.listen[0]",
            ),
            (
                "[socks]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n".to_owned(),
                "socks.listen[1]",
            ),
            (
                format!("[[client]]\nid = \"a\"\nkey = \"{KEY}\"\nsocks_password = \"short\"\n"),
                "client[0].socks_password",
            ),
            (
                format!(
                    "[[client]]\nid = \"a\"\nkey = \"{KEY}\"\nsocks_password = \"has a space\"\n"
                ),
                "client[0].socks_password",
            ),
        ] {
            let e = Config::parse(&bad).unwrap_err().to_string();
            assert!(e.starts_with(name), "{bad}: {e}");
        }
    }

    #[test]
    fn generated_passwords_are_valid_and_differ() {
        let a = super::SocksPassword::generate().unwrap();
        let b = super::SocksPassword::generate().unwrap();
        assert_eq!(a.as_str().len(), super::SocksPassword::GENERATED_LEN);
        assert!(super::SocksPassword::new(a.as_str()).is_some());
        assert_ne!(a, b);
    }
}
