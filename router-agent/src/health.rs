//! The health task: the I/O shell around [`model::Health`](crate::model::Health).
//!
//! Every `interval` (or at once when the proxy pokes `probe_now`), it sends the
//! concentrator a sealed Convert Info request over MPTCP and reads the reply. While
//! Fast Open is off (see [`crate::upstream`]), one probe a minute tries it again. A reply
//! with a Supported TCP Extensions TLV is a success; anything else (no connection, a
//! timeout, an Error TLV such as 32 "not authorized") is a failure. The state machine
//! decides; this task then brings the nft table in line with the verdict, retrying on
//! the next probe if the kernel refused.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use mpbond_protocol::{ErrorCode, Message, Tlv};
use thiserror::Error;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::HealthConfig;
use crate::model::{Health, LinkState, Probe};
use crate::nft::{NftError, NftTable, RedirectSpec};
use crate::upstream::{read_reply, Upstream, UpstreamError};

/// Nudged probes are at least this far apart.
const MIN_PROBE_GAP: Duration = Duration::from_millis(250);
/// While Fast Open is off, a probe tries it again this often.
const FASTOPEN_RETRY: Duration = Duration::from_secs(60);

/// Why a probe failed.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("concentrator answered with error {} ({code:?})", code.code())]
    Rejected { code: ErrorCode },
    #[error("concentrator reply has no Supported TCP Extensions TLV")]
    NoExtensions,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Probe the concentrator once, within `timeout` overall, with the current Fast Open
/// setting.
pub async fn probe(upstream: &Upstream, timeout: Duration) -> Result<(), ProbeError> {
    probe_with(upstream, timeout, upstream.fastopen.load(Relaxed)).await
}

/// [`probe`] with Fast Open chosen by the caller.
pub async fn probe_with(
    upstream: &Upstream,
    timeout: Duration,
    fastopen: bool,
) -> Result<(), ProbeError> {
    let attempt = async {
        let connected = upstream
            .open_with(&Message::info(), timeout, fastopen)
            .await?;
        let mut stream = connected.stream;
        let reply = read_reply(&mut stream, timeout).await?;
        if let Some(code) = reply.error_code() {
            return Err(ProbeError::Rejected { code });
        }
        let answered = reply
            .tlvs
            .iter()
            .any(|tlv| matches!(tlv, Tlv::SupportedTcpExtensions(_)));
        if answered {
            Ok(())
        } else {
            Err(ProbeError::NoExtensions)
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

/// Log a probe failure: loudly for the first of a streak, quietly after.
pub fn log_failure(error: &ProbeError, first_of_streak: bool) {
    let rejected_key = matches!(
        error,
        ProbeError::Rejected {
            code: ErrorCode::NotAuthorized
        }
    );
    match (first_of_streak, rejected_key) {
        (true, true) => error!(
            %error,
            "concentrator rejected our key; check concentrator.client_id and concentrator.key"
        ),
        (true, false) => warn!(%error, "health probe failed"),
        (false, _) => debug!(%error, "health probe failed"),
    }
}

/// The seam at the kernel: where the verdict goes. [`NftTable`] in production; tests
/// record the specs instead.
pub trait RedirectTable {
    /// Replace the table's contents with `spec`, atomically.
    fn apply(&mut self, spec: &RedirectSpec) -> Result<(), NftError>;

    /// Told of every probe after the table was brought in line: its RTT or its error,
    /// and whether the redirect is on. For the status; does nothing by default.
    fn observe(&mut self, _result: Result<Duration, &ProbeError>, _redirect: bool) {}
}

impl RedirectTable for NftTable {
    fn apply(&mut self, spec: &RedirectSpec) -> Result<(), NftError> {
        NftTable::apply(self, spec)
    }
}

/// The running health task. Owns the table and hands it back when it stops.
pub struct Monitor<T = NftTable> {
    pub health: Health,
    pub upstream: Arc<Upstream>,
    pub config: HealthConfig,
    /// The desired table; its `redirect` field is what the kernel currently has.
    pub spec: RedirectSpec,
    pub table: T,
    pub probe_now: Arc<Notify>,
}

impl<T> fmt::Debug for Monitor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("health", &self.health)
            .field("redirect", &self.spec.redirect)
            .finish_non_exhaustive()
    }
}

impl<T: RedirectTable> Monitor<T> {
    /// Probe until `shutdown`, then return the table (still installed) for removal.
    pub async fn run(mut self, shutdown: CancellationToken) -> T {
        let interval = self.config.interval;
        let mut next = Instant::now() + interval;
        let mut last_probe = Instant::now();
        let mut last_fastopen_try = Instant::now();
        let mut failing = self.health.state() == LinkState::Down;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
                _ = self.probe_now.notified() => debug!("probe requested by the proxy"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(last_probe + MIN_PROBE_GAP) => {}
            }
            let mut fastopen = self.upstream.fastopen.load(Relaxed);
            if !fastopen && last_fastopen_try.elapsed() >= FASTOPEN_RETRY {
                fastopen = true;
                last_fastopen_try = Instant::now();
            }
            let started = Instant::now();
            let result = tokio::select! {
                _ = shutdown.cancelled() => break,
                result = probe_with(&self.upstream, self.config.timeout, fastopen) => result,
            };
            last_probe = Instant::now();
            let rtt = last_probe - started;
            next = last_probe + interval;
            match &result {
                Ok(()) => failing = false,
                Err(error) => {
                    log_failure(error, !failing);
                    failing = true;
                }
            }
            // Our probe follows the main default route. If that WAN is dead but another
            // WAN's own probe reached the concentrator within the window the thresholds
            // allow, the concentrator is reachable: keep the redirect (MPTCP uses the
            // live WANs) rather than failing open onto the dead route.
            let window = interval * self.config.down_after + self.config.timeout;
            let via_wan = result.is_err()
                && self
                    .upstream
                    .wan_reach
                    .within(window, last_probe.into_std());
            if via_wan {
                debug!("main-route probe failed, but a WAN probe reached the concentrator");
            }
            let verdict = Probe::from(result.is_ok() || via_wan);
            if let Some(t) = self.health.on_probe(verdict, last_probe.into_std()) {
                match t.to {
                    LinkState::Down => warn!(
                        up_for = ?t.after,
                        "concentrator unreachable, redirect withdrawn (fail open)"
                    ),
                    LinkState::Up => info!(
                        down_for = ?t.after,
                        "concentrator reachable, redirect restored"
                    ),
                }
            }
            self.sync_table();
            let redirect = self.spec.redirect;
            self.table.observe(result.as_ref().map(|()| rtt), redirect);
        }
        self.table
    }

    /// Make the kernel table match the state machine's verdict.
    fn sync_table(&mut self) {
        let want = self.health.state().redirect();
        if self.spec.redirect == want {
            return;
        }
        let mut spec = self.spec.clone();
        spec.redirect = want;
        match self.table.apply(&spec) {
            Ok(()) => {
                info!(redirect = want, table = %spec.table, "nft table updated");
                self.spec = spec;
            }
            Err(error) => {
                error!(%error, redirect = want, "cannot update the nft table, will retry")
            }
        }
    }
}
