//! The health task against a fake concentrator on loopback, with a recording table in
//! place of nft: the redirect is withdrawn after `down_after` failed probes, restored
//! after `up_after` good ones, and a nudge from the proxy probes at once.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fake_concentrator, fake_concentrator_at, key, upstream, wait_until, Behaviour};
use mpbond_agent::config::HealthConfig;
use mpbond_agent::health::{Monitor, ProbeError, RedirectTable};
use mpbond_agent::model::{Health, Probe};
use mpbond_agent::nft::{NftError, RedirectSpec};
use tokio::sync::Notify;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

/// Records the `redirect` flag of every applied spec, and counts failed probes.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<bool>>>, Arc<AtomicUsize>);

impl Recorder {
    fn applied(&self) -> Vec<bool> {
        self.0.lock().unwrap().clone()
    }

    fn failed_probes(&self) -> usize {
        self.1.load(SeqCst)
    }
}

impl RedirectTable for Recorder {
    fn apply(&mut self, spec: &RedirectSpec) -> Result<(), NftError> {
        self.0.lock().unwrap().push(spec.redirect);
        Ok(())
    }

    fn observe(&mut self, result: Result<Duration, &ProbeError>, _redirect: bool) {
        if result.is_err() {
            self.1.fetch_add(1, SeqCst);
        }
    }
}

fn spec(redirect: bool) -> RedirectSpec {
    RedirectSpec {
        table: "test".into(),
        lan_interfaces: vec!["br-lan".into()],
        port: 4851,
        bypass_dst: vec![],
        bypass_src: vec![],
        redirect,
    }
}

fn monitor(
    addr: std::net::SocketAddr,
    first: Probe,
    interval: Duration,
) -> (Monitor<Recorder>, Recorder, Arc<Notify>) {
    let recorder = Recorder::default();
    let probe_now = Arc::new(Notify::new());
    let monitor = Monitor {
        health: Health::new(first, 2, 1, Instant::now()),
        upstream: upstream(addr, key()),
        config: HealthConfig {
            interval,
            timeout: Duration::from_millis(500),
            down_after: 2,
            up_after: 1,
        },
        spec: spec(first == Probe::Ok),
        table: recorder.clone(),
        probe_now: probe_now.clone(),
    };
    (monitor, recorder, probe_now)
}

#[tokio::test]
async fn redirect_follows_the_concentrator() {
    timeout(LIMIT, async {
        let fake = fake_concentrator(Behaviour::Relay).await;
        let addr = fake.addr;
        let (monitor, recorder, _) = monitor(addr, Probe::Ok, Duration::from_millis(100));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(monitor.run(shutdown.clone()));

        // Healthy: probes arrive, nothing is applied.
        wait_until(|| fake.requests.lock().unwrap().len() >= 2).await;
        assert_eq!(recorder.applied(), Vec::<bool>::new());

        fake.stop();
        wait_until(|| !recorder.applied().is_empty()).await;
        assert_eq!(recorder.applied(), vec![false]);

        let _back = fake_concentrator_at(addr, Behaviour::Relay).await;
        wait_until(|| recorder.applied().len() >= 2).await;
        assert_eq!(recorder.applied(), vec![false, true]);

        shutdown.cancel();
        let table = task.await.expect("monitor does not panic");
        assert_eq!(table.applied(), vec![false, true]);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn starting_down_restores_on_the_first_good_probe() {
    timeout(LIMIT, async {
        let fake = fake_concentrator(Behaviour::Relay).await;
        let (monitor, recorder, _) = monitor(fake.addr, Probe::Failed, Duration::from_millis(100));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(monitor.run(shutdown.clone()));
        wait_until(|| !recorder.applied().is_empty()).await;
        assert_eq!(recorder.applied(), vec![true]);
        shutdown.cancel();
        task.await.expect("monitor does not panic");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_nudge_probes_at_once() {
    timeout(LIMIT, async {
        let fake = fake_concentrator(Behaviour::Relay).await;
        // The interval alone would not probe within the test's limit.
        let (monitor, _, probe_now) = monitor(fake.addr, Probe::Ok, Duration::from_secs(3600));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(monitor.run(shutdown.clone()));
        probe_now.notify_one();
        wait_until(|| fake.requests.lock().unwrap().len() == 1).await;
        assert!(fake.requests.lock().unwrap()[0].is_info());
        shutdown.cancel();
        task.await.expect("monitor does not panic");
    })
    .await
    .expect("test timed out");
}

/// The monitor's own probe follows the main route. While another WAN's probe still
/// reaches the concentrator, a failing main-route probe must not withdraw the redirect;
/// once no WAN reaches it either, the agent fails open.
#[tokio::test]
async fn a_live_wan_probe_keeps_the_redirect() {
    timeout(LIMIT, async {
        let fake = fake_concentrator(Behaviour::Relay).await;
        let addr = fake.addr;
        fake.stop(); // the main-route probe now fails
        let (monitor, recorder, _) = monitor(addr, Probe::Ok, Duration::from_millis(50));
        let upstream = monitor.upstream.clone();
        let wan_alive = Arc::new(AtomicBool::new(true));
        let feeder = {
            let (upstream, wan_alive) = (upstream.clone(), wan_alive.clone());
            tokio::spawn(async move {
                while wan_alive.load(SeqCst) {
                    upstream.wan_reach.note(Instant::now());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(monitor.run(shutdown.clone()));

        // Well past down_after (2) failed main-route probes: the redirect stays.
        wait_until(|| recorder.failed_probes() >= 6).await;
        assert_eq!(recorder.applied(), Vec::<bool>::new());

        // No WAN reaches the concentrator any more: fail open.
        wan_alive.store(false, SeqCst);
        feeder.await.expect("feeder");
        wait_until(|| !recorder.applied().is_empty()).await;
        assert_eq!(recorder.applied(), vec![false]);

        shutdown.cancel();
        task.await.expect("monitor does not panic");
    })
    .await
    .expect("test timed out");
}
