//! The bidirectional relay between two TCP (or MPTCP) sockets.
//!
//! Each direction runs `pump`: zero-copy `splice(2)` through its own pipe, or a buffered
//! copy where the kernel refuses to splice. A direction whose source is an MPTCP socket
//! reads it with `recv` into a pooled buffer instead (`recv`): the kernel has no
//! zero-copy splice out of MPTCP, and its copying splice costs more than a `recv`. A
//! direction holds its pipe (or buffer) only while data moves and gives it back to a
//! small pool when its source has nothing to read (`pool`), so an idle relayed connection
//! holds two descriptors, its sockets ([`pipes_in_use`] counts the pipes held;
//! `MPBOND_PIPE_RELEASE=0` keeps them). Both directions and the idle timer are polled by
//! one future, so the relay costs one task. The rules:
//!
//! * end of stream from one socket => `shutdown(Write)` on the other; the opposite
//!   direction keeps going (half-close);
//! * `ECONNRESET`/`EPIPE` on one socket => the other socket is reset (`SO_LINGER` 0 and
//!   close) and the relay ends with [`CloseReason::ResetByA`] or [`CloseReason::ResetByB`];
//! * any other I/O error => both sockets are reset, [`CloseReason::Error`];
//! * with [`relay_with_lead`], `a` first gets our own bytes, in one write with `b`'s first
//!   bytes when they come soon enough;
//! * no byte in either direction for `idle_timeout` => both sockets are closed,
//!   [`CloseReason::IdleTimeout`].
//!
//! Splicing into a socket whose peer is gone raises `SIGPIPE` (the kernel's
//! `splice_to_socket` does not pass `MSG_NOSIGNAL`). Rust programs ignore `SIGPIPE` by
//! default, so this only matters to a host that restores its default action.

mod coalesce;
mod idle;
mod lead;
mod pace;
mod pipe;
mod pool;
mod pump;
mod recv;

use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

// 64-bit atomics that also build on 32-bit MIPS.
use portable_atomic::{AtomicU64, Ordering};
use tokio::net::TcpStream;

pub use lead::Lead;
pub use pace::{Grant, Pace};
pub use pool::{pipes_in_use, POOL_MAX_DESCRIPTORS};
pub use pump::Mode;
use pump::{pump, End, Meter, PumpError};

/// Why a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both directions reached end of stream.
    Finished,
    /// Socket `a` was reset (`ECONNRESET`/`EPIPE`); `b` was reset in turn.
    ResetByA,
    /// Socket `b` was reset (`ECONNRESET`/`EPIPE`); `a` was reset in turn.
    ResetByB,
    /// No bytes moved in either direction for [`RelayOpts::idle_timeout`].
    IdleTimeout,
    /// Another I/O error; both sockets were reset.
    Error,
}

