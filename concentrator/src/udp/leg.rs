//! One leg of a protected UDP flow, from `Decision::Udp { group: Some(..) }` to its end:
//! join (or create) the client's flow group ([`super::group`]), send the reply, then
//! carry sequenced capsules: the client's copies go to the group (which drops the
//! duplicates), the group's numbered datagrams come back through this leg's own bounded
//! queue. In `fec` mode the leg carries FEC source and repair capsules the same way: the
//! client's go to the group (which decodes them), the group's come encoded. The leg ends when the client closes or resets it, sends a malformed capsule,
//! or its group ends (idle timeout); the group goes on while another leg lives.
//!
//! In `fec` mode the leg watches the sources it queues ([`LateWatch`]: the connection's
//! `SIOCOUTQ` plus its own queue against the bytes queued, the bound from the
//! connection's `TCP_INFO` RTT): a source not acknowledged in time, or queued while the
//! leg is stuck behind such a one, goes back to the group ([`Up::Late`]) to be sent on
//! another leg, and the leg tells the group when it gets stuck and unstuck
//! ([`Up::Stuck`]). Where the connection's unacknowledged bytes cannot be read
//! (`SIOCOUTQ` fails) only its own queue counts as unacknowledged. It acknowledges what
//! it reads at once (`TCP_QUICKACK`), so the agent's own watch is not fooled by a
//! delayed ACK.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mpbond_protocol::auth::ClientId;
use mpbond_protocol::udp::{
    decode_leg_capsule, late_bound, Group, LateWatch, LegCapsule, LATE_MIN,
};
use mpbond_protocol::{error_reply, Capsule, ErrorCode};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::group::{run_group, Down, GroupParams, JoinRefusal, Up, LEG_CHANNEL};
use super::metrics::{DropReason, UdpMetrics};
use super::queue::{CapsuleQueue, QueueRefusal};
use super::relay::{flush, FlowEnd, FlowTotals};
use super::serve::{end_flow, open_flow, set_notsent_lowat, NOTSENT_LOWAT};
use crate::admission::Admitted;
use crate::reload::{Live, State};
use crate::session::{refuse, Close};

/// Stream bytes read at once.
const READ_LEN: usize = 16 * 1024;

