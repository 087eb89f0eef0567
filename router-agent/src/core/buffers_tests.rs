//! Unit tests of [`super::BufferSizing`] in simulated time: byte counters every 2 s.

use std::time::{Duration, Instant};

use super::*;

const TICK: Duration = Duration::from_secs(2);
const MBIT: f64 = 1e6 / 8.0;
const NO_LIMITS: KernelBufferLimits = KernelBufferLimits {
    rmem_max: None,
    wmem_max: None,
};

/// A WAN moving `mbit` Mbit/s at `rtt_ms`.
#[derive(Clone, Copy)]
struct Line {
    mbit: f64,
    rtt_ms: u64,
}

/// Feed `ticks` counter ticks of `lines` (named wan0, wan1, ...) from `start`; returns
/// the time of the last tick.
fn run(sizing: &mut BufferSizing, lines: &[Line], start: Instant, ticks: u32) -> Instant {
    let mut now = start;
    for tick in 0..=ticks {
        now = start + TICK * tick;
        let samples: Vec<(String, PathSample)> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let bytes = (line.mbit * MBIT * (TICK * tick).as_secs_f64()) as u64;
                let sample = PathSample {
                    bytes,
                    subflow_rtt: Some(Duration::from_millis(line.rtt_ms)),
                    ..PathSample::default()
                };
                (format!("wan{i}"), sample)
            })
            .collect();
        sizing.observe(&samples, now);
    }
    now
}

const DSL_LTE: [Line; 2] = [
    Line {
        mbit: 40.0,
        rtt_ms: 10,
    },
    Line {
        mbit: 60.0,
        rtt_ms: 60,
    },
];

#[test]
fn nothing_measured_gives_the_unmeasured_receive_buffer_and_autotunes_the_send_buffer() {
    let sizing = BufferSizing::default();
    let now = Instant::now();
    let plain = for_connection(sizing.choose(BufferMode::Auto, NO_LIMITS, now), false);
    assert_eq!(plain.rcvbuf, Some(UNMEASURED_RCVBUF));
    assert_eq!(plain.sndbuf, None);
    assert_eq!(plain, unmeasured(BufferMode::Auto, NO_LIMITS));
    let fastopen = for_connection(sizing.choose(BufferMode::Auto, NO_LIMITS, now), true);
    assert_eq!(
        fastopen.rcvbuf,
        Some(UNMEASURED_RCVBUF.max(FASTOPEN_RCVBUF))
    );
    assert_eq!(fastopen.sndbuf, None);
    // Within what autotuning may reach: OpenWrt's 6 MiB, a small router's 1 MiB.
    let openwrt = KernelBufferLimits {
        rmem_max: Some(6 << 20),
        wmem_max: Some(4 << 20),
    };
    let chosen = sizing.choose(BufferMode::Auto, openwrt, now);
    assert_eq!(chosen.rcvbuf, Some(6 << 20));
    let small = KernelBufferLimits {
        rmem_max: Some(1 << 20),
        wmem_max: Some(1 << 20),
    };
    assert_eq!(unmeasured(BufferMode::Auto, small).rcvbuf, Some(1 << 20));
    // Fast Open keeps its own floor over a small kernel maximum.
    let fastopen = for_connection(unmeasured(BufferMode::Auto, small), true);
    assert_eq!(fastopen.rcvbuf, Some(FASTOPEN_RCVBUF));
}

#[test]
fn dsl_lte_gets_twice_the_bdp_to_send_and_the_recovery_on_top_to_receive() {
    let mut sizing = BufferSizing::default();
    let now = run(&mut sizing, &DSL_LTE, Instant::now(), 5);
    // 100 Mbit/s × 60 ms = 750 kB; × 2 = 1.5 MB; a power of two: 2 MiB to send.
    let bdp = sizing.bdp(now).expect("two busy WANs");
    assert!((bdp - 750_000.0).abs() < 1_000.0, "{bdp}");
    let plain = for_connection(sizing.choose(BufferMode::Auto, NO_LIMITS, now), false);
    assert_eq!(plain.sndbuf, Some(2 << 20));
    // To receive, + 12.5 MB/s × 400 ms = 6.5 MB: 8 MiB.
    assert_eq!(plain.rcvbuf, Some(8 << 20));
    // Above the Fast Open floor, so a Fast Open connection gets the same.
    let fastopen = for_connection(sizing.choose(BufferMode::Auto, NO_LIMITS, now), true);
    assert_eq!(fastopen.rcvbuf, Some(8 << 20));
    assert_eq!(fastopen.sndbuf, Some(2 << 20));
}

#[test]
fn three_under_load_receives_into_more_than_the_fastopen_floor() {
    // 20/30/50 Mbit/s with the 60 ms line's RTT at 85 ms under load (its 25 ms queue
    // full): 4 MiB stalled these downloads (case 13), so the buffer must be above it.
    let three = [
        Line {
            mbit: 20.0,
            rtt_ms: 12,
        },
        Line {
            mbit: 30.0,
            rtt_ms: 40,
        },
        Line {
            mbit: 50.0,
            rtt_ms: 85,
        },
    ];
    let mut sizing = BufferSizing::default();
    let now = run(&mut sizing, &three, Instant::now(), 5);
    let chosen = for_connection(sizing.choose(BufferMode::Auto, NO_LIMITS, now), true);
    // 12.5 MB/s × (2 × 85 ms + 400 ms) = 7.1 MB: 8 MiB.
    assert_eq!(chosen.rcvbuf, Some(8 << 20));
    assert!(chosen.rcvbuf > Some(FASTOPEN_RCVBUF));
}

