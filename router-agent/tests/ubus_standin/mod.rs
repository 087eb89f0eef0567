//! A ubusd stand-in for the `ubus_*` tests: a unix-socket server that answers as ubusd
//! and netifd do, message for message, with the attributes in ubusd's order:
//!
//! * `HELLO` with the client id on accept (`ubusd_send_hello`);
//! * `LOOKUP network.interface` → `DATA {OBJPATH, OBJID, OBJTYPE, SIGNATURE}` then
//!   `STATUS 0` (`ubusd_send_obj`); an unknown path → `STATUS 4`;
//! * `ADD_OBJECT` → `DATA {OBJID}` then `STATUS 0`;
//! * `INVOKE register` on object 1 → checks `{"object", "pattern"}` as
//!   `ubusd_alloc_event_pattern` does, then `STATUS`;
//! * `INVOKE dump` on netifd's object → `DATA {OBJID, DATA}` then `STATUS {STATUS, OBJID}`
//!   with `peer` = the object id (`ubusd_handle_response`), or garbage when told to;
//! * [`StandIn::event`] → `INVOKE {OBJID listener, METHOD, DATA}` with `peer` 0 to every
//!   listener whose pattern matches (`ubusd_send_event_msg`); the clients' `STATUS`
//!   replies are counted.
//!
//! [`StandIn::stop`] drops every connection and removes the socket, as a ubusd restart
//! does.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use mpbond_agent::ubus::wire::{self, msg, status, Attr, Decoded, Message};
use serde_json::{Map, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};

/// netifd's object id in the stand-in.
pub const NETIFD_ID: u32 = 0x0bad_cafe;
static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// What the stand-in serves, shared with the test.
#[derive(Debug, Default)]
pub struct State {
    pub dump: Map<String, Json>,
    /// Answer `dump` with garbage bytes.
    pub garbage: bool,
    pub dumps: u32,
    pub event_acks: u32,
    pub registered: Vec<String>,
}

/// A directory for one socket, removed on drop.
#[derive(Debug)]
pub struct SockDir(pub PathBuf);

impl SockDir {
    pub fn new() -> SockDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mpbb-ubus-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("socket dir");
        SockDir(dir)
    }

    pub fn socket(&self) -> PathBuf {
        self.0.join("ubus.sock")
    }
}

impl Drop for SockDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running stand-in.
#[derive(Debug)]
pub struct StandIn {
    pub path: PathBuf,
    pub state: Arc<Mutex<State>>,
    events: broadcast::Sender<(String, Map<String, Json>)>,
    task: JoinHandle<()>,
}

/// A fixture of `tests/fixtures/ubus` as the dump reply.
pub fn fixture(name: &str) -> Map<String, Json> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ubus")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    match serde_json::from_str(&text).expect("fixture JSON") {
        Json::Object(map) => map,
        other => panic!("{} is not an object: {other}", path.display()),
    }
}

impl StandIn {
    /// Listen on `path` (inside a tokio runtime) and serve `dump`.
    pub fn start(path: &Path, dump: Map<String, Json>) -> StandIn {
        let state = Arc::new(Mutex::new(State {
            dump,
            ..State::default()
        }));
        StandIn::start_with(path, state)
    }

    /// Listen on `path` with an existing state (a "restarted" ubusd).
    pub fn start_with(path: &Path, state: Arc<Mutex<State>>) -> StandIn {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the stand-in socket");
        let (events, _) = broadcast::channel(16);
        let task = tokio::spawn(accept_loop(listener, state.clone(), events.clone()));
        StandIn {
            path: path.to_owned(),
            state,
            events,
            task,
        }
    }

    /// Send event `name` to every matching listener.
    pub fn event(&self, name: &str, data: Json) {
        let data = match data {
            Json::Object(m) => m,
            _ => Map::new(),
        };
        let _ = self.events.send((name.to_owned(), data));
    }

    pub fn set_dump(&self, dump: Map<String, Json>) {
        self.state.lock().unwrap().dump = dump;
    }

    pub fn set_garbage(&self, garbage: bool) {
        self.state.lock().unwrap().garbage = garbage;
    }

    pub fn dumps(&self) -> u32 {
        self.state.lock().unwrap().dumps
    }

    /// Drop every connection and remove the socket.
    pub fn stop(self) -> Arc<Mutex<State>> {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
        self.state.clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: UnixListener,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<(String, Map<String, Json>)>,
) {
    let mut conns = JoinSet::new();
    let mut next_client = 0x1000_0000u32;
    let mut next_object = 0x2000_0000u32;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        next_client += 1;
        next_object += 0x100;
        let conn = Conn {
            stream,
            id: next_client,
            next_object,
            listener: None,
            patterns: Vec::new(),
            state: state.clone(),
            event_seq: 0,
        };
        conns.spawn(conn.run(events.subscribe()));
    }
}

struct Conn {
    stream: UnixStream,
    id: u32,
    next_object: u32,
    listener: Option<u32>,
    patterns: Vec<String>,
    state: Arc<Mutex<State>>,
    event_seq: u16,
}

