//! The control loop's logic without root: [`Reconciler`] driven through a fake
//! [`KernelPort`] (a strict `RecordingBackend` plus a settable snapshot), the WAN book's
//! link and probe handling, probe targets and subflow counting.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::reconcile::{KernelPort, Reconciler};
use super::subflows::SubflowCounter;
use crate::core::preferred_source;
use crate::model::netops::{Endpoint, KernelState, NetOp, Ownership};
use crate::model::routing::fixture::{caps, default_via, ip, lan, link};
use crate::model::routing::DownReaction;
use crate::model::wan::{discover, Health, LinkInfo, Mode, Snapshot, WanSettings, WanSpec};
use crate::model::wan_book::{probe_targets, WanEvent};
use crate::model::wan_health::ProbeSettings;
use crate::net::backend::{NetBackend, NetError, RecordingBackend};
use crate::net::mptcp_pm::{PmEvent, PmEventKind};

/// The kernel: a strict recording backend, a snapshot the test edits, and a refusal hook.
struct Fake {
    backend: RecordingBackend,
    snapshot: Snapshot,
    rp_filter: Vec<String>,
    /// Ops matching this are refused once each time it is set.
    refuse: Option<fn(&NetOp) -> bool>,
}

impl Fake {
    fn new(snapshot: Snapshot) -> Fake {
        Fake {
            backend: RecordingBackend::new(KernelState::default()),
            snapshot,
            rp_filter: Vec::new(),
            refuse: None,
        }
    }

    fn link(&mut self, name: &str) -> &mut LinkInfo {
        self.snapshot
            .links
            .iter_mut()
            .find(|l| l.name == name)
            .expect("test link")
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        self.backend.state.endpoints.iter().cloned().collect()
    }
}

impl NetBackend for Fake {
    fn dump(&mut self) -> impl Future<Output = Result<KernelState, NetError>> {
        std::future::ready(Ok(self.backend.state.clone()))
    }

    fn apply(&mut self, op: &NetOp) -> impl Future<Output = Result<(), NetError>> {
        let refused = self.refuse.take_if(|refuse| refuse(op)).is_some();
        std::future::ready(if refused {
            Err(NetError::Other(format!("refused {op:?}")))
        } else {
            self.backend.apply_now(op)
        })
    }
}

impl KernelPort for Fake {
    fn snapshot(&mut self) -> impl Future<Output = Result<Snapshot, NetError>> {
        std::future::ready(Ok(self.snapshot.clone()))
    }

    fn loosen_rp_filter(&mut self, device: &str) -> Result<(), NetError> {
        self.rp_filter.push(device.to_owned());
        Ok(())
    }
}

/// The test bed's router: LAN `br-lan`, WANs wan1 (10.200.1.2) and wan2 (10.200.2.2).
fn two_wans() -> Snapshot {
    Snapshot {
        links: vec![
            link(2, "br-lan", &["192.168.50.1/24"]),
            link(3, "wan1", &["10.200.1.2/24"]),
            link(4, "wan2", &["10.200.2.2/24"]),
        ],
        routes: vec![
            default_via(3, "10.200.1.1", false),
            default_via(4, "10.200.2.1", false),
        ],
    }
}

fn settings() -> WanSettings {
    WanSettings {
        wans: Vec::new(),
        default_probe: ProbeSettings {
            down: 2,
            up: 1,
            ..ProbeSettings::default()
        },
    }
}

fn reconciler(settings: WanSettings) -> Reconciler {
    Reconciler::new(settings, lan(), Ownership::default(), caps())
}

/// The test bed's two WANs after a first reconcile with [`settings`].
async fn reconciled_two_wans() -> (Fake, Reconciler) {
    let mut fake = Fake::new(two_wans());
    let mut r = reconciler(settings());
    r.reconcile(&mut fake).await.expect("reconcile");
    (fake, r)
}

