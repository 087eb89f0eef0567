//! The decision core with simulated time: every failover, Fast Open and reload rule.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::*;
use crate::config::{Config, Format};
use crate::model::wan::{Health, Mode, Wan};

const BASE: &str = r#"
[concentrator]
host = "192.0.2.1"
client_id = "home"
key = "abababababababababababababababababababababababababababababababab"

[health]
interval_ms = 1000
timeout_ms = 500
down_after = 2
up_after = 1
"#;

fn config(extra: &str) -> Arc<Config> {
    let text = format!("{BASE}{extra}");
    Arc::new(Config::parse(&text, Format::Toml, Path::new("core.toml")).expect("test config"))
}

/// The base config with one piece of text replaced.
fn replaced(from: &str, to: &str) -> Arc<Config> {
    let text = BASE.replace(from, to);
    assert_ne!(text, BASE, "{from:?} is in the base config");
    Arc::new(Config::parse(&text, Format::Toml, Path::new("core.toml")).expect("test config"))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

const VPS: &str = "192.0.2.1:4850";

/// A core after a first probe with `first_ok`, its start-up actions drained.
fn core(first_ok: bool, t0: Instant) -> Core {
    let mut core = Core::new(config(""), vec![addr(VPS)], first_ok, t0);
    assert_eq!(
        drain(&mut core),
        vec![],
        "no action before anything happened"
    );
    core
}

fn drain(core: &mut Core) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Hand the core a reloaded config, its concentrator resolved to `concentrator`.
fn reload(core: &mut Core, config: Arc<Config>, concentrator: SocketAddr, now: Instant) {
    core.handle(
        Input::Reload {
            config,
            concentrator: vec![concentrator],
        },
        now,
    );
}

/// Run the core's timer at `now` and return what it asked for.
fn tick(core: &mut Core, now: Instant) -> Vec<Action> {
    core.handle_timeout(now);
    drain(core)
}

/// Answer the running probe, confirm any table update, and return the actions.
fn answer(core: &mut Core, ok: bool, now: Instant) -> Vec<Action> {
    let result = if ok {
        Ok(ms(20))
    } else {
        Err("timed out".to_owned())
    };
    core.handle(
        Input::ProbeDone {
            result,
            fastopen: None,
        },
        now,
    );
    let actions = drain(core);
    for action in &actions {
        if let Action::ApplyRedirect(spec) = action {
            core.handle(
                Input::RedirectApplied {
                    spec: spec.clone(),
                    ok: true,
                },
                now,
            );
        }
    }
    actions
}

fn redirects(actions: &[Action]) -> Vec<bool> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ApplyRedirect(spec) => Some(spec.redirect),
            _ => None,
        })
        .collect()
}

/// A WAN with one /24 address `ip`, link up (shared with `core::hedge`'s tests).
pub(super) fn wan(name: &str, ip: &str, mode: Mode, health: Health) -> Wan {
    let net: IpNet = format!("{ip}/24").parse().expect("test prefix");
    Wan {
        name: name.to_owned(),
        device: format!("{name}0"),
        ifindex: 2,
        addresses: vec![net],
        gateway4: None,
        gateway6: None,
        point_to_point: false,
        mode,
        health,
        link_up: true,
        ra_routes: Vec::new(),
        dev_default4: false,
        dev_default6: false,
        metered: false,
        standby: false,
    }
}

#[test]
fn probes_every_interval_one_at_a_time() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    assert_eq!(core.poll_timeout(), Some(t0 + ms(1000)));
    assert_eq!(tick(&mut core, t0 + ms(999)), vec![]);
    assert_eq!(
        tick(&mut core, t0 + ms(1000)),
        vec![Action::StartProbe { fastopen: true }]
    );
    // While it runs there is no deadline and no second probe.
    assert_eq!(core.poll_timeout(), None);
    assert_eq!(tick(&mut core, t0 + ms(5000)), vec![]);
    answer(&mut core, true, t0 + ms(1100));
    assert_eq!(core.poll_timeout(), Some(t0 + ms(2100)));
}

