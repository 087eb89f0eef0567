//! Property tests of [`diff`]: applying `diff(current, desired)` to `current` yields
//! `desired` and is never refused.
//!
//! The crate has no `proptest` dev-dependency (only helper H may touch Cargo.toml in this
//! wave), so the cases come from the workspace's seeded xorshift generator (`mpbond_testkit`): deterministic, and a
//! failure prints the seed of the case.
//!
//! * Arbitrary kernel states (unique route keys, endpoint ids and addresses, as the
//!   kernel enforces) through a lenient backend: the kernel's own refusals only.
//! * States planned from random WAN sets (random addresses, gateways, modes, health, link
//!   state, point-to-point, IPv6) through a strict backend: the ordering invariants too.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use mpbond_testkit::Xorshift;

use super::fixture::{caps, default_via, lan, link};
use crate::model::netops::{Endpoint, KernelState, Limits, Ownership, Route, Rule};
use crate::model::routing::{diff, plan_with, Slots};
use crate::model::wan::{discover, AddrInfo, Health, Mode, Snapshot, WanSettings};
use crate::net::backend::RecordingBackend;

/// The workspace's seeded test generator, with the two draws these cases use.
struct Rng(Xorshift);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n.max(1))
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn small_ip(rng: &mut Rng) -> IpAddr {
    if rng.chance(70) {
        IpAddr::V4(Ipv4Addr::new(
            10,
            rng.below(4) as u8,
            0,
            rng.below(6) as u8 + 1,
        ))
    } else {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            rng.below(4) as u16,
            0,
            0,
            0,
            0,
            2,
        ))
    }
}

fn random_state(rng: &mut Rng) -> KernelState {
    let mut s = KernelState::default();
    for _ in 0..rng.below(12) {
        let addr = small_ip(rng);
        let dst = if rng.chance(30) {
            IpNet::new(addr, 0)
        } else {
            IpNet::new(addr, if addr.is_ipv4() { 24 } else { 64 })
        }
        .map(|n| n.trunc())
        .unwrap_or_else(|_| IpNet::from(addr));
        let r = Route {
            table: 2000 + rng.below(3) as u32,
            dst,
            gateway: rng.chance(50).then(|| small_ip(rng)),
            oif: 10 + rng.below(3) as u32,
            prefsrc: None,
            metric: 1024,
        };
        if !s.routes.iter().any(|x| x.key() == r.key()) {
            s.routes.insert(r);
        }
    }
    for _ in 0..rng.below(6) {
        s.rules.insert(Rule {
            priority: 2000 + rng.below(3) as u32,
            from: IpNet::from(small_ip(rng)),
            table: 2000 + rng.below(3) as u32,
        });
    }
    for _ in 0..rng.below(8) {
        let e = Endpoint {
            id: rng.below(8) as u8 + 1,
            addr: small_ip(rng),
            ifindex: 10 + rng.below(3) as u32,
            backup: rng.chance(30),
        };
        if !s.endpoints.iter().any(|x| x.id == e.id || x.addr == e.addr) {
            s.endpoints.insert(e);
        }
    }
    s.limits = rng.chance(80).then(|| Limits {
        subflows: rng.below(9) as u32,
        add_addr_accepted: rng.below(9) as u32,
    });
    s
}

fn check(mut kernel: RecordingBackend, desired: &KernelState, seed: u64) {
    let ops = diff(&kernel.state, desired);
    if let Err(e) = kernel.apply_all(&ops) {
        panic!("seed {seed}: {e}\nops: {ops:#?}");
    }
    let mut want = desired.clone();
    if want.limits.is_none() {
        want.limits = kernel.state.limits; // unmanaged limits are left alone
    }
    assert_eq!(kernel.state, want, "seed {seed}");
    assert!(diff(&kernel.state, desired).is_empty(), "seed {seed}");
}

#[test]
fn diff_between_arbitrary_states_applies_cleanly() {
    for seed in 1..=2000u64 {
        let mut rng = Rng(Xorshift::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let current = random_state(&mut rng);
        let desired = random_state(&mut rng);
        check(RecordingBackend::lenient(current), &desired, seed);
    }
}

fn random_snapshot(rng: &mut Rng) -> Snapshot {
    let mut s = Snapshot::default();
    s.links.push(link(2, "br-lan", &["192.168.50.1/24"]));
    for i in 0..rng.below(11) as u32 {
        let ifindex = 10 + i;
        let mut l = link(ifindex, &format!("wan{i}"), &[]);
        l.up = rng.chance(85);
        l.point_to_point = rng.chance(15);
        for _ in 0..rng.below(3) + 1 {
            let addr = small_ip(rng);
            let prefix_len = match (addr, l.point_to_point) {
                (IpAddr::V4(_), true) => 32,
                (IpAddr::V4(_), false) => 24,
                (IpAddr::V6(_), _) => 64,
            };
            l.addrs.push(AddrInfo {
                addr,
                prefix_len,
                tentative: rng.chance(10),
                deprecated: rng.chance(5),
                temporary: false,
            });
        }
        let gw = if l.point_to_point {
            String::new()
        } else {
            format!("10.{}.0.{}", rng.below(4), 100 + rng.below(3))
        };
        s.routes.push(default_via(ifindex, &gw, false));
        if rng.chance(40) {
            s.routes.push(default_via(ifindex, "fe80::1", true));
        }
        s.links.push(l);
    }
    s
}

#[test]
fn diff_between_planned_states_respects_the_ordering() {
    let own = Ownership::default();
    for seed in 1..=500u64 {
        let mut rng = Rng(Xorshift::new(seed.wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1));
        let mut slots = Slots::default();
        let mut kernel = RecordingBackend::default();
        // A run of rounds, as the agent would see them, each from the previous state.
        for round in 0..6 {
            let snap = random_snapshot(&mut rng);
            let mut health = HashMap::new();
            let mut settings = WanSettings::default();
            if rng.chance(50) {
                for w in discover(&snap, &settings, &lan(), &health) {
                    let mode = [Mode::On, Mode::Backup, Mode::Off][rng.below(3) as usize];
                    settings.wans.push(crate::model::wan::WanSpec {
                        name: w.name.clone(),
                        device: w.device,
                        mode,
                        probe: Default::default(),
                        metering: Default::default(),
                    });
                }
            }
            for l in &snap.links {
                let h = [Health::Up, Health::Degraded, Health::Down, Health::Unknown]
                    [rng.below(4) as usize];
                health.insert(l.name.clone(), h);
            }
            let wans = discover(&snap, &settings, &lan(), &health);
            let planned = plan_with(&wans, &own, caps(), &mut slots);
            let ids: BTreeSet<u8> = planned.desired.endpoints.iter().map(|e| e.id).collect();
            assert_eq!(ids.len(), planned.desired.endpoints.len());
            assert!(planned.desired.endpoints.len() <= 8);
            // The kernel flushes the routes of links that went down.
            for l in snap.links.iter().filter(|l| !l.up) {
                kernel.state.routes.retain(|r| r.oif != l.ifindex);
            }
            check(kernel.clone(), &planned.desired, seed * 100 + round);
            kernel
                .apply_all(&diff(&kernel.state, &planned.desired))
                .ok();
        }
    }
}
