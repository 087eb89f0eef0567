//! The two handshake machines against each other, in memory: the client seals, the
//! server decides, the client reads the server's reply. Whole, split byte by byte,
//! and every refusal with its RFC 8803 code.

mod common;

use std::net::SocketAddr;

use mpbond_protocol::auth::{seal, AuthError, ClientId, Key, ReplayLimits, Verifier};
use mpbond_protocol::{
    error_reply, Accepted, Asked, ClientHandshake, Decision, ErrorCode, HandshakeError, Message,
    ReplyError, RequestError, SealError, ServerHandshake, Step, Tlv,
};

const NOW: u64 = 1_700_000_000;
const WINDOW: u64 = 60;
const SUPPORTED: [u8; 4] = [2, 3, 4, 8];

fn home() -> ClientId {
    "home".parse().expect("client id")
}

fn home_key() -> Key {
    Key::from_bytes([7; 32])
}

fn keys(id: &ClientId) -> Option<Key> {
    (id.as_str() == "home").then(home_key)
}

fn dest() -> SocketAddr {
    "203.0.113.10:443".parse().expect("addr")
}

fn nonce(n: u8) -> [u8; 12] {
    [n; 12]
}

/// `message` sealed by "home" at `NOW` with nonce `n`.
fn sealed(message: &Message, n: u8) -> Vec<u8> {
    seal(message, &home(), &home_key(), NOW, nonce(n)).expect("seal")
}

/// Feed `wire` to a fresh server handshake in one piece; it must decide. A request
/// it serves is taken whole; garbage may be refused at its first bad byte.
fn decide(verifier: &Verifier, wire: &[u8]) -> Decision {
    let mut server = ServerHandshake::new(verifier, keys, &SUPPORTED);
    let got = server.receive(wire, NOW);
    match got.step {
        Step::Done(decision @ Decision::Refuse { .. }) => {
            assert!(got.consumed <= wire.len());
            decision
        }
        Step::Done(decision) => {
            assert_eq!(got.consumed, wire.len());
            decision
        }
        Step::NeedMore { needed } => panic!("still needs {needed} bytes"),
    }
}

/// The code `wire` is refused with.
fn refusal(verifier: &Verifier, wire: &[u8]) -> (HandshakeError, ErrorCode) {
    match decide(verifier, wire) {
        Decision::Refuse { error, reply, .. } => {
            let code = error.error_code();
            assert_eq!(reply, error_reply(code));
            (error, code)
        }
        other => panic!("not refused: {other:?}"),
    }
}

/// The client's reading of `reply` to a request that asked for `asked`.
fn client_reads(asked: Asked, reply: &[u8]) -> Result<Accepted, ReplyError> {
    let got = ClientHandshake::expecting(asked).receive(reply);
    assert_eq!(got.consumed, reply.len());
    match got.step {
        Step::Done(outcome) => outcome,
        Step::NeedMore { needed } => panic!("reply still needs {needed} bytes"),
    }
}

#[test]
fn connect_pairwise_stops_at_each_message_end() {
    let verifier = Verifier::new(WINDOW);
    let (mut client, request) = ClientHandshake::seal(
        &Message::connect(dest()),
        &home(),
        &home_key(),
        NOW,
        nonce(1),
    )
    .expect("seal");
    assert_eq!(client.asked(), Asked::Connect);
    // The client's first bytes follow the request in the same segment.
    let mut from_client = request.clone();
    from_client.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let mut server = ServerHandshake::new(&verifier, keys, &SUPPORTED);
    let got = server.receive(&from_client, NOW);
    assert_eq!(
        got.consumed,
        request.len(),
        "the payload is not the server's"
    );
    let Step::Done(Decision::Connect {
        client: who,
        dest: to,
        reply,
    }) = got.step
    else {
        panic!("not a connect: {:?}", got.step);
    };
    assert_eq!((who, to), (home(), dest()));
    // The reply shares a segment with the destination's first bytes.
    let mut from_server = reply.clone();
    from_server.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    let got = client.receive(&from_server);
    assert_eq!(got.consumed, reply.len());
    assert_eq!(got.step, Step::Done(Ok(Accepted::Connected)));
}

#[test]
fn info_pairwise_lists_the_supported_options() {
    let verifier = Verifier::new(WINDOW);
    let (mut client, request) =
        ClientHandshake::seal(&Message::info(), &home(), &home_key(), NOW, nonce(2)).expect("seal");
    let decision = decide(&verifier, &request);
    let Decision::Info { client: who, reply } = &decision else {
        panic!("not an info: {decision:?}");
    };
    assert_eq!(who, &home());
    assert_eq!(decision.reply(), reply.as_slice());
    let got = client.receive(reply);
    assert_eq!(
        got.step,
        Step::Done(Ok(Accepted::Supported {
            tcp_options: SUPPORTED.to_vec()
        }))
    );
}

