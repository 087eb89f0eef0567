//! Client identities and keys.

use std::fmt;
use std::str::FromStr;

use subtle::ConstantTimeEq;
use thiserror::Error;

/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 32;
/// Key length in bytes.
pub const KEY_LEN: usize = 32;

/// A client's name: 1–32 characters of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

/// Why a string is not a valid [`ClientId`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientIdError {
    /// The id is empty.
    #[error("client id is empty")]
    Empty,
    /// The id is longer than 32 bytes.
    #[error("client id is {0} bytes long, more than 32")]
    TooLong(usize),
    /// The id has a character outside `[A-Za-z0-9._-]`.
    #[error("client id has the character {0:?}, outside [A-Za-z0-9._-]")]
    BadChar(char),
}

impl ClientId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Validate raw bytes (from a cookie) as a client id.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ClientIdError> {
        if bytes.is_empty() {
            return Err(ClientIdError::Empty);
        }
        if bytes.len() > MAX_CLIENT_ID_LEN {
            return Err(ClientIdError::TooLong(bytes.len()));
        }
        if let Some(&bad) = bytes
            .iter()
            .find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
        {
            return Err(ClientIdError::BadChar(char::from(bad)));
        }
        // Every byte is ASCII, so this is valid UTF-8.
        Ok(Self(bytes.iter().map(|&b| char::from(b)).collect()))
    }
}

impl FromStr for ClientId {
    type Err = ClientIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(bad) = s.chars().find(|c| !c.is_ascii()) {
            return Err(ClientIdError::BadChar(bad));
        }
        Self::from_bytes(s.as_bytes())
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ClientId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A client's 32-byte HMAC key. `Debug` never shows it.
#[derive(Clone)]
pub struct Key([u8; KEY_LEN]);

/// Why a string is not a valid [`Key`]. Never includes the key text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The string is not 64 characters long.
    #[error("key must be 64 hex characters, got {0}")]
    Length(usize),
    /// The string has a non-hex character (its position is given).
    #[error("key has a non-hex character at position {0}")]
    NotHex(usize),
}

impl Key {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A key from 64 hex characters (either case).
    pub fn from_hex(hex: &str) -> Result<Self, KeyError> {
        let hex = hex.as_bytes();
        if hex.len() != KEY_LEN * 2 {
            return Err(KeyError::Length(hex.len()));
        }
        let mut out = [0u8; KEY_LEN];
        for (i, (byte, pair)) in out.iter_mut().zip(hex.chunks_exact(2)).enumerate() {
            let [hi, lo] = pair else {
                return Err(KeyError::Length(hex.len()));
            };
            let hi = hex_val(*hi).ok_or(KeyError::NotHex(2 * i))?;
            let lo = hex_val(*lo).ok_or(KeyError::NotHex(2 * i + 1))?;
            *byte = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    /// The key as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(KEY_LEN * 2);
        for b in self.0 {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        out
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(***)")
    }
}

impl PartialEq for Key {
    /// Constant-time comparison.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Key {}

impl FromStr for Key {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}
