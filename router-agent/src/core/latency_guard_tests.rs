use super::*;

/// Ten megabytes: the rates below are in units of 10 MB/s (80 Mbit/s), so the windows
/// stay above [`MIN_WINDOW`].
const MB: u64 = 10_000_000;
const RELEASE: u32 = 64 << 20;

fn sample(bytes: u64, rtt_ms: u64) -> PathSample {
    PathSample {
        bytes,
        subflow_rtt: Some(Duration::from_millis(rtt_ms)),
        probe_rtt: None,
        loss: 0.0,
        loss_window_full: false,
    }
}

/// Two WANs at `rates` MB/s for `ticks` 2-second ticks from `start` (bytes from 0),
/// with subflow RTTs `rtt_ms`; returns the time of the last tick.
fn feed(
    guard: &mut LatencyGuard,
    start: Instant,
    rates: [u64; 2],
    rtt_ms: [u64; 2],
    ticks: u64,
) -> Instant {
    let mut now = start;
    for tick in 0..=ticks {
        now = start + Duration::from_secs(2 * tick);
        let samples = vec![
            (
                "wan1".to_owned(),
                sample(rates[0] * MB * 2 * tick, rtt_ms[0]),
            ),
            (
                "wan2".to_owned(),
                sample(rates[1] * MB * 2 * tick, rtt_ms[1]),
            ),
        ];
        guard.observe(&samples, now);
    }
    now
}

#[test]
fn the_window_is_the_sum_of_rates_times_the_base_rtt_plus_the_queue_target() {
    let t0 = Instant::now();
    let mut guard = LatencyGuard::default();
    // 50 + 70 MB/s, 20 ms: 120 MB/s × 30 ms = 3.6 MB.
    let now = feed(&mut guard, t0, [5, 7], [20, 20], 3);
    let window = guard.window(now).expect("busy WANs with RTTs");
    assert_eq!(window, 3_600_000, "120 MB/s × (20 + 10) ms");
}

#[test]
fn the_base_rtt_is_the_smallest_seen_so_a_standing_queue_does_not_widen_the_window() {
    let t0 = Instant::now();
    let mut guard = LatencyGuard::default();
    let idle = feed(&mut guard, t0, [5, 5], [20, 20], 2);
    // The queue inflates the subflows' RTT to 70 ms: the window keeps the 20 ms base.
    let loaded = feed(&mut guard, idle, [5, 5], [70, 70], 5);
    assert_eq!(guard.window(loaded), Some(3_000_000), "100 MB/s × 30 ms");
    // Past RTT_MEMORY the old minimum is forgotten.
    let later = feed(&mut guard, loaded, [5, 5], [70, 70], 160);
    assert_eq!(guard.window(later), Some(8_000_000), "100 MB/s × 80 ms");
}

#[test]
fn no_clamp_without_a_protected_flow_and_a_clamp_while_one_is_active() {
    let t0 = Instant::now();
    let mut guard = LatencyGuard::default();
    let now = feed(&mut guard, t0, [5, 7], [20, 20], 3);
    let idle = guard.view(true, RELEASE, now);
    assert_eq!(idle.clamp, None);
    assert_eq!(idle.window, Some(3_600_000));
    guard.flow(true, now);
    let on = guard.view(true, RELEASE, now);
    assert_eq!(on.clamp, Some(3_600_000));
    assert_eq!(on.protected_flows, 1);
    assert_eq!(
        guard.view(false, RELEASE, now).clamp,
        None,
        "latency_guard = false"
    );
}

