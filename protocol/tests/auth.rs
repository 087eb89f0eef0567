//! Authentication: a known-answer vector, every rejection, and the replay
//! cache (expiry and caps).

mod common;

use std::net::SocketAddr;

use common::{decode_whole, hex};
use mpbond_protocol::auth::{
    seal, AuthError, ClientId, ClientIdError, Key, KeyError, ReplayLimits, Verifier,
};
use mpbond_protocol::{EncodeError, ErrorCode, Message, Tlv};
use proptest::prelude::*;

const NOW: u64 = 1_700_000_000;
const WINDOW: u64 = 60;

/// The worked example of docs/PROTOCOL.md, tag computed independently
/// (Python `hmac`): Connect 203.0.113.10:443, client "home", key 00..1f,
/// timestamp 1700000000, nonce 01..0c.
const SEALED_EXAMPLE: &str = "
    01 12 22 63 | 0a 05 01 bb | 00 00 00 00 | 00 00 00 00 | 00 00 ff ff | cb 00 71 0a
    16 0c 00 00 | 01 04 68 6f | 6d 65 00 00 | 00 00 65 53 | f1 00 01 02 | 03 04 05 06
    07 08 09 0a | 0b 0c 25 ff | 57 04 1f ca | 77 fa 89 d8 | 68 71 fe 00 | 20 d9 00 00";

/// The Info probe of docs/PROTOCOL.md, same client, key, time and nonce.
const SEALED_PROBE: &str = "
    01 0e 22 63 | 01 01 00 00 | 16 0c 00 00 | 01 04 68 6f | 6d 65 00 00 | 00 00 65 53
    f1 00 01 02 | 03 04 05 06 | 07 08 09 0a | 0b 0c 6a c2 | 80 f1 1b 1f | 1d 06 ab 42
    48 28 ba ae | 4d d5 00 00";

fn client(name: &str) -> ClientId {
    name.parse().expect("valid client id")
}

fn example_key() -> Key {
    Key::from_bytes(std::array::from_fn(|i| i as u8))
}

fn dest() -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 10], 443))
}

fn nonce(n: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&n.to_be_bytes());
    out
}

fn sealed_as(name: &str, key: &Key, at: u64, nonce: [u8; 12]) -> (Vec<u8>, Message) {
    let wire = seal(&Message::connect(dest()), &client(name), key, at, nonce).expect("seal");
    let message = decode_whole(&wire);
    (wire, message)
}

/// The key table: "home" and "office" are known.
fn keys(id: &ClientId) -> Option<Key> {
    match id.as_str() {
        "home" => Some(example_key()),
        "office" => Some(Key::from_bytes([9; 32])),
        _ => None,
    }
}

fn check(v: &Verifier, wire: &[u8], now: u64) -> Result<ClientId, AuthError> {
    let message = decode_whole(wire);
    v.verify(wire, &message, now, keys)
}

#[test]
fn seal_matches_the_known_answer() {
    let nonce: [u8; 12] = std::array::from_fn(|i| i as u8 + 1);
    let wire = seal(
        &Message::connect(dest()),
        &client("home"),
        &example_key(),
        NOW,
        nonce,
    )
    .expect("seal");
    assert_eq!(wire, hex(SEALED_EXAMPLE));
    let v = Verifier::new(WINDOW);
    assert_eq!(check(&v, &wire, NOW), Ok(client("home")));

    let probe = seal(
        &Message::info(),
        &client("home"),
        &example_key(),
        NOW,
        nonce,
    )
    .expect("seal");
    assert_eq!(probe, hex(SEALED_PROBE));
    // Same nonce, same client: a replay, even though it is another message.
    assert_eq!(check(&v, &probe, NOW), Err(AuthError::Replay));
}

#[test]
fn good_request_is_accepted_and_cookie_is_last() {
    let (wire, m) = sealed_as("home", &example_key(), NOW, nonce(1));
    assert_eq!(m.destination(), Some(dest()));
    assert!(matches!(m.tlvs.last(), Some(Tlv::Cookie(_))));
    let v = Verifier::new(WINDOW);
    assert_eq!(v.verify(&wire, &m, NOW, keys), Ok(client("home")));
    assert_eq!(v.replay_entries(), 1);
}

