//! Netlink attributes: `u16 len, u16 type, value`, padded to 4 bytes.
//!
//! [`AttrBuf`] writes them (nested ones get `NLA_F_NESTED`), [`Attrs`] reads a run of them
//! as [`Attr`] views into the buffer. Reading never panics: a malformed attribute ends the
//! run, and a value too short for the type asked for reads as `None`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The size of an attribute header.
pub const NLA_HDRLEN: usize = 4;
/// The attribute holds attributes.
pub const NLA_F_NESTED: u16 = 0x8000;
/// The attribute's value is in network byte order.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
/// The type without the two flags.
pub const NLA_TYPE_MASK: u16 = 0x3fff;

/// `len` rounded up to the netlink alignment (4 bytes).
pub const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// A growing buffer of attributes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AttrBuf {
    buf: Vec<u8>,
}

impl AttrBuf {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// One attribute with a raw value.
    pub fn put(&mut self, kind: u16, value: &[u8]) {
        let start = self.begin(kind);
        self.buf.extend_from_slice(value);
        self.end(start);
    }

    pub fn put_u8(&mut self, kind: u16, value: u8) {
        self.put(kind, &[value]);
    }

    /// A `u16` in host byte order.
    pub fn put_u16(&mut self, kind: u16, value: u16) {
        self.put(kind, &value.to_ne_bytes());
    }

    /// A `u32` in host byte order (rtnetlink, generic netlink).
    pub fn put_u32(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_ne_bytes());
    }

    /// A `u32` in network byte order (nf_tables).
    pub fn put_be32(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_be_bytes());
    }

    /// An address as its 4 or 16 octets.
    pub fn put_ip(&mut self, kind: u16, addr: IpAddr) {
        match addr {
            IpAddr::V4(v4) => self.put(kind, &v4.octets()),
            IpAddr::V6(v6) => self.put(kind, &v6.octets()),
        }
    }

    /// A NUL-terminated string.
    pub fn put_str(&mut self, kind: u16, value: &str) {
        let start = self.begin(kind);
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        self.end(start);
    }

    /// A nested attribute whose children `fill` writes.
    pub fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut AttrBuf)) {
        let start = self.begin(kind | NLA_F_NESTED);
        fill(self);
        self.end(start);
    }

    fn begin(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; NLA_HDRLEN]);
        self.buf[start + 2..start + 4].copy_from_slice(&kind.to_ne_bytes());
        start
    }

    /// Write the length (header + value, unpadded) and pad to 4 bytes.
    fn end(&mut self, start: usize) {
        // Attributes here are small; a length past u16 would be a bug of the caller.
        let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.buf.resize(align4(self.buf.len()), 0);
    }
}

/// One attribute read from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// The type as sent, flags included.
    pub kind: u16,
    pub value: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The type without `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER`.
    pub fn id(&self) -> u16 {
        self.kind & NLA_TYPE_MASK
    }

    pub fn u8(&self) -> Option<u8> {
        self.value.first().copied()
    }

    pub fn u16(&self) -> Option<u16> {
        Some(u16::from_ne_bytes(self.array()?))
    }

    /// A `u16` in network byte order (ports).
    pub fn be16(&self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.array()?))
    }

    pub fn be32(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.array()?))
    }

    /// An address, by the value's length: 4 octets IPv4, 16 IPv6.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.value.len() {
            4 => Some(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            16 => Some(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            _ => None,
        }
    }

    /// A string up to its NUL (or the end), if it is UTF-8.
    pub fn str(&self) -> Option<&'a str> {
        let text = self.value.split(|b| *b == 0).next().unwrap_or_default();
        std::str::from_utf8(text).ok()
    }

    /// The attributes inside a nested one.
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.value)
    }

    fn array<const N: usize>(&self) -> Option<[u8; N]> {
        self.value.get(..N)?.try_into().ok()
    }
}

/// An iterator over a run of attributes; a malformed one ends it.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(buf: &'a [u8]) -> Attrs<'a> {
        Attrs { rest: buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Attr<'a>;

    fn next(&mut self) -> Option<Attr<'a>> {
        let len = usize::from(u16::from_ne_bytes(self.rest.get(..2)?.try_into().ok()?));
        let kind = u16::from_ne_bytes(self.rest.get(2..4)?.try_into().ok()?);
        let Some(value) = self.rest.get(NLA_HDRLEN..len) else {
            self.rest = &[];
            return None;
        };
        self.rest = self.rest.get(align4(len)..).unwrap_or_default();
        Some(Attr { kind, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nested() {
        let mut b = AttrBuf::new();
        b.put_str(1, "ab");
        b.nested(2, |b| b.put_be32(1, 0x0102_0304));
        let bytes = b.into_bytes();
        let mut want = Vec::new();
        want.extend_from_slice(&7u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(b"ab\0\0");
        want.extend_from_slice(&12u16.to_ne_bytes());
        want.extend_from_slice(&(2u16 | NLA_F_NESTED).to_ne_bytes());
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn attributes_read_back() {
        let mut b = AttrBuf::new();
        b.put_u8(1, 7);
        b.put_u32(2, 0xdead_beef);
        b.put_ip(3, "2001:db8::1".parse().expect("ip"));
        b.nested(4, |b| {
            b.put_u16(1, 4850);
            b.put_str(2, "wan1");
        });
        let bytes = b.into_bytes();
        let got: Vec<Attr> = Attrs::new(&bytes).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].u8(), Some(7));
        assert_eq!(got[1].u32(), Some(0xdead_beef));
        assert_eq!(got[2].ip(), "2001:db8::1".parse().ok());
        assert_eq!(got[3].id(), 4);
        assert_eq!(got[3].kind, 4 | NLA_F_NESTED);
        let inner: Vec<Attr> = got[3].nested().collect();
        assert_eq!(inner[0].u16(), Some(4850));
        assert_eq!(inner[1].str(), Some("wan1"));
        assert_eq!(inner[1].u64(), None, "too short");
    }

    #[test]
    fn malformed_runs_end_without_panic() {
        for len in 0..48u8 {
            let data: Vec<u8> = (0..len).map(|i| i.wrapping_mul(53)).collect();
            for attr in Attrs::new(&data) {
                let _ = (attr.ip(), attr.str(), attr.u64(), attr.nested().count());
            }
        }
        // A length shorter than the header, and one past the end.
        assert_eq!(Attrs::new(&[2, 0, 1, 0, 0, 0]).count(), 0);
        assert_eq!(Attrs::new(&[9, 0, 1, 0, 0, 0, 0, 0]).count(), 0);
    }
}