#[test]
fn split_byte_by_byte_on_both_sides() {
    let verifier = Verifier::new(WINDOW);
    let (mut client, request) = ClientHandshake::seal(
        &Message::connect(dest()),
        &home(),
        &home_key(),
        NOW,
        nonce(3),
    )
    .expect("seal");
    let mut server = ServerHandshake::new(&verifier, keys, &SUPPORTED);
    let mut decision = None;
    for (i, byte) in request.iter().enumerate() {
        let needed_before = server.needed();
        assert!(needed_before >= 1);
        let got = server.receive(std::slice::from_ref(byte), NOW);
        assert_eq!(got.consumed, 1);
        match got.step {
            Step::NeedMore { needed } => {
                assert!(i + 1 < request.len(), "whole request but no decision");
                if i >= 3 {
                    assert_eq!(needed, request.len() - i - 1, "exact once the header is in");
                }
            }
            Step::Done(d) => {
                assert_eq!(i + 1, request.len(), "decided before the last byte");
                decision = Some(d);
            }
        }
    }
    let decision = decision.expect("decided");
    assert!(matches!(decision, Decision::Connect { .. }), "{decision:?}");
    for (i, byte) in decision.reply().iter().enumerate() {
        let got = client.receive(std::slice::from_ref(byte));
        assert_eq!(got.consumed, 1);
        if i + 1 < decision.reply().len() {
            assert!(matches!(got.step, Step::NeedMore { .. }));
        } else {
            assert_eq!(got.step, Step::Done(Ok(Accepted::Connected)));
        }
    }
    assert_eq!(client.needed(), 0);
}

#[test]
fn a_decision_is_final_and_the_nonce_is_checked_once() {
    let verifier = Verifier::new(WINDOW);
    let request = sealed(&Message::connect(dest()), 4);
    let mut server = ServerHandshake::new(&verifier, keys, &SUPPORTED);
    let first = server.receive(&request, NOW);
    assert!(matches!(first.step, Step::Done(Decision::Connect { .. })));
    let again = server.receive(b"more bytes", NOW);
    assert_eq!(again.consumed, 0);
    assert_eq!(again.step, first.step);
    assert_eq!(server.needed(), 0);
    assert_eq!(verifier.replay_entries(), 1);
}

#[test]
fn decode_errors_get_codes_0_and_1() {
    let verifier = Verifier::new(WINDOW);
    assert_eq!(refusal(&verifier, &[2, 1, 0x22, 0x63]).1.code(), 0);
    assert_eq!(refusal(&verifier, &[1, 1, 0x12, 0x34]).1.code(), 1);
    assert_eq!(refusal(&verifier, b"GET / HTTP/1.1\r\n").1.code(), 0);
    assert!(decide(&verifier, b"GET / HTTP/1.1\r\n").is_unauthenticated_refusal());
    // A Connect TLV of Length 0.
    assert_eq!(
        refusal(&verifier, &[1, 2, 0x22, 0x63, 0x0a, 0x00, 0, 0]).1,
        ErrorCode::MalformedMessage
    );
    // Refused as soon as the bad byte is in.
    let mut server = ServerHandshake::new(&verifier, keys, &SUPPORTED);
    let got = server.receive(&[9], NOW);
    assert_eq!(got.consumed, 1);
    assert!(matches!(got.step, Step::Done(Decision::Refuse { .. })));
}

#[test]
fn requests_we_do_not_serve_get_code_2() {
    let verifier = Verifier::new(WINDOW);
    let connect = Tlv::Connect {
        dest: dest(),
        tcp_options: Vec::new(),
    };
    let cases = [
        (
            vec![connect.clone(), Tlv::Info],
            RequestError::TooManyActions,
        ),
        (
            vec![connect.clone(), connect.clone()],
            RequestError::TooManyActions,
        ),
        (
            vec![
                connect.clone(),
                Tlv::Error {
                    code: ErrorCode::NotAuthorized,
                    value: vec![0],
                },
            ],
            RequestError::UnexpectedTlv(0x1e),
        ),
        (
            vec![Tlv::Info, Tlv::SupportedTcpExtensions(vec![2])],
            RequestError::UnexpectedTlv(0x15),
        ),
        (
            vec![connect.clone(), Tlv::ExtendedTcpHeader(vec![0; 4])],
            RequestError::UnexpectedTlv(0x14),
        ),
        (
            vec![
                connect,
                Tlv::Unknown {
                    kind: 0xc0,
                    value: vec![0, 0],
                },
            ],
            RequestError::UnknownTlv(0xc0),
        ),
        (Vec::new(), RequestError::NoAction),
    ];
    for (n, (tlvs, want)) in cases.into_iter().enumerate() {
        let message = Message { tlvs };
        // Sealed or not: the request is classified before it is authenticated, and
        // authenticated only to tell a client (answered even in quiet mode) from a
        // stranger.
        for (wire, authenticated) in [
            (sealed(&message, 10 + n as u8), true),
            (message.encode().unwrap(), false),
        ] {
            let (error, code) = refusal(&verifier, &wire);
            assert_eq!(error, HandshakeError::Request(want), "{message:?}");
            assert_eq!(code, ErrorCode::UnsupportedMessage);
            assert_eq!(error.reason(), "unsupported_message");
            let decision = decide(&Verifier::new(WINDOW), &wire);
            assert_eq!(
                decision.is_unauthenticated_refusal(),
                !authenticated,
                "{message:?}"
            );
        }
    }
    assert_eq!(
        verifier.replay_entries(),
        7,
        "the nonce of each sealed bad request is spent"
    );
}