#[test]
fn fails_open_after_down_after_failures_and_comes_back() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    tick(&mut core, t0 + ms(1000));
    let first = answer(&mut core, false, t0 + ms(1500));
    assert_eq!(
        redirects(&first),
        Vec::<bool>::new(),
        "one failure is not enough"
    );
    assert!(core.redirecting());
    tick(&mut core, t0 + ms(2500));
    let second = answer(&mut core, false, t0 + ms(3000));
    assert_eq!(redirects(&second), vec![false]);
    assert!(second.contains(&Action::Notice(Notice::FailOpen { up_for: ms(3000) })));
    assert!(!core.redirecting());
    tick(&mut core, t0 + ms(4000));
    let back = answer(&mut core, true, t0 + ms(4020));
    assert_eq!(redirects(&back), vec![true], "up_after = 1");
    assert!(back.contains(&Action::Notice(Notice::Redirecting { down_for: ms(1020) })));
}

#[test]
fn a_recent_wan_probe_keeps_the_redirect() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    // Window: the longer of interval × down_after + timeout (2.5 s) and a WAN's idle
    // probe interval + timeout (3 s + 1 s). A failed connection asks for a probe, which
    // a WAN's evidence does not skip; its failure is outvoted.
    core.handle(Input::WanReached(t0 + ms(900)), t0 + ms(900));
    for (start, end) in [(1000, 1500), (2500, 3000)] {
        core.handle(Input::UpstreamFailed, t0 + ms(start));
        tick(&mut core, t0 + ms(start));
        let actions = answer(&mut core, false, t0 + ms(end));
        assert_eq!(redirects(&actions), Vec::<bool>::new());
        assert!(actions.contains(&Action::Notice(Notice::ReachableViaWan)));
    }
    assert!(core.redirecting());
    // The periodic probe within the window is skipped.
    assert_eq!(tick(&mut core, t0 + ms(4000)), vec![]);
    // The WAN evidence ages out (at 4.9 s): two more failures fail open.
    let probe = tick(&mut core, t0 + ms(5000));
    assert_eq!(probe, vec![Action::StartProbe { fastopen: true }]);
    answer(&mut core, false, t0 + ms(5500));
    tick(&mut core, t0 + ms(6500));
    let actions = answer(&mut core, false, t0 + ms(7000));
    assert_eq!(redirects(&actions), vec![false]);
}

#[test]
fn rarely_probed_wans_vouch_for_longer() {
    let t0 = Instant::now();
    let mut core = Core::new(
        config("[[wan]]\nname = \"lte\"\nprobe_idle_interval_ms = 20000\n"),
        vec![addr(VPS)],
        true,
        t0,
    );
    drain(&mut core);
    core.handle(Input::WanReached(t0), t0);
    for s in 1..=21u64 {
        assert_eq!(tick(&mut core, t0 + ms(s * 1000)), vec![], "{s} s");
    }
    assert_eq!(
        tick(&mut core, t0 + ms(22_000)),
        vec![Action::StartProbe { fastopen: true }]
    );
}

#[test]
fn no_tcp_probe_while_wans_show_the_concentrator_reachable() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    // WAN probe datagrams every 2 s: no main-route probe for a minute.
    core.handle(Input::WanReached(t0 + ms(500)), t0 + ms(500));
    for s in 1..=60u64 {
        if s % 2 == 0 {
            core.handle(
                Input::WanReached(t0 + ms(s * 1000 - 10)),
                t0 + ms(s * 1000 - 10),
            );
        }
        let actions = tick(&mut core, t0 + ms(s * 1000));
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::StartProbe { .. })),
            "{s} s: {actions:?}"
        );
    }
    assert!(core.redirecting());
    // The WANs fall silent: the main-route probe comes back within the window.
    let mut probed = false;
    for s in 61..=66u64 {
        let actions = tick(&mut core, t0 + ms(s * 1000));
        if actions.contains(&Action::StartProbe { fastopen: true }) {
            probed = true;
            break;
        }
    }
    assert!(
        probed,
        "probing again once the WAN evidence is older than the window"
    );
}