#[test]
fn info_probe_is_sealed_too() {
    let wire = seal(
        &Message::info(),
        &client("home"),
        &example_key(),
        NOW,
        nonce(1),
    )
    .expect("seal");
    let m = decode_whole(&wire);
    assert!(m.is_info());
    let v = Verifier::new(WINDOW);
    assert_eq!(v.verify(&wire, &m, NOW, keys), Ok(client("home")));
}

#[test]
fn trailing_payload_after_the_message_is_ignored() {
    let (mut wire, m) = sealed_as("home", &example_key(), NOW, nonce(1));
    wire.extend_from_slice(b"payload");
    let v = Verifier::new(WINDOW);
    assert_eq!(v.verify(&wire, &m, NOW, keys), Ok(client("home")));
}

#[test]
fn wrong_key_is_a_bad_tag() {
    let (wire, _) = sealed_as("home", &Key::from_bytes([1; 32]), NOW, nonce(1));
    let v = Verifier::new(WINDOW);
    let e = check(&v, &wire, NOW).expect_err("wrong key");
    assert_eq!(e, AuthError::BadTag);
    assert_eq!(e.error_code(), ErrorCode::NotAuthorized);
    assert_eq!(e.reason(), "bad_tag");
    assert_eq!(v.replay_entries(), 0, "failed requests are not remembered");
}

#[test]
fn unknown_client() {
    let (wire, _) = sealed_as("stranger", &example_key(), NOW, nonce(1));
    let v = Verifier::new(WINDOW);
    let e = check(&v, &wire, NOW).expect_err("unknown");
    assert_eq!(e, AuthError::UnknownClient);
    assert_eq!(e.error_code(), ErrorCode::NotAuthorized);
}

#[test]
fn skew_past_the_window_either_way() {
    let v = Verifier::new(WINDOW);
    let (old, _) = sealed_as("home", &example_key(), NOW - WINDOW - 1, nonce(1));
    assert_eq!(check(&v, &old, NOW), Err(AuthError::Skew));
    let (future, _) = sealed_as("home", &example_key(), NOW + WINDOW + 1, nonce(2));
    assert_eq!(check(&v, &future, NOW), Err(AuthError::Skew));
    // The edges of the window are inside it.
    let (edge_old, _) = sealed_as("home", &example_key(), NOW - WINDOW, nonce(3));
    assert!(check(&v, &edge_old, NOW).is_ok());
    let (edge_new, _) = sealed_as("home", &example_key(), NOW + WINDOW, nonce(4));
    assert!(check(&v, &edge_new, NOW).is_ok());
    assert_eq!(AuthError::Skew.error_code(), ErrorCode::NotAuthorized);
}

#[test]
fn replay_is_refused_per_client() {
    let v = Verifier::new(WINDOW);
    let (wire, _) = sealed_as("home", &example_key(), NOW, nonce(7));
    assert!(check(&v, &wire, NOW).is_ok());
    assert_eq!(check(&v, &wire, NOW + 1), Err(AuthError::Replay));
    // The same nonce from another client is fine.
    let (other, _) = sealed_as("office", &Key::from_bytes([9; 32]), NOW, nonce(7));
    assert!(check(&v, &other, NOW).is_ok());
    assert_eq!(AuthError::Replay.reason(), "replay");
}

#[test]
fn replay_after_expiry_is_refused_by_the_clock() {
    let v = Verifier::new(WINDOW);
    let (wire, _) = sealed_as("home", &example_key(), NOW, nonce(7));
    assert!(check(&v, &wire, NOW).is_ok());
    // Still remembered at the last second of the window.
    assert_eq!(check(&v, &wire, NOW + WINDOW), Err(AuthError::Replay));
    // After it the entry is pruned, and the skew check refuses the replay.
    v.prune(NOW + WINDOW + 1);
    assert_eq!(v.replay_entries(), 0);
    assert_eq!(check(&v, &wire, NOW + WINDOW + 1), Err(AuthError::Skew));
}

#[test]
fn tampered_bytes_are_refused() {
    let (wire, _) = sealed_as("home", &example_key(), NOW, nonce(1));
    // Change the destination port (byte 7): the tag no longer matches.
    let mut port = wire.clone();
    port[7] ^= 1;
    let v = Verifier::new(WINDOW);
    assert_eq!(check(&v, &port, NOW), Err(AuthError::BadTag));
    // Change the last tag byte (the 2 bytes after it are padding).
    let mut tag = wire.clone();
    let at = tag.len() - 3;
    tag[at] ^= 0x80;
    assert_eq!(check(&v, &tag, NOW), Err(AuthError::BadTag));
    // Change the timestamp: tag fails before the clock is looked at.
    let mut ts = wire.clone();
    ts[24 + 4 + 2 + 4 + 7] ^= 1;
    assert_eq!(check(&v, &ts, NOW), Err(AuthError::BadTag));
    // Non-zero padding is malformed.
    let mut pad = wire.clone();
    let last = pad.len() - 1;
    pad[last] = 1;
    assert_eq!(check(&v, &pad, NOW), Err(AuthError::MalformedCookie));
    // The original is still good.
    assert!(check(&v, &wire, NOW).is_ok());
}