#[test]
fn the_clamp_holds_after_the_last_flow_ends_then_releases() {
    let t0 = Instant::now();
    let mut guard = LatencyGuard::default();
    let now = feed(&mut guard, t0, [5, 7], [20, 20], 3);
    guard.flow(true, now);
    guard.flow(true, now);
    guard.flow(false, now + Duration::from_secs(1));
    assert_eq!(guard.next_deadline(), None, "one flow still active");
    let ended = now + Duration::from_secs(5);
    guard.flow(false, ended);
    assert_eq!(guard.next_deadline(), Some(ended + HOLD));
    let during = ended + HOLD - Duration::from_millis(1);
    assert!(guard.view(true, RELEASE, during).clamp.is_some());
    let after = ended + HOLD;
    assert_eq!(guard.view(true, RELEASE, after).clamp, None);
    guard.expire(after);
    assert_eq!(guard.next_deadline(), None);
}

#[test]
fn a_flow_that_restarts_within_the_hold_keeps_the_clamp_on() {
    let t0 = Instant::now();
    let mut guard = LatencyGuard::default();
    let now = feed(&mut guard, t0, [5, 7], [20, 20], 3);
    guard.flow(true, now);
    guard.flow(false, now + Duration::from_secs(1));
    guard.flow(true, now + Duration::from_secs(4));
    let later = now + HOLD * 3;
    assert!(guard.view(true, RELEASE, later).clamp.is_some());
    assert_eq!(guard.next_deadline(), None);
}

#[test]
fn a_window_at_or_above_the_release_buffer_is_no_clamp() {
    let t0 = Instant::now();
    let mut guard = LatencyGuard::default();
    // 1.25 GB/s × 40 ms = 50 MB: more than the 4 MiB connections get anyway.
    let now = feed(&mut guard, t0, [62, 63], [30, 30], 3);
    guard.flow(true, now);
    let view = guard.view(true, 4 << 20, now);
    assert_eq!(view.window, Some(50_000_000));
    assert_eq!(view.clamp, None);
}

#[test]
fn an_idle_bond_clamps_to_the_floor_and_the_estimate_grows_with_the_download() {
    let t0 = Instant::now();
    let mut guard = LatencyGuard::default();
    // Only probes: 1 kB/s, far below the idle rate: no busy WAN, no window yet.
    let mut now = t0;
    for tick in 0..3u64 {
        now = t0 + Duration::from_secs(2 * tick);
        let s = sample(2_000 * tick, 20);
        guard.observe(&[("wan1".into(), s), ("wan2".into(), s)], now);
    }
    guard.flow(true, now);
    assert_eq!(guard.window(now), None);
    assert_eq!(
        guard.view(true, RELEASE, now).clamp,
        None,
        "nothing to size it by"
    );
    // A download at what the floor lets through: each tick's peak lets the next one
    // through QUEUE_TARGET ÷ RTT (50 %) faster, until the 125 MB/s lines are full.
    let capacity = 125e6;
    let mut rate = f64::from(MIN_WINDOW) / 0.020;
    let mut bytes = 0.0;
    let mut ticks = 0;
    while rate < capacity * 0.99 {
        now += Duration::from_secs(2);
        bytes += rate * 2.0;
        let half = (bytes / 2.0) as u64;
        let s = sample(half, 20);
        guard.observe(&[("wan1".into(), s), ("wan2".into(), s)], now);
        let window = guard.view(true, RELEASE, now).clamp.expect("clamped");
        rate = (f64::from(window) / 0.020).min(capacity);
        ticks += 1;
        assert!(
            ticks < 10,
            "the window grows too slowly: {window} after {ticks} ticks"
        );
    }
}

#[test]
fn a_wan_that_stopped_carrying_traffic_drops_out_of_the_window() {
    let t0 = Instant::now();
    let mut guard = LatencyGuard::default();
    let now = feed(&mut guard, t0, [5, 7], [20, 20], 3);
    // Only wan2 reported from now on: wan1 is forgotten.
    let later = now + Duration::from_secs(2);
    let s = sample(7 * MB * 2 * 4, 20);
    guard.observe(&[("wan2".into(), s)], later);
    assert_eq!(guard.window(later), Some(2_100_000), "70 MB/s × 30 ms");
}