#[test]
fn authentication_failures_get_codes_3_32_and_64() {
    let verifier = Verifier::new(WINDOW);
    let unsealed = Message::connect(dest()).encode().unwrap();
    let (error, code) = refusal(&verifier, &unsealed);
    assert_eq!(error, HandshakeError::Auth(AuthError::MissingCookie));
    assert_eq!(code.code(), 3);

    let wrong_key = seal(
        &Message::connect(dest()),
        &home(),
        &Key::from_bytes([8; 32]),
        NOW,
        nonce(20),
    )
    .unwrap();
    let stranger = seal(
        &Message::info(),
        &"stranger".parse().unwrap(),
        &home_key(),
        NOW,
        nonce(21),
    )
    .unwrap();
    let stale = seal(
        &Message::connect(dest()),
        &home(),
        &home_key(),
        NOW - WINDOW - 1,
        nonce(22),
    )
    .unwrap();
    for (wire, want) in [
        (wrong_key, AuthError::BadTag),
        (stranger, AuthError::UnknownClient),
        (stale, AuthError::Skew),
    ] {
        let (error, code) = refusal(&verifier, &wire);
        assert_eq!(error, HandshakeError::Auth(want));
        assert_eq!(code, ErrorCode::NotAuthorized);
        assert_eq!(error.reason(), want.reason());
        assert!(decide(&Verifier::new(WINDOW), &wire).is_unauthenticated_refusal());
    }
    assert!(decide(&verifier, &unsealed).is_unauthenticated_refusal());

    let once = sealed(&Message::connect(dest()), 23);
    assert!(matches!(decide(&verifier, &once), Decision::Connect { .. }));
    assert!(decide(&verifier, &once).is_unauthenticated_refusal());
    let (error, code) = refusal(&verifier, &once);
    assert_eq!(error, HandshakeError::Auth(AuthError::Replay));
    assert_eq!(code.code(), 32);

    let full = Verifier::with_limits(
        WINDOW,
        ReplayLimits {
            max_entries: 1,
            max_per_client: 1,
        },
    );
    assert!(matches!(
        decide(&full, &sealed(&Message::info(), 24)),
        Decision::Info { .. }
    ));
    let (error, code) = refusal(&full, &sealed(&Message::info(), 25));
    assert_eq!(error, HandshakeError::Auth(AuthError::ReplayCacheFull));
    assert_eq!(code.code(), 64);
    assert!(decide(&full, &sealed(&Message::info(), 26)).is_unauthenticated_refusal());
}

#[test]
fn the_client_reads_each_refusal_as_its_code() {
    let verifier = Verifier::new(WINDOW);
    let unsealed = Message::connect(dest()).encode().unwrap();
    let decision = decide(&verifier, &unsealed);
    assert_eq!(
        client_reads(Asked::Connect, decision.reply()),
        Err(ReplyError::Refused(ErrorCode::MissingCookie))
    );
    // The converter's own refusals (policy, limits, connect) use the same reply.
    for code in [
        ErrorCode::NotAuthorized,
        ErrorCode::ResourceExceeded,
        ErrorCode::NetworkFailure,
        ErrorCode::ConnectionReset,
        ErrorCode::DestinationUnreachable,
    ] {
        let outcome = client_reads(Asked::Connect, &error_reply(code));
        assert_eq!(outcome, Err(ReplyError::Refused(code)));
        assert_eq!(outcome.unwrap_err().error_code(), Some(code));
    }
}

