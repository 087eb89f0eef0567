//! A minimal async ubus client over the unix socket: hello, lookup, invoke and event
//! listening, as libubus does them.
//!
//! * [`Client::connect`] reads ubusd's `HELLO`, whose `peer` is our client id.
//! * [`Client::invoke`] sends `INVOKE {OBJID, METHOD, DATA}` and collects the `DATA`
//!   replies of the same `seq` until the `STATUS`.
//! * [`Client::listen`] adds an anonymous object (`ADD_OBJECT` → `DATA {OBJID}`) and
//!   invokes `register {"object": id, "pattern": …}` on the event object (id 1), the id
//!   a blobmsg INT32 as `blobmsg_add_u32` writes it (ubusd refuses any other type). ubusd
//!   then delivers each matching event as an `INVOKE` to that object with `METHOD` = the
//!   event name and `DATA` = its payload; the client answers `STATUS 0` as libubus does
//!   and queues the event for [`Client::next_event`]. Events that arrive while a request
//!   waits for its reply are queued too.
//!
//! Every request is bounded by [`REQUEST_TIMEOUT`]. Errors are typed; nothing panics on
//! what the socket sends. Reads go through a buffer and writes through an outbox, so a
//! cancelled [`Client::next_event`] never tears a message.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value as Json};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tracing::debug;

use super::blob::{Table, Value};
use super::wire::{self, msg, status, Decoded, Message, MsgAttr, WireError};

/// Bound on one request (ubus's own default is 30 s; netifd answers in milliseconds).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The socket paths of current and older OpenWrt releases, in the order tried.
pub const DEFAULT_SOCKETS: [&str; 2] = ["/var/run/ubus/ubus.sock", "/var/run/ubus.sock"];

/// What went wrong talking to ubusd.
#[derive(Debug, Error)]
pub enum UbusError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("ubus socket I/O: {0}")]
    Io(#[source] io::Error),
    #[error("ubusd closed the connection")]
    Closed,
    #[error("malformed message from ubusd: {0}")]
    Wire(#[source] WireError),
    #[error("unexpected message from ubusd: {0}")]
    Protocol(&'static str),
    #[error("{what}: ubus status {code} ({})", status::describe(*code))]
    Status { what: String, code: u32 },
    #[error("{0}: no reply within {REQUEST_TIMEOUT:?}")]
    Timeout(String),
}

/// One event delivered to a listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event id, e.g. `network.interface`.
    pub name: String,
    pub data: Map<String, Json>,
}

/// A connection to ubusd.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Our client id, from `HELLO`.
    pub local_id: u32,
    seq: u16,
    listener: Option<u32>,
    events: VecDeque<Event>,
    /// Encoded messages not yet written (so a cancelled write never tears a message).
    outbox: Vec<u8>,
}

