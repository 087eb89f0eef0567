//! Replays across restarts, clock steps and servers, with simulated time: a journal
//! kept in memory stands for the concentrator's state file, a new `Verifier` for a
//! restarted process.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{decode_whole, hex};
use mpbond_protocol::auth::{
    seal, seal_bound, AuthError, ClientId, Key, ReplayJournal, ServerBinding, ServerId, Verifier,
    RESERVE_AHEAD_SECS,
};
use mpbond_protocol::{ClientHandshake, Decision, Message, ServerHandshake, Step};

const NOW: u64 = 1_700_000_000;
const WINDOW: u64 = 60;

fn home() -> ClientId {
    "home".parse().expect("valid id")
}

fn key() -> Key {
    Key::from_bytes(std::array::from_fn(|i| i as u8))
}

fn keys(id: &ClientId) -> Option<Key> {
    (id.as_str() == "home").then(key)
}

fn dest() -> SocketAddr {
    SocketAddr::from(([203, 0, 113, 10], 443))
}

fn nonce(n: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&n.to_be_bytes());
    out
}

fn sealed(at: u64, n: u32) -> Vec<u8> {
    seal(&Message::connect(dest()), &home(), &key(), at, nonce(n)).expect("seal")
}

fn check(v: &Verifier, wire: &[u8], now: u64) -> Result<ClientId, AuthError> {
    v.verify(wire, &decode_whole(wire), now, keys)
}

/// What a state file holds, in order: `(client, value, is_stop)`.
#[derive(Debug, Clone, Default)]
struct MemoryJournal {
    records: Arc<Mutex<Vec<(ClientId, u64, bool)>>>,
    fail: bool,
}

impl MemoryJournal {
    /// The floors a restarted process reads back: reservations raise, a stop record
    /// sets the exact value.
    fn floors(&self) -> Vec<(ClientId, u64)> {
        let mut floors: Vec<(ClientId, u64)> = Vec::new();
        for (client, value, stop) in self.records.lock().unwrap().iter() {
            match floors.iter_mut().find(|(c, _)| c == client) {
                Some((_, floor)) if *stop => *floor = *value,
                Some((_, floor)) => *floor = (*floor).max(*value),
                None => floors.push((client.clone(), *value)),
            }
        }
        floors
    }

    fn writes(&self) -> usize {
        self.records.lock().unwrap().len()
    }
}

impl ReplayJournal for MemoryJournal {
    fn reserve(&mut self, client: &ClientId, through: u64) -> io::Result<()> {
        if self.fail {
            return Err(io::Error::other("disk full"));
        }
        self.records
            .lock()
            .unwrap()
            .push((client.clone(), through, false));
        Ok(())
    }

    fn stop(&mut self, marks: &[(ClientId, u64)]) -> io::Result<()> {
        let mut records = self.records.lock().unwrap();
        records.extend(marks.iter().map(|(c, v)| (c.clone(), *v, true)));
        Ok(())
    }
}

/// A process: a verifier that restores the journal's floors and then writes to it.
fn process(journal: &MemoryJournal) -> Verifier {
    let v = Verifier::new(WINDOW).with_journal(Box::new(journal.clone()));
    v.restore(journal.floors());
    v
}

#[test]
fn a_request_is_refused_after_a_crash() {
    let journal = MemoryJournal::default();
    let first = process(&journal);
    let captured = sealed(NOW, 1);
    assert_eq!(check(&first, &captured, NOW), Ok(home()));
    // A second request a few seconds later needs no new write.
    let later = sealed(NOW + 3, 2);
    assert_eq!(check(&first, &later, NOW + 3), Ok(home()));
    assert_eq!(
        journal.writes(),
        1,
        "one reservation covers {RESERVE_AHEAD_SECS} s"
    );
    drop(first); // kill -9: no stop record

    let second = process(&journal);
    for (wire, at) in [(&captured, NOW + 5), (&later, NOW + 5), (&later, NOW + 60)] {
        assert_eq!(check(&second, wire, at), Err(AuthError::BelowFloor));
    }
    // The client's own new requests pass once past the reservation.
    let fresh = sealed(NOW + RESERVE_AHEAD_SECS + 1, 3);
    assert_eq!(
        check(&second, &fresh, NOW + RESERVE_AHEAD_SECS + 1),
        Ok(home())
    );
}

#[test]
fn a_clean_restart_refuses_old_requests_and_nothing_new() {
    let journal = MemoryJournal::default();
    let first = process(&journal);
    let captured = sealed(NOW, 1);
    assert_eq!(check(&first, &captured, NOW), Ok(home()));
    first.stop().unwrap();
    // A late handshake after the stop record still reserves.
    let late = sealed(NOW + 1, 2);
    assert_eq!(check(&first, &late, NOW + 1), Ok(home()));
    drop(first);

    let second = process(&journal);
    assert_eq!(
        check(&second, &captured, NOW + 2),
        Err(AuthError::BelowFloor)
    );
    assert_eq!(check(&second, &late, NOW + 2), Err(AuthError::BelowFloor));
    // The stop record superseded the first reservation: the next second is fine
    // (the late reservation still covers NOW + 1 + RESERVE_AHEAD_SECS).
    let stop_only = MemoryJournal::default();
    let a = process(&stop_only);
    assert_eq!(check(&a, &captured, NOW), Ok(home()));
    a.stop().unwrap();
    let b = process(&stop_only);
    assert_eq!(check(&b, &sealed(NOW + 1, 9), NOW + 1), Ok(home()));
    assert_eq!(check(&b, &captured, NOW + 1), Err(AuthError::BelowFloor));
}