#[test]
fn an_unreachable_concentrator_is_probed_soon_but_not_too_often() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    core.handle(Input::UpstreamFailed, t0 + ms(100));
    // The last probe ended at t0: the gap allows t0 + 250 ms.
    assert_eq!(core.poll_timeout(), Some(t0 + MIN_PROBE_GAP));
    core.handle(Input::UpstreamFailed, t0 + ms(600));
    assert_eq!(
        core.poll_timeout(),
        Some(t0 + MIN_PROBE_GAP),
        "no later, no earlier"
    );
    assert_eq!(
        tick(&mut core, t0 + ms(600)),
        vec![Action::StartProbe { fastopen: true }]
    );
    answer(&mut core, true, t0 + ms(650));
    core.handle(Input::UpstreamFailed, t0 + ms(660));
    assert_eq!(core.poll_timeout(), Some(t0 + ms(650) + MIN_PROBE_GAP));
}

#[test]
fn fast_open_turns_off_on_a_fallback_and_is_retried_once_a_minute() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    core.handle(
        Input::UpstreamConnected(FastOpenEvidence { mptcp: false }),
        t0 + ms(10),
    );
    let actions = drain(&mut core);
    assert!(actions.contains(&Action::Notice(Notice::FastOpen { on: false })));
    assert!(actions.contains(&Action::PublishUpstream(UpstreamChoice {
        concentrator: addr(VPS),
        fastopen: false,
        source: None,
        hedge: None,
        abandoned: Vec::new(),
        suspects: Vec::new(),
        buffers: fresh_buffers(),
        legs: Vec::new(),
    })));
    // Probes go without Fast Open until a minute has passed since the last try (t0).
    assert_eq!(
        tick(&mut core, t0 + ms(1000)),
        vec![Action::StartProbe { fastopen: false }]
    );
    answer(&mut core, true, t0 + ms(1010));
    let mut tried = None;
    while tried.is_none() {
        let at = core.poll_timeout().expect("a probe is due");
        assert!(at < t0 + ms(70_000), "Fast Open never retried");
        if let [Action::StartProbe { fastopen: true }] = tick(&mut core, at)[..] {
            tried = Some(at.duration_since(t0).as_millis());
        }
        answer(&mut core, true, at + ms(10));
    }
    // The first probe due a minute or more after the last try (t0), and no other.
    let tried = tried.expect("tried");
    assert!((60_000..61_020).contains(&tried), "tried at {tried} ms");
    // The retry worked: Fast Open is on again for everyone.
    core.handle(
        Input::ProbeDone {
            result: Ok(ms(20)),
            fastopen: Some(FastOpenEvidence { mptcp: true }),
        },
        t0 + ms(61_000),
    );
    let actions = drain(&mut core);
    assert!(actions.contains(&Action::Notice(Notice::FastOpen { on: true })));
    assert!(core.upstream().fastopen);
}

#[test]
fn new_connections_start_from_the_first_live_wan() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    let wans = vec![
        wan("lte", "10.9.0.2", Mode::Backup, Health::Up),
        wan("dsl", "10.1.0.2", Mode::On, Health::Down),
        wan("fibre", "10.2.0.2", Mode::On, Health::Up),
    ];
    core.handle(Input::WansPlanned(wans.clone()), t0);
    let source: IpAddr = "10.2.0.2".parse().expect("ip");
    let actions = drain(&mut core);
    assert!(actions.contains(&Action::Notice(Notice::Source(Some(source)))));
    assert_eq!(core.upstream().source, Some(source));
    // The same plan again changes nothing.
    core.handle(Input::WansPlanned(wans), t0);
    assert_eq!(drain(&mut core), vec![]);
    // Every `on` WAN down: the backup one.
    core.handle(
        Input::WansPlanned(vec![
            wan("lte", "10.9.0.2", Mode::Backup, Health::Up),
            wan("fibre", "10.2.0.2", Mode::On, Health::Down),
        ]),
        t0,
    );
    assert_eq!(
        core.upstream().source,
        Some("10.9.0.2".parse().expect("ip"))
    );
}

