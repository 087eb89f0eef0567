//! One leg of a protected flow: a plain TCP connection to the concentrator bound to one
//! WAN's address (so the agent's per-WAN policy rule routes it, and no MPTCP subflow
//! moves it to another WAN), the flow's UDP request with a Group TLV, then sequenced
//! DATAGRAM capsules both ways (`duplicate` mode), or FEC source and repair capsules
//! (`fec` mode).
//!
//! The flow task hands it encoded capsules through a bounded channel (it drops what does
//! not fit, so a stalled leg never holds up the other) and hears from it through
//! [`LegEvent`]s. Dropping the [`LegHandle`] ends the leg.
//!
//! In `fec` mode the leg watches its FEC sources until its connection has them
//! acknowledged ([`LateWatch`]: `SIOCOUTQ` against the bytes written, the bound from the
//! connection's `TCP_INFO` RTT): a source late, or written while the leg is stuck behind
//! a late one, goes back to the flow ([`LegEvent::Late`]) to be sent on another leg,
//! and the leg tells the flow when it gets stuck and unstuck ([`LegEvent::Stuck`]).
//! Where the connection's unacknowledged bytes cannot be read (`SIOCOUTQ` fails) the
//! watch fails open: everything counts as acknowledged.
//! It acknowledges what it reads at once (`TCP_QUICKACK`), so the concentrator's own
//! watch is not fooled by a delayed ACK.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Instant;