#[test]
fn a_journal_that_cannot_be_written_refuses() {
    let journal = MemoryJournal {
        fail: true,
        ..MemoryJournal::default()
    };
    let v = process(&journal);
    assert_eq!(
        check(&v, &sealed(NOW, 1), NOW),
        Err(AuthError::JournalFailed)
    );
}

#[test]
fn a_clock_stepped_back_after_pruning_does_not_reopen_a_nonce() {
    let v = Verifier::new(WINDOW);
    let captured = sealed(NOW, 1);
    assert_eq!(check(&v, &captured, NOW), Ok(home()));
    v.prune(NOW + WINDOW + 1);
    assert_eq!(v.replay_entries(), 0);
    // The clock goes back 30 s: the timestamp is inside the window again.
    assert_eq!(check(&v, &captured, NOW + 30), Err(AuthError::BelowFloor));
    assert_eq!(check(&v, &sealed(NOW + 30, 2), NOW + 30), Ok(home()));
}

#[test]
fn servers_sharing_a_key_refuse_each_others_bound_requests() {
    let a: ServerId = "a.example.net:4850".parse().unwrap();
    let b: ServerId = "b.example.net:4850".parse().unwrap();
    let bound = |id: &ServerId| ServerBinding {
        ids: vec![id.clone()],
        accept_unbound: false,
    };
    let server_a = Verifier::new(WINDOW).with_binding(bound(&a));
    let server_b = Verifier::new(WINDOW).with_binding(bound(&b));
    let for_a = seal_bound(
        &Message::connect(dest()),
        &home(),
        &key(),
        &a,
        NOW,
        nonce(1),
    )
    .expect("seal");
    assert_eq!(check(&server_b, &for_a, NOW), Err(AuthError::BadTag));
    assert_eq!(check(&server_a, &for_a, NOW), Ok(home()));
    // Unbound requests are refused where binding is required, after the tag.
    assert_eq!(
        check(&server_a, &sealed(NOW, 2), NOW),
        Err(AuthError::Unbound)
    );
    // The default still takes unbound requests, and refuses bound ones it has no id for.
    assert_eq!(
        check(&Verifier::new(WINDOW), &sealed(NOW, 3), NOW),
        Ok(home())
    );
    assert_eq!(
        check(&Verifier::new(WINDOW), &for_a, NOW),
        Err(AuthError::BadTag)
    );
}

/// The worked example of docs/PROTOCOL.md, bound to `vps.example.net:4850`; the tag was
/// computed independently with Python's `hmac`.
#[test]
fn seal_bound_matches_the_known_answer() {
    let server: ServerId = "vps.example.net:4850".parse().unwrap();
    let wire = seal_bound(
        &Message::connect(dest()),
        &home(),
        &key(),
        &server,
        NOW,
        std::array::from_fn(|i| i as u8 + 1),
    )
    .unwrap();
    let want = hex("
        01 12 22 63 | 0a 05 01 bb | 00 00 00 00 | 00 00 00 00 | 00 00 ff ff | cb 00 71 0a
        16 0c 00 00 | 02 04 68 6f | 6d 65 00 00 | 00 00 65 53 | f1 00 01 02 | 03 04 05 06
        07 08 09 0a | 0b 0c 42 eb | 06 25 2e 74 | 77 c2 90 89 | b5 db 1f b3 | 23 56 00 00");
    assert_eq!(wire, want);
}

#[test]
fn server_ids_are_visible_ascii() {
    assert!("vps:4850".parse::<ServerId>().is_ok());
    assert!("".parse::<ServerId>().is_err());
    assert!("a b".parse::<ServerId>().is_err());
    assert!("x".repeat(256).parse::<ServerId>().is_err());
}

/// The handshake machines with a bound cookie: the named server serves it, another
/// server with the same key refuses it with Not Authorized.
#[test]
fn bound_handshakes_pairwise() {
    let named: ServerId = "vps.example.net:4850".parse().unwrap();
    let other: ServerId = "other.example.net:4850".parse().unwrap();
    let (_, wire) = ClientHandshake::seal_bound(
        &Message::connect(dest()),
        &home(),
        &key(),
        &named,
        NOW,
        nonce(1),
    )
    .expect("seal");
    let decide = |id: &ServerId| {
        let verifier = Verifier::new(WINDOW).with_binding(ServerBinding {
            ids: vec![id.clone()],
            accept_unbound: false,
        });
        let mut server = ServerHandshake::new(&verifier, keys, &[]);
        match server.receive(&wire, NOW).step {
            Step::Done(decision) => decision,
            Step::NeedMore { needed } => panic!("still needs {needed} bytes"),
        }
    };
    assert!(matches!(decide(&named), Decision::Connect { .. }));
    match decide(&other) {
        Decision::Refuse { error, .. } => {
            assert_eq!(
                error.error_code(),
                mpbond_protocol::ErrorCode::NotAuthorized
            )
        }
        other => panic!("served by the wrong server: {other:?}"),
    }
}
