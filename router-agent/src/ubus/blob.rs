//! libubox `blob` and `blobmsg`, the encoding of every ubus message (pure, never panics).
//!
//! A blob attribute is a 32-bit big-endian `id_len` (bit 31: extended, bits 24-30: id,
//! bits 0-23: length including this 4-byte header) followed by the payload, padded with
//! zeros to 4 bytes. A container's payload is a run of padded attributes, and its length
//! counts their padding. ubus message attributes (`UBUS_ATTR_*`) are plain attributes;
//! the method arguments and replies inside `UBUS_ATTR_DATA` are blobmsg: extended
//! attributes whose payload starts with `namelen u16 BE`, the name, a NUL and padding to
//! 4 bytes, then the value (integers big-endian, strings NUL-terminated, tables and
//! arrays nested blobmsg). [`Value`] and [`Table`] keep each member's blobmsg type, as
//! libubox does; they map to and from `serde_json::Value` as `blobmsg_format_json` /
//! `blobmsg_add_json_element` do: INT8 is a bool, INT32 and INT64 are signed numbers, a
//! JSON integer is INT32 when it fits in `i32` and INT64 otherwise. So a JSON id of
//! 2^31 or more would go out as INT64: ids are built as [`Value::Int32`] instead, as
//! `blobmsg_add_u32` writes them.

use serde_json::{Map, Number, Value as Json};
use thiserror::Error;

/// Size of an attribute header.
pub const HDR: usize = 4;
const EXTENDED: u32 = 0x8000_0000;
const ID_SHIFT: u32 = 24;
const ID_MASK: u32 = 0x7f;
const LEN_MASK: u32 = 0x00ff_ffff;
/// Nesting bound when decoding (netifd's dump is 4 levels deep).
const MAX_DEPTH: usize = 32;

/// blobmsg value types (`enum blobmsg_type`).
pub mod kind {
    pub const UNSPEC: u8 = 0;
    pub const ARRAY: u8 = 1;
    pub const TABLE: u8 = 2;
    pub const STRING: u8 = 3;
    pub const INT64: u8 = 4;
    pub const INT32: u8 = 5;
    pub const INT16: u8 = 6;
    /// Also `BLOBMSG_TYPE_BOOL`.
    pub const INT8: u8 = 7;
    pub const DOUBLE: u8 = 8;
}

/// A malformed blob.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlobError {
    #[error("attribute at offset {offset} is truncated (length {len}, {rem} bytes left)")]
    Truncated {
        offset: usize,
        len: usize,
        rem: usize,
    },
    #[error("blobmsg attribute at offset {offset} is not extended")]
    NotExtended { offset: usize },
    #[error("blobmsg name at offset {offset} overruns its attribute")]
    BadName { offset: usize },
    #[error("blobmsg value of type {kind} has {len} bytes")]
    BadValue { kind: u8, len: usize },
    #[error("blobmsg nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("attribute of {0} bytes exceeds the 24-bit length")]
    TooLong(usize),
}

/// One attribute of a container, borrowed from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobAttr<'a> {
    pub id: u8,
    pub extended: bool,
    pub payload: &'a [u8],
}

/// `len` rounded up to 4.
pub fn pad(len: usize) -> usize {
    len.saturating_add(3) & !3
}

/// The attributes of a container payload, in order. The last one may lack its padding.
pub fn attrs(buf: &[u8]) -> Result<Vec<BlobAttr<'_>>, BlobError> {
    let mut out = Vec::new();
    let mut offset = 0;
    while buf.len() - offset >= HDR {
        let rem = buf.len() - offset;
        let word = u32::from_be_bytes([
            buf[offset],
            buf[offset + 1],
            buf[offset + 2],
            buf[offset + 3],
        ]);
        let len = (word & LEN_MASK) as usize;
        if len < HDR || len > rem {
            return Err(BlobError::Truncated { offset, len, rem });
        }
        out.push(BlobAttr {
            id: ((word >> ID_SHIFT) & ID_MASK) as u8,
            extended: word & EXTENDED != 0,
            payload: &buf[offset + HDR..offset + len],
        });
        offset += pad(len).min(rem);
    }
    Ok(out)
}

/// Append one attribute (header, payload, padding).
pub fn put(out: &mut Vec<u8>, id: u8, extended: bool, payload: &[u8]) -> Result<(), BlobError> {
    let len = HDR + payload.len();
    if len > LEN_MASK as usize {
        return Err(BlobError::TooLong(len));
    }
    let ext = if extended { EXTENDED } else { 0 };
    let word = ext | (u32::from(id) & ID_MASK) << ID_SHIFT | len as u32;
    out.extend_from_slice(&word.to_be_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + pad(len) - len, 0);
    Ok(())
}