#[test]
fn kernel_mode_sets_only_the_fastopen_buffer() {
    let mut sizing = BufferSizing::default();
    let now = run(&mut sizing, &DSL_LTE, Instant::now(), 5);
    let kernel = for_connection(sizing.choose(BufferMode::Kernel, NO_LIMITS, now), false);
    assert_eq!(kernel, SocketBuffers::default());
    let fastopen = for_connection(sizing.choose(BufferMode::Kernel, NO_LIMITS, now), true);
    assert_eq!(fastopen.rcvbuf, Some(FASTOPEN_RCVBUF));
    assert_eq!(fastopen.sndbuf, None);
}

#[test]
fn the_kernel_maximum_and_the_minimum_bound_the_buffers() {
    let mut sizing = BufferSizing::default();
    let far = [Line {
        mbit: 500.0,
        rtt_ms: 200,
    }];
    let now = run(&mut sizing, &far, Instant::now(), 3);
    let limits = KernelBufferLimits {
        rmem_max: Some(6 << 20),
        wmem_max: Some(4 << 20),
    };
    let big = for_connection(sizing.choose(BufferMode::Auto, limits, now), false);
    assert_eq!(big.rcvbuf, Some(6 << 20));
    assert_eq!(big.sndbuf, Some(4 << 20));
    // No kernel maximum: 500 Mbit/s × 200 ms × 2 = 25 MB: 32 MiB to send; + 62.5 MB/s
    // × 400 ms = 50 MB to receive: MAX_BUFFER.
    let unbounded = for_connection(sizing.choose(BufferMode::Auto, NO_LIMITS, now), false);
    assert_eq!(unbounded.sndbuf, Some(32 << 20));
    assert_eq!(unbounded.rcvbuf, Some(MAX_BUFFER));

    let mut slow = BufferSizing::default();
    let trickle = [Line {
        mbit: 1.0,
        rtt_ms: 20,
    }];
    let now = run(&mut slow, &trickle, Instant::now(), 3);
    let small = for_connection(slow.choose(BufferMode::Auto, limits, now), false);
    assert_eq!(small.rcvbuf, Some(MIN_BUFFER));
    assert_eq!(small.sndbuf, Some(MIN_BUFFER));
}

#[test]
fn an_idle_backup_wan_does_not_stretch_the_buffer_with_its_rtt() {
    // bad-backup with the far WAN demoted: it moves nothing.
    let lines = [
        Line {
            mbit: 50.0,
            rtt_ms: 15,
        },
        Line {
            mbit: 0.0,
            rtt_ms: 300,
        },
    ];
    let mut sizing = BufferSizing::default();
    let now = run(&mut sizing, &lines, Instant::now(), 5);
    let bdp = sizing.bdp(now).expect("one busy WAN");
    // 50 Mbit/s × 15 ms = 93.75 kB, not × 300 ms.
    assert!((bdp - 93_750.0).abs() < 500.0, "{bdp}");
    let chosen = for_connection(sizing.choose(BufferMode::Auto, NO_LIMITS, now), false);
    assert_eq!(chosen.sndbuf, Some(MIN_BUFFER));
    // 6.25 MB/s × (30 ms + 400 ms) = 2.7 MB: 4 MiB (with 300 ms it would be 8 MiB).
    assert_eq!(chosen.rcvbuf, Some(4 << 20));
}

#[test]
fn a_peak_rate_is_forgotten_after_the_rate_memory() {
    let mut sizing = BufferSizing::default();
    let start = Instant::now();
    let end = run(&mut sizing, &DSL_LTE, start, 5);
    assert!(sizing.bdp(end).is_some());
    // Both WANs go quiet: the counters stop moving.
    let quiet: Vec<(String, PathSample)> = (0..2)
        .map(|i| {
            let bytes = (DSL_LTE[i].mbit * MBIT * (TICK * 5).as_secs_f64()) as u64;
            let sample = PathSample {
                bytes,
                subflow_rtt: Some(Duration::from_millis(DSL_LTE[i].rtt_ms)),
                ..PathSample::default()
            };
            (format!("wan{i}"), sample)
        })
        .collect();
    let mut now = end;
    while now < end + RATE_MEMORY {
        now += TICK;
        sizing.observe(&quiet, now);
        if now <= end + RATE_MEMORY {
            assert!(sizing.bdp(now).is_some(), "forgotten early at {now:?}");
        }
    }
    now += TICK;
    sizing.observe(&quiet, now);
    assert_eq!(sizing.bdp(now), None);
    let chosen = for_connection(sizing.choose(BufferMode::Auto, NO_LIMITS, now), false);
    assert_eq!(chosen, unmeasured(BufferMode::Auto, NO_LIMITS));
}

#[test]
fn a_wan_that_leaves_the_samples_is_forgotten() {
    let mut sizing = BufferSizing::default();
    let now = run(&mut sizing, &DSL_LTE, Instant::now(), 3);
    sizing.observe(&[], now + TICK);
    assert_eq!(sizing.bdp(now + TICK), None);
}

#[test]
fn buffer_mode_parses_its_two_words() {
    assert_eq!("auto".parse::<BufferMode>(), Ok(BufferMode::Auto));
    assert_eq!("kernel".parse::<BufferMode>(), Ok(BufferMode::Kernel));
    assert!("big".parse::<BufferMode>().is_err());
}