impl CloseReason {
    /// A short snake_case name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Finished => "finished",
            CloseReason::ResetByA => "reset_by_a",
            CloseReason::ResetByB => "reset_by_b",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Error => "error",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a relay moved, and how it ended.
#[derive(Debug, Clone, Copy)]
pub struct RelayStats {
    /// Bytes read from `a` and written to `b`.
    pub a_to_b: u64,
    /// Bytes read from `b` and written to `a`.
    pub b_to_a: u64,
    /// Why the relay ended.
    pub close: CloseReason,
}

/// Relay options.
#[derive(Debug, Clone, Default)]
pub struct RelayOpts {
    /// End the relay when no bytes moved either way for this long. None: never.
    pub idle_timeout: Option<Duration>,
    /// A read budget for the `b → a` direction when `b` is an MPTCP socket (the agent's
    /// upstream): see [`Pace`]. None: read as fast as data comes.
    pub pace: Option<Arc<Pace>>,
}

/// Copy both ways until both directions finished. splice() through a pipe pair per
/// direction (zero-copy); falls back to read/write copy if splice fails with EINVAL.
/// EOF in one direction => shutdown(Write) on the other socket (half-close), the other
/// direction keeps going. ECONNRESET/EPIPE on either side => the OTHER socket is reset
/// (linger 0 + close). Never panics.
pub async fn relay(a: TcpStream, b: TcpStream, opts: &RelayOpts) -> RelayStats {
    relay_with(a, b, opts, Mode::Splice).await
}

/// [`relay`] with the data path chosen: [`Mode::Copy`] never splices (for measurements and
/// for sockets known not to splice).
pub async fn relay_with(a: TcpStream, b: TcpStream, opts: &RelayOpts, mode: Mode) -> RelayStats {
    let stats = run(&a, &b, opts, mode, None).await;
    drop((a, b));
    stats
}

/// [`relay`] on borrowed sockets: the caller closes them, after the relay ended (a reset
/// is already armed: `SO_LINGER` 0, so the close sends RST). For a caller that must do
/// something before the sockets close, such as take a socket's raw descriptor out of a
/// registry a sampler reads (the agent's `LiveUpstreams`).
pub async fn relay_borrowed(a: &TcpStream, b: &TcpStream, opts: &RelayOpts) -> RelayStats {
    run(a, b, opts, Mode::Splice, None).await
}

/// [`relay`] where `a` first gets `lead` (the concentrator's Convert reply), in the same
/// write as `b`'s first bytes if they arrive within [`Lead::hold`]. `a → b` starts at
/// once; see the `lead` module for the details.
pub async fn relay_with_lead(
    a: TcpStream,
    b: TcpStream,
    opts: &RelayOpts,
    lead: &Lead,
) -> RelayStats {
    let stats = run(&a, &b, opts, Mode::Splice, Some(lead)).await;
    drop((a, b));
    stats
}

/// Relay until both directions finished or one failed; the sockets stay open (the
/// callers close them), a reset armed on the ones to reset.
async fn run(
    a: &TcpStream,
    b: &TcpStream,
    opts: &RelayOpts,
    mode: Mode,
    lead: Option<&Lead>,
) -> RelayStats {
    let clock = idle::Clock::start();
    let (a_to_b, b_to_a, activity) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let close = {
        let forward = Meter {
            bytes: &a_to_b,
            activity: &activity,
            clock,
        };
        let backward = Meter {
            bytes: &b_to_a,
            activity: &activity,
            clock,
        };
        let mut forward = pin!(pump(a, b, mode, &forward, None));
        let mut backward = pin!(async {
            if let Some(lead) = lead {
                lead::send_lead(b, a, lead, &backward).await?;
            }
            pump(b, a, mode, &backward, opts.pace.as_deref()).await
        });
        let mut idle = pin!(idle::expired(clock, &activity, opts.idle_timeout));
        let (mut forward_done, mut backward_done) = (false, false);
        loop {
            tokio::select! {
                result = &mut forward, if !forward_done => match result {
                    Ok(()) => forward_done = true,
                    Err(error) => break classify(error, Side::AToB),
                },
                result = &mut backward, if !backward_done => match result {
                    Ok(()) => backward_done = true,
                    Err(error) => break classify(error, Side::BToA),
                },
                () = &mut idle => break CloseReason::IdleTimeout,
            }
            if forward_done && backward_done {
                break CloseReason::Finished;
            }
        }
    };
    match close {
        CloseReason::ResetByA => crate::sys::reset_ref(b),
        CloseReason::ResetByB => crate::sys::reset_ref(a),
        CloseReason::Error => {
            crate::sys::reset_ref(a);
            crate::sys::reset_ref(b);
        }
        CloseReason::Finished | CloseReason::IdleTimeout => {}
    }
    let stats = RelayStats {
        a_to_b: a_to_b.load(Ordering::Relaxed),
        b_to_a: b_to_a.load(Ordering::Relaxed),
        close,
    };
    tracing::debug!(
        a_to_b = stats.a_to_b,
        b_to_a = stats.b_to_a,
        close = stats.close.as_str(),
        "relay ended"
    );
    stats
}

#[derive(Debug, Clone, Copy)]
enum Side {
    AToB,
    BToA,
}

/// Map a failed direction to the close reason: which socket failed, and whether it was
/// a reset.
fn classify(failure: PumpError, side: Side) -> CloseReason {
    let on_a = matches!(
        (side, failure.end),
        (Side::AToB, End::Src) | (Side::BToA, End::Dst)
    );
    if is_reset(&failure.error) {
        if on_a {
            CloseReason::ResetByA
        } else {
            CloseReason::ResetByB
        }
    } else {
        let socket = if on_a { "a" } else { "b" };
        tracing::debug!(error = %failure.error, socket, "relay I/O error");
        CloseReason::Error
    }
}

fn is_reset(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ECONNRESET | libc::EPIPE))
}