#[test]
fn missing_cookie() {
    let wire = Message::connect(dest()).encode().expect("encode");
    let v = Verifier::new(WINDOW);
    let e = check(&v, &wire, NOW).expect_err("no cookie");
    assert_eq!(e, AuthError::MissingCookie);
    assert_eq!(e.error_code(), ErrorCode::MissingCookie);
    assert_eq!(e.reason(), "missing_cookie");
}

#[test]
fn cookie_must_be_last_and_single() {
    let (wire, m) = sealed_as("home", &example_key(), NOW, nonce(1));
    let v = Verifier::new(WINDOW);

    let mut not_last = m.clone();
    not_last.tlvs.push(Tlv::Info);
    let not_last_wire = not_last.encode().expect("encode");
    assert_eq!(
        v.verify(&not_last_wire, &not_last, NOW, keys),
        Err(AuthError::MalformedCookie)
    );

    let mut twice = m.clone();
    twice.tlvs.insert(0, m.tlvs[1].clone());
    let twice_wire = twice.encode().expect("encode");
    assert_eq!(
        v.verify(&twice_wire, &twice, NOW, keys),
        Err(AuthError::MalformedCookie)
    );

    // `wire` and `message` must describe the same request.
    let other = Message::info();
    assert_eq!(
        v.verify(&wire, &other, NOW, keys),
        Err(AuthError::MissingCookie)
    );
    let (other_wire, _) = sealed_as("home", &example_key(), NOW, nonce(2));
    assert_eq!(
        v.verify(&other_wire, &m, NOW, keys),
        Err(AuthError::MalformedCookie)
    );
    assert_eq!(
        AuthError::MalformedCookie.error_code(),
        ErrorCode::NotAuthorized
    );
}

#[test]
fn malformed_cookie_layouts() {
    let v = Verifier::new(WINDOW);
    let bad = |value: Vec<u8>| {
        let mut m = Message::connect(dest());
        m.tlvs.push(Tlv::Cookie(value));
        let wire = m.encode().expect("encode");
        (wire, m)
    };
    let (good_wire, good) = sealed_as("home", &example_key(), NOW, nonce(1));
    let Some(Tlv::Cookie(value)) = good.tlvs.last() else {
        panic!("no cookie");
    };
    assert!(check(&v, &good_wire, NOW).is_ok());

    let mut cases = Vec::new();
    let mut format = value.clone();
    format[0] = 3; // 1 is unbound, 2 bound to a server id
    cases.push(format);
    let mut id_len = value.clone();
    id_len[1] = 0;
    cases.push(id_len);
    let mut id_char = value.clone();
    id_char[2] = b'/';
    cases.push(id_char);
    cases.push(value[..value.len() - 4].to_vec());
    let mut longer = value.clone();
    longer.extend_from_slice(&[0; 4]);
    cases.push(longer);
    cases.push(Vec::new());
    for case in cases {
        let (wire, m) = bad(case.clone());
        assert_eq!(
            v.verify(&wire, &m, NOW, keys),
            Err(AuthError::MalformedCookie),
            "cookie {case:02x?}"
        );
    }
}

#[test]
fn global_cap_refuses_rather_than_forgets() {
    let limits = ReplayLimits {
        max_entries: 3,
        max_per_client: 100,
    };
    let v = Verifier::with_limits(WINDOW, limits);
    for n in 0..3 {
        let (wire, _) = sealed_as("home", &example_key(), NOW, nonce(n));
        assert!(check(&v, &wire, NOW).is_ok());
    }
    let (fourth, _) = sealed_as("office", &Key::from_bytes([9; 32]), NOW, nonce(3));
    let e = check(&v, &fourth, NOW).expect_err("cache full");
    assert_eq!(e, AuthError::ReplayCacheFull);
    assert_eq!(e.error_code(), ErrorCode::ResourceExceeded);
    assert_eq!(e.reason(), "replay_cache_full");
    // A replay is still called a replay, not "full".
    let (first, _) = sealed_as("home", &example_key(), NOW, nonce(0));
    assert_eq!(check(&v, &first, NOW), Err(AuthError::Replay));
    // Once the entries expire there is room again.
    let later = NOW + WINDOW + 1;
    let (fresh, _) = sealed_as("office", &Key::from_bytes([9; 32]), later, nonce(4));
    assert!(check(&v, &fresh, later).is_ok());
    assert_eq!(v.replay_entries(), 1);
}