#[test]
fn a_refused_table_update_is_retried() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    for (start, end) in [(1000, 1500), (2500, 3000)] {
        tick(&mut core, t0 + ms(start));
        core.handle(
            Input::ProbeDone {
                result: Err("down".into()),
                fastopen: None,
            },
            t0 + ms(end),
        );
    }
    let actions = drain(&mut core);
    let Some(Action::ApplyRedirect(spec)) = actions
        .iter()
        .find(|a| matches!(a, Action::ApplyRedirect(_)))
        .cloned()
    else {
        panic!("no table update in {actions:?}");
    };
    core.handle(
        Input::RedirectApplied {
            spec: spec.clone(),
            ok: false,
        },
        t0 + ms(3000),
    );
    assert_eq!(core.poll_timeout(), Some(t0 + ms(3000) + REDIRECT_RETRY));
    assert!(tick(&mut core, t0 + ms(3000) + REDIRECT_RETRY).contains(&Action::ApplyRedirect(spec)));
}

#[test]
fn a_reload_with_nothing_changed_does_nothing() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    reload(&mut core, config(""), addr(VPS), t0);
    assert_eq!(drain(&mut core), vec![]);
}

#[test]
fn a_reload_of_the_wans_touches_only_the_control_plane() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    let new = config("[[wan]]\nname = \"wan\"\ndevice = \"eth1\"\n");
    reload(&mut core, new, addr(VPS), t0);
    let actions = drain(&mut core);
    assert_eq!(
        actions,
        vec![Action::Reconfigure(Changes {
            control: true,
            ..Changes::default()
        })],
        "no table update, no new upstream settings"
    );
}

#[test]
fn a_reload_of_the_bypass_list_keeps_the_fail_open_state() {
    let t0 = Instant::now();
    let mut core = core(false, t0);
    let new = config("[bypass]\ndestinations = [\"198.51.100.0/24\"]\n");
    reload(&mut core, new, addr(VPS), t0);
    let actions = drain(&mut core);
    let specs: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::ApplyRedirect(spec) => Some(spec),
            _ => None,
        })
        .collect();
    assert_eq!(specs.len(), 1, "{actions:?}");
    assert!(!specs[0].redirect, "still failed open");
    let bypassed: IpNet = "198.51.100.0/24".parse().expect("prefix");
    assert!(specs[0].bypass_dst.contains(&bypassed));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::PublishUpstream(_))));
}

#[test]
fn a_new_concentrator_is_used_by_new_connections_and_probed_at_once() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    core.handle(
        Input::UpstreamConnected(FastOpenEvidence { mptcp: false }),
        t0,
    );
    drain(&mut core);
    let new = replaced("192.0.2.1", "203.0.113.7");
    let vps2 = addr("203.0.113.7:4850");
    reload(&mut core, new, vps2, t0 + ms(400));
    let actions = drain(&mut core);
    assert!(actions.contains(&Action::PublishUpstream(UpstreamChoice {
        concentrator: vps2,
        fastopen: true,
        source: None,
        hedge: None,
        abandoned: Vec::new(),
        suspects: Vec::new(),
        buffers: fresh_buffers(),
        legs: Vec::new(),
    })));
    let spec = actions
        .iter()
        .find_map(|a| match a {
            Action::ApplyRedirect(spec) => Some(spec),
            _ => None,
        })
        .expect("the new concentrator is bypassed");
    let vps2_net = IpNet::from(vps2.ip());
    assert!(spec.bypass_dst.contains(&vps2_net));
    assert!(
        spec.redirect,
        "the redirect stays until probes say otherwise"
    );
    assert_eq!(
        core.poll_timeout(),
        Some(t0 + ms(400)),
        "probe the new one now"
    );
}

