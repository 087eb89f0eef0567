//! The concentrator as seen from the agent: sealing Convert requests, connecting over
//! MPTCP with the request in the SYN, and reading the Convert reply.
//!
//! Shared by the proxy (a Connect request per LAN connection) and the health probe (an
//! Info request). The reply is read exactly: the 4-byte fixed header, then the rest of
//! the message as the header announces it, so no byte of the destination's data that
//! follows the reply is consumed.
//!
//! A concentrator whose kernel does not accept data in the SYN (`net.ipv4.tcp_fastopen`
//! without the 0x2 bit) makes MPTCP fall back to plain TCP, which would silently end the
//! bonding. Each Fast Open connection reports [`fastopen_evidence`] to the decision core,
//! which turns Fast Open off when MPTCP did not survive it (requests then go after the
//! handshake: one more round trip, but MPTCP) and retries it with a probe now and then.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mpbond_protocol::auth::{ClientId, Key, NONCE_LEN};
use mpbond_protocol::{
    Accepted, ClientHandshake, DecodeError, ErrorCode, Message, ReplyError, SealError,
};
use mpbond_relay::congestion::CongestionName;
use mpbond_relay::connect::{connect_with_buffers, ConnectOpts, Connected};
use mpbond_relay::message::read_steps;
use thiserror::Error;
use tokio::net::TcpStream;

use crate::core::buffers;
use crate::core::{FastOpenEvidence, Hedge, SocketBuffers};

/// How new upstream connections reach and authenticate to the concentrator: a value
/// the driver publishes (from the config and the decision core's choices) and every new
/// connection or probe takes as it is at that moment. Nobody changes it in place.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The address connections go to (the first resolved address).
    pub addr: SocketAddr,
    pub client_id: ClientId,
    pub key: Key,
    pub connect_timeout: Duration,
    /// Whether requests ride in the SYN (TCP Fast Open); the core decides.
    pub fastopen: bool,
    /// The WAN address connections start from (their initial subflow); `None`: the main
    /// route decides. The core picks it (`core::preferred_source`).
    pub source: Option<IpAddr>,
    /// Where a new connection opens a second attempt when the first gets no SYN-ACK in
    /// time (`proxy::hedge`); the core picks it (`core::hedge`).
    pub hedge: Option<Hedge>,
    /// `TCP_CONGESTION` of the MPTCP connections (`mptcp.congestion`); `None`: kernel default.
    pub congestion: Option<CongestionName>,
    /// Socket buffers of the MPTCP connections; the core sizes them
    /// (`core::buffers`), and a Fast Open connection's receive buffer is raised to
    /// `FASTOPEN_RCVBUF` ([`buffers::for_connection`]).
    pub buffers: SocketBuffers,
}

/// Why talking to the concentrator failed.
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("no random nonce: {0}")]
    Random(#[source] getrandom::Error),
    #[error("cannot seal the request: {0}")]
    Seal(#[source] SealError),
    #[error("connect to the concentrator failed: {0}")]
    Connect(#[source] io::Error),
    #[error("reading the Convert reply failed: {0}")]
    Read(#[source] io::Error),
    #[error("no Convert reply within {0:?}")]
    Timeout(Duration),
    #[error("malformed Convert reply: {0}")]
    Malformed(#[source] DecodeError),
    #[error("the concentrator refused with error {} ({:?})", .0.code(), .0)]
    Refused(ErrorCode),
    #[error("the concentrator's Info reply lists no Supported TCP Extensions")]
    NoExtensions,
}

impl From<ReplyError> for UpstreamError {
    fn from(error: ReplyError) -> Self {
        match error {
            ReplyError::Refused(code) => UpstreamError::Refused(code),
            ReplyError::Malformed(error) => UpstreamError::Malformed(error),
            ReplyError::NoExtensions => UpstreamError::NoExtensions,
        }
    }
}

impl UpstreamError {
    /// The concentrator closed (or reset) the connection before any reply: what its quiet
    /// mode does to a request it cannot authenticate (wrong client id or key, a clock off
    /// by more than the ±60 s window, a replay), and what a non-mpbond server may do.
    pub fn is_silent_close(&self) -> bool {
        matches!(self, UpstreamError::Read(e) if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        ))
    }
}

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Upstream {
    /// `message` sealed with a fresh Cookie (now, random nonce), and the handshake that
    /// reads its reply (`protocol::ClientHandshake`).
    pub fn seal(&self, message: &Message) -> Result<(ClientHandshake, Vec<u8>), UpstreamError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(UpstreamError::Random)?;
        ClientHandshake::seal(message, &self.client_id, &self.key, now_unix(), nonce)
            .map_err(UpstreamError::Seal)
    }

    /// Connect over MPTCP and send the sealed `message`, in the SYN while Fast Open is
    /// on, waiting at most `timeout` for the connection. Returns the connection and the
    /// handshake that reads the reply ([`read_reply`]).
    pub async fn open(
        &self,
        message: &Message,
        timeout: Duration,
    ) -> Result<(Connected, ClientHandshake), UpstreamError> {
        self.open_with(message, timeout, self.fastopen).await
    }

    /// [`Upstream::open`] with Fast Open chosen by the caller.
    pub async fn open_with(
        &self,
        message: &Message,
        timeout: Duration,
        fastopen: bool,
    ) -> Result<(Connected, ClientHandshake), UpstreamError> {
        self.open_via(message, timeout, fastopen, self.source).await
    }

    /// [`Upstream::open`] from the WAN address `source` (`None`: the main route decides)
    /// instead of [`Upstream::source`]: each call seals its own request.
    pub async fn open_from(
        &self,
        source: Option<IpAddr>,
        message: &Message,
        timeout: Duration,
    ) -> Result<(Connected, ClientHandshake), UpstreamError> {
        self.open_via(message, timeout, self.fastopen, source).await
    }

    async fn open_via(
        &self,
        message: &Message,
        timeout: Duration,
        fastopen: bool,
        source: Option<IpAddr>,
    ) -> Result<(Connected, ClientHandshake), UpstreamError> {
        let (handshake, request) = self.seal(message)?;
        let opts = ConnectOpts {
            congestion: self.congestion.clone(),
            mptcp: true,
            fastopen,
            timeout,
            mark: None,
            bind: source,
        };
        let buffers = buffers::for_connection(self.buffers, fastopen);
        let connected = connect_with_buffers(self.addr, &request, &opts, Some(buffers))
            .await
            .map_err(UpstreamError::Connect)?;
        Ok((connected, handshake))
    }
}

/// What a connection says about Fast Open: nothing unless it used it; then whether MPTCP
/// survived the data in the SYN (a concentrator without the TFO server bit turns it into
/// plain TCP). The decision core learns from it.
pub fn fastopen_evidence(connected: &Connected) -> Option<FastOpenEvidence> {
    connected.fastopen.then_some(FastOpenEvidence {
        mptcp: connected.mptcp,
    })
}

/// Read the reply to the request `handshake` sealed, waiting at most `timeout`. Reads
/// exactly the reply: the destination's bytes that follow it stay in `stream`.
pub async fn read_reply(
    stream: &mut TcpStream,
    mut handshake: ClientHandshake,
    timeout: Duration,
) -> Result<Accepted, UpstreamError> {
    let reading = read_steps(stream, |bytes| handshake.receive(bytes).step);
    match tokio::time::timeout(timeout, reading).await {
        Ok(Ok(reply)) => reply.map_err(UpstreamError::from),
        Ok(Err(error)) => Err(UpstreamError::Read(error)),
        Err(_) => Err(UpstreamError::Timeout(timeout)),
    }
}