#[test]
fn the_client_refuses_bad_replies() {
    assert!(matches!(
        client_reads(Asked::Connect, &[1, 1, 0x22, 0x64]),
        Err(ReplyError::Malformed(_))
    ));
    // An Info probe answered with a bare OK lists nothing.
    assert_eq!(
        client_reads(Asked::Info, &Message::ok().encode().unwrap()),
        Err(ReplyError::NoExtensions)
    );
    // Sealing checks that the message is a request.
    let two = Message {
        tlvs: vec![Tlv::Info, Tlv::Info],
    };
    assert_eq!(
        ClientHandshake::seal(&two, &home(), &home_key(), NOW, nonce(30)).unwrap_err(),
        SealError::Request(RequestError::TooManyActions)
    );
}

#[test]
fn udp_pairwise_then_capsules_follow_the_reply() {
    let verifier = Verifier::new(WINDOW);
    let (mut client, request) = ClientHandshake::seal(
        &Message::udp_request(dest()),
        &home(),
        &home_key(),
        NOW,
        nonce(40),
    )
    .expect("seal");
    assert_eq!(client.asked(), Asked::Connect);
    // The UDP TLV sits before the Cookie TLV: d0 01 00 00 right after the Connect TLV.
    assert_eq!(&request[24..28], &[0xd0, 1, 0, 0]);
    // Fast Open: the first capsule rides in the SYN after the request.
    let mut from_client = request.clone();
    mpbond_protocol::encode_datagram(b"quic initial", &mut from_client).expect("encode");
    let mut server = ServerHandshake::new(&verifier, keys, &SUPPORTED);
    let got = server.receive(&from_client, NOW);
    assert_eq!(got.consumed, request.len());
    let Step::Done(Decision::Udp {
        client: who,
        dest: to,
        reply,
        group: None,
    }) = got.step
    else {
        panic!("not a UDP flow: {:?}", got.step);
    };
    assert_eq!((who, to), (home(), dest()));
    assert_eq!(
        mpbond_protocol::decode_capsule(&from_client[got.consumed..]),
        Ok(Some((
            mpbond_protocol::Capsule::Datagram(b"quic initial"),
            from_client.len() - request.len()
        )))
    );
    assert_eq!(
        client.receive(&reply).step,
        Step::Done(Ok(Accepted::Connected))
    );
    // The same sealed bytes again are a replay.
    let (error, code) = refusal(&verifier, &request);
    assert_eq!(error, HandshakeError::Auth(AuthError::Replay));
    assert_eq!(code, ErrorCode::NotAuthorized);
}

#[test]
fn udp_tlv_without_connect_is_unsupported_but_authenticated() {
    let verifier = Verifier::new(WINDOW);
    for (tlvs, want) in [
        (vec![Tlv::Udp], RequestError::UdpWithoutConnect),
        (vec![Tlv::Info, Tlv::Udp], RequestError::UdpWithoutConnect),
    ] {
        let n = tlvs.len() as u8;
        let wire = sealed(&Message { tlvs }, 41 + n);
        let decision = decide(&verifier, &wire);
        let Decision::Refuse { error, client, .. } = &decision else {
            panic!("not refused: {decision:?}");
        };
        assert_eq!(error, &HandshakeError::Request(want));
        assert_eq!(error.error_code().code(), 2);
        assert_eq!(client.as_ref(), Some(&home()));
    }
}

#[test]
fn udp_leg_pairwise_decides_with_its_group_and_the_group_is_sealed() {
    use mpbond_protocol::udp::Group;
    let verifier = Verifier::new(WINDOW);
    let group = Group {
        id: 0x1122_3344_5566_7788,
        leg: 1,
        legs: 2,
    };
    let (mut client, request) = ClientHandshake::seal(
        &Message::udp_leg_request(dest(), group),
        &home(),
        &home_key(),
        NOW,
        nonce(41),
    )
    .expect("seal");
    // Connect (20), UDP (4), then the Group TLV before the Cookie.
    assert_eq!(
        &request[28..40],
        &[0xd1, 3, 1, 2, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
    );
    // The Group TLV is covered by the cookie's tag: another group id fails.
    let mut forged = request.clone();
    forged[39] ^= 1;
    let (error, _) = refusal(&verifier, &forged);
    assert!(matches!(error, HandshakeError::Auth(_)), "{error:?}");
    let mut server = ServerHandshake::new(&verifier, keys, &SUPPORTED);
    let got = server.receive(&request, NOW);
    let Step::Done(Decision::Udp {
        client: who,
        dest: to,
        group: Some(got_group),
        reply,
    }) = got.step
    else {
        panic!("not a UDP leg: {:?}", got.step);
    };
    assert_eq!((who, to, got_group), (home(), dest(), group));
    assert_eq!(
        client.receive(&reply).step,
        Step::Done(Ok(Accepted::Connected))
    );
    // Replayed, the leg is refused like any request.
    let (error, code) = refusal(&verifier, &request);
    assert_eq!(error, HandshakeError::Auth(AuthError::Replay));
    assert_eq!(code, ErrorCode::NotAuthorized);
}