#[test]
fn wide_downloads_are_paced_at_the_fill_share_then_the_pace_share_until_released() {
    let t0 = Instant::now();
    let mut guard = LatencyGuard::default();
    let now = feed(&mut guard, t0, [5, 7], [20, 20], 3);
    let release = 9 << 20;
    guard.note_release(release);
    assert_eq!(
        guard.view(true, release, now).pace,
        None,
        "no protected flow"
    );
    guard.flow(true, now);
    let fill = guard.fill(now).expect("busy WANs");
    // 9 MiB filled at 120 MB/s × (1 − 0.25).
    let want = f64::from(release) / (120e6 * (1.0 - FILL_SHARE));
    assert!((fill.as_secs_f64() - want).abs() < 1e-6, "{fill:?}");
    assert_eq!(guard.next_deadline(), Some(now + fill));
    assert_eq!(guard.view(true, release, now).pace, Some(30_000_000));
    assert_eq!(guard.view(false, release, now).pace, None, "guard off");
    guard.set_pacing(false);
    let unpaced = guard.view(true, release, now);
    assert_eq!(
        (unpaced.clamp.is_some(), unpaced.pace),
        (true, None),
        "pacing off"
    );
    guard.set_pacing(true);
    guard.expire(now + fill);
    assert_eq!(guard.next_deadline(), None);
    let steady = now + fill;
    assert_eq!(guard.view(true, release, steady).pace, Some(102_000_000));
    // A second flow does not start another fill.
    guard.flow(true, steady);
    assert_eq!(guard.next_deadline(), None);
    guard.flow(false, steady);
    guard.flow(false, steady);
    assert!(guard.view(true, release, steady + HOLD / 2).pace.is_some());
    assert_eq!(guard.view(true, release, steady + HOLD).pace, None);
    guard.expire(steady + HOLD);
    // Armed again after the hold: a new fill.
    let again = steady + HOLD * 2;
    guard.flow(true, again);
    assert_eq!(guard.next_deadline(), Some(again + fill));
}

#[test]
fn the_fill_is_at_most_max_fill_and_none_without_traffic() {
    let t0 = Instant::now();
    let mut guard = LatencyGuard::default();
    guard.note_release(u32::MAX);
    assert_eq!(guard.fill(t0), None, "no busy WAN");
    let now = feed(&mut guard, t0, [5, 7], [20, 20], 3);
    assert_eq!(guard.fill(now), Some(MAX_FILL));
    // Not paced where no clamp is: the paths' window is no narrower than the buffers.
    guard.flow(true, now);
    assert_eq!(guard.view(true, 1 << 20, now).pace, None);
}