impl Client {
    /// Connect and read the `HELLO`.
    pub async fn connect(path: &Path) -> Result<Client, UbusError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| UbusError::Connect {
                path: path.to_owned(),
                source,
            })?;
        let mut client = Client {
            stream,
            buf: Vec::new(),
            local_id: 0,
            seq: 0,
            listener: None,
            events: VecDeque::new(),
            outbox: Vec::new(),
        };
        let hello = tokio::time::timeout(REQUEST_TIMEOUT, client.read_message())
            .await
            .map_err(|_| UbusError::Timeout("hello".into()))??;
        if hello.kind != msg::HELLO {
            return Err(UbusError::Protocol("first message is not HELLO"));
        }
        client.local_id = hello.peer;
        debug!(id = client.local_id, path = %path.display(), "connected to ubusd");
        Ok(client)
    }

    /// The id of object `path` (`LOOKUP`).
    pub async fn lookup(&mut self, path: &str) -> Result<u32, UbusError> {
        let what = format!("lookup {path}");
        let attrs = vec![MsgAttr::ObjPath(path.to_owned())];
        let replies = self.request(msg::LOOKUP, 0, attrs, &what).await?;
        replies
            .iter()
            .find(|m| m.objpath() == Some(path) || m.objpath().is_none())
            .and_then(Message::objid)
            .ok_or(UbusError::Status {
                what,
                code: status::NOT_FOUND,
            })
    }

    /// Invoke `method` on object `id` with JSON arguments, typed as `ubus call` types
    /// them; the reply's `DATA` as JSON (empty if the method sent none).
    pub async fn invoke(
        &mut self,
        id: u32,
        method: &str,
        args: Map<String, Json>,
    ) -> Result<Map<String, Json>, UbusError> {
        self.invoke_typed(id, method, Table::from_json(&args)).await
    }

    /// Invoke `method` on object `id` with arguments whose blobmsg types are given.
    pub async fn invoke_typed(
        &mut self,
        id: u32,
        method: &str,
        args: Table,
    ) -> Result<Map<String, Json>, UbusError> {
        let what = format!("invoke {method} on object {id:#x}");
        let attrs = vec![
            MsgAttr::ObjId(id),
            MsgAttr::Method(method.to_owned()),
            MsgAttr::Data(args),
        ];
        let replies = self.request(msg::INVOKE, id, attrs, &what).await?;
        let mut out = Map::new();
        for reply in replies {
            if let Some(data) = reply.data_json() {
                out.extend(data);
            }
        }
        Ok(out)
    }

    /// `lookup` then `invoke`: `ubus call PATH METHOD ARGS`.
    pub async fn call(
        &mut self,
        path: &str,
        method: &str,
        args: Map<String, Json>,
    ) -> Result<Map<String, Json>, UbusError> {
        let id = self.lookup(path).await?;
        self.invoke(id, method, args).await
    }

    /// Listen for events whose id matches `pattern` (a trailing `*` matches a prefix).
    pub async fn listen(&mut self, pattern: &str) -> Result<(), UbusError> {
        let object = match self.listener {
            Some(id) => id,
            None => {
                let replies = self
                    .request(msg::ADD_OBJECT, 0, Vec::new(), "add listener object")
                    .await?;
                let id = replies
                    .iter()
                    .find_map(Message::objid)
                    .ok_or(UbusError::Protocol("ADD_OBJECT reply without an object id"))?;
                self.listener = Some(id);
                id
            }
        };
        // As ubus_register_event_handler: blobmsg_add_u32, an INT32 whatever the id
        // (ubusd draws ids from all 32 bits and skips a member of another type).
        let args = Table::new()
            .with("object", Value::Int32(object))
            .with("pattern", Value::String(pattern.to_owned()));
        self.invoke_typed(wire::EVENT_OBJECT, "register", args)
            .await?;
        debug!(object, pattern, "listening for ubus events");
        Ok(())
    }

    /// The next event (queued ones first). Waits without bound: wrap it in a timeout.
    /// Cancel-safe: a cancelled call loses no event and leaves no message half-written.
    pub async fn next_event(&mut self) -> Result<Event, UbusError> {
        self.flush().await?;
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            let message = self.read_message().await?;
            self.dispatch_unsolicited(message).await?;
        }
    }

    /// Events already received, without waiting.
    pub fn take_queued_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    async fn request(
        &mut self,
        kind: u8,
        peer: u32,
        attrs: Vec<MsgAttr>,
        what: &str,
    ) -> Result<Vec<Message>, UbusError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.send(&Message::new(kind, seq, peer, attrs)).await?;
        let wait = async {
            let mut replies = Vec::new();
            loop {
                let m = self.read_message().await?;
                if m.kind == msg::INVOKE {
                    self.dispatch_unsolicited(m).await?;
                    continue;
                }
                if m.seq != seq {
                    debug!(seq = m.seq, kind = m.kind, "ignoring a stale ubus reply");
                    continue;
                }
                match m.kind {
                    msg::DATA => replies.push(m),
                    msg::STATUS => {
                        let code = m
                            .status()
                            .ok_or(UbusError::Protocol("STATUS without a code"))?;
                        if code != status::OK {
                            return Err(UbusError::Status {
                                what: what.to_owned(),
                                code,
                            });
                        }
                        return Ok(replies);
                    }
                    _ => debug!(kind = m.kind, "ignoring an unexpected ubus message"),
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, wait)
            .await
            .map_err(|_| UbusError::Timeout(what.to_owned()))?
    }

    /// An `INVOKE` ubusd sent us: an event for our listener, answered with `STATUS`.
    async fn dispatch_unsolicited(&mut self, m: Message) -> Result<(), UbusError> {
        if m.kind != msg::INVOKE {
            debug!(
                kind = m.kind,
                seq = m.seq,
                "ignoring an unsolicited ubus message"
            );
            return Ok(());
        }
        let target = m.objid().unwrap_or(0);
        let code = if Some(target) == self.listener {
            self.events.push_back(Event {
                name: m.method().unwrap_or_default().to_owned(),
                data: m.data_json().unwrap_or_default(),
            });
            status::OK
        } else {
            status::NOT_FOUND
        };
        if m.no_reply() {
            return Ok(());
        }
        let reply = Message::new(
            msg::STATUS,
            m.seq,
            m.peer,
            vec![MsgAttr::Status(code), MsgAttr::ObjId(target)],
        );
        self.send(&reply).await
    }

    async fn send(&mut self, m: &Message) -> Result<(), UbusError> {
        let bytes = m.encode().map_err(UbusError::Wire)?;
        self.outbox.extend_from_slice(&bytes);
        self.flush().await
    }

    /// Write the outbox; each `write` that completes is drained, so cancelling this
    /// leaves the rest for the next call.
    async fn flush(&mut self) -> Result<(), UbusError> {
        while !self.outbox.is_empty() {
            let n = self
                .stream
                .write(&self.outbox)
                .await
                .map_err(UbusError::Io)?;
            if n == 0 {
                return Err(UbusError::Closed);
            }
            self.outbox.drain(..n);
        }
        Ok(())
    }

    async fn read_message(&mut self) -> Result<Message, UbusError> {
        loop {
            match wire::decode(&self.buf).map_err(UbusError::Wire)? {
                Decoded::Complete { message, len } => {
                    self.buf.drain(..len);
                    return Ok(message);
                }
                Decoded::Incomplete { .. } => {
                    // Read into a chunk, so a cancelled read leaves the buffer intact.
                    let mut chunk = [0u8; 8192];
                    let n = self.stream.read(&mut chunk).await.map_err(UbusError::Io)?;
                    if n == 0 {
                        return Err(UbusError::Closed);
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
}

/// The first of [`DEFAULT_SOCKETS`] that exists.
pub fn find_socket() -> Option<PathBuf> {
    DEFAULT_SOCKETS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}