/// Serve one admitted leg to its end. `bytes` gets the payload bytes this leg carried
/// each way (copies included).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_leg(
    stream: TcpStream,
    state: &State,
    live: &Live,
    client: &ClientId,
    dest: SocketAddr,
    group: Group,
    reply: Vec<u8>,
    slot: OwnedSemaphorePermit,
    admitted: Admitted,
    started: Instant,
    bytes: &mut (u64, u64),
) -> Close {
    let udp_config = &live.config.udp;
    let metrics = &state.metrics.udp;
    let key = (client.clone(), group.id);
    let joined = match state.udp_groups.join(&key, dest, &state.metrics) {
        Ok(joined) => joined,
        Err(refusal) => {
            metrics.dropped(DropReason::GroupRefused, 1);
            let code = match refusal {
                JoinRefusal::Full => ErrorCode::ResourceExceeded,
                JoinRefusal::OtherDestination => ErrorCode::UnsupportedMessage,
            };
            refuse(stream, &error_reply(code), slot).await;
            return Close::UdpGroupRefused(match refusal {
                JoinRefusal::Full => "group_full",
                JoinRefusal::OtherDestination => "group_has_another_destination",
            });
        }
    };
    let ticket = joined.ticket;
    if let Some(rx) = joined.new_group {
        let (permit, limits, udp) = match open_flow(state, live, client, dest) {
            Ok(opened) => opened,
            Err((code, close)) => {
                drop(ticket);
                refuse(stream, &error_reply(code), slot).await;
                return close;
            }
        };
        let params = GroupParams {
            metrics: state.metrics.clone(),
            udp,
            permit,
            limits,
            idle_timeout: udp_config.idle_timeout_for(dest.port()),
        };
        let span = tracing::info_span!("udp_group", group = format_args!("{:016x}", group.id));
        tokio::spawn(
            async move {
                let end = run_group(rx, params).await;
                tracing::debug!(?end, "flow group ended");
            }
            .instrument(span),
        );
    }
    let (down_tx, mut down_rx) = mpsc::channel(LEG_CHANNEL);
    let (attached_tx, attached) = oneshot::channel();
    let me = down_tx.downgrade();
    let attach = Up::Attach {
        leg: group.leg,
        down: down_tx,
        attached: attached_tx,
    };
    if ticket.up.send(attach).await.is_err() || attached.await.is_err() {
        // The group idled out between the join and now.
        drop(ticket);
        refuse(stream, &error_reply(ErrorCode::NetworkFailure), slot).await;
        return Close::UdpGroupRefused("group_ended");
    }
    set_notsent_lowat(&stream, NOTSENT_LOWAT);
    state.metrics.observe_handshake(started.elapsed());

    let mut queue = CapsuleQueue::with_lead(udp_config.queue_bytes, &reply);
    let mut watch = LateWatch::new();
    watch.wrote(reply.len(), None, Instant::now());
    let mut bound = LATE_MIN;
    // What the group last heard of the leg being stuck, and whether `SIOCOUTQ` failed.
    let mut stuck = false;
    let mut blind = false;
    let mut partial = Vec::new();
    let mut totals = FlowTotals::default();
    let end = loop {
        let late_due = watch
            .poll_timeout(bound)
            .map(tokio::time::Instant::from_std);
        let mut late = Vec::new();
        let step = tokio::select! {
            ready = stream.readable() => match ready {
                Ok(()) => read_copies(&stream, group.leg, &mut partial, &ticket.up, &mut totals, metrics),
                Err(e) => Err(FlowEnd::ClientIo(e.kind())),
            },
            down = down_rx.recv() => match down {
                Some(first) => {
                    // Only a source, or one still watched, needs the acknowledgements.
                    let mut looked = false;
                    let mut next = Some(first);
                    while let Some(down) = next {
                        if !looked && (watch.watching() || matches!(down, Down::Source(_))) {
                            look(&stream, &queue, &mut watch, &mut bound, &mut blind);
                            looked = true;
                        }
                        let before = queue.pending();
                        let (pushed, len, source) = match &down {
                            Down::Sequenced(seq, payload) => {
                                (queue.push_sequenced(*seq, payload), payload.len(), None)
                            }
                            Down::Encoded(capsule) => (queue.push_encoded(capsule), capsule.len(), None),
                            Down::Source(capsule) => {
                                (queue.push_encoded(capsule), capsule.len(), Some(capsule.clone()))
                            }
                        };
                        let queued = queue.pending().saturating_sub(before);
                        match pushed {
                            Ok(()) => {
                                totals.down.add(len);
                                late.extend(watch.wrote(queued, source, Instant::now()));
                            }
                            Err(QueueRefusal::Full | QueueRefusal::Encode(_)) => {
                                totals.dropped += 1;
                                metrics.dropped(DropReason::QueueFull, 1);
                            }
                        }
                        next = down_rx.try_recv().ok();
                    }
                    Ok(())
                }
                None => Err(FlowEnd::GroupEnded),
            },
            ready = stream.writable(), if !queue.is_empty() => match ready {
                Ok(()) => Ok(()),
                Err(e) => Err(FlowEnd::ClientIo(e.kind())),
            },
            () = tokio::time::sleep_until(late_due.unwrap_or_else(tokio::time::Instant::now)), if late_due.is_some() => {
                look(&stream, &queue, &mut watch, &mut bound, &mut blind);
                watch.handle_timeout(Instant::now(), bound, &mut late);
                Ok(())
            }
        };
        // Told again on a later turn if the group's channel is full now.
        if watch.stuck() != stuck {
            let told = ticket.up.try_send(Up::Stuck {
                leg: group.leg,
                down: me.clone(),
                stuck: watch.stuck(),
            });
            if told.is_ok() {
                stuck = watch.stuck();
            }
        }
        if !late.is_empty() {
            let capsules = late;
            // Best effort: a full group channel loses the resend, not the leg.
            let _ = ticket.up.try_send(Up::Late {
                leg: group.leg,
                capsules,
            });
        }
        if let Err(end) = step.and_then(|()| flush(&stream, &mut queue)) {
            break end;
        }
    };
    drop((ticket, down_rx));
    *bytes = (totals.up.bytes, totals.down.bytes);
    state
        .metrics
        .add_bytes(client.as_str(), totals.up.bytes, totals.down.bytes);
    drop((admitted, slot));
    end_flow(stream, end, &totals).await
}

