//! The legs of a protected flow in simulated time.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn source(wan: &str, last: u8) -> LegSource {
    LegSource {
        wan: wan.into(),
        addr: std::net::IpAddr::from([10, 0, last, 2]),
        stall_after: ms(100),
    }
}

fn drain(book: &mut LegBook) -> Vec<LegAction> {
    std::iter::from_fn(|| book.poll_action()).collect()
}

fn opened_on(actions: &[LegAction]) -> Vec<(u8, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            LegAction::Open { leg, source } => Some((*leg, source.wan.clone())),
            _ => None,
        })
        .collect()
}

/// A book with legs 0 (wan1) and 1 (wan2) open.
fn two_legs(t0: Instant, spare: bool) -> LegBook {
    let mut sources = vec![source("wan1", 1), source("wan2", 2)];
    if spare {
        sources.push(source("wan3", 3));
    }
    let mut book = LegBook::new(sources, t0);
    assert_eq!(
        opened_on(&drain(&mut book)),
        [(0, "wan1".to_owned()), (1, "wan2".to_owned())]
    );
    book.opened(0);
    book.opened(1);
    book
}

#[test]
fn one_wan_is_nothing_to_protect_against() {
    let mut book = LegBook::new(vec![source("wan1", 1)], Instant::now());
    assert_eq!(drain(&mut book), [LegAction::Fallback]);
    assert!(book.fell_back());
}

#[test]
fn a_refusal_before_any_leg_opened_falls_back_and_closes_the_other() {
    let t0 = Instant::now();
    let mut book = LegBook::new(vec![source("wan1", 1), source("wan2", 2)], t0);
    drain(&mut book);
    book.refused(0, t0 + ms(20));
    assert_eq!(
        drain(&mut book),
        [
            LegAction::Close {
                leg: 1,
                why: CloseWhy::WanGone
            },
            LegAction::Fallback
        ]
    );
}

#[test]
fn the_first_copy_is_delivered_and_the_second_dropped() {
    let t0 = Instant::now();
    let mut book = two_legs(t0, false);
    assert!(book.datagram(0, 0, t0));
    assert!(!book.datagram(1, 0, t0 + ms(5)));
    assert!(book.datagram(1, 1, t0 + ms(20)));
    assert!(!book.datagram(0, 1, t0 + ms(40)));
    assert_eq!(book.delivered(), 2);
    assert_eq!(book.duplicates(), 2);
    assert_eq!(book.lost(), 0);
}

#[test]
fn loss_counts_per_leg_and_after_the_merge() {
    let t0 = Instant::now();
    let mut book = two_legs(t0, false);
    // 100 datagrams; leg 0 misses every tenth, leg 1 every seventh; both miss 0 and 70.
    for seq in 0..100u32 {
        let at = t0 + ms(20 * u64::from(seq));
        if seq % 10 != 0 {
            book.datagram(0, seq, at);
        }
        if seq % 7 != 0 {
            book.datagram(1, seq, at + ms(3));
        }
    }
    // Seq 0 was never delivered, so the merged stream starts at 1: only 70 is lost.
    assert_eq!(book.lost(), 1);
    assert_eq!(book.delivered(), 98);
    let status = book.status(t0 + ms(2000));
    assert_eq!(status[0].datagrams_down, 90);
    assert_eq!(status[0].missed_down, 8);
    assert_eq!(status[1].datagrams_down, 85);
    assert_eq!(status[1].missed_down, 13);
}

#[test]
fn a_leg_whose_wan_goes_down_is_replaced_on_the_next_wan() {
    let t0 = Instant::now();
    let mut book = two_legs(t0, true);
    book.set_sources(vec![source("wan2", 2), source("wan3", 3)], t0 + ms(500));
    let actions = drain(&mut book);
    assert_eq!(
        actions[0],
        LegAction::Close {
            leg: 0,
            why: CloseWhy::WanGone
        }
    );
    assert_eq!(opened_on(&actions), [(2, "wan3".to_owned())]);
    assert_eq!(book.replaced(), 1);
}

