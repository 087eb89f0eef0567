//! Protected UDP flows (flow groups) through `Server::bind` / `run` on 127.0.0.1 port 0,
//! in plain `cargo test`: two legs of one group, duplicates removed upstream, every
//! datagram down both legs with the same sequence number, groups keyed by client, one
//! leg's end leaving the other working, a stalled leg never holding up the other, a group
//! counting as one flow, replays and conflicting legs refused, the idle end; in `fec`
//! mode, a lost upstream datagram recovered from its block's repair and the downstream
//! blocks spread over both legs, a lost downstream source rebuilt from its repair.
//!
//! The destination is a socket the test owns: loopback UDP is in the receiver's buffer
//! when `sendmsg` returns, so once the metrics say every copy was handled, a
//! non-blocking drain sees exactly what the concentrator sent.

mod common;

use std::net::SocketAddr;

use common::*;
use mpbond_protocol::udp::{
    decode_leg_capsule, FecDecoder, FecEncoder, FecParams, Group, LegCapsule, OwnedRepair, Repair,
};
use mpbond_protocol::{
    decode_capsule, encode_datagram, encode_sequenced, Capsule, ErrorCode, Message,
};
use mpbond_testkit::bounded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn clients(udp: &str) -> mpbond_concentrator::Config {
    let clients = format!(
        "[udp]\n{udp}\n{}{}",
        client_toml("home", &key(1)),
        client_toml("other", &key(2))
    );
    config("127.0.0.0/8", "", &clients)
}

/// The destination: a socket the test reads itself.
async fn destination() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

fn leg(dest: SocketAddr, id: u64, leg: u8) -> Message {
    Message::udp_leg_request(dest, Group { id, leg, legs: 2 })
}

/// Open one leg for `client` (key byte `key_byte`) and expect the success reply.
async fn open_leg(server: &TestServer, client: &str, key_byte: u8, request: &Message) -> TcpStream {
    let (s, code) = common::request(server.addr, &sealed(request, client, &key(key_byte))).await;
    assert_eq!(code, None, "leg refused");
    s
}

async fn send_copy(s: &mut TcpStream, seq: u32, payload: &[u8]) {
    let mut wire = Vec::new();
    encode_sequenced(seq, payload, &mut wire).unwrap();
    s.write_all(&wire).await.unwrap();
}