/// Read the connection's unacknowledged bytes (its own and what `queue` still holds)
/// and its RTT into `watch` and `bound`. If the connection's own cannot be read
/// (`SIOCOUTQ` fails, as on an MPTCP socket of an older kernel) they count as
/// acknowledged, so the leg is never stuck for good; said once per leg (`blind`).
fn look(
    stream: &TcpStream,
    queue: &CapsuleQueue,
    watch: &mut LateWatch<std::sync::Arc<[u8]>>,
    bound: &mut std::time::Duration,
    blind: &mut bool,
) {
    let unacked = match mpbond_netlink::sockopt::unacked_bytes(stream) {
        Ok(unacked) => unacked,
        Err(error) => {
            if !std::mem::replace(blind, true) {
                tracing::info!(%error, "protected flow leg: cannot read its unacknowledged bytes, late sources are not resent");
            }
            0
        }
    };
    watch.unacked(unacked + queue.pending() as u64);
    if let Some((srtt, rttvar)) = mpbond_netlink::sockopt::tcp_rtt(stream) {
        *bound = late_bound(srtt, rttvar);
    }
}

/// Read what the stream has and pass every whole sequenced capsule to the group. Only
/// the tail of a capsule that is not whole yet is kept in `partial`.
fn read_copies(
    stream: &TcpStream,
    leg: u8,
    partial: &mut Vec<u8>,
    up: &mpsc::Sender<Up>,
    totals: &mut FlowTotals,
    metrics: &UdpMetrics,
) -> Result<(), FlowEnd> {
    let start = partial.len();
    partial.resize(start + READ_LEN, 0);
    let read = stream.try_read(&mut partial[start..]);
    let n = match read {
        Ok(0) => return Err(FlowEnd::ClientClosed),
        Ok(n) => n,
        Err(e) => {
            partial.truncate(start);
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                kind => Err(FlowEnd::ClientIo(kind)),
            };
        }
    };
    partial.truncate(start + n);
    let _ = mpbond_netlink::sockopt::quickack(stream);
    let mut used = 0;
    let result = loop {
        let (capsule, len) = match decode_leg_capsule(&partial[used..]) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => break Ok(()),
            Err(e) => break Err(FlowEnd::Malformed(e)),
        };
        used += len;
        let event = match capsule {
            LegCapsule::Sequenced { seq, payload } => {
                totals.up.add(payload.len());
                Up::Datagram {
                    seq,
                    payload: payload.to_vec(),
                }
            }
            LegCapsule::FecSource { seq, payload } => {
                totals.up.add(payload.len());
                Up::FecSource {
                    leg,
                    seq,
                    payload: payload.to_vec(),
                }
            }
            LegCapsule::FecRepair(repair) => Up::FecRepair {
                leg,
                repair: repair.to_owned_repair(),
            },
            // A leg takes sequenced and FEC datagrams only.
            LegCapsule::Other(Capsule::Unknown { .. }) => {
                totals.dropped += 1;
                metrics.dropped(DropReason::UnknownCapsule, 1);
                continue;
            }
            LegCapsule::Other(_) => {
                totals.dropped += 1;
                metrics.dropped(DropReason::BadContext, 1);
                continue;
            }
        };
        let reason = match up.try_send(event) {
            Ok(()) => continue,
            Err(TrySendError::Full(_)) => DropReason::QueueFull,
            Err(TrySendError::Closed(_)) => break Err(FlowEnd::GroupEnded),
        };
        totals.dropped += 1;
        metrics.dropped(reason, 1);
    };
    partial.drain(..used);
    if partial.is_empty() {
        *partial = Vec::new();
    }
    result
}