fn endpoint_addrs(fake: &Fake) -> Vec<IpAddr> {
    fake.endpoints().iter().map(|e| e.addr).collect()
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn first_reconcile_builds_everything_and_the_second_does_nothing() {
    block_on(async {
        let mut fake = Fake::new(two_wans());
        let mut r = reconciler(settings());
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        assert_eq!(out.failed, 0);
        assert_eq!(out.wans.len(), 2, "br-lan is not a WAN");
        assert_eq!(
            endpoint_addrs(&fake),
            vec![ip("10.200.1.2"), ip("10.200.2.2")]
        );
        assert_eq!(fake.backend.state.rules.len(), 2);
        assert_eq!(fake.rp_filter, vec!["wan1", "wan2"]);
        assert_eq!(out.plan.tables.get("wan1"), Some(&2000));

        let again = r.reconcile(&mut fake).await.expect("reconcile");
        assert!(again.applied.is_empty(), "{:?}", again.applied);
        assert_eq!(fake.rp_filter.len(), 2, "rp_filter is set once per device");
    });
}

#[test]
fn carrier_loss_marks_the_wan_down_at_once_and_return_brings_it_back() {
    block_on(async {
        let (mut fake, mut r) = reconciled_two_wans().await;

        fake.link("wan1").up = false;
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        assert_eq!(
            out.events,
            vec![WanEvent::Down {
                name: "wan1".into(),
                device: "wan1".into(),
                reason: "link_down"
            }]
        );
        assert_eq!(endpoint_addrs(&fake), vec![ip("10.200.2.2")]);
        assert_eq!(r.book.health_map().get("wan1"), Some(&Health::Down));
        // Probes of a lost link are ignored.
        assert!(r
            .book
            .record("wan1", Some(Duration::from_millis(5)), Instant::now())
            .is_empty());

        fake.link("wan1").up = true;
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        assert!(matches!(&out.events[..], [WanEvent::LinkRestored { name, .. }] if name == "wan1"));
        assert_eq!(
            endpoint_addrs(&fake),
            vec![ip("10.200.1.2"), ip("10.200.2.2")]
        );

        // Unknown → Up after a restored link re-adds the endpoint, which existed already.
        let events = r
            .book
            .record("wan1", Some(Duration::from_millis(5)), Instant::now());
        assert!(matches!(&events[..], [WanEvent::Up { name, .. }] if name == "wan1"));
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        let wan1 = fake
            .endpoints()
            .into_iter()
            .find(|e| e.addr == ip("10.200.1.2"))
            .expect("wan1 endpoint");
        assert_eq!(
            out.applied,
            vec![NetOp::DelEndpoint(wan1.clone()), NetOp::AddEndpoint(wan1)]
        );
    });
}

#[test]
fn address_removal_is_a_link_loss() {
    block_on(async {
        let (mut fake, mut r) = reconciled_two_wans().await;
        fake.link("wan2").addrs.clear();
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        assert!(matches!(
            &out.events[..],
            [WanEvent::Down { name, reason: "no_address", .. }] if name == "wan2"
        ));
        assert_eq!(endpoint_addrs(&fake), vec![ip("10.200.1.2")]);
        assert_eq!(fake.backend.state.rules.len(), 1);
    });
}

#[test]
fn probe_failures_withdraw_the_endpoint_and_recovery_re_adds_it_with_the_delete_reaction() {
    block_on(async {
        let (mut fake, mut r) = reconciled_two_wans().await;
        r.set_down_reaction(DownReaction::Delete);
        assert!(r.book.record("wan1", None, Instant::now()).is_empty());
        let events = r.book.record("wan1", None, Instant::now());
        assert!(matches!(
            &events[..],
            [WanEvent::Down {
                reason: "probe",
                ..
            }]
        ));
        assert!(events[0].changes_plan());
        r.reconcile(&mut fake).await.expect("reconcile");
        assert_eq!(endpoint_addrs(&fake), vec![ip("10.200.2.2")]);
        assert_eq!(
            fake.backend.state.rules.len(),
            2,
            "a WAN down by probe keeps its rule so it can still be probed"
        );

        let events = r
            .book
            .record("wan1", Some(Duration::from_millis(5)), Instant::now());
        assert!(matches!(&events[..], [WanEvent::Up { .. }]));
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        // The diff adds the endpoint back; no extra refresh of a fresh endpoint.
        assert_eq!(out.applied.len(), 1, "{:?}", out.applied);
        assert!(matches!(&out.applied[0], NetOp::AddEndpoint(e) if e.addr == ip("10.200.1.2")));
    });
}

#[test]
fn probe_failures_leave_the_endpoint_alone_and_recovery_refreshes_it() {
    block_on(async {
        let (mut fake, mut r) = reconciled_two_wans().await;
        assert!(r.book.record("wan1", None, Instant::now()).is_empty());
        assert!(r.book.record("wan1", None, Instant::now())[0].changes_plan());
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        assert_eq!(out.applied, vec![], "live subflows on wan1 are left alone");
        assert_eq!(
            endpoint_addrs(&fake),
            vec![ip("10.200.1.2"), ip("10.200.2.2")]
        );

        let events = r
            .book
            .record("wan1", Some(Duration::from_millis(5)), Instant::now());
        assert!(matches!(&events[..], [WanEvent::Up { .. }]));
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        // Back up: its endpoint is re-added so new subflows start on it at once.
        assert!(
            out.applied
                .iter()
                .any(|op| matches!(op, NetOp::AddEndpoint(e) if e.addr == ip("10.200.1.2"))),
            "{:?}",
            out.applied
        );
        assert_eq!(
            endpoint_addrs(&fake),
            vec![ip("10.200.1.2"), ip("10.200.2.2")]
        );
    });
}

#[test]
fn a_refused_op_is_retried_by_the_next_reconcile() {
    block_on(async {
        let mut fake = Fake::new(two_wans());
        fake.refuse = Some(|op| matches!(op, NetOp::AddEndpoint(_)));
        let mut r = reconciler(settings());
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        assert_eq!(out.failed, 1);
        assert_eq!(fake.endpoints().len(), 1, "the other ops still ran");
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        assert_eq!(out.failed, 0);
        assert_eq!(out.applied.len(), 1);
        assert_eq!(fake.endpoints().len(), 2);
    });
}

#[test]
fn no_wans_is_not_an_error() {
    block_on(async {
        let mut fake = Fake::new(Snapshot {
            links: vec![link(2, "br-lan", &["192.168.50.1/24"])],
            routes: Vec::new(),
        });
        let mut r = reconciler(settings());
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        assert!(out.wans.is_empty());
        assert!(fake.endpoints().is_empty());
    });
}

#[test]
fn a_configured_wan_without_its_device_is_down_and_planned_when_it_appears() {
    block_on(async {
        let mut cfg = settings();
        cfg.wans = ["wan1", "lte"]
            .iter()
            .map(|n| WanSpec {
                name: (*n).into(),
                device: (*n).into(),
                mode: Mode::On,
                probe: ProbeSettings::default(),
                metering: Default::default(),
            })
            .collect();
        let mut fake = Fake::new(two_wans());
        let mut r = reconciler(cfg);
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        assert!(matches!(
            &out.events[..],
            [WanEvent::Down { name, reason: "no_device", .. }] if name == "lte"
        ));
        assert_eq!(endpoint_addrs(&fake), vec![ip("10.200.1.2")]);

        fake.snapshot
            .links
            .push(link(9, "lte", &["192.168.8.100/24"]));
        fake.snapshot
            .routes
            .push(default_via(9, "192.168.8.1", false));
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        assert!(matches!(&out.events[..], [WanEvent::LinkRestored { name, .. }] if name == "lte"));
        assert_eq!(
            endpoint_addrs(&fake),
            vec![ip("10.200.1.2"), ip("192.168.8.100")]
        );
        assert_eq!(fake.rp_filter, vec!["wan1", "lte"]);
    });
}

#[test]
fn probe_targets_follow_the_concentrator_family() {
    let mut snapshot = two_wans();
    snapshot.links[2].addrs[0].addr = ip("2001:db8:202::2");
    snapshot.links[2].addrs[0].prefix_len = 64;
    let wans = discover(
        &snapshot,
        &settings(),
        &["br-lan".into()],
        &Default::default(),
    );
    let v4: SocketAddr = "192.0.2.1:4850".parse().expect("literal");
    let targets = probe_targets(&wans, v4);
    assert_eq!(targets.len(), 1, "wan2 has no IPv4 address: {targets:?}");
    assert_eq!(targets["wan1"].src, ip("10.200.1.2"));
    assert_eq!(targets["wan1"].device, "wan1");
    let v6: SocketAddr = "[2001:db8:100::1]:4850".parse().expect("literal");
    let targets = probe_targets(&wans, v6);
    assert_eq!(
        targets.keys().collect::<Vec<_>>(),
        vec!["wan2"],
        "only wan2 has IPv6"
    );
}

#[test]
fn subflows_are_counted_per_wan() {
    let snapshot = two_wans();
    let wans = discover(
        &snapshot,
        &settings(),
        &["br-lan".into()],
        &Default::default(),
    );
    let ev = |kind, token, saddr: &str, sport, ifindex| PmEvent {
        kind,
        token,
        saddr: Some(ip(saddr)),
        daddr: Some(ip("192.0.2.1")),
        sport: Some(sport),
        dport: Some(4850),
        loc_id: None,
        rem_id: None,
        ifindex,
        backup: None,
        error: None,
    };
    let mut c = SubflowCounter::default();
    assert!(c.on_event(&ev(PmEventKind::Established, 7, "10.200.1.2", 1000, None)));
    assert!(c.on_event(&ev(
        PmEventKind::SubEstablished,
        7,
        "10.200.2.2",
        1001,
        Some(4)
    )));
    assert!(c.on_event(&ev(
        PmEventKind::SubEstablished,
        8,
        "10.200.2.2",
        1002,
        Some(4)
    )));
    assert_eq!((c.count(&wans[0]), c.count(&wans[1])), (1, 2));
    assert!(c.on_event(&ev(PmEventKind::SubClosed, 8, "10.200.2.2", 1002, Some(4))));
    assert_eq!(c.count(&wans[1]), 1);
    assert!(c.on_event(&ev(PmEventKind::Closed, 7, "10.200.1.2", 1000, None)));
    assert_eq!((c.count(&wans[0]), c.count(&wans[1])), (0, 0));
    assert!(!c.on_event(&ev(PmEventKind::SubClosed, 99, "10.200.1.2", 1, None)));
}

#[test]
fn new_connections_start_from_the_first_live_wan() {
    let snapshot = two_wans();
    let v4: SocketAddr = "192.0.2.1:4850".parse().expect("literal");
    let lan = ["br-lan".to_string()];
    let source = |health: &[(&str, Health)]| {
        let map = health.iter().map(|(n, h)| (n.to_string(), *h)).collect();
        preferred_source(&discover(&snapshot, &settings(), &lan, &map), v4)
    };
    // Before any probe verdict the main route decides.
    assert_eq!(source(&[]), None);
    assert_eq!(
        source(&[("wan1", Health::Up), ("wan2", Health::Up)]),
        Some(ip("10.200.1.2"))
    );
    // The main-route WAN is dead: start from the live one.
    assert_eq!(
        source(&[("wan1", Health::Down), ("wan2", Health::Up)]),
        Some(ip("10.200.2.2"))
    );
    assert_eq!(
        source(&[("wan1", Health::Down), ("wan2", Health::Degraded)]),
        Some(ip("10.200.2.2"))
    );
    assert_eq!(
        source(&[("wan1", Health::Down), ("wan2", Health::Down)]),
        None
    );
}

#[test]
fn a_metered_wan_gets_its_endpoint_in_the_reconcile_that_sees_the_primary_die() {
    block_on(async {
        let mut cfg = settings();
        cfg.wans = ["wan1", "wan2"]
            .iter()
            .map(|n| WanSpec {
                name: (*n).into(),
                device: (*n).into(),
                mode: Mode::On,
                probe: ProbeSettings::default(),
                metering: crate::model::wan::Metering {
                    metered: *n == "wan2",
                    ..Default::default()
                },
            })
            .collect();
        let mut fake = Fake::new(two_wans());
        let mut r = reconciler(cfg);
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        assert_eq!(endpoint_addrs(&fake), vec![ip("10.200.1.2")]);
        assert!(out.wans[1].metered && out.wans[1].standby);
        assert!(
            out.plan.tables.contains_key("wan2"),
            "probed through its table"
        );

        fake.link("wan1").up = false;
        let out = r.reconcile(&mut fake).await.expect("reconcile");
        assert_eq!(endpoint_addrs(&fake), vec![ip("10.200.2.2")]);
        assert!(!out.wans[1].standby);
        assert!(out.metered_wake.is_none());

        // Past its allowance, it is still the last resort.
        assert!(r.set_over_allowance(["wan2".to_owned()].into()));
        assert!(!r.set_over_allowance(["wan2".to_owned()].into()));
        r.reconcile(&mut fake).await.expect("reconcile");
        assert_eq!(endpoint_addrs(&fake), vec![ip("10.200.2.2")]);
    });
}
