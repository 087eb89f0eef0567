//! A ubusd stand-in for the `ubus_*` tests: a unix-socket server that answers as ubusd
//! and netifd do, message for message, with the attributes in ubusd's order and types:
//!
//! * ids as `ubus_alloc_id` gives them: random over the whole 32 bits (at or above
//!   `UBUS_SYSTEM_OBJECT_MAX`, 1024), for clients, objects and netifd's object alike;
//!   [`Ids::High`] makes every id 2^31 or more, the half that an id sent as a signed or
//!   64-bit number gets wrong;
//! * every message is parsed with ubusd's `ubus_policy` (`wire::decode`: an attribute
//!   of the wrong blob type reads as absent), and each handler refuses what ubusd's
//!   refuses: a missing `OBJID` or `METHOD` → `STATUS 2`, an unknown object → `STATUS 4`;
//! * `HELLO` with the client id on accept (`ubusd_send_hello`);
//! * `LOOKUP network.interface` → `DATA {OBJPATH, OBJID, OBJTYPE, SIGNATURE}` then
//!   `STATUS 0` (`ubusd_send_obj`); an unknown path → `STATUS 4`; no (valid) path lists
//!   every object, as `ubusd_handle_lookup` does;
//! * `ADD_OBJECT` → `DATA {OBJID}` then `STATUS 0`;
//! * `INVOKE register` on object 1 → `evr_policy` of `ubusd_event.c`: `"pattern"` must
//!   be a blobmsg STRING and `"object"` a blobmsg INT32 (`blobmsg_parse` skips a member
//!   of another type, so an INT64 id is "invalid argument"), the id at least 1024 and
//!   the caller's own object, then `STATUS`;
//! * `INVOKE dump` on netifd's object → `DATA {OBJID, DATA}` then `STATUS {STATUS, OBJID}`
//!   with `peer` = the object id (`ubusd_handle_response`), or garbage when told to;
//! * [`StandIn::event`] → `INVOKE {OBJID listener, METHOD, DATA}` with `peer` 0 to every
//!   listener whose pattern matches (`ubusd_send_event_msg`); the clients' `STATUS`
//!   replies (`STATUS` and `OBJID` as INT32 blobs, `ubusd_handle_response`) are counted.
//!
//! Every refusal is recorded in [`State::refused`], so a test can assert that a client
//! got everything right on the first try.
//!
//! [`StandIn::stop`] drops every connection and removes the socket, as a ubusd restart
//! does.

#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mpbond_testkit::TempDir;

use mpbond_agent::ubus::blob::{Table, Value};
use mpbond_agent::ubus::wire::{self, msg, status, Decoded, Message, MsgAttr};
use serde_json::{Map, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};

/// `UBUS_SYSTEM_OBJECT_MAX`: ids below are ubusd's own.
pub const SYSTEM_OBJECT_MAX: u32 = 1024;

/// How ids are handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ids {
    /// Random over `1024..=u32::MAX`, as ubusd does.
    #[default]
    Random,
    /// Random with the top bit set: every id is 2^31 or more.
    High,
}

/// What the stand-in serves, shared with the test.
#[derive(Debug)]
pub struct State {
    pub dump: Map<String, Json>,
    /// Answer `dump` with garbage bytes.
    pub garbage: bool,
    pub ids: Ids,
    /// netifd's `network.interface` object.
    pub netifd_id: u32,
    /// Every id handed out (never twice).
    pub used: HashSet<u32>,
    pub connections: u32,
    pub dumps: u32,
    pub event_acks: u32,
    pub registered: Vec<String>,
    /// Each request refused: what it was and the status sent.
    pub refused: Vec<(String, u32)>,
}

impl State {
    pub fn new(dump: Map<String, Json>, ids: Ids) -> State {
        let mut state = State {
            dump,
            garbage: false,
            ids,
            netifd_id: 0,
            used: HashSet::new(),
            connections: 0,
            dumps: 0,
            event_acks: 0,
            registered: Vec::new(),
            refused: Vec::new(),
        };
        state.netifd_id = state.alloc_id();
        state
    }

    /// `ubus_alloc_id`: a fresh random id.
    pub fn alloc_id(&mut self) -> u32 {
        loop {
            let mut bytes = [0u8; 4];
            getrandom::fill(&mut bytes).expect("getrandom");
            let mut id = u32::from_ne_bytes(bytes);
            if self.ids == Ids::High {
                id |= 0x8000_0000;
            }
            if id >= SYSTEM_OBJECT_MAX && self.used.insert(id) {
                return id;
            }
        }
    }
}

/// A directory for one socket, removed on drop.
#[derive(Debug)]
pub struct SockDir(TempDir);

impl SockDir {
    pub fn new() -> SockDir {
        SockDir(TempDir::new("ubus"))
    }