/// A NUL-terminated string payload (`blob_put_string`).
pub fn string_payload(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// The text of a string payload: up to the first NUL, lossy UTF-8.
pub fn payload_str(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

/// A 32-bit big-endian payload.
pub fn payload_u32(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(..4)?.try_into().ok()?))
}

/// A blobmsg value with its wire type, as libubox keeps it (`enum blobmsg_type`).
///
/// JSON has one number type; blobmsg has five. libubus writes object and peer ids with
/// `blobmsg_add_u32` (INT32 even at 2^31 and above), and ubusd's policies check the type
/// (`blobmsg_parse` skips a member of the wrong one), so a request is built from these
/// values rather than from JSON when a member's type matters.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Unspec,
    Array(Vec<Value>),
    Table(Table),
    String(String),
    Int64(u64),
    Int32(u32),
    Int16(u16),
    /// Also `BLOBMSG_TYPE_BOOL`.
    Int8(u8),
    Double(f64),
}

/// A blobmsg table: named members in wire order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table(pub Vec<(String, Value)>);

impl Value {
    /// As `blobmsg_add_json_element`: a bool is INT8, an integer INT32 when it fits in
    /// `i32` and INT64 otherwise, an object a table.
    pub fn from_json(json: &Json) -> Value {
        match json {
            Json::Null => Value::Unspec,
            Json::Bool(b) => Value::Int8(u8::from(*b)),
            Json::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => match i32::try_from(i) {
                    Ok(small) => Value::Int32(small as u32),
                    Err(_) => Value::Int64(i as u64),
                },
                (None, Some(u)) => Value::Int64(u),
                (None, None) => Value::Double(n.as_f64().unwrap_or(0.0)),
            },
            Json::String(s) => Value::String(s.clone()),
            Json::Array(items) => Value::Array(items.iter().map(Value::from_json).collect()),
            Json::Object(map) => Value::Table(Table::from_json(map)),
        }
    }

    /// As `blobmsg_format_json`: INT8 is a bool, the integers are signed.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Unspec => Json::Null,
            Value::Array(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            Value::Table(t) => Json::Object(t.to_json()),
            Value::String(s) => Json::String(s.clone()),
            Value::Int64(v) => Json::from(*v as i64),
            Value::Int32(v) => Json::from(*v as i32),
            Value::Int16(v) => Json::from(*v as i16),
            Value::Int8(v) => Json::Bool(*v != 0),
            Value::Double(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        }
    }

    /// The blobmsg type id.
    pub fn kind(&self) -> u8 {
        match self {
            Value::Unspec => kind::UNSPEC,
            Value::Array(_) => kind::ARRAY,
            Value::Table(_) => kind::TABLE,
            Value::String(_) => kind::STRING,
            Value::Int64(_) => kind::INT64,
            Value::Int32(_) => kind::INT32,
            Value::Int16(_) => kind::INT16,
            Value::Int8(_) => kind::INT8,
            Value::Double(_) => kind::DOUBLE,
        }
    }
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    /// Append a member (builder style).
    pub fn with(mut self, name: &str, value: Value) -> Table {
        self.0.push((name.to_owned(), value));
        self
    }

    /// The first member called `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every member through [`Value::from_json`].
    pub fn from_json(map: &Map<String, Json>) -> Table {
        Table(
            map.iter()
                .map(|(k, v)| (k.clone(), Value::from_json(v)))
                .collect(),
        )
    }

    /// Every member through [`Value::to_json`] (a later duplicate name wins).
    pub fn to_json(&self) -> Map<String, Json> {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect()
    }

    /// The blobmsg encoding of the members (the payload of `UBUS_ATTR_DATA`).
    pub fn encode(&self) -> Result<Vec<u8>, BlobError> {
        let mut out = Vec::new();
        for (name, value) in &self.0 {
            encode_member(&mut out, name, value)?;
        }
        Ok(out)
    }

    /// Decode a table payload, keeping each member's type.
    pub fn decode(buf: &[u8]) -> Result<Table, BlobError> {
        decode_table_at(buf, 0)
    }
}