impl Conn {
    async fn run(mut self, mut events: broadcast::Receiver<(String, Map<String, Json>)>) {
        let hello = Message::new(msg::HELLO, 0, self.id, Vec::new());
        if self.send(&hello).await.is_err() {
            return;
        }
        let mut buf = Vec::new();
        loop {
            match wire::decode(&buf) {
                Ok(Decoded::Complete { message, len }) => {
                    buf.drain(..len);
                    if self.handle(message).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(Decoded::Incomplete { .. }) => {}
                Err(_) => return,
            }
            let mut chunk = [0u8; 4096];
            tokio::select! {
                n = self.stream.read(&mut chunk) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                },
                ev = events.recv() => {
                    let Ok((name, data)) = ev else { continue };
                    let Some(listener) = self.listener else { continue };
                    if !self.patterns.iter().any(|p| matches(p, &name)) {
                        continue;
                    }
                    self.event_seq = self.event_seq.wrapping_add(1);
                    let invoke = Message::new(msg::INVOKE, self.event_seq, 0, vec![
                        Attr::ObjId(listener),
                        Attr::Method(name),
                        Attr::Data(data),
                    ]);
                    if self.send(&invoke).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, m: Message) -> std::io::Result<()> {
        let status_of =
            |code: u32| Message::new(msg::STATUS, m.seq, m.peer, vec![Attr::Status(code)]);
        match m.kind {
            msg::LOOKUP => {
                if m.objpath() != Some("network.interface") {
                    return self.send(&status_of(status::NOT_FOUND)).await;
                }
                let mut sig = Map::new();
                for method in ["up", "down", "status", "dump"] {
                    sig.insert(method.into(), Json::Object(Map::new()));
                }
                let data = Message::new(
                    msg::DATA,
                    m.seq,
                    m.peer,
                    vec![
                        Attr::ObjPath("network.interface".into()),
                        Attr::ObjId(NETIFD_ID),
                        Attr::ObjType(0x0bad_0001),
                        Attr::Signature(sig),
                    ],
                );
                self.send(&data).await?;
                self.send(&status_of(status::OK)).await
            }
            msg::ADD_OBJECT => {
                self.next_object += 1;
                let id = self.next_object;
                self.listener = Some(id);
                let data = Message::new(msg::DATA, m.seq, m.peer, vec![Attr::ObjId(id)]);
                self.send(&data).await?;
                self.send(&status_of(status::OK)).await
            }
            msg::INVOKE if m.objid() == Some(wire::EVENT_OBJECT) => {
                let code = self.register(&m);
                self.send(&status_of(code)).await
            }
            msg::INVOKE if m.objid() == Some(NETIFD_ID) && m.method() == Some("dump") => {
                let (dump, garbage) = {
                    let mut s = self.state.lock().unwrap();
                    s.dumps += 1;
                    (s.dump.clone(), s.garbage)
                };
                if garbage {
                    // A header announcing a blob shorter than its own header.
                    let junk = [0u8, msg::DATA, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
                    return self.stream.write_all(&junk).await;
                }
                let data = Message::new(
                    msg::DATA,
                    m.seq,
                    NETIFD_ID,
                    vec![Attr::ObjId(NETIFD_ID), Attr::Data(dump)],
                );
                self.send(&data).await?;
                let done = Message::new(
                    msg::STATUS,
                    m.seq,
                    NETIFD_ID,
                    vec![Attr::Status(status::OK), Attr::ObjId(NETIFD_ID)],
                );
                self.send(&done).await
            }
            msg::INVOKE => self.send(&status_of(status::NOT_FOUND)).await,
            msg::STATUS => {
                if m.status() == Some(status::OK) && m.objid() == self.listener {
                    self.state.lock().unwrap().event_acks += 1;
                }
                Ok(())
            }
            _ => self.send(&status_of(status::INVALID_COMMAND)).await,
        }
    }

    /// `ubusd_alloc_event_pattern`.
    fn register(&mut self, m: &Message) -> u32 {
        if m.method() != Some("register") {
            return status::INVALID_COMMAND;
        }
        let Some(data) = m.data() else {
            return status::INVALID_ARGUMENT;
        };
        let object = data.get("object").and_then(Json::as_u64);
        let pattern = data.get("pattern").and_then(Json::as_str);
        let (Some(object), Some(pattern)) = (object, pattern) else {
            return status::INVALID_ARGUMENT;
        };
        if object < 1024 {
            return status::PERMISSION_DENIED;
        }
        if Some(object as u32) != self.listener {
            return status::NOT_FOUND;
        }
        self.patterns.push(pattern.to_owned());
        self.state
            .lock()
            .unwrap()
            .registered
            .push(pattern.to_owned());
        status::OK
    }

    async fn send(&mut self, m: &Message) -> std::io::Result<()> {
        let bytes = m.encode().map_err(std::io::Error::other)?;
        self.stream.write_all(&bytes).await
    }
}

/// ubusd's pattern match: exact, or a prefix when the pattern ends in `*`.
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}