#[test]
fn per_client_cap_does_not_starve_others() {
    let limits = ReplayLimits {
        max_entries: 100,
        max_per_client: 2,
    };
    let v = Verifier::with_limits(WINDOW, limits);
    for n in 0..2 {
        let (wire, _) = sealed_as("home", &example_key(), NOW, nonce(n));
        assert!(check(&v, &wire, NOW).is_ok());
    }
    let (third, _) = sealed_as("home", &example_key(), NOW, nonce(2));
    assert_eq!(check(&v, &third, NOW), Err(AuthError::ReplayCacheFull));
    let (other, _) = sealed_as("office", &Key::from_bytes([9; 32]), NOW, nonce(2));
    assert!(check(&v, &other, NOW).is_ok());
}

#[test]
fn many_clients_and_nonces_stay_bounded() {
    // 2000 clients x 5 nonces, then time moves on and everything is pruned.
    let v = Verifier::new(WINDOW);
    let key = Key::from_bytes([3; 32]);
    let mut count = 0;
    for c in 0..2000u32 {
        let id = client(&format!("c{c}"));
        for n in 0..5 {
            let wire = seal(&Message::connect(dest()), &id, &key, NOW, nonce(n)).expect("seal");
            let m = decode_whole(&wire);
            let got = v.verify(&wire, &m, NOW, |_| Some(key.clone()));
            assert_eq!(got.as_ref(), Ok(&id));
            count += 1;
        }
    }
    assert_eq!(v.replay_entries(), count);
    v.prune(NOW + WINDOW + 1);
    assert_eq!(v.replay_entries(), 0);
}

#[test]
fn seal_refuses_a_second_cookie() {
    let mut m = Message::connect(dest());
    m.tlvs.push(Tlv::Cookie(vec![0; 4]));
    assert_eq!(
        seal(&m, &client("home"), &example_key(), NOW, nonce(1)),
        Err(EncodeError::CookieAlreadyPresent)
    );
}

#[test]
fn client_id_validation() {
    assert_eq!(client("home.router_1-a").as_str(), "home.router_1-a");
    assert_eq!(client("x").to_string(), "x");
    assert_eq!("".parse::<ClientId>(), Err(ClientIdError::Empty));
    assert_eq!(
        "a".repeat(33).parse::<ClientId>(),
        Err(ClientIdError::TooLong(33))
    );
    assert!("a".repeat(32).parse::<ClientId>().is_ok());
    assert_eq!("a b".parse::<ClientId>(), Err(ClientIdError::BadChar(' ')));
    assert_eq!("hé".parse::<ClientId>(), Err(ClientIdError::BadChar('é')));
}

#[test]
fn key_hex_and_debug() {
    let hex_key = "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F";
    let key = Key::from_hex(hex_key).expect("valid");
    assert_eq!(key, example_key());
    assert_eq!(key.to_hex(), hex_key.to_ascii_lowercase());
    assert_eq!(format!("{key:?}"), "Key(***)");
    assert_eq!(Key::from_hex("00"), Err(KeyError::Length(2)));
    let mut bad = hex_key.to_string();
    bad.replace_range(5..6, "g");
    assert_eq!(Key::from_hex(&bad), Err(KeyError::NotHex(5)));
    assert!(!KeyError::NotHex(5).to_string().contains('g'));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Flipping any bits of any byte of a sealed request never verifies.
    #[test]
    fn any_tampered_byte_is_refused(index in 0usize..72, flip in 1u8..=255) {
        let mut wire = hex(SEALED_EXAMPLE);
        wire[index] ^= flip;
        let Ok(mpbond_protocol::Decoded::Complete { message, .. }) = mpbond_protocol::decode(&wire)
        else {
            return Ok(()); // no longer a message at all
        };
        let v = Verifier::new(WINDOW);
        prop_assert!(v.verify(&wire, &message, NOW, keys).is_err());
    }
}
