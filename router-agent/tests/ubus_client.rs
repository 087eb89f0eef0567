//! The ubus client and the netifd watcher against the ubusd stand-in
//! (`tests/ubus_standin`): a dump end to end, an event that makes the watcher re-dump,
//! ubusd going away and coming back, garbage on the socket, and ids of 2^31 and more
//! with ubusd's type checks (registration and events work on the first try).

mod ubus_standin;

use std::future::Future;
use std::time::Duration;

use mpbond_agent::ubus::blob::{Table, Value};
use mpbond_agent::ubus::wire::{status, EVENT_OBJECT};
use mpbond_agent::ubus::{parse_dump, watch, Client, NetifdView, UbusError, WatchOpts};
use mpbond_testkit::block_on_bounded;
use serde_json::{json, Map};
use tokio::sync::watch as channel;
use tokio_util::sync::CancellationToken;
use ubus_standin::{fixture, Ids, SockDir, StandIn};

const BOUND: Duration = Duration::from_secs(10);

fn run<F: Future<Output = ()>>(f: F) {
    block_on_bounded(BOUND, f);
}

/// A stand-in ubusd in a fresh socket directory, serving the `qmi-wwan.json` dump, with
/// object and peer ids as `ids` says.
fn qmi_wwan_standin(ids: Ids) -> (SockDir, StandIn) {
    let dir = SockDir::new();
    let ubusd = StandIn::start_ids(&dir.socket(), fixture("qmi-wwan.json"), ids);
    (dir, ubusd)
}

/// [`qmi_wwan_standin`] with random ids, and a [`Watcher`] on it that has published the
/// first view (`wwan` on `wwan0`).
async fn watching_qmi_wwan() -> (SockDir, StandIn, Watcher) {
    let (dir, ubusd) = qmi_wwan_standin(Ids::Random);
    let mut watcher = Watcher::start(&dir);
    watcher.until_l3("wwan", "wwan0").await;
    (dir, ubusd, watcher)
}

/// The netifd watcher on `dir`'s socket (fast backoff), and the view it publishes.
struct Watcher {
    rx: channel::Receiver<Option<NetifdView>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    fn start(dir: &SockDir) -> Watcher {
        let opts = WatchOpts {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ..WatchOpts::new(dir.socket())
        };
        let (tx, rx) = channel::channel(None);
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch(opts, tx, stop.clone()));
        Watcher { rx, stop, task }
    }

    /// Wait until the published view satisfies `ok`.
    async fn until(&mut self, ok: impl Fn(&NetifdView) -> bool) {
        loop {
            if self.rx.borrow_and_update().as_ref().is_some_and(&ok) {
                return;
            }
            self.rx.changed().await.expect("watcher alive");
        }
    }

    /// Wait until interface `name` resolves to the L3 device `device`.
    async fn until_l3(&mut self, name: &str, device: &str) {
        self.until(|v| l3(v, name).as_deref() == Some(device)).await;
    }

    /// Whether the view published now resolves `name` to some L3 device.
    fn resolves(&self, name: &str) -> bool {
        self.rx
            .borrow()
            .as_ref()
            .is_some_and(|v| l3(v, name).is_some())
    }

    /// Cancel the watcher; it must end.
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("watcher ends on cancel");
    }
}

fn l3(v: &NetifdView, name: &str) -> Option<String> {
    v.resolve(name).and_then(|r| r.l3_device)
}

/// netifd's `network.interface` event: `action` on `interface`.
fn netifd_event(ubusd: &StandIn, action: &str, interface: &str) {
    ubusd.event(
        "network.interface",
        json!({"action": action, "interface": interface}),
    );
}