#[test]
fn a_reload_of_the_thresholds_applies_to_the_running_streak() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    tick(&mut core, t0 + ms(1000));
    answer(&mut core, false, t0 + ms(1100));
    let new = replaced("down_after = 2", "down_after = 5");
    reload(&mut core, new, addr(VPS), t0 + ms(1200));
    let actions = drain(&mut core);
    assert!(actions.contains(&Action::Reconfigure(Changes {
        health: true,
        ..Changes::default()
    })));
    for i in 0..3 {
        tick(&mut core, t0 + ms(2100 + i * 1000));
        answer(&mut core, false, t0 + ms(2200 + i * 1000));
    }
    assert!(core.redirecting(), "4 failures of 5");
    tick(&mut core, t0 + ms(5200));
    let actions = answer(&mut core, false, t0 + ms(5300));
    assert_eq!(redirects(&actions), vec![false]);
}

#[test]
fn a_data_plan_or_the_state_dir_changes_only_the_control_plane() {
    let old = config("[[wan]]\nname = \"lte\"\n");
    let vps = [addr(VPS)];
    for new in [
        config("[[wan]]\nname = \"lte\"\nmetered = true\nallowance = \"5GB\"\n"),
        config("[[wan]]\nname = \"lte\"\nreset_day = 14\n"),
        replaced("[concentrator]", "state_dir = \"/tmp/x\"\n[concentrator]"),
    ] {
        let base = if new.state_dir == old.state_dir {
            &old
        } else {
            &config("")
        };
        let changes = Changes::between(base, &new, &vps, &vps);
        let only_control = Changes {
            control: true,
            ..Changes::default()
        };
        assert_eq!(changes, only_control);
    }
}

#[test]
fn new_connections_hedge_from_the_next_wan_after_three_of_its_rtts() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    let wans = vec![
        wan("dsl", "10.1.0.2", Mode::On, Health::Up),
        wan("fibre", "10.2.0.2", Mode::On, Health::Up),
    ];
    core.handle(Input::WansPlanned(wans), t0);
    drain(&mut core);
    let (dsl, fibre): (IpAddr, IpAddr) = (
        "10.1.0.2".parse().expect("ip"),
        "10.2.0.2".parse().expect("ip"),
    );
    assert_eq!(core.upstream().source, Some(dsl));
    assert_eq!(
        core.upstream().hedge,
        Some(Hedge {
            source: fibre,
            after: hedge::HEDGE_UNMEASURED
        })
    );
    let rtt = |wan: &str, ms_: u64| Input::WanRtt {
        wan: wan.into(),
        rtt: ms(ms_),
    };
    core.handle(rtt("dsl", 100), t0 + ms(10));
    let published = Some(Hedge {
        source: fibre,
        after: ms(300),
    });
    let actions = drain(&mut core);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::PublishUpstream(c) if c.hedge == published)),
        "{actions:?}"
    );
    // The hedge's own RTT does not move the bound (it reorders only the protected
    // flows' legs: fibre is now the faster WAN).
    core.handle(rtt("fibre", 10), t0 + ms(20));
    let actions = drain(&mut core);
    assert!(
        actions
            .iter()
            .all(|a| matches!(a, Action::PublishUpstream(c)
            if c.hedge == published && c.legs[0].wan == "fibre")),
        "{actions:?}"
    );
}