    pub fn socket(&self) -> PathBuf {
        self.0.join("ubus.sock")
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
    /// Listen on `path` (inside a tokio runtime) and serve `dump`, with random ids.
    pub fn start(path: &Path, dump: Map<String, Json>) -> StandIn {
        StandIn::start_ids(path, dump, Ids::Random)
    }

    /// Listen on `path` and serve `dump`, with ids as `ids` says.
    pub fn start_ids(path: &Path, dump: Map<String, Json>, ids: Ids) -> StandIn {
        StandIn::start_with(path, Arc::new(Mutex::new(State::new(dump, ids))))
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

    pub fn netifd_id(&self) -> u32 {
        self.state.lock().unwrap().netifd_id
    }

    /// The requests refused so far.
    pub fn refused(&self) -> Vec<(String, u32)> {
        self.state.lock().unwrap().refused.clone()
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
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let id = {
            let mut s = state.lock().unwrap();
            s.connections += 1;
            s.alloc_id()
        };
        let conn = Conn {
            stream,
            id,
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
                        MsgAttr::ObjId(listener),
                        MsgAttr::Method(name),
                        MsgAttr::Data(Table::from_json(&data)),
                    ]);
                    if self.send(&invoke).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, m: Message) -> std::io::Result<()> {
        let netifd_id = self.state.lock().unwrap().netifd_id;
        match m.kind {
            msg::LOOKUP => {
                // ubusd_handle_lookup: no (valid) path lists every object.
                if m.objpath().is_some_and(|p| p != "network.interface") {
                    return self.refuse(&m, "lookup", status::NOT_FOUND).await;
                }
                let mut sig = Table::new();
                for method in ["up", "down", "status", "dump"] {
                    sig = sig.with(method, Value::Table(Table::new()));
                }
                let data = Message::new(
                    msg::DATA,
                    m.seq,
                    m.peer,
                    vec![
                        MsgAttr::ObjPath("network.interface".into()),
                        MsgAttr::ObjId(netifd_id),
                        MsgAttr::ObjType(netifd_id ^ 1),
                        MsgAttr::Signature(sig),
                    ],
                );
                self.send(&data).await?;
                self.reply_status(&m, status::OK).await
            }
            msg::ADD_OBJECT => {
                let id = self.state.lock().unwrap().alloc_id();
                self.listener = Some(id);
                let data = Message::new(msg::DATA, m.seq, m.peer, vec![MsgAttr::ObjId(id)]);
                self.send(&data).await?;
                self.reply_status(&m, status::OK).await
            }
            msg::INVOKE => {
                // ubusd_handle_invoke: METHOD and OBJID, as their policy types.
                let (Some(id), Some(method)) = (m.objid(), m.method()) else {
                    return self.refuse(&m, "invoke", status::INVALID_ARGUMENT).await;
                };
                let what = format!("invoke {method} on {id:#x}");
                if id == wire::EVENT_OBJECT {
                    let code = self.register(&m);
                    if code != status::OK {
                        return self.refuse(&m, &what, code).await;
                    }
                    return self.reply_status(&m, code).await;
                }
                if id != netifd_id {
                    return self.refuse(&m, &what, status::NOT_FOUND).await;
                }
                if method != "dump" {
                    return self.refuse(&m, &what, status::METHOD_NOT_FOUND).await;
                }
                self.dump(&m, netifd_id).await
            }
            msg::STATUS => {
                // ubusd_handle_response: OBJID and STATUS as INT32 blobs, the object
                // the client's own; the event's peer 0 is no client, so it ends here.
                if m.status() == Some(status::OK)
                    && m.objid().is_some()
                    && m.objid() == self.listener
                {
                    self.state.lock().unwrap().event_acks += 1;
                }
                Ok(())
            }
            _ => self.refuse(&m, "message", status::INVALID_COMMAND).await,
        }
    }

    /// netifd's `dump`: `DATA {OBJID, DATA}` then `STATUS {STATUS, OBJID}`, `peer` = the
    /// object (`ubusd_handle_response`).
    async fn dump(&mut self, m: &Message, netifd_id: u32) -> std::io::Result<()> {
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
            netifd_id,
            vec![
                MsgAttr::ObjId(netifd_id),
                MsgAttr::Data(Table::from_json(&dump)),
            ],
        );
        self.send(&data).await?;
        let done = Message::new(
            msg::STATUS,
            m.seq,
            netifd_id,
            vec![MsgAttr::Status(status::OK), MsgAttr::ObjId(netifd_id)],
        );
        self.send(&done).await
    }

    async fn reply_status(&mut self, m: &Message, code: u32) -> std::io::Result<()> {
        let reply = Message::new(msg::STATUS, m.seq, m.peer, vec![MsgAttr::Status(code)]);
        self.send(&reply).await
    }

    async fn refuse(&mut self, m: &Message, what: &str, code: u32) -> std::io::Result<()> {
        self.state
            .lock()
            .unwrap()
            .refused
            .push((what.to_owned(), code));
        self.reply_status(m, code).await
    }

    /// `ubusd_event_recv` → `ubusd_alloc_event_pattern` with `evr_policy`.
    fn register(&mut self, m: &Message) -> u32 {
        if m.method() != Some("register") {
            return status::INVALID_COMMAND;
        }
        let Some(data) = m.data() else {
            return status::INVALID_ARGUMENT;
        };
        // blobmsg_parse: a member of another type than the policy's is skipped.
        let pattern = match data.get("pattern") {
            Some(Value::String(p)) => Some(p.clone()),
            _ => None,
        };
        let object = match data.get("object") {
            Some(Value::Int32(id)) => Some(*id),
            _ => None,
        };
        let (Some(object), Some(pattern)) = (object, pattern) else {
            return status::INVALID_ARGUMENT;
        };
        if object < SYSTEM_OBJECT_MAX {
            return status::PERMISSION_DENIED;
        }
        if Some(object) != self.listener {
            return status::NOT_FOUND;
        }
        self.patterns.push(pattern.clone());
        self.state.lock().unwrap().registered.push(pattern);
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
