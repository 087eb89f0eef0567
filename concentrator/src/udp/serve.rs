//! A UDP flow from `Decision::Udp` to its end (a leg of a protected flow goes on in
//! [`super::leg`] after the shared checks): policy and connection limits (shared
//! with TCP), the per-client flow limit, a UDP socket connected to the destination, the
//! relay (which sends the success reply with the first datagram back), and the close: a FIN when the flow ends normally or idles
//! out, a reset when the client sent a malformed capsule.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::time::Instant;

use mpbond_protocol::auth::ClientId;
use mpbond_protocol::udp::Group;
use mpbond_protocol::{error_reply, ErrorCode};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::OwnedSemaphorePermit;

use super::limits::{ClientLimits, FlowPermit};
use super::metrics::DropReason;
use super::relay::{relay, FlowEnd, FlowParams, FlowTotals};
use crate::reload::{Live, State};
use crate::session::{admit, connect_error_code, linger_close, refuse, Close, REPLY_HOLD};

/// Unsent bytes the MPTCP socket may hold before it stops taking more
/// (`TCP_NOTSENT_LOWAT`), so datagrams wait in the bounded queue, where they can be
/// dropped, and not in the kernel.
pub const NOTSENT_LOWAT: u32 = 16 * 1024;

/// SO_RCVBUF asked for on each flow's UDP socket.
pub const UDP_RECV_BUFFER: usize = 1 << 20;

/// Serve an authenticated UDP request to its end. `bytes` gets the payload bytes each
/// way.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_udp(
    stream: TcpStream,
    state: &State,
    live: &Live,
    client: &ClientId,
    dest: SocketAddr,
    group: Option<Group>,
    reply: Vec<u8>,
    slot: OwnedSemaphorePermit,
    started: Instant,
    bytes: &mut (u64, u64),
) -> Close {
    let udp_config = &live.config.udp;
    let metrics = &state.metrics.udp;
    if !udp_config.enabled {
        refuse(stream, &error_reply(ErrorCode::UnsupportedMessage), slot).await;
        return Close::UdpDisabled;
    }
    let admitted = match admit(state, live, client, dest) {
        Ok(admitted) => admitted,
        Err((code, close)) => {
            let reason = if matches!(close, Close::PolicyRefused(_)) {
                DropReason::Policy
            } else {
                DropReason::FlowLimit
            };
            metrics.dropped(reason, 1);
            refuse(stream, &error_reply(code), slot).await;
            return close;
        }
    };
    if let Some(group) = group {
        return super::leg::serve_leg(
            stream, state, live, client, dest, group, reply, slot, admitted, started, bytes,
        )
        .await;
    }
    let (permit, limits, udp) = match open_flow(state, live, client, dest) {
        Ok(opened) => opened,
        Err((code, close)) => {
            refuse(stream, &error_reply(code), slot).await;
            return close;
        }
    };
    set_notsent_lowat(&stream, NOTSENT_LOWAT);
    state.metrics.observe_handshake(started.elapsed());
    metrics.flow_opened();
    let params = FlowParams {
        metrics,
        permit,
        limits,
        idle_timeout: udp_config.idle_timeout_for(dest.port()),
        queue_bytes: udp_config.queue_bytes,
        reply,
        reply_hold: REPLY_HOLD,
    };
    let (end, totals): (FlowEnd, FlowTotals) = relay(&stream, &udp, params).await;
    metrics.flow_closed();
    *bytes = (totals.up.bytes, totals.down.bytes);
    state
        .metrics
        .add_bytes(client.as_str(), totals.up.bytes, totals.down.bytes);
    drop((admitted, slot, udp));
    end_flow(stream, end, &totals).await
}

/// End a plain flow's or a leg's MPTCP connection as its end says (a reset for a
/// malformed capsule, nothing more after a client I/O error, else a lingering close),
/// and name the close for the log.
pub(crate) async fn end_flow(stream: TcpStream, end: FlowEnd, totals: &FlowTotals) -> Close {
    match &end {
        FlowEnd::Malformed(_) => mpbond_relay::sys::reset(stream),
        FlowEnd::ClientIo(_) => drop(stream),
        _ => linger_close(stream).await,
    }
    Close::UdpEnded {
        end,
        datagrams: (totals.up.datagrams, totals.down.datagrams),
        dropped: totals.dropped,
    }
}

/// What a plain flow and a new flow group both need before their reply: the client's
/// flow permit (`[udp]` flow count and datagram rate) and a UDP socket connected to
/// `dest`. A refusal is counted here and comes back as the reply's code and the close.
pub(crate) fn open_flow(
    state: &State,
    live: &Live,
    client: &ClientId,
    dest: SocketAddr,
) -> Result<(FlowPermit, ClientLimits, UdpSocket), (ErrorCode, Close)> {
    let udp_config = &live.config.udp;
    let limits = ClientLimits {
        max_flows: udp_config.max_flows_per_client,
        rate: udp_config.datagrams_per_sec_per_client,
        burst: udp_config.datagram_burst_per_client,
    };
    let Ok(permit) = state.udp_clients.try_open(client, limits, Instant::now()) else {
        state.metrics.limit_refusal();
        state.metrics.udp.dropped(DropReason::FlowLimit, 1);
        return Err((ErrorCode::ResourceExceeded, Close::UdpFlowLimit));
    };
    match connected_socket(dest) {
        Ok(udp) => Ok((permit, limits, udp)),
        Err(e) => {
            let code = connect_error_code(&e);
            state.metrics.connect_error(code.code());
            Err((code, Close::ConnectFailed(code, e.kind())))
        }
    }
}

/// A non-blocking UDP socket on an ephemeral port, connected to `dest`.
pub(crate) fn connected_socket(dest: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match dest {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = StdUdpSocket::bind(local)?;
    // Room for a burst from the destination while the task serves the other direction
    // (the kernel caps it at net.core.rmem_max).
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.connect(dest)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Best effort: `TCP_NOTSENT_LOWAT` on the flow's MPTCP socket (see docs/DESIGN.md for
/// what Linux does with it on MPTCP); if the kernel refuses it, the queue bound alone
/// applies.
pub(crate) fn set_notsent_lowat(stream: &TcpStream, bytes: u32) {
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(bytes) {
        tracing::debug!(%error, "TCP_NOTSENT_LOWAT not set");
    }
}