#[test]
fn a_wan_a_hedge_won_against_starts_nothing_for_a_while_and_is_probed() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    let wans = vec![
        wan("dsl", "10.1.0.2", Mode::On, Health::Up),
        wan("fibre", "10.2.0.2", Mode::On, Health::Up),
    ];
    core.handle(Input::WansPlanned(wans), t0);
    drain(&mut core);
    let (dsl, fibre): (IpAddr, IpAddr) = (
        "10.1.0.2".parse().expect("ip"),
        "10.2.0.2".parse().expect("ip"),
    );
    let at = t0 + ms(300);
    let won = HedgeOutcome {
        primary: Some(dsl),
        hedge: fibre,
        hedge_won: true,
    };
    core.handle(Input::UpstreamHedged(won), at);
    let actions = drain(&mut core);
    assert!(actions.contains(&Action::Notice(Notice::HedgedAway {
        from: dsl,
        to: fibre
    })));
    assert!(actions.contains(&Action::Notice(Notice::Source(Some(fibre)))));
    assert_eq!(core.upstream().hedge.map(|h| h.source), Some(dsl));
    // The main-route probe comes as soon as the gap allows, not an interval later.
    assert_eq!(core.poll_timeout(), Some(at));
    assert_eq!(
        tick(&mut core, at),
        vec![Action::StartProbe { fastopen: true }]
    );
    answer(&mut core, true, at + ms(20));
    // A second win against the same WAN changes nothing new.
    core.handle(Input::UpstreamHedged(won), at + ms(30));
    assert!(!drain(&mut core)
        .iter()
        .any(|a| matches!(a, Action::Notice(Notice::HedgedAway { .. }))));
    // Its time up, the WAN starts new connections again.
    let back = at + ms(30) + hedge::SUSPECT_FOR;
    assert!(core.poll_timeout().is_some_and(|t| t <= back));
    core.handle_timeout(back);
    let actions = drain(&mut core);
    assert!(
        actions.contains(&Action::Notice(Notice::Source(Some(dsl)))),
        "{actions:?}"
    );
    assert_eq!(core.upstream().source, Some(dsl));
}

#[test]
fn a_late_primary_is_not_held_against_its_wan() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    core.handle(
        Input::WansPlanned(vec![
            wan("dsl", "10.1.0.2", Mode::On, Health::Up),
            wan("fibre", "10.2.0.2", Mode::On, Health::Up),
        ]),
        t0,
    );
    drain(&mut core);
    let (dsl, fibre): (IpAddr, IpAddr) = (
        "10.1.0.2".parse().expect("ip"),
        "10.2.0.2".parse().expect("ip"),
    );
    let late = HedgeOutcome {
        primary: Some(dsl),
        hedge: fibre,
        hedge_won: false,
    };
    core.handle(Input::UpstreamHedged(late), t0 + ms(500));
    assert_eq!(drain(&mut core), vec![]);
    assert_eq!(core.upstream().source, Some(dsl));
}

#[test]
fn without_kernel_fast_open_it_is_never_tried_nor_retried() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    core.set_kernel_fastopen(false);
    assert_eq!(
        drain(&mut core),
        vec![Action::PublishUpstream(UpstreamChoice {
            concentrator: addr(VPS),
            fastopen: false,
            source: None,
            hedge: None,
            abandoned: Vec::new(),
            suspects: Vec::new(),
            buffers: fresh_buffers(),
            legs: Vec::new(),
        })],
        "no notice: the start-up log names the missing feature once"
    );
    // Two minutes of probes: none with Fast Open.
    let mut at = t0;
    while at < t0 + ms(120_000) {
        at = core.poll_timeout().expect("a probe is due");
        for action in tick(&mut core, at) {
            assert_eq!(action, Action::StartProbe { fastopen: false }, "at {at:?}");
        }
        answer(&mut core, true, at + ms(10));
    }
    // A new concentrator does not bring it back either.
    reload(
        &mut core,
        replaced("192.0.2.1", "192.0.2.7"),
        addr("192.0.2.7:4850"),
        at + ms(20),
    );
    assert!(!core.upstream().fastopen);
}

/// `dsl-lte` as the control plane samples it: 40 Mbit/s at 10 ms and 60 Mbit/s at 60 ms,
/// `secs` seconds into a download.
fn dsl_lte_samples(secs: u64) -> Vec<(String, path_quality::PathSample)> {
    [("dsl", 40, 10), ("lte", 60, 60)]
        .into_iter()
        .map(|(name, mbit, rtt)| {
            let sample = path_quality::PathSample {
                bytes: mbit * 125_000 * secs,
                subflow_rtt: Some(ms(rtt)),
                ..Default::default()
            };
            (name.to_owned(), sample)
        })
        .collect()
}

