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
//! bonding. [`Upstream::learn`] notices that and turns Fast Open off, so requests go after
//! the handshake (one more round trip, but MPTCP). The health task retries Fast Open now
//! and then and turns it back on when it works.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mpbond_protocol::auth::{self, ClientId, Key};
use mpbond_protocol::{decode, message_len, DecodeError, Decoded, EncodeError, Message};
use mpbond_relay::connect::{connect_with, ConnectOpts, Connected};
// 64-bit atomics that also build on 32-bit MIPS.
use portable_atomic::{AtomicU64, Ordering::Relaxed};
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::{info, warn};

/// How to reach and authenticate to the concentrator.
#[derive(Debug)]
pub struct Upstream {
    /// The address connections go to (the first resolved address).
    pub addr: SocketAddr,
    pub client_id: ClientId,
    pub key: Key,
    pub connect_timeout: Duration,
    /// Whether requests ride in the SYN (TCP Fast Open). Starts `true`; see [`Upstream::learn`].
    pub fastopen: AtomicBool,
    /// When a per-WAN probe last reached the concentrator: evidence for the fail-open
    /// monitor, whose own probe only follows the main route.
    pub wan_reach: WanReach,
    /// The WAN address new upstream connections start from (their initial subflow).
    pub source: Source,
}

/// Where new upstream connections start. The control plane sets it to an address of a
/// WAN that is up; with `None` the kernel's main route decides. Binding matters because
/// an MPTCP connection only adds subflows once its initial subflow is established: an
/// initial SYN sent down a dead main route would stall every new connection.
#[derive(Debug, Default)]
pub struct Source(std::sync::Mutex<Option<IpAddr>>);

impl Source {
    /// The address to bind, if any.
    pub fn get(&self) -> Option<IpAddr> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Set the address; returns true if it changed.
    pub fn set(&self, source: Option<IpAddr>) -> bool {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *guard, source) != source
    }
}

/// The last time any WAN's own probe reached the concentrator. The control plane writes
/// it; the fail-open monitor reads it, so that a dead WAN under the main default route
/// does not withdraw the redirect while another WAN still reaches the concentrator.
#[derive(Debug)]
pub struct WanReach {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last success, plus one; 0 = never.
    last_ok_ms: AtomicU64,
}

impl Default for WanReach {
    fn default() -> Self {
        WanReach {
            epoch: Instant::now(),
            last_ok_ms: AtomicU64::new(0),
        }
    }
}

impl WanReach {
    /// A WAN probe reached the concentrator at `at`.
    pub fn note(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        self.last_ok_ms.fetch_max(ms, Relaxed);
    }

    /// Whether some WAN reached the concentrator within `window` before `now`.
    pub fn within(&self, window: Duration, now: Instant) -> bool {
        let last = self.last_ok_ms.load(Relaxed);
        if last == 0 {
            return false;
        }
        let at = self.epoch + Duration::from_millis(last - 1);
        now.saturating_duration_since(at) <= window
    }
}

/// Why talking to the concentrator failed.
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("no random nonce: {0}")]
    Random(#[source] getrandom::Error),
    #[error("cannot encode the request: {0}")]
    Encode(#[source] EncodeError),
    #[error("connect to the concentrator failed: {0}")]
    Connect(#[source] io::Error),
    #[error("reading the Convert reply failed: {0}")]
    Read(#[source] io::Error),
    #[error("no Convert reply within {0:?}")]
    Timeout(Duration),
    #[error("malformed Convert reply: {0}")]
    Malformed(#[source] DecodeError),
    #[error("malformed Convert reply: length mismatch")]
    Truncated,
}

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Upstream {
    /// `message` encoded with a fresh Cookie (now, random nonce).
    pub fn seal(&self, message: &Message) -> Result<Vec<u8>, UpstreamError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(UpstreamError::Random)?;
        auth::seal(message, &self.client_id, &self.key, now_unix(), nonce)
            .map_err(UpstreamError::Encode)
    }

    /// Connect over MPTCP and send the sealed `message`, in the SYN while Fast Open is
    /// on, waiting at most `timeout` for the connection.
    pub async fn open(
        &self,
        message: &Message,
        timeout: Duration,
    ) -> Result<Connected, UpstreamError> {
        self.open_with(message, timeout, self.fastopen.load(Relaxed))
            .await
    }

    /// [`Upstream::open`] with Fast Open chosen by the caller. Learns from the result.
    pub async fn open_with(
        &self,
        message: &Message,
        timeout: Duration,
        fastopen: bool,
    ) -> Result<Connected, UpstreamError> {
        let request = self.seal(message)?;
        let opts = ConnectOpts {
            mptcp: true,
            fastopen,
            timeout,
            mark: None,
            bind: self.source.get(),
        };
        let connected = connect_with(self.addr, &request, &opts)
            .await
            .map_err(UpstreamError::Connect)?;
        self.learn(&connected);
        Ok(connected)
    }

    /// After a Fast Open connection: keep Fast Open on if the connection stayed MPTCP,
    /// turn it off if it fell back to TCP. Returns the new setting if it changed.
    pub fn learn(&self, connected: &Connected) -> Option<bool> {
        if !connected.fastopen {
            return None; // Fast Open was not used, so this says nothing about it.
        }
        let works = connected.mptcp;
        if self.fastopen.swap(works, Relaxed) == works {
            return None;
        }
        if works {
            info!("TCP Fast Open with MPTCP works again: requests ride in the SYN");
        } else {
            warn!(
                "the concentrator ignored the request in the SYN and MPTCP fell back to TCP; \
                 sending requests after the handshake instead (one more round trip). \
                 Enable TCP Fast Open on the concentrator (net.ipv4.tcp_fastopen=3)"
            );
        }
        Some(works)
    }
}

/// Read exactly one Convert message from `stream`, waiting at most `timeout`.
pub async fn read_reply(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Message, UpstreamError> {
    match tokio::time::timeout(timeout, read_message(stream)).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::Timeout(timeout)),
    }
}

async fn read_message(stream: &mut TcpStream) -> Result<Message, UpstreamError> {
    let mut header = [0u8; 4];
    stream
        .read_exact(&mut header)
        .await
        .map_err(UpstreamError::Read)?;
    let total = message_len(header).map_err(UpstreamError::Malformed)?;
    let mut buf = vec![0u8; total.max(header.len())];
    buf[..header.len()].copy_from_slice(&header);
    stream
        .read_exact(&mut buf[header.len()..])
        .await
        .map_err(UpstreamError::Read)?;
    match decode(&buf).map_err(UpstreamError::Malformed)? {
        Decoded::Complete { message, len } if len == buf.len() => Ok(message),
        _ => Err(UpstreamError::Truncated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wan_reach_is_a_recent_success() {
        let reach = WanReach::default();
        let t0 = Instant::now();
        assert!(!reach.within(Duration::from_secs(3600), t0), "never noted");
        reach.note(t0);
        assert!(reach.within(Duration::from_millis(500), t0 + Duration::from_millis(400)));
        assert!(!reach.within(Duration::from_millis(500), t0 + Duration::from_millis(600)));
        // An older note never moves the last success back.
        reach.note(t0 - Duration::from_secs(10));
        assert!(reach.within(Duration::from_millis(500), t0 + Duration::from_millis(400)));
    }
}
