//! Loopback helpers: a fake concentrator that speaks the real protocol (it verifies the
//! cookie with `mpbond_protocol::auth::Verifier`), an echo server, and a closed port.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mpbond_agent::core::Input;
use mpbond_agent::proxy::{ConnContext, ConnParams};
use mpbond_agent::upstream::{now_unix, Upstream};
use mpbond_protocol::auth::{Key, Verifier};
use mpbond_protocol::{ErrorCode, Message, Tlv};
use mpbond_relay::message::{read_message, ReadMessage, ReadMessageError};
use mpbond_relay::relay::{relay, RelayOpts};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;

pub const CLIENT: &str = "test-client";

pub fn key() -> Key {
    Key::from_bytes([7; 32])
}

pub fn wrong_key() -> Key {
    Key::from_bytes([8; 32])
}

/// How the fake concentrator answers a Connect request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Connect to the destination, reply OK, relay.
    Relay,
    /// Reply with this error, then close.
    Refuse(ErrorCode),
    /// Close without a reply.
    Hangup,
    /// Reply OK and this data in one write, then close: the data must reach the client.
    OkWithData(&'static [u8]),
}

/// A fake concentrator on 127.0.0.1. `requests` records every verified request.
pub struct Fake {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Message>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Fake {
    /// Stop listening (connections in progress carry on).
    pub fn stop(&self) {
        self.task.abort();
    }
}

pub async fn fake_concentrator(behaviour: Behaviour) -> Fake {
    fake_concentrator_at("127.0.0.1:0".parse().unwrap(), behaviour).await
}

/// A fake concentrator on `addr`; retries while a stopped one still holds the port.
pub async fn fake_concentrator_at(addr: SocketAddr, behaviour: Behaviour) -> Fake {
    let listener = loop {
        let bound = mpbond_relay::sys::mptcp_listener(addr, 64, Some(64))
            .or_else(|_| mpbond_relay::sys::tcp_listener(addr, 64));
        match bound {
            Ok(listener) => break listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("fake concentrator listener: {e}"),
        }
    };
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let task = tokio::spawn(async move {
        let verifier = Arc::new(Mutex::new(Verifier::new(60)));
        while let Ok((stream, _)) = listener.accept().await {
            let (verifier, seen) = (verifier.clone(), seen.clone());
            tokio::spawn(serve(stream, behaviour, verifier, seen));
        }
    });
    Fake {
        addr,
        requests,
        task,
    }
}

async fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    verifier: Arc<Mutex<Verifier>>,
    seen: Arc<Mutex<Vec<Message>>>,
) {
    let ReadMessage { wire, message } = match read_message(&mut stream).await {
        Ok(read) => read,
        Err(ReadMessageError::Io(_)) => return,
        Err(e) => panic!("undecodable request: {e}"),
    };
    let verified = verifier
        .lock()
        .unwrap()
        .verify(&wire, &message, now_unix(), |id| {
            (id.as_str() == CLIENT).then(key)
        });
    if let Err(e) = verified {
        reply(&mut stream, &Message::error(e.error_code())).await;
        return;
    }
    seen.lock().unwrap().push(message.clone());
    if message.is_info() {
        let tlvs = vec![Tlv::SupportedTcpExtensions(vec![2, 4, 8])];
        reply(&mut stream, &Message { tlvs }).await;
        return;
    }
    let dest = message.destination().expect("a Connect TLV");
    match behaviour {
        Behaviour::Hangup => {}
        Behaviour::OkWithData(data) => {
            let mut wire = Message::ok().encode().expect("encodable reply");
            wire.extend_from_slice(data);
            let _ = stream.write_all(&wire).await;
        }
        Behaviour::Refuse(code) => reply(&mut stream, &Message::error(code)).await,
        Behaviour::Relay => match TcpStream::connect(dest).await {
            Err(_) => reply(&mut stream, &Message::error(ErrorCode::ConnectionReset)).await,
            Ok(out) => {
                reply(&mut stream, &Message::ok()).await;
                relay(stream, out, &RelayOpts::default()).await;
            }
        },
    }
}

async fn reply(stream: &mut TcpStream, message: &Message) {
    let _ = stream
        .write_all(&message.encode().expect("encodable reply"))
        .await;
}

/// An echo server on 127.0.0.1: echoes until EOF, then closes.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A 127.0.0.1 port with nothing listening (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

pub fn upstream(addr: SocketAddr, key: Key) -> Upstream {
    Upstream {
        addr,
        client_id: CLIENT.parse().unwrap(),
        key,
        connect_timeout: Duration::from_secs(2),
        fastopen: true,
        source: None,
        hedge: None,
        congestion: None,
        buffers: Default::default(),
    }
}

/// Connection parameters around `upstream`, with 2 s timeouts.
pub fn params(upstream: Upstream) -> ConnParams {
    ConnParams {
        upstream,
        reply_timeout: Duration::from_secs(2),
        direct_timeout: Duration::from_secs(2),
        relay: RelayOpts::default(),
        legs: Vec::new(),
        abandoned: Vec::new(),
        suspects: Vec::new(),
    }
}

/// A connection context for `upstream` and the receiver of the events it sends to the
/// decision core.
pub fn context(upstream: Upstream) -> (Arc<ConnContext>, UnboundedReceiver<Input>) {
    ConnContext::fixed(params(upstream))
}

/// The events sent so far, without waiting.
pub fn sent(events: &mut UnboundedReceiver<Input>) -> Vec<Input> {
    std::iter::from_fn(|| events.try_recv().ok()).collect()
}

/// Is MPTCP enabled in this network namespace?
pub fn mptcp_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/mptcp/enabled").is_ok_and(|s| s.trim() == "1")
}

/// Does this network namespace accept data in the SYN (server bit of tcp_fastopen)?
pub fn tfo_server_enabled() -> bool {
    mpbond_relay::sys::server_fastopen_enabled() == Some(true)
}

/// Poll `condition` every 20 ms until it holds (callers bound the wait with a timeout).
pub async fn wait_until(mut condition: impl FnMut() -> bool) {
    while !condition() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