/// The whole core: a protected flow's start and end, the counter tick's samples, the
/// hold's timer and a reload that turns the guard off.
mod in_the_core {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, Format};
    use crate::core::{Action, Core, Input};

    fn config(guard: bool) -> Arc<Config> {
        let text = format!(
            "[concentrator]\nhost = \"192.0.2.1\"\nclient_id = \"home\"\n\
             key = \"{}\"\n[udp]\nlatency_guard = {guard}\n",
            "ab".repeat(32)
        );
        Arc::new(Config::parse(&text, Format::Toml, Path::new("guard.toml")).expect("config"))
    }

    fn views(core: &mut Core) -> Vec<GuardView> {
        std::iter::from_fn(|| core.poll_action())
            .filter_map(|a| match a {
                Action::BulkWindow(view) => Some(view),
                _ => None,
            })
            .collect()
    }

    fn samples(secs: u64) -> Vec<(String, PathSample)> {
        let s = |mbyte_per_s: u64| sample(mbyte_per_s * MB * secs, 20);
        vec![("wan1".into(), s(5)), ("wan2".into(), s(7))]
    }

    /// A core with the guard on whose WANs carried 120 MB/s for 2 s (from `t0`).
    fn measured(t0: Instant) -> (Core, std::net::SocketAddr) {
        let vps = "192.0.2.1:4850".parse().unwrap();
        let mut core = Core::new(config(true), vec![vps], true, t0);
        core.handle(Input::PathSamples(samples(0)), t0);
        core.handle(Input::PathSamples(samples(2)), t0 + Duration::from_secs(2));
        (core, vps)
    }

    #[test]
    fn a_protected_flow_clamps_the_bulk_buffers_until_the_hold_after_it_ends() {
        let t0 = Instant::now();
        let (mut core, _) = measured(t0);
        let idle = views(&mut core);
        assert!(idle.iter().all(|v| v.clamp.is_none()), "no clamp: {idle:?}");

        let start = t0 + Duration::from_secs(3);
        core.handle(Input::ProtectedFlow { started: true }, start);
        let on = views(&mut core);
        assert_eq!(on.len(), 1, "{on:?}");
        assert_eq!(on[0].clamp, Some(3_600_000), "120 MB/s × (20 + 10) ms");
        assert_eq!(on[0].protected_flows, 1);
        assert!(on[0].release > 3_600_000);
        assert_eq!(on[0].pace, Some(30_000_000), "the fill share of 120 MB/s");
        // The fill phase ends by the timer: the wide downloads' steady share.
        assert!(core.poll_timeout().is_some_and(|at| at <= start + MAX_FILL));
        core.handle_timeout(start + MAX_FILL);
        let steady = views(&mut core);
        assert_eq!(steady.len(), 1, "{steady:?}");
        assert_eq!(
            steady[0].pace,
            Some(102_000_000),
            "the pace share of 120 MB/s"
        );
        assert_eq!(steady[0].clamp, Some(3_600_000));

        let end = start + Duration::from_secs(30);
        core.handle(Input::ProtectedFlow { started: false }, end);
        assert_eq!(views(&mut core)[0].clamp, Some(3_600_000), "held");
        assert_eq!(core.poll_timeout().map(|at| at <= end + HOLD), Some(true));
        core.handle_timeout(end + HOLD);
        let off = views(&mut core);
        assert_eq!(off.len(), 1, "{off:?}");
        assert_eq!(off[0].clamp, None, "released after the hold");
        assert_eq!(off[0].pace, None, "unpaced after the hold");
    }

    #[test]
    fn a_reload_with_the_guard_off_releases_a_clamp() {
        let t0 = Instant::now();
        let (mut core, vps) = measured(t0);
        core.handle(
            Input::ProtectedFlow { started: true },
            t0 + Duration::from_secs(2),
        );
        assert!(views(&mut core).last().is_some_and(|v| v.clamp.is_some()));
        let reload = Input::Reload {
            config: config(false),
            concentrator: vec![vps],
        };
        core.handle(reload, t0 + Duration::from_secs(3));
        let after = views(&mut core);
        assert_eq!(after.len(), 1, "{after:?}");
        assert_eq!((after[0].enabled, after[0].clamp), (false, None));
        assert_eq!(core.latency_guard(), after[0]);
    }

    /// `MPBOND_GUARD_PACE=0` (read by the shell, given to the core): the clamp still
    /// holds, and the published view, which the shell applies and the status shows, has
    /// no pace.
    #[test]
    fn with_the_pacing_off_the_view_clamps_but_shows_no_pace() {
        let t0 = Instant::now();
        let (mut core, _) = measured(t0);
        core.set_guard_pacing(false, t0 + Duration::from_secs(2));
        let idle = views(&mut core);
        assert!(idle.iter().all(|v| v.clamp.is_none()), "no clamp: {idle:?}");
        let start = t0 + Duration::from_secs(3);
        core.handle(Input::ProtectedFlow { started: true }, start);
        let on = views(&mut core);
        assert_eq!(on.len(), 1, "{on:?}");
        assert_eq!((on[0].clamp, on[0].pace), (Some(3_600_000), None));
        assert_eq!(core.latency_guard(), on[0]);
        // Turned on while clamped: the pace is published at once.
        core.set_guard_pacing(true, start);
        let paced = views(&mut core);
        assert_eq!(paced.len(), 1, "{paced:?}");
        assert_eq!(paced[0].pace, Some(30_000_000));
    }
}