fn published_buffers(actions: &[Action]) -> Vec<SocketBuffers> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PublishUpstream(choice) => Some(choice.buffers),
            _ => None,
        })
        .collect()
}

#[test]
fn new_connections_get_buffers_for_the_paths_bdp_unless_the_kernel_sizes_them() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    core.set_kernel_buffer_limits(KernelBufferLimits {
        rmem_max: Some(6 << 20),
        wmem_max: Some(4 << 20),
    });
    // Nothing measured: the unmeasured receive buffer within tcp_rmem's 6 MiB, at once.
    let unmeasured = SocketBuffers {
        rcvbuf: Some(6 << 20),
        sndbuf: None,
    };
    assert_eq!(published_buffers(&drain(&mut core)), vec![unmeasured]);
    core.handle(Input::PathSamples(dsl_lte_samples(0)), t0);
    assert_eq!(published_buffers(&drain(&mut core)), vec![], "no rate yet");
    core.handle(Input::PathSamples(dsl_lte_samples(2)), t0 + ms(2000));
    // 2 × 100 Mbit/s × 60 ms = 1.5 MB: 2 MiB to send; + 12.5 MB/s × 400 ms to receive,
    // 6.5 MB: within the 6 MiB maximum.
    let sized = SocketBuffers {
        rcvbuf: Some(6 << 20),
        sndbuf: Some(2 << 20),
    };
    assert_eq!(published_buffers(&drain(&mut core)), vec![sized]);
    assert_eq!(core.upstream().buffers, sized);
    // The same rates again: nothing new to publish.
    core.handle(Input::PathSamples(dsl_lte_samples(4)), t0 + ms(4000));
    assert_eq!(published_buffers(&drain(&mut core)), vec![]);

    // `buffers = "kernel"`: back to autotuning, and the samples change nothing.
    let kernel = config("[mptcp]\nbuffers = \"kernel\"\n");
    reload(&mut core, kernel, addr(VPS), t0 + ms(5000));
    let kernel_default = vec![SocketBuffers::default()];
    assert_eq!(published_buffers(&drain(&mut core)), kernel_default);
    core.handle(Input::PathSamples(dsl_lte_samples(6)), t0 + ms(6000));
    assert_eq!(published_buffers(&drain(&mut core)), vec![]);
}

/// The buffers of a core whose WANs have carried nothing yet (the default config).
fn fresh_buffers() -> SocketBuffers {
    super::buffers::unmeasured(
        super::buffers::BufferMode::Auto,
        KernelBufferLimits::default(),
    )
}

#[test]
fn a_suspect_and_a_wan_going_down_are_published_and_back_up_it_is_not() {
    let t0 = Instant::now();
    let mut core = core(true, t0);
    let mut wans = vec![
        wan("dsl", "10.1.0.2", Mode::On, Health::Up),
        wan("fibre", "10.2.0.2", Mode::On, Health::Up),
    ];
    core.handle(Input::WansPlanned(wans.clone()), t0);
    drain(&mut core);
    assert!(core.upstream().abandoned.is_empty());
    let dsl: IpAddr = "10.1.0.2".parse().expect("ip");
    // A hedge won against dsl makes it a suspect only.
    let outcome = HedgeOutcome {
        primary: Some(dsl),
        hedge: "10.2.0.2".parse().expect("ip"),
        hedge_won: true,
    };
    core.handle(Input::UpstreamHedged(outcome), t0 + ms(100));
    drain(&mut core);
    assert!(core.upstream().abandoned.is_empty());
    assert_eq!(core.upstream().suspects, vec![dsl]);
    wans[0].health = Health::Down;
    core.handle(Input::WansPlanned(wans.clone()), t0 + ms(900));
    let actions = drain(&mut core);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::PublishUpstream(c) if c.abandoned == vec![dsl])),
        "{actions:?}"
    );
    wans[0].health = Health::Up;
    core.handle(Input::WansPlanned(wans), t0 + ms(5000));
    let actions = drain(&mut core);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::PublishUpstream(c) if c.abandoned.is_empty())),
        "{actions:?}"
    );
}