/// Wait until the stand-in has answered `count` dumps in all.
async fn dumps_reach(ubusd: &StandIn, count: u32) {
    while ubusd.dumps() < count {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn a_dump_over_the_socket_resolves_the_qmi_wwan() {
    run(async {
        let (dir, ubusd) = qmi_wwan_standin(Ids::Random);
        let mut client = Client::connect(&dir.socket()).await.expect("connect");
        assert_ne!(client.local_id, 0, "the HELLO names us");
        let reply = client
            .call("network.interface", "dump", Map::new())
            .await
            .expect("dump");
        let view = parse_dump(&reply).expect("parse");
        let r = view.resolve("wwan").expect("wwan");
        assert_eq!(r.l3_device.as_deref(), Some("wwan0"));
        assert_eq!(r.gateway4, Some("100.71.12.10".parse().unwrap()));
        assert_eq!(ubusd.dumps(), 1);
        match client.lookup("network.nope").await {
            Err(UbusError::Status { code, .. }) => assert_eq!(code, status::NOT_FOUND),
            other => panic!("expected NOT_FOUND, got {other:?}"),
        }
        // The connection is still usable after an error status.
        assert!(client
            .call("network.interface", "dump", Map::new())
            .await
            .is_ok());
    });
}

#[test]
fn an_event_makes_the_watcher_re_dump() {
    run(async {
        let (_dir, ubusd, mut watcher) = watching_qmi_wwan().await;
        assert_eq!(
            l3(watcher.rx.borrow().as_ref().unwrap(), "wan"),
            None,
            "wan is down"
        );
        assert_eq!(
            ubusd.state.lock().unwrap().registered,
            ["network.interface"]
        );

        // netifd brings wan up as pppoe and says so.
        ubusd.set_dump(fixture("pppoe-dhcp.json"));
        netifd_event(&ubusd, "ifup", "wan");
        watcher.until_l3("wan", "pppoe-wan").await;
        assert_eq!(ubusd.dumps(), 2, "one dump per event");
        // Events of other ids are not delivered.
        ubusd.event("network.wireless", json!({}));
        netifd_event(&ubusd, "ifupdate", "wan");
        dumps_reach(&ubusd, 3).await;
        let acks = ubusd.state.lock().unwrap().event_acks;
        assert_eq!(acks, 2, "each delivered event answered with STATUS 0");
        watcher.stop().await;
    });
}

#[test]
fn the_watcher_survives_ubusd_going_away() {
    run(async {
        let (dir, ubusd, mut watcher) = watching_qmi_wwan().await;

        let state = ubusd.stop();
        assert!(!dir.socket().exists());
        // The last view stays published while ubusd is gone.
        assert!(watcher.resolves("wwan"));
        state.lock().unwrap().dump = fixture("pppoe-dhcp.json");
        let ubusd = StandIn::start_with(&dir.socket(), state);
        watcher.until_l3("wan", "pppoe-wan").await;
        assert_eq!(
            ubusd.state.lock().unwrap().registered.len(),
            2,
            "listening again"
        );
        watcher.stop().await;
    });
}

#[test]
fn garbage_from_ubusd_is_an_error_and_the_watcher_recovers() {
    run(async {
        let (dir, ubusd) = qmi_wwan_standin(Ids::Random);
        ubusd.set_garbage(true);
        let mut client = Client::connect(&dir.socket()).await.expect("connect");
        match client.call("network.interface", "dump", Map::new()).await {
            Err(UbusError::Wire(_)) => {}
            other => panic!("expected a wire error, got {other:?}"),
        }

        let mut watcher = Watcher::start(&dir);
        dumps_reach(&ubusd, 3).await;
        assert!(
            watcher.rx.borrow().is_none(),
            "nothing published from garbage"
        );
        ubusd.set_garbage(false);
        watcher.until(|v| l3(v, "wwan").is_some()).await;

        // A dump without the interface array is refused too.
        ubusd.set_dump(Map::new());
        netifd_event(&ubusd, "ifdown", "wwan");
        let before = ubusd.dumps();
        dumps_reach(&ubusd, before + 2).await;
        assert!(watcher.resolves("wwan"));
        watcher.stop().await;
    });
}

#[test]
fn no_socket_is_a_connect_error() {
    run(async {
        let dir = SockDir::new();
        match Client::connect(&dir.socket()).await {
            Err(UbusError::Connect { path, .. }) => assert_eq!(path, dir.socket()),
            other => panic!("expected a connect error, got {other:?}"),
        }
    });
}

#[test]
fn an_event_during_a_request_is_kept_for_next_event() {
    run(async {
        let (dir, ubusd) = qmi_wwan_standin(Ids::Random);
        let mut client = Client::connect(&dir.socket()).await.expect("connect");
        client.listen("network.*").await.expect("listen");
        netifd_event(&ubusd, "ifdown", "wwan");
        // The event may come before or among the replies of this call; either way the
        // call succeeds and the event waits in the queue.
        let reply = client.call("network.interface", "dump", Map::new()).await;
        assert!(reply.is_ok(), "{reply:?}");
        let event = client.next_event().await.expect("event");
        assert_eq!(event.name, "network.interface");
        assert_eq!(event.data.get("action"), Some(&json!("ifdown")));
        // A cancelled wait loses nothing either.
        let waited = tokio::time::timeout(Duration::from_millis(20), client.next_event()).await;
        assert!(waited.is_err(), "no second event");
        netifd_event(&ubusd, "ifup", "wwan");
        let event = client
            .next_event()
            .await
            .expect("event after a cancelled wait");
        assert_eq!(event.data.get("action"), Some(&json!("ifup")));
    });
}

#[test]
fn registration_and_events_work_on_the_first_try_with_ids_of_2_pow_31_and_more() {
    run(async {
        let (dir, ubusd) = qmi_wwan_standin(Ids::High);
        assert!(ubusd.netifd_id() >= 0x8000_0000);
        let mut watcher = Watcher::start(&dir);
        watcher.until_l3("wwan", "wwan0").await;

        ubusd.set_dump(fixture("pppoe-dhcp.json"));
        netifd_event(&ubusd, "ifup", "wan");
        watcher.until_l3("wan", "pppoe-wan").await;
        {
            let state = ubusd.state.lock().unwrap();
            assert_eq!(state.refused, [], "nothing refused");
            assert_eq!(state.connections, 1, "the first session holds");
            assert_eq!(state.registered, ["network.interface"]);
        }
        watcher.stop().await;
    });
}

#[test]
fn listen_registers_a_high_object_id_as_int32() {
    run(async {
        let (dir, ubusd) = qmi_wwan_standin(Ids::High);
        let mut client = Client::connect(&dir.socket()).await.expect("connect");
        assert!(client.local_id >= 0x8000_0000, "peer ids are u32 too");
        client.listen("network.interface").await.expect("register");
        ubusd.event("network.interface", json!({"action": "ifdown"}));
        let event = client.next_event().await.expect("event");
        assert_eq!(event.data.get("action"), Some(&json!("ifdown")));
        assert_eq!(ubusd.refused(), []);
    });
}

#[test]
fn the_stand_in_refuses_what_ubusd_refuses() {
    run(async {
        let (dir, ubusd) = qmi_wwan_standin(Ids::High);
        let mut client = Client::connect(&dir.socket()).await.expect("connect");
        // An id as INT64, as a JSON number of 2^31 or more becomes: blobmsg_parse skips
        // it, so the object is missing.
        let id = client.lookup("network.interface").await.expect("lookup");
        let as_int64 = Table::new()
            .with("object", Value::Int64(id.into()))
            .with("pattern", Value::String("network.*".into()));
        match client
            .invoke_typed(EVENT_OBJECT, "register", as_int64)
            .await
        {
            Err(UbusError::Status { code, .. }) => assert_eq!(code, status::INVALID_ARGUMENT),
            other => panic!("expected invalid argument, got {other:?}"),
        }
        // A system object id, and another client's object.
        for (object, code) in [(5, status::PERMISSION_DENIED), (id, status::NOT_FOUND)] {
            let args = Table::new()
                .with("object", Value::Int32(object))
                .with("pattern", Value::String("network.*".into()));
            match client.invoke_typed(EVENT_OBJECT, "register", args).await {
                Err(UbusError::Status { code: got, .. }) => assert_eq!(got, code),
                other => panic!("expected status {code}, got {other:?}"),
            }
        }
        // An unknown object and an unknown method.
        let unknown = id ^ 0x4000_0000;
        assert!(matches!(
            client.invoke(unknown, "dump", Map::new()).await,
            Err(UbusError::Status {
                code: status::NOT_FOUND,
                ..
            })
        ));
        assert!(matches!(
            client.invoke(id, "frobnicate", Map::new()).await,
            Err(UbusError::Status {
                code: status::METHOD_NOT_FOUND,
                ..
            })
        ));
        assert_eq!(ubusd.refused().len(), 5, "{:?}", ubusd.refused());
    });
}