/// Decode one blobmsg attribute into its name and value.
fn decode_one(
    attr: &BlobAttr<'_>,
    offset: usize,
    depth: usize,
) -> Result<(String, Value), BlobError> {
    if !attr.extended {
        return Err(BlobError::NotExtended { offset });
    }
    let p = attr.payload;
    let namelen = match p.get(..2) {
        Some(b) => usize::from(u16::from_be_bytes([b[0], b[1]])),
        None => return Err(BlobError::BadName { offset }),
    };
    let hdrlen = pad(2 + namelen + 1);
    if hdrlen > p.len() {
        return Err(BlobError::BadName { offset });
    }
    let name = String::from_utf8_lossy(&p[2..2 + namelen]).into_owned();
    let data = &p[hdrlen..];
    let bad = || BlobError::BadValue {
        kind: attr.id,
        len: data.len(),
    };
    let fixed = |n: usize| data.get(..n).ok_or_else(bad);
    let value = match attr.id {
        kind::TABLE => Value::Table(decode_table_at(data, depth + 1)?),
        kind::ARRAY => Value::Array(decode_array_at(data, depth + 1)?),
        kind::STRING => Value::String(payload_str(data)),
        kind::INT64 => {
            let b: [u8; 8] = fixed(8)?.try_into().map_err(|_| bad())?;
            Value::Int64(u64::from_be_bytes(b))
        }
        kind::INT32 => {
            let b: [u8; 4] = fixed(4)?.try_into().map_err(|_| bad())?;
            Value::Int32(u32::from_be_bytes(b))
        }
        kind::INT16 => {
            let b: [u8; 2] = fixed(2)?.try_into().map_err(|_| bad())?;
            Value::Int16(u16::from_be_bytes(b))
        }
        kind::INT8 => Value::Int8(fixed(1)?[0]),
        kind::DOUBLE => {
            let b: [u8; 8] = fixed(8)?.try_into().map_err(|_| bad())?;
            Value::Double(f64::from_bits(u64::from_be_bytes(b)))
        }
        _ => Value::Unspec,
    };
    Ok((name, value))
}

fn decode_table_at(buf: &[u8], depth: usize) -> Result<Table, BlobError> {
    if depth > MAX_DEPTH {
        return Err(BlobError::TooDeep);
    }
    let mut members = Vec::new();
    for (i, attr) in attrs(buf)?.iter().enumerate() {
        members.push(decode_one(attr, i, depth)?);
    }
    Ok(Table(members))
}

fn decode_array_at(buf: &[u8], depth: usize) -> Result<Vec<Value>, BlobError> {
    if depth > MAX_DEPTH {
        return Err(BlobError::TooDeep);
    }
    attrs(buf)?
        .iter()
        .enumerate()
        .map(|(i, attr)| decode_one(attr, i, depth).map(|(_, v)| v))
        .collect()
}

/// The payload of a blobmsg table as a JSON object (`blobmsg_format_json`).
pub fn decode_table(buf: &[u8]) -> Result<Map<String, Json>, BlobError> {
    Table::decode(buf).map(|t| t.to_json())
}

/// Append one named blobmsg attribute holding `value`.
pub fn encode_member(out: &mut Vec<u8>, name: &str, value: &Value) -> Result<(), BlobError> {
    let name = name.as_bytes();
    let namelen = name.len().min(usize::from(u16::MAX));
    let mut payload = Vec::new();
    payload.extend_from_slice(&(namelen as u16).to_be_bytes());
    payload.extend_from_slice(&name[..namelen]);
    payload.push(0);
    payload.resize(pad(payload.len()), 0);
    match value {
        Value::Unspec => {}
        Value::Array(items) => {
            for item in items {
                encode_member(&mut payload, "", item)?;
            }
        }
        Value::Table(t) => payload.extend_from_slice(&t.encode()?),
        Value::String(s) => payload.extend_from_slice(&string_payload(s)),
        Value::Int64(v) => payload.extend_from_slice(&v.to_be_bytes()),
        Value::Int32(v) => payload.extend_from_slice(&v.to_be_bytes()),
        Value::Int16(v) => payload.extend_from_slice(&v.to_be_bytes()),
        Value::Int8(v) => payload.push(*v),
        Value::Double(f) => payload.extend_from_slice(&f.to_bits().to_be_bytes()),
    }
    put(out, value.kind(), true, &payload)
}

