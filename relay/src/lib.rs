//! Socket work shared by the mpbond agent and concentrator.
//!
//! # Layout
//!
//! * [`sys`]: small socket tricks: MPTCP and plain TCP listeners (with TCP Fast Open),
//!   `TCP_IS_MPTCP`, the original destination of a redirected connection, abortive close.
//! * [`accept`]: the one accept loop of both daemons: a semaphore caps connections,
//!   accept errors back off, shutdown is a `CancellationToken`, handlers run on a
//!   `TaskTracker`.
//! * [`message`]: reading exactly one Convert message (or driving a handshake machine
//!   of `mpbond_protocol::handshake`) from a stream, never past its end.
//! * [`connect`]: outgoing connections over MPTCP or TCP that send a first message, in the
//!   SYN when TCP Fast Open is available.
//! * [`relay`]: the bidirectional relay between two sockets: zero-copy `splice(2)` through a
//!   pipe per direction, held only while data moves (idle directions give theirs back to a
//!   small pool), or `recv`/`send` through a pooled buffer where the source is MPTCP (its
//!   splice is a copy), half-close per direction, resets mirrored as resets, idle timeout.
//!   [`relay::relay_borrowed`] leaves closing the sockets to the caller.
//!   [`relay::relay_with_lead`] sends our own bytes (the Convert reply) first, in one
//!   write with the destination's first bytes.
//! * [`congestion`]: the congestion control of our MPTCP sockets (`TCP_CONGESTION`),
//!   validated from the config and applied with a warning, once, if the kernel lacks it.
//! * [`notify`]: the systemd readiness protocol (`NOTIFY_SOCKET`).
//!
//! Everything here is Linux-only and needs a tokio runtime with I/O and time enabled.
//!
//! # Tests
//!
//! `tests/relay.rs`, `tests/pipe_release.rs`, `tests/lead.rs`, `tests/accept.rs` and
//! `tests/sys.rs` run on 127.0.0.1 in the current namespace and change nothing.
//! `tests/netns.rs` needs root (its
//! tests are ignored unless run with `--include-ignored`): each test runs on a thread
//! inside a throw-away namespace (`mpbond-testkit`) to prove Fast Open with the
//! namespace's TcpExt counters, nft redirects, marks and unreachable routes.
//! `examples/throughput.rs` measures splice against the copy fallback.

pub mod accept;
pub mod congestion;
pub mod connect;
pub mod message;
pub mod notify;
pub mod relay;
pub mod sys;

#[cfg(test)]
mod tests {
    /// The futures callers spawn must be `Send`.
    #[allow(dead_code)]
    fn futures_are_send(a: tokio::net::TcpStream, b: tokio::net::TcpStream) {
        fn send<T: Send>(_: &T) {}
        let opts = crate::relay::RelayOpts::default();
        send(&crate::relay::relay(a, b, &opts));
        let connect = crate::connect::ConnectOpts {
            congestion: None,
            mptcp: true,
            fastopen: true,
            timeout: std::time::Duration::from_secs(1),
            mark: None,
            bind: None,
        };
        send(&crate::connect::connect_with(
            ([127, 0, 0, 1], 1).into(),
            b"",
            &connect,
        ));
    }
}