#[test]
fn with_two_wans_a_lost_wan_leaves_one_leg_until_it_returns() {
    let t0 = Instant::now();
    let mut book = two_legs(t0, false);
    book.set_sources(vec![source("wan2", 2)], t0 + ms(100));
    assert_eq!(drain(&mut book).len(), 1, "only the close");
    assert_eq!(book.legs(), 1);
    assert!(
        !book.fell_back(),
        "a flow already protected keeps its one leg"
    );
    book.set_sources(vec![source("wan1", 1), source("wan2", 2)], t0 + ms(900));
    assert_eq!(opened_on(&drain(&mut book)), [(2, "wan1".to_owned())]);
}

#[test]
fn a_stalled_leg_is_replaced_when_a_spare_wan_is_ranked() {
    let t0 = Instant::now();
    let mut book = two_legs(t0, true);
    book.datagram(0, 0, t0);
    book.datagram(1, 0, t0 + ms(2));
    // Leg 0 goes silent (a black hole); leg 1 carries on.
    for seq in 1..10u32 {
        book.datagram(1, seq, t0 + ms(20 * u64::from(seq)));
    }
    // It fell behind at 20 ms (seq 1): due at 120 ms.
    assert_eq!(book.poll_timeout(), Some(t0 + ms(120)));
    book.handle_timeout(t0 + ms(119));
    assert!(drain(&mut book).is_empty());
    book.handle_timeout(t0 + ms(120));
    let actions = drain(&mut book);
    assert_eq!(
        actions[0],
        LegAction::Close {
            leg: 0,
            why: CloseWhy::Stalled
        }
    );
    assert_eq!(opened_on(&actions), [(2, "wan3".to_owned())]);
    // wan1 waits RETRY_AFTER before it may carry a leg again.
    assert_eq!(book.poll_timeout(), Some(t0 + ms(120) + RETRY_AFTER));
}

#[test]
fn a_stalled_leg_without_a_spare_stays_and_sets_no_busy_timer() {
    let t0 = Instant::now();
    let mut book = two_legs(t0, false);
    book.datagram(0, 0, t0);
    book.datagram(1, 1, t0 + ms(20));
    book.handle_timeout(t0 + ms(200));
    assert!(drain(&mut book).is_empty());
    assert_eq!(book.status(t0 + ms(200))[0].state, "stalled");
    assert_eq!(book.poll_timeout(), None, "no timer in the past");
    // It catches up (TCP retransmitted): open again, and timed again when behind.
    book.datagram(0, 1, t0 + ms(300));
    assert_eq!(book.status(t0 + ms(300))[0].state, "open");
    book.datagram(1, 2, t0 + ms(320));
    assert_eq!(book.poll_timeout(), Some(t0 + ms(420)));
}

#[test]
fn a_failed_leg_is_retried_after_a_while_not_at_once() {
    let t0 = Instant::now();
    let mut book = two_legs(t0, false);
    book.failed(1, t0 + ms(50));
    assert!(drain(&mut book).is_empty(), "wan2 waits");
    assert_eq!(book.poll_timeout(), Some(t0 + ms(50) + RETRY_AFTER));
    book.handle_timeout(t0 + ms(50) + RETRY_AFTER);
    assert_eq!(opened_on(&drain(&mut book)), [(2, "wan2".to_owned())]);
}

#[test]
fn leg_indices_go_round_and_sequence_numbers_wrap() {
    let t0 = Instant::now();
    let mut book = two_legs(t0, false);
    for round in 0..4u64 {
        let at = t0 + RETRY_AFTER * (round as u32 + 1);
        let leg = book.open_legs().next().expect("a leg");
        book.failed(leg, at);
        book.handle_timeout(at + RETRY_AFTER);
        for action in drain(&mut book) {
            if let LegAction::Open { leg, .. } = action {
                assert!(leg < MAX_LEGS);
                book.opened(leg);
            }
        }
    }
    let leg = book.open_legs().next().expect("a leg");
    let now = t0 + ms(60_000);
    assert!(book.datagram(leg, u32::MAX - 1, now));
    assert!(book.datagram(leg, u32::MAX, now));
    assert!(book.datagram(leg, 1, now));
    assert_eq!(book.lost(), 1, "0 is missing across the wrap");
}