/// The blobmsg encoding of a JSON object (`blobmsg_add_json_from_string`).
pub fn encode_table(map: &Map<String, Json>) -> Result<Vec<u8>, BlobError> {
    Table::from_json(map).encode()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn u32_member_matches_blobmsg_add_u32() {
        // blobmsg_add_u32(&b, "object", 0x12345678): extended | INT32 << 24 | len 20.
        let map = json!({"object": 0x1234_5678}).as_object().cloned().unwrap();
        let bytes = encode_table(&map).unwrap();
        let want: &[u8] = &[
            0x85, 0x00, 0x00, 0x14, // id_len: ext, type 5, len 4+12+4
            0x00, 0x06, b'o', b'b', b'j', b'e', b'c', b't', 0x00, 0x00, 0x00, 0x00, // name
            0x12, 0x34, 0x56, 0x78,
        ];
        assert_eq!(bytes, want);
    }

    #[test]
    fn an_id_at_or_above_2_pow_31_stays_int32() {
        // blobmsg_add_u32(&b, "object", 0x89abcdef): INT32 whatever the top bit.
        let bytes = Table::new()
            .with("object", Value::Int32(0x89ab_cdef))
            .encode()
            .unwrap();
        assert_eq!(&bytes[..4], &[0x85, 0x00, 0x00, 0x14]);
        assert_eq!(&bytes[16..], &[0x89, 0xab, 0xcd, 0xef]);
        let back = Table::decode(&bytes).unwrap();
        assert_eq!(back.get("object"), Some(&Value::Int32(0x89ab_cdef)));
        // The same number from JSON is INT64, as blobmsg_add_json_element writes it:
        // the reason ids are never built from JSON.
        let map = json!({"object": 0x89ab_cdef_u32})
            .as_object()
            .cloned()
            .unwrap();
        let from_json = Table::from_json(&map);
        assert_eq!(from_json.get("object"), Some(&Value::Int64(0x89ab_cdef)));
    }

    #[test]
    fn types_survive_a_round_trip() {
        let t = Table::new()
            .with("a", Value::Int8(1))
            .with("b", Value::Int16(0xfffe))
            .with("c", Value::Int32(0xffff_fffe))
            .with("d", Value::Int64(1 << 40))
            .with("e", Value::Double(0.25))
            .with(
                "f",
                Value::Array(vec![Value::String("x".into()), Value::Unspec]),
            )
            .with("g", Value::Table(Table::new().with("h", Value::Int32(7))));
        assert_eq!(Table::decode(&t.encode().unwrap()).unwrap(), t);
        assert_eq!(
            Json::Object(t.to_json()),
            json!({"a": true, "b": -2, "c": -2, "d": 1_u64 << 40, "e": 0.25,
                   "f": ["x", null], "g": {"h": 7}})
        );
    }

    #[test]
    fn string_member_is_nul_terminated_and_padded() {
        // blobmsg_add_string(&b, "pattern", "network.interface")
        let map = json!({"pattern": "network.interface"})
            .as_object()
            .cloned()
            .unwrap();
        let bytes = encode_table(&map).unwrap();
        // header 4, name header pad(2+7+1) = 12, value 18 bytes: length 34
        let mut want = Vec::new();
        want.extend_from_slice(&[0x83, 0x00, 0x00, 0x22]);
        want.extend_from_slice(&[0x00, 0x07]);
        want.extend_from_slice(b"pattern\0");
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(b"network.interface\0");
        want.extend_from_slice(&[0, 0]); // pad 34 -> 36
        assert_eq!(bytes, want);
    }

    #[test]
    fn values_round_trip() {
        let v = json!({
            "interface": [{"interface": "wan", "up": true, "uptime": 42, "metric": -1,
                           "big": 5_000_000_000_i64, "ratio": 0.5, "nothing": null,
                           "route": [{"target": "0.0.0.0", "mask": 0}], "data": {}}],
        });
        let bytes = encode_table(v.as_object().unwrap()).unwrap();
        assert_eq!(Json::Object(decode_table(&bytes).unwrap()), v);
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error_not_a_panic() {
        let v = json!({"a": {"b": ["c", 1, true]}});
        let bytes = encode_table(v.as_object().unwrap()).unwrap();
        for cut in 0..bytes.len() {
            let _ = decode_table(&bytes[..cut]);
        }
        let mut rng = mpbond_testkit::Xorshift::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let mut b = bytes.clone();
            for _ in 0..3 {
                let i = rng.below(b.len() as u64) as usize;
                b[i] = rng.next_byte();
            }
            let _ = decode_table(&b);
        }
        assert!(
            decode_table(&[0, 0, 0, 3]).is_err(),
            "length below the header"
        );
        assert!(
            decode_table(&[0x83, 0, 0, 64]).is_err(),
            "length past the end"
        );
        // A non-extended attribute where blobmsg is expected.
        assert!(decode_table(&[0x03, 0, 0, 8, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut v = json!(1);
        for _ in 0..40 {
            v = json!({ "x": v });
        }
        let bytes = encode_table(v.as_object().unwrap()).unwrap();
        assert_eq!(decode_table(&bytes), Err(BlobError::TooDeep));
    }
}
