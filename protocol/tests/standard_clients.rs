//! Standard RFC 8803 clients in the server handshake (issue 12, part 3): a static
//! cookie, a source prefix, and that neither weakens the HMAC clients. Every reply is
//! the RFC's bytes: `01 01 22 63` for success, one Error TLV for a refusal, Supported TCP
//! Extensions for Info.

use std::net::{IpAddr, SocketAddr};

use mpbond_protocol::auth::{
    seal, ClientId, Key, SourcePrefix, StandardAuth, StandardClients, Verifier,
};
use mpbond_protocol::{Decision, Message, ServerHandshake, Step, Tlv};

const NOW: u64 = 1_700_000_000;
const SUPPORTED: [u8; 4] = [2, 3, 4, 8];
const OK: [u8; 4] = [1, 1, 0x22, 0x63];

fn id(s: &str) -> ClientId {
    s.parse().unwrap()
}

fn keys(c: &ClientId) -> Option<Key> {
    (c.as_str() == "home").then(|| Key::from_bytes([7; 32]))
}

fn standard() -> StandardClients {
    let prefix = SourcePrefix::new("198.51.100.0".parse().unwrap(), 24).unwrap();
    StandardClients::new(vec![
        (
            id("tess"),
            StandardAuth::StaticCookie(b"op-secret".to_vec()),
        ),
        (id("isp"), StandardAuth::Source(vec![prefix])),
    ])
}

fn dest() -> SocketAddr {
    "203.0.113.10:443".parse().unwrap()
}

fn connect(cookie: Option<&[u8]>) -> Vec<u8> {
    let mut tlvs = vec![Tlv::Connect {
        dest: dest(),
        tcp_options: Vec::new(),
    }];
    if let Some(c) = cookie {
        tlvs.push(Tlv::Cookie(c.to_vec()));
    }
    Message { tlvs }.encode().unwrap()
}

fn decide(wire: &[u8], peer: &str) -> Decision {
    let verifier = Verifier::new(60);
    let standard = standard();
    let peer: IpAddr = peer.parse().unwrap();
    let mut hs = ServerHandshake::new(&verifier, keys, &SUPPORTED).with_standard(&standard, peer);
    match hs.receive(wire, NOW).step {
        Step::Done(d) => d,
        Step::NeedMore { needed } => panic!("needs {needed}"),
    }
}

#[test]
fn static_cookie_connects() {
    let d = decide(&connect(Some(b"op-secret")), "192.0.2.1");
    assert_eq!(
        d,
        Decision::Connect {
            client: id("tess"),
            dest: dest(),
            reply: OK.to_vec()
        }
    );
}

#[test]
fn wrong_static_cookie_is_not_authorized() {
    let d = decide(&connect(Some(b"op-secreX")), "192.0.2.1");
    assert!(d.is_unauthenticated_refusal(), "{d:?}");
    // The cookie does not follow our layout: malformed cookie, code 32.
    assert_eq!(d.reply(), &[1, 2, 0x22, 0x63, 0x1e, 1, 32, 0]);
}

#[test]
fn no_cookie_outside_the_prefixes_is_missing_cookie() {
    let d = decide(&connect(None), "192.0.2.1");
    assert!(d.is_unauthenticated_refusal());
    assert_eq!(d.reply(), &[1, 2, 0x22, 0x63, 0x1e, 1, 3, 0]);
}

#[test]
fn source_prefix_connects_with_or_without_a_cookie() {
    for cookie in [None, Some(&b"anything"[..])] {
        let d = decide(&connect(cookie), "198.51.100.20");
        assert!(
            matches!(&d, Decision::Connect { client, reply, .. } if client.as_str() == "isp" && reply == &OK),
            "{d:?}"
        );
    }
    let d = decide(&connect(None), "::ffff:198.51.100.20");
    assert!(matches!(d, Decision::Connect { .. }), "{d:?}");
}

#[test]
fn info_gets_supported_tcp_extensions() {
    let wire = Message {
        tlvs: vec![Tlv::Info, Tlv::Cookie(b"op-secret".to_vec())],
    }
    .encode()
    .unwrap();
    let d = decide(&wire, "192.0.2.1");
    assert_eq!(
        d.reply(),
        &[1, 3, 0x22, 0x63, 0x15, 2, 0, 0, 2, 3, 4, 8],
        "{d:?}"
    );
}

#[test]
fn unsupported_tlv_from_a_standard_client_is_code_2_and_authenticated() {
    let wire = Message {
        tlvs: vec![
            Tlv::Connect {
                dest: dest(),
                tcp_options: Vec::new(),
            },
            Tlv::ExtendedTcpHeader(vec![0; 20]),
            Tlv::Cookie(b"op-secret".to_vec()),
        ],
    }
    .encode()
    .unwrap();
    let d = decide(&wire, "192.0.2.1");
    assert_eq!(d.reply(), &[1, 2, 0x22, 0x63, 0x1e, 1, 2, 0]);
    assert!(!d.is_unauthenticated_refusal(), "{d:?}");
}

#[test]
fn hmac_clients_are_still_themselves_inside_a_source_prefix() {
    let message = Message {
        tlvs: vec![Tlv::Connect {
            dest: dest(),
            tcp_options: Vec::new(),
        }],
    };
    let wire = seal(
        &message,
        &id("home"),
        &keys(&id("home")).unwrap(),
        NOW,
        [1; 12],
    )
    .unwrap();
    let d = decide(&wire, "198.51.100.20");
    assert!(
        matches!(&d, Decision::Connect { client, .. } if client.as_str() == "home"),
        "{d:?}"
    );
}
