//! The concentrator probe over the main route: a sealed Convert Info request over MPTCP
//! and its reply. A reply with a Supported TCP Extensions TLV is a success; anything else
//! (no connection, a timeout, an Error TLV such as 32 "not authorized") is a failure.
//! When to probe, with or without Fast Open, and what a result means for the redirect is
//! the decision core's ([`crate::core`]); the driver runs this when the core asks.

use std::time::Duration;

use mpbond_protocol::{ErrorCode, Message};
use thiserror::Error;
use tracing::{debug, error, warn};

use crate::core::FastOpenEvidence;
use crate::upstream::{fastopen_evidence, read_reply, Upstream, UpstreamError};

/// Why a probe failed.
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("concentrator answered with error {} ({code:?})", code.code())]
    Rejected { code: ErrorCode },
    #[error("concentrator closed the connection without answering")]
    Silent(#[source] UpstreamError),
    #[error("concentrator reply has no Supported TCP Extensions TLV")]
    NoExtensions,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// The result of one probe, and what its connection said about Fast Open.
#[derive(Debug)]
pub struct ProbeOutcome {
    pub result: Result<(), ProbeError>,
    pub fastopen: Option<FastOpenEvidence>,
}

/// Probe the concentrator once over the main route, within `timeout` overall, with Fast
/// Open as the caller says.
pub async fn probe(upstream: &Upstream, timeout: Duration, fastopen: bool) -> ProbeOutcome {
    let mut evidence = None;
    let attempt = async {
        let (connected, handshake) = upstream
            .open_with(&Message::info(), timeout, fastopen)
            .await?;
        evidence = fastopen_evidence(&connected);
        let mut stream = connected.stream;
        match read_reply(&mut stream, handshake, timeout).await {
            Ok(_supported) => Ok(()),
            Err(UpstreamError::Refused(code)) => Err(ProbeError::Rejected { code }),
            Err(UpstreamError::NoExtensions) => Err(ProbeError::NoExtensions),
            Err(silent) if silent.is_silent_close() => Err(ProbeError::Silent(silent)),
            Err(other) => Err(ProbeError::Upstream(other)),
        }
    };
    let result = match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout(timeout)),
    };
    ProbeOutcome {
        result,
        fastopen: evidence,
    }
}

/// Log a probe failure: loudly for the first of a streak, quietly after.
pub fn log_failure(error: &ProbeError, first_of_streak: bool) {
    let not_authorized = matches!(
        error,
        ProbeError::Rejected {
            code: ErrorCode::NotAuthorized
        } | ProbeError::Silent(_)
    );
    match (first_of_streak, not_authorized) {
        (true, true) => error!(
            %error,
            "the concentrator does not accept us; check concentrator.client_id and \
             concentrator.key, and that the router's clock is within 60 s of the real time"
        ),
        (true, false) => warn!(%error, "health probe failed"),
        (false, _) => debug!(%error, "health probe failed"),
    }
}