use mpbond_protocol::udp::{
    decode_leg_capsule, late_bound, Group, LateWatch, LegCapsule, OwnedRepair, LATE_MIN, MAX_LEGS,
};
use mpbond_protocol::{ErrorCode, Message};
use mpbond_relay::connect::{connect_with, ConnectOpts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::sleep_until;
use tracing::{debug, info};

use crate::core::protect::LegSource;
use crate::proxy::ConnParams;
use crate::upstream::{read_reply, UpstreamError};

/// Capsules a leg may be behind the flow before new ones are dropped for it.
pub const LEG_QUEUE: usize = 64;
/// `TCP_NOTSENT_LOWAT` of a leg: little waits in the kernel, the rest in [`LEG_QUEUE`].
const NOTSENT_LOWAT_BYTES: libc::c_int = 16 * 1024;
const TCP_NOTSENT_LOWAT: libc::c_int = 25;

/// What a leg tells its flow.
#[derive(Debug)]
pub enum LegEvent {
    /// The concentrator accepted the leg.
    Opened { leg: u8 },
    /// The concentrator refused it.
    Refused { leg: u8, code: ErrorCode },
    /// It could not connect, or its connection ended.
    Failed { leg: u8, why: String },
    /// A sequenced datagram from the concentrator.
    Datagram { leg: u8, seq: u32, payload: Vec<u8> },
    /// An FEC source datagram from the concentrator.
    FecSource { leg: u8, seq: u32, payload: Vec<u8> },
    /// An FEC repair from the concentrator.
    FecRepair { leg: u8, repair: OwnedRepair },
    /// FEC sources this leg's connection has not had acknowledged in time (or written
    /// while it was stuck): send them on another leg.
    Late { leg: u8, capsules: Vec<Arc<[u8]>> },
    /// The leg got stuck behind a late source (`fec` mode: send sources elsewhere), or
    /// its acknowledgements caught up; sent only when that changes.
    Stuck { leg: u8, stuck: bool },
}

/// A capsule for a leg, and whether it is an FEC source to watch (and hand back late).
pub type Outgoing = (Arc<[u8]>, bool);

/// A running leg; dropping it ends the leg.
#[derive(Debug)]
pub struct LegHandle {
    /// Encoded capsules to send.
    pub capsules: mpsc::Sender<Outgoing>,
    /// Whether the leg is stuck behind a late source (`fec` mode: send elsewhere), as
    /// its last [`LegEvent::Stuck`] said; the flow keeps it.
    pub stuck: bool,
    task: JoinHandle<()>,
}

impl Drop for LegHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a leg connects with.
#[derive(Debug, Clone)]
pub struct LegSpec {
    pub leg: u8,
    pub source: LegSource,
    pub dst: SocketAddr,
    pub group: u64,
}

/// Start leg `spec` with the connection parameters `params`.
pub fn spawn(spec: LegSpec, params: Arc<ConnParams>, events: mpsc::Sender<LegEvent>) -> LegHandle {
    let (capsules, rx) = mpsc::channel(LEG_QUEUE);
    let task = tokio::spawn(async move {
        let leg = spec.leg;
        let why = match run(&spec, &params, rx, &events).await {
            Ok(()) => "closed by the flow".to_owned(),
            Err(LegError::Refused(code)) => {
                let _ = events.send(LegEvent::Refused { leg, code }).await;
                return;
            }
            Err(error) => error.to_string(),
        };
        debug!(leg, wan = %spec.source.wan, %why, "protected flow leg ended");
        let _ = events.send(LegEvent::Failed { leg, why }).await;
    });
    LegHandle {
        capsules,
        stuck: false,
        task,
    }
}

/// Why a leg ended.
#[derive(Debug, thiserror::Error)]
enum LegError {
    #[error("refused with error {}", .0.code())]
    Refused(ErrorCode),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the leg's connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("broken capsule stream: {0}")]
    Capsules(&'static str),
    #[error("the concentrator closed the leg")]
    Closed,
}

async fn run(
    spec: &LegSpec,
    params: &ConnParams,
    capsules: mpsc::Receiver<Outgoing>,
    events: &mpsc::Sender<LegEvent>,
) -> Result<(), LegError> {
    let upstream = &params.upstream;
    let group = Group {
        id: spec.group,
        leg: spec.leg,
        legs: MAX_LEGS,
    };
    let (handshake, request) = upstream.seal(&Message::udp_leg_request(spec.dst, group))?;
    let opts = ConnectOpts {
        mptcp: false,
        fastopen: upstream.fastopen,
        timeout: upstream.connect_timeout,
        mark: None,
        bind: Some(spec.source.addr),
        congestion: None,
    };
    let connected = connect_with(upstream.addr, &request, &opts)
        .await
        .map_err(UpstreamError::Connect)?;
    let mut stream = connected.stream;
    let _ = stream.set_nodelay(true);
    let _ = mpbond_netlink::sockopt::set_int(
        &stream,
        libc::IPPROTO_TCP,
        TCP_NOTSENT_LOWAT,
        NOTSENT_LOWAT_BYTES,
    );
    match read_reply(&mut stream, handshake, params.reply_timeout).await {
        Ok(_) => {}
        Err(UpstreamError::Refused(code)) => return Err(LegError::Refused(code)),
        Err(error) => return Err(error.into()),
    }
    let leg = spec.leg;
    if events.send(LegEvent::Opened { leg }).await.is_err() {
        return Ok(());
    }
    let (read, write) = stream.into_split();
    tokio::select! {
        done = send_capsules(write, capsules, leg, events) => done,
        done = read_capsules(read, leg, events) => done,
    }
}

/// Write the flow's capsules until it drops the leg; hand late sources back.
async fn send_capsules(
    mut write: OwnedWriteHalf,
    mut capsules: mpsc::Receiver<Outgoing>,
    leg: u8,
    events: &mpsc::Sender<LegEvent>,
) -> Result<(), LegError> {
    let mut watch = LateWatch::new();
    let mut bound = LATE_MIN;
    let mut stuck = false;
    let mut blind = false;
    loop {
        let due = watch
            .poll_timeout(bound)
            .map(tokio::time::Instant::from_std);
        let mut late = Vec::new();
        tokio::select! {
            got = capsules.recv() => {
                let Some((capsule, source)) = got else {
                    return Ok(());
                };
                // Only a source, or one still watched, needs the acknowledgements.
                if source || watch.watching() {
                    look(&write, &mut watch, &mut bound, leg, &mut blind);
                }
                write.write_all(&capsule).await?;
                let watched = source.then(|| capsule.clone());
                late.extend(watch.wrote(capsule.len(), watched, Instant::now()));
            }
            () = sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                look(&write, &mut watch, &mut bound, leg, &mut blind);
                watch.handle_timeout(Instant::now(), bound, &mut late);
            }
        }
        if watch.stuck() != stuck {
            stuck = watch.stuck();
            if events.send(LegEvent::Stuck { leg, stuck }).await.is_err() {
                return Ok(());
            }
        }
        if !late.is_empty() {
            let event = LegEvent::Late {
                leg,
                capsules: late,
            };
            if events.send(event).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Read the connection's unacknowledged bytes and RTT into `watch` and `bound`. If the
/// bytes cannot be read (`SIOCOUTQ` fails), everything counts as acknowledged, so the
/// leg is never stuck for good; said once per leg (`blind`).
fn look(
    write: &OwnedWriteHalf,
    watch: &mut LateWatch<Arc<[u8]>>,
    bound: &mut std::time::Duration,
    leg: u8,
    blind: &mut bool,
) {
    let stream: &tokio::net::TcpStream = write.as_ref();
    match mpbond_netlink::sockopt::unacked_bytes(stream) {
        Ok(unacked) => watch.unacked(unacked),
        Err(error) => {
            if !std::mem::replace(blind, true) {
                info!(leg, %error, "protected flow leg: cannot read its unacknowledged bytes, late sources are not resent");
            }
            watch.unacked(0);
        }
    }
    if let Some((srtt, rttvar)) = mpbond_netlink::sockopt::tcp_rtt(stream) {
        *bound = late_bound(srtt, rttvar);
    }
}

/// Read capsules and pass the sequenced and FEC datagrams on.
async fn read_capsules(
    mut read: OwnedReadHalf,
    leg: u8,
    events: &mpsc::Sender<LegEvent>,
) -> Result<(), LegError> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = read.read(&mut buf).await?;
        if n == 0 {
            return Err(LegError::Closed);
        }
        let stream: &tokio::net::TcpStream = read.as_ref();
        let _ = mpbond_netlink::sockopt::quickack(stream);
        partial.extend_from_slice(&buf[..n]);
        let mut at = 0;
        loop {
            match decode_leg_capsule(&partial[at..]) {
                Ok(Some((capsule, used))) => {
                    at += used;
                    let event = match capsule {
                        LegCapsule::Sequenced { seq, payload } => {
                            let payload = payload.to_vec();
                            LegEvent::Datagram { leg, seq, payload }
                        }
                        LegCapsule::FecSource { seq, payload } => {
                            let payload = payload.to_vec();
                            LegEvent::FecSource { leg, seq, payload }
                        }
                        LegCapsule::FecRepair(repair) => LegEvent::FecRepair {
                            leg,
                            repair: repair.to_owned_repair(),
                        },
                        LegCapsule::Other(_) => continue,
                    };
                    if events.send(event).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(error) => return Err(LegError::Capsules(error.reason())),
            }
        }
        partial.drain(..at);
    }
}