/// The next sequenced datagram on `s` (panics on any other capsule); None at EOF.
async fn next_sequenced(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u32, Vec<u8>)> {
    loop {
        if let Some((capsule, used)) = decode_capsule(buf).expect("well-formed capsules") {
            let Capsule::Sequenced { seq, payload } = capsule else {
                panic!("a leg got {capsule:?}");
            };
            let got = (seq, payload.to_vec());
            buf.drain(..used);
            return Some(got);
        }
        let mut chunk = [0u8; 16 * 1024];
        match s.read(&mut chunk).await.unwrap() {
            0 => return None,
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Every datagram waiting on the destination now, with its source.
fn drain(dest: &UdpSocket) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        match dest.try_recv_from(&mut buf) {
            Ok((n, from)) => got.push((buf[..n].to_vec(), from)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return got,
            Err(e) => panic!("destination: {e}"),
        }
    }
}

fn datagram(i: u32) -> Vec<u8> {
    format!("rtp {i:04}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_legs_deliver_each_datagram_once_up_and_on_both_legs_down() {
    bounded(TEST_TIMEOUT, async {
        let server = start(clients("")).await;
        let (dest, dest_addr) = destination().await;
        let mut a = open_leg(&server, "home", 1, &leg(dest_addr, 7, 0)).await;
        let mut b = open_leg(&server, "home", 1, &leg(dest_addr, 7, 1)).await;
        let text = server.wait_metric("mpbond_udp_legs_attached 2").await;
        assert!(text.contains("\nmpbond_udp_groups_active 1\n"), "{text}");
        assert!(text.contains("\nmpbond_udp_flows_active 1\n"), "{text}");
        // Every datagram on both legs; leg b's copies of the first half go first.
        const N: u32 = 40;
        for i in 0..N / 2 {
            send_copy(&mut b, i, &datagram(i)).await;
        }
        for i in 0..N {
            send_copy(&mut a, i, &datagram(i)).await;
        }
        for i in N / 2..N {
            send_copy(&mut b, i, &datagram(i)).await;
        }
        server
            .wait_metric(&format!(
                "mpbond_udp_duplicates_total{{direction=\"up\"}} {N}"
            ))
            .await;
        let text = server
            .wait_metric(&format!(
                "mpbond_udp_datagrams_total{{direction=\"up\"}} {N}"
            ))
            .await;
        assert!(
            text.contains("mpbond_udp_drops_total{reason=\"too_old\"} 0"),
            "{text}"
        );
        let got = drain(&dest);
        let payloads: Vec<Vec<u8>> = got.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(payloads, (0..N).map(datagram).collect::<Vec<_>>());
        let source = got[0].1;
        assert!(got.iter().all(|(_, from)| *from == source), "one socket");

        // Down: each datagram on both legs, numbered alike.
        for i in 0..10u32 {
            dest.send_to(&datagram(100 + i), source).await.unwrap();
        }
        let (mut buf_a, mut buf_b) = (Vec::new(), Vec::new());
        for i in 0..10u32 {
            let want = Some((i, datagram(100 + i)));
            assert_eq!(next_sequenced(&mut a, &mut buf_a).await, want);
            assert_eq!(next_sequenced(&mut b, &mut buf_b).await, want);
        }
        let text = server
            .wait_metric("mpbond_udp_duplicates_total{direction=\"down\"} 10")
            .await;
        assert!(
            text.contains("mpbond_udp_datagrams_total{direction=\"down\"} 10"),
            "{text}"
        );
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
        assert_eq!(next_sequenced(&mut a, &mut buf_a).await, None);
        assert_eq!(next_sequenced(&mut b, &mut buf_b).await, None);
        server.wait_metric("mpbond_udp_groups_active 0").await;
        let text = server.wait_metric("mpbond_udp_flows_active 0").await;
        assert!(text.contains("\nmpbond_udp_legs_attached 0\n"), "{text}");
        assert!(text.contains("\nmpbond_udp_groups_total 1\n"), "{text}");
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_leg_with_the_same_group_id_gets_its_own_group() {
    bounded(TEST_TIMEOUT, async {
        let server = start(clients("")).await;
        let (dest, dest_addr) = destination().await;
        let mut home = open_leg(&server, "home", 1, &leg(dest_addr, 42, 0)).await;
        let mut other = open_leg(&server, "other", 2, &leg(dest_addr, 42, 1)).await;
        server.wait_metric("mpbond_udp_groups_active 2").await;
        // The same sequence number in each: neither is the other's duplicate.
        send_copy(&mut home, 0, b"from home").await;
        send_copy(&mut other, 0, b"from other").await;
        let text = server
            .wait_metric("mpbond_udp_datagrams_total{direction=\"up\"} 2")
            .await;
        assert!(
            text.contains("mpbond_udp_duplicates_total{direction=\"up\"} 0"),
            "{text}"
        );
        let mut got = drain(&dest);
        got.sort();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_ne!(got[0].1, got[1].1, "two sockets");
        // Each answer goes to its own client only.
        let (home_src, other_src) = if got[0].0 == b"from home" {
            (got[0].1, got[1].1)
        } else {
            (got[1].1, got[0].1)
        };
        dest.send_to(b"to other", other_src).await.unwrap();
        dest.send_to(b"to home", home_src).await.unwrap();
        let (mut hb, mut ob) = (Vec::new(), Vec::new());
        assert_eq!(
            next_sequenced(&mut home, &mut hb).await,
            Some((0, b"to home".to_vec()))
        );
        assert_eq!(
            next_sequenced(&mut other, &mut ob).await,
            Some((0, b"to other".to_vec()))
        );
        drop((home, other));
        server.wait_metric("mpbond_udp_groups_active 0").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leg_closing_leaves_the_other_working() {
    bounded(TEST_TIMEOUT, async {
        let server = start(clients("")).await;
        let (dest, dest_addr) = destination().await;
        let mut a = open_leg(&server, "home", 1, &leg(dest_addr, 9, 0)).await;
        let mut b = open_leg(&server, "home", 1, &leg(dest_addr, 9, 1)).await;
        server.wait_metric("mpbond_udp_legs_attached 2").await;
        send_copy(&mut a, 0, b"zero").await;
        send_copy(&mut b, 0, b"zero").await;
        server
            .wait_metric("mpbond_udp_duplicates_total{direction=\"up\"} 1")
            .await;
        let source = drain(&dest)[0].1;
        // Leg a goes away (the agent closes it when its WAN dies).
        drop(a);
        server.wait_metric("mpbond_udp_legs_attached 1").await;
        send_copy(&mut b, 1, b"one").await;
        server
            .wait_metric("mpbond_udp_datagrams_total{direction=\"up\"} 2")
            .await;
        assert_eq!(drain(&dest), vec![(b"one".to_vec(), source)]);
        dest.send_to(b"down", source).await.unwrap();
        let mut buf = Vec::new();
        assert_eq!(
            next_sequenced(&mut b, &mut buf).await,
            Some((0, b"down".to_vec()))
        );
        // A new leg (the next best WAN) joins the same group and socket.
        let mut c = open_leg(&server, "home", 1, &leg(dest_addr, 9, 0)).await;
        server.wait_metric("mpbond_udp_legs_attached 2").await;
        send_copy(&mut c, 2, b"two").await;
        server
            .wait_metric("mpbond_udp_datagrams_total{direction=\"up\"} 3")
            .await;
        assert_eq!(drain(&dest), vec![(b"two".to_vec(), source)]);
        let text = server.scrape().await;
        assert!(text.contains("\nmpbond_udp_groups_total 1\n"), "{text}");
        b.shutdown().await.unwrap();
        c.shutdown().await.unwrap();
        server.wait_metric("mpbond_udp_groups_active 0").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_one_flow_against_the_limit() {
    bounded(TEST_TIMEOUT, async {
        let server = start(clients("max_flows_per_client = 1")).await;
        let (_dest, dest_addr) = destination().await;
        let a = open_leg(&server, "home", 1, &leg(dest_addr, 1, 0)).await;
        let b = open_leg(&server, "home", 1, &leg(dest_addr, 1, 1)).await;
        server.wait_metric("mpbond_udp_legs_attached 2").await;
        // A second group, or a plain flow, is a second flow: refused with 64.
        let (mut s, code) =
            common::request(server.addr, &sealed(&leg(dest_addr, 2, 0), "home", &key(1))).await;
        assert_eq!(code, Some(ErrorCode::ResourceExceeded));
        expect_eof(&mut s).await;
        let mut plain = sealed(&Message::udp_request(dest_addr), "home", &key(1));
        encode_datagram(b"x", &mut plain).unwrap();
        let (mut s, code) = common::request(server.addr, &plain).await;
        assert_eq!(code, Some(ErrorCode::ResourceExceeded));
        expect_eof(&mut s).await;
        let text = server.scrape().await;
        assert!(text.contains("\nmpbond_udp_flows_active 1\n"), "{text}");
        assert!(
            text.contains("mpbond_udp_drops_total{reason=\"flow_limit\"} 2"),
            "{text}"
        );
        // Another client has its own limit.
        let o = open_leg(&server, "other", 2, &leg(dest_addr, 1, 0)).await;
        server.wait_metric("mpbond_udp_groups_active 2").await;
        drop((a, b, o));
        server.wait_metric("mpbond_udp_groups_active 0").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_conflicting_legs_are_refused() {
    bounded(TEST_TIMEOUT, async {
        let server = start(clients("")).await;
        let (_dest, dest_addr) = destination().await;
        let first = sealed(&leg(dest_addr, 5, 0), "home", &key(1));
        let (a, code) = common::request(server.addr, &first).await;
        assert_eq!(code, None);
        // The same sealed bytes again: the replay cache refuses them (quietly: the
        // sender proved nothing).
        assert_eq!(request_silenced(server.addr, &first).await, b"");
        server
            .wait_metric("mpbond_auth_failures_total{reason=\"replay\"} 1")
            .await;
        // A leg naming the group with another destination: 2.
        let elsewhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (mut s, code) =
            common::request(server.addr, &sealed(&leg(elsewhere, 5, 1), "home", &key(1))).await;
        assert_eq!(code, Some(ErrorCode::UnsupportedMessage));
        expect_eof(&mut s).await;
        let text = server
            .wait_metric("mpbond_udp_drops_total{reason=\"group_refused\"} 1")
            .await;
        assert!(text.contains("\nmpbond_udp_legs_attached 1\n"), "{text}");
        // Out-of-range legs are an Unsupported Message before anything else.
        let bad = Message::udp_leg_request(
            dest_addr,
            Group {
                id: 5,
                leg: 4,
                legs: 4,
            },
        );
        let (mut s, code) = common::request(server.addr, &sealed(&bad, "home", &key(1))).await;
        assert_eq!(code, Some(ErrorCode::UnsupportedMessage));
        expect_eof(&mut s).await;
        drop(a);
        server.wait_metric("mpbond_udp_groups_active 0").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_drops_plain_datagrams_and_a_group_idles_out_with_its_legs() {
    bounded(TEST_TIMEOUT, async {
        let server = start(clients("idle_timeout_secs = 1")).await;
        let (dest, dest_addr) = destination().await;
        let mut a = open_leg(&server, "home", 1, &leg(dest_addr, 3, 0)).await;
        let mut wire = Vec::new();
        encode_datagram(b"plain", &mut wire).unwrap();
        a.write_all(&wire).await.unwrap();
        send_copy(&mut a, 0, b"sequenced").await;
        server
            .wait_metric("mpbond_udp_datagrams_total{direction=\"up\"} 1")
            .await;
        let text = server
            .wait_metric("mpbond_udp_drops_total{reason=\"bad_context\"} 1")
            .await;
        assert!(text.contains("\nmpbond_udp_groups_active 1\n"), "{text}");
        assert_eq!(drain(&dest).len(), 1);
        // Nothing more either way: the group ends, and its leg with it (a FIN).
        let mut buf = Vec::new();
        assert_eq!(next_sequenced(&mut a, &mut buf).await, None);
        server.wait_metric("mpbond_udp_groups_active 0").await;
        server.wait_metric("mpbond_udp_flows_active 0").await;
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_leg_loses_its_copies_and_never_holds_up_the_other() {
    bounded(TEST_TIMEOUT, async {
        let server = start(clients("")).await;
        let (dest, dest_addr) = destination().await;
        // Leg a: a tiny receive window, and it never reads.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stalled = socket.connect(server.addr).await.unwrap();
        let request = sealed(&leg(dest_addr, 11, 0), "home", &key(1));
        stalled.write_all(&request).await.unwrap();
        assert_eq!(read_reply(&mut stalled).await.error_code(), None);
        let mut b = open_leg(&server, "home", 1, &leg(dest_addr, 11, 1)).await;
        server.wait_metric("mpbond_udp_legs_attached 2").await;
        send_copy(&mut b, 0, b"hello").await;
        server
            .wait_metric("mpbond_udp_datagrams_total{direction=\"up\"} 1")
            .await;
        let source = drain(&dest)[0].1;
        // 1.2 MB down, in rounds that leg b's queue holds whole: leg b gets every
        // datagram, in order, while leg a's copies pile up and are dropped.
        const ROUNDS: u32 = 40;
        const PER_ROUND: u32 = 25;
        let mut buf = Vec::new();
        for round in 0..ROUNDS {
            for i in 0..PER_ROUND {
                let seq = round * PER_ROUND + i;
                let mut payload = vec![0u8; 1200];
                payload[..4].copy_from_slice(&seq.to_be_bytes());
                dest.send_to(&payload, source).await.unwrap();
            }
            for i in 0..PER_ROUND {
                let seq = round * PER_ROUND + i;
                let (got_seq, payload) = next_sequenced(&mut b, &mut buf).await.unwrap();
                assert_eq!(got_seq, seq);
                assert_eq!(payload[..4], seq.to_be_bytes());
            }
        }
        let text = server.scrape().await;
        let dropped: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("mpbond_udp_drops_total{reason=\"queue_full\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(dropped > 0, "leg a never filled up:\n{text}");
        drop((stalled, b));
        server.wait_metric("mpbond_udp_groups_active 0").await;
        server.stop().await;
    })
    .await;
}

/// Read FEC capsules from both legs at once until `sources` distinct sources came and
/// repairs cover every one of them: (leg index, capsule) in arrival order per leg. Like
/// the agent, it acknowledges what it reads at once (`TCP_QUICKACK`); a source the
/// concentrator still found late (a slow machine) comes twice, once on each leg.
async fn fec_capsules(
    a: &mut TcpStream,
    b: &mut TcpStream,
    sources: usize,
) -> Vec<(usize, LegCapsuleOwned)> {
    let (mut bufs, mut got) = ([Vec::new(), Vec::new()], Vec::new());
    let (mut chunk_a, mut chunk_b) = ([0u8; 4096], [0u8; 4096]);
    loop {
        for (leg, buf) in bufs.iter_mut().enumerate() {
            while let Some((capsule, used)) = decode_leg_capsule(buf).expect("well-formed") {
                let owned = match capsule {
                    LegCapsule::FecSource { seq, payload } => {
                        LegCapsuleOwned::Source(seq, payload.to_vec())
                    }
                    LegCapsule::FecRepair(r) => LegCapsuleOwned::Repair(r.to_owned_repair()),
                    other => panic!("an FEC leg got {other:?}"),
                };
                got.push((leg, owned));
                buf.drain(..used);
            }
        }
        let got_sources = got
            .iter()
            .filter_map(|(_, c)| match c {
                LegCapsuleOwned::Source(seq, _) => Some(*seq),
                LegCapsuleOwned::Repair(_) => None,
            })
            .collect::<std::collections::HashSet<_>>()
            .len();
        let covered: usize = got
            .iter()
            .map(|(_, c)| match c {
                LegCapsuleOwned::Repair(r) => usize::from(r.count),
                LegCapsuleOwned::Source(..) => 0,
            })
            .sum();
        if got_sources == sources && covered == sources {
            return got;
        }
        tokio::select! {
            n = a.read(&mut chunk_a) => bufs[0].extend_from_slice(&chunk_a[..n.unwrap()]),
            n = b.read(&mut chunk_b) => bufs[1].extend_from_slice(&chunk_b[..n.unwrap()]),
        }
        for leg in [&*a, &*b] {
            let _ = mpbond_netlink::sockopt::quickack(leg);
        }
    }
}

#[derive(Debug)]
enum LegCapsuleOwned {
    Source(u32, Vec<u8>),
    Repair(OwnedRepair),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fec_legs_recover_a_lost_datagram_up_and_spread_blocks_down() {
    bounded(TEST_TIMEOUT, async {
        let server = start(clients("")).await;
        let (dest, dest_addr) = destination().await;
        let mut legs = [
            open_leg(&server, "home", 1, &leg(dest_addr, 9, 0)).await,
            open_leg(&server, "home", 1, &leg(dest_addr, 9, 1)).await,
        ];
        server.wait_metric("mpbond_udp_legs_attached 2").await;
        // Up: one block of 8 sources spread over the legs, source 3 lost, the repair
        // on leg 0.
        let mut encoder = FecEncoder::new(FecParams::fixed(8, std::time::Duration::from_secs(60)));
        let now = std::time::Instant::now();
        for i in 0..8u32 {
            let (mut source, mut repair) = (Vec::new(), Vec::new());
            let closed = encoder
                .push(&datagram(i), now, &mut source, &mut repair)
                .unwrap();
            if i != 3 {
                legs[i as usize % 2].write_all(&source).await.unwrap();
            }
            if closed {
                legs[0].write_all(&repair).await.unwrap();
            }
        }
        server
            .wait_metric("mpbond_udp_datagrams_total{direction=\"up\"} 8")
            .await;
        let got = drain(&dest);
        let mut payloads: Vec<Vec<u8>> = got.iter().map(|(p, _)| p.clone()).collect();
        // Recovery needs the other seven: the lost source comes last (the legs'
        // datagrams interleave in any order before it).
        assert_eq!(payloads.last(), Some(&datagram(3)), "{payloads:?}");
        payloads.sort();
        assert_eq!(payloads, (0..8).map(datagram).collect::<Vec<_>>());
        let source = got[0].1;
        // The concentrator may have read leg 1's three sources before leg 0's five
        // capsules, which would leave leg 1 stale (more than `STALE_AFTER` capsules
        // behind). A ninth source on leg 1, the newest upstream capsule, makes both
        // legs live whatever the order of those reads.
        let (mut source8, mut repair8) = (Vec::new(), Vec::new());
        let closed = encoder
            .push(&datagram(8), now, &mut source8, &mut repair8)
            .unwrap();
        assert!(!closed, "the second block stays open");
        legs[1].write_all(&source8).await.unwrap();
        server
            .wait_metric("mpbond_udp_datagrams_total{direction=\"up\"} 9")
            .await;
        let mut buf = [0u8; 64];
        let (n, _) = dest.recv_from(&mut buf).await.unwrap();
        assert_eq!(buf[..n], datagram(8));

        // Down: the group is in fec mode now; its sources go round both legs and every
        // one is covered by a repair.
        for i in 0..8u32 {
            dest.send_to(&datagram(100 + i), source).await.unwrap();
        }
        let [a, b] = &mut legs;
        let capsules = fec_capsules(a, b, 8).await;
        let mut decoder = FecDecoder::new();
        let mut per_leg = [0usize; 2];
        let mut delivered = Vec::new();
        // The first source leg 1 brings is "lost", with any second copy of it (sent
        // again on leg 0 if the concentrator found it late): only its block's repair
        // can bring it back.
        let lost = capsules.iter().find_map(|(leg, c)| match c {
            LegCapsuleOwned::Source(seq, _) if *leg == 1 => Some(*seq),
            _ => None,
        });
        for (leg, capsule) in &capsules {
            match capsule {
                LegCapsuleOwned::Source(seq, payload) => {
                    per_leg[*leg] += 1;
                    if Some(*seq) == lost {
                        continue;
                    }
                    // A second copy (handed back late) is dropped by its number.
                    if decoder.source(*seq, payload) {
                        delivered.push(payload.clone());
                    }
                }
                LegCapsuleOwned::Repair(r) => decoder.repair(&Repair {
                    first_seq: r.first_seq,
                    count: r.count,
                    length_xor: r.length_xor,
                    parity: &r.parity,
                }),
            }
            while let Some((_, payload)) = decoder.poll_recovered() {
                delivered.push(payload);
            }
        }
        assert!(
            per_leg[0] >= 4 && per_leg[1] >= 4,
            "sources alternate over the live legs: {per_leg:?}"
        );
        delivered.sort();
        assert_eq!(delivered, (100..108).map(datagram).collect::<Vec<_>>());
        // The lost source was rebuilt from its block's repair.
        assert_eq!(decoder.recovered(), 1, "{capsules:?}");
        for leg in &mut legs {
            leg.shutdown().await.unwrap();
        }
        server.wait_metric("mpbond_udp_groups_active 0").await;
        server.stop().await;
    })
    .await;
}
