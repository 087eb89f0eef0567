//! The ledger in simulated days: deltas, roll-overs, counter resets, reboots.

use super::*;

const DAY1: Date = Date::new(2026, 12, 6);

fn s(ifindex: u32, rx: u64, tx: u64) -> Option<Sample> {
    Some(Sample { ifindex, rx, tx })
}

fn totals(l: &Ledger, wan: &str) -> (u64, u64, u64, u64) {
    let u = l.usage(wan).expect("usage");
    (u.today_rx, u.today_tx, u.month_rx, u.month_tx)
}

#[test]
fn deltas_are_counted_from_the_first_sample() {
    let mut l = Ledger::new("boot-a");
    l.record("lte", s(4, 1_000_000, 50_000), DAY1, 1);
    assert_eq!(
        totals(&l, "lte"),
        (0, 0, 0, 0),
        "the first sample is the baseline"
    );
    l.record("lte", s(4, 1_000_300, 50_020), DAY1, 1);
    l.record("lte", s(4, 1_000_700, 50_050), DAY1, 1);
    assert_eq!(totals(&l, "lte"), (700, 50, 700, 50));
}

#[test]
fn a_new_day_and_a_new_billing_month_start_from_zero_on_the_reset_day() {
    let mut l = Ledger::new("b");
    let day = |d: u8| Date::new(2026, 12, d);
    l.record("lte", s(4, 0, 0), day(13), 14);
    l.record("lte", s(4, 100, 10), day(13), 14);
    l.record("lte", s(4, 150, 20), day(14), 14);
    assert_eq!(
        totals(&l, "lte"),
        (50, 10, 50, 10),
        "14th: new day, new month"
    );
    l.record("lte", s(4, 250, 20), day(15), 14);
    assert_eq!(
        totals(&l, "lte"),
        (100, 0, 150, 10),
        "15th: new day, same month"
    );
    // Into January, before the reset day: the same billing month.
    l.record("lte", s(4, 260, 20), Date::new(2027, 1, 2), 14);
    assert_eq!(totals(&l, "lte"), (10, 0, 160, 10));
    l.record("lte", s(4, 270, 20), Date::new(2027, 1, 14), 14);
    assert_eq!(totals(&l, "lte"), (10, 0, 10, 0));
    assert_eq!(
        l.usage("lte").map(|u| u.period),
        Some(Date::new(2027, 1, 14))
    );
}

#[test]
fn a_date_that_goes_back_rolls_nothing() {
    let mut l = Ledger::new("b");
    l.record("lte", s(4, 0, 0), DAY1, 1);
    l.record("lte", s(4, 100, 0), DAY1, 1);
    // A router without a clock boots in the past until NTP answers.
    l.record("lte", s(4, 150, 0), Date::new(2024, 1, 1), 1);
    l.record("lte", s(4, 170, 0), DAY1, 1);
    assert_eq!(totals(&l, "lte"), (170, 0, 170, 0));
}

#[test]
fn counters_that_restart_never_count_negative() {
    let mut l = Ledger::new("b");
    l.record("lte", s(4, 0, 0), DAY1, 1);
    l.record("lte", s(4, 5_000, 500), DAY1, 1);
    // The device was re-created (new ifindex): its counters start again.
    l.record("lte", s(9, 300, 30), DAY1, 1);
    assert_eq!(totals(&l, "lte"), (5_300, 530, 5_300, 530));
    // Same ifindex, counters reset (a driver reset): counted from zero.
    l.record("lte", s(9, 100, 10), DAY1, 1);
    assert_eq!(totals(&l, "lte"), (5_400, 540, 5_400, 540));
    // Device gone: nothing counted, the baseline kept.
    l.record("lte", None, DAY1, 1);
    l.record("lte", s(9, 150, 10), DAY1, 1);
    assert_eq!(totals(&l, "lte"), (5_450, 540, 5_450, 540));
}

#[test]
fn a_restart_counts_from_the_saved_counters_and_a_reboot_from_zero() {
    let mut l = Ledger::new("boot-a");
    l.record("lte", s(4, 1_000, 100), DAY1, 1);
    l.record("lte", s(4, 2_000, 200), DAY1, 1);
    let text = serde_json::to_string(&l).expect("serialize");
    // Agent restart in the same boot: what the device carried meanwhile counts.
    let mut same: Ledger = serde_json::from_str::<Ledger>(&text)
        .expect("parse")
        .resume("boot-a");
    same.record("lte", s(4, 2_500, 250), DAY1, 1);
    assert_eq!(totals(&same, "lte"), (1_500, 150, 1_500, 150));
    // Reboot: the counters restarted at zero; everything since boot counts.
    let mut rebooted = serde_json::from_str::<Ledger>(&text)
        .expect("parse")
        .resume("boot-b");
    rebooted.record("lte", s(3, 400, 40), DAY1, 1);
    assert_eq!(totals(&rebooted, "lte"), (1_400, 140, 1_400, 140));
    assert_eq!(rebooted.boot_id, "boot-b");
}

#[test]
fn over_allowance_needs_a_metered_wan_with_an_allowance() {
    let mut l = Ledger::new("b");
    l.record("lte", s(4, 0, 0), DAY1, 1);
    l.record("lte", s(4, 600_000, 400_000), DAY1, 1);
    let plan = |metered, allowance| Metering {
        metered,
        allowance,
        reset_day: 1,
    };
    assert!(l.is_over("lte", &plan(true, Some(1_000_000))));
    assert!(!l.is_over("lte", &plan(true, Some(1_000_001))));
    assert!(!l.is_over("lte", &plan(true, None)));
    assert!(!l.is_over("lte", &plan(false, Some(1))));
    assert!(!l.is_over("dsl", &plan(true, Some(1))), "no usage yet");
    let over = l.over_allowance([("lte", plan(true, Some(10))), ("dsl", plan(false, None))]);
    assert_eq!(over.into_iter().collect::<Vec<_>>(), ["lte"]);
}