mod fast_open {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, Format};
    use crate::core::{Action, Core, Input};

    #[test]
    fn new_connections_do_without_fast_open_while_the_clamp_holds() {
        let text = format!(
            "[concentrator]\nhost = \"192.0.2.1\"\nclient_id = \"home\"\nkey = \"{}\"\n",
            "ab".repeat(32)
        );
        let config = Config::parse(&text, Format::Toml, Path::new("g.toml")).expect("config");
        let t0 = Instant::now();
        let vps = "192.0.2.1:4850".parse().unwrap();
        let mut core = Core::new(Arc::new(config), vec![vps], true, t0);
        let s = |secs: u64| vec![("wan1".to_owned(), sample(10 * MB * secs, 20))];
        core.handle(Input::PathSamples(s(0)), t0);
        core.handle(Input::PathSamples(s(2)), t0 + Duration::from_secs(2));
        assert!(core.upstream().fastopen);
        let fastopen = |core: &mut Core| -> Vec<bool> {
            std::iter::from_fn(|| core.poll_action())
                .filter_map(|a| match a {
                    Action::PublishUpstream(choice) => Some(choice.fastopen),
                    _ => None,
                })
                .collect()
        };
        fastopen(&mut core);
        core.handle(
            Input::ProtectedFlow { started: true },
            t0 + Duration::from_secs(3),
        );
        assert_eq!(fastopen(&mut core), vec![false]);
        core.handle(
            Input::ProtectedFlow { started: false },
            t0 + Duration::from_secs(4),
        );
        assert_eq!(fastopen(&mut core), Vec::<bool>::new(), "held");
        core.handle_timeout(t0 + Duration::from_secs(4) + HOLD);
        assert_eq!(fastopen(&mut core), vec![true], "released: Fast Open again");
    }

    #[test]
    fn new_connections_open_with_the_clamp_as_their_receive_buffer() {
        let t0 = Instant::now();
        let vps = "192.0.2.1:4850".parse().unwrap();
        let mut core = Core::new(in_the_core_config(), vec![vps], true, t0);
        let s = |secs: u64| vec![("wan1".to_owned(), sample(10 * MB * secs, 20))];
        core.handle(Input::PathSamples(s(0)), t0);
        core.handle(Input::PathSamples(s(2)), t0 + Duration::from_secs(2));
        let wide = core.upstream().buffers.rcvbuf;
        while core.poll_action().is_some() {}
        core.handle(
            Input::ProtectedFlow { started: true },
            t0 + Duration::from_secs(3),
        );
        let clamp = core.latency_guard().clamp;
        assert!(clamp.is_some(), "clamped");
        assert!(clamp < wide, "{clamp:?} below {wide:?}");
        let published: Vec<_> = std::iter::from_fn(|| core.poll_action())
            .filter_map(|a| match a {
                Action::PublishUpstream(choice) => Some(choice.buffers.rcvbuf),
                _ => None,
            })
            .collect();
        assert_eq!(published, vec![clamp], "opened small, never shrunk after");
        core.handle(
            Input::ProtectedFlow { started: false },
            t0 + Duration::from_secs(4),
        );
        core.handle_timeout(t0 + Duration::from_secs(4) + HOLD);
        assert_eq!(core.upstream().buffers.rcvbuf, wide, "released: wide again");
    }

    fn in_the_core_config() -> Arc<Config> {
        let text = format!(
            "[concentrator]\nhost = \"192.0.2.1\"\nclient_id = \"home\"\nkey = \"{}\"\n",
            "ab".repeat(32)
        );
        Arc::new(Config::parse(&text, Format::Toml, Path::new("g.toml")).expect("config"))
    }
}
