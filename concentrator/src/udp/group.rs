//! Flow groups: the concentrator's end of a protected UDP flow (`docs/PROTOCOL.md`,
//! "Protected flows").
//!
//! A protected flow arrives as up to [`MAX_LEGS`] *legs*, each an authenticated UDP
//! request with a Group TLV on its own connection (one per WAN). The legs of one client
//! that name one group id share one [`FlowGroup`]: one UDP socket toward the
//! destination, one upstream [`Dedup`] and one downstream sequence counter. The key is
//! (client, group id), so a leg can never join another client's group.
//!
//! Ownership: the group's task owns the socket, the dedup, the counter, the client's
//! flow permit and the legs' downstream senders; each leg's task (`leg.rs`) owns its
//! connection and its queue. They talk over channels: a leg sends [`Up`] events
//! (attach, sequenced datagrams) on the group's bounded channel, the group sends each
//! datagram from the destination, with its sequence number, to every leg's own bounded
//! channel with `try_send`, so a stalled leg loses copies and never holds up the
//! others. [`FlowGroups`] is only the directory from key to channel, with each
//! group's leg count.
//!
//! A group carries datagrams in one of two modes, the one the agent chose for the flow's
//! class: `duplicate` (every datagram on every leg as a sequenced capsule, the first
//! copy wins) or `fec` ([`super::group_fec`]: each datagram once, spread over the legs,
//! with an XOR repair per short block). A group starts in `duplicate` and turns to `fec`
//! at the first FEC capsule a leg brings; its downstream numbers go on where they were.
//! In `fec` mode a leg hands back the sources its connection has not had acknowledged
//! in time ([`Up::Late`], `mpbond_protocol::udp::LateWatch`), and the group sends each
//! once more on another live leg.
//!
//! A group is created by its first leg (legs may come in any order, or only one), counts
//! as one flow against `[udp] max_flows_per_client`, ends when its last leg ends (every
//! sender of its channel is gone) or when no datagram went either way for the flow's
//! idle timeout (its legs then end too).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mpbond_protocol::auth::ClientId;
use mpbond_protocol::udp::{Dedup, OwnedRepair, MAX_LEGS};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::group_fec::{GroupFec, LegClock};
use super::limits::{ClientLimits, FlowPermit};
use super::metrics::{DropReason, Tally};
use super::sys::send_batch;
use crate::metrics::Metrics;

/// Sequenced datagrams from the legs waiting for the group task; more are dropped.
const UP_CHANNEL: usize = 256;
/// Datagrams from the destination waiting for one leg's task; more are dropped for
/// that leg only (its own byte-bounded queue follows).
pub(crate) const LEG_CHANNEL: usize = 256;
/// Datagrams received from the destination per turn.
const DATAGRAMS_PER_TURN: usize = 64;

/// A group's key: the authenticated client and the group id it chose.
pub(crate) type GroupKey = (ClientId, u64);

/// What the group hands a leg to send.
#[derive(Debug, Clone)]
pub(crate) enum Down {
    /// `duplicate` mode: a datagram from the destination with its sequence number (the
    /// payload shared by every leg).
    Sequenced(u32, Arc<[u8]>),
    /// `fec` mode: an encoded FEC repair capsule, or a source sent again, for this leg
    /// only.
    Encoded(Arc<[u8]>),
    /// `fec` mode: an encoded FEC source capsule, for this leg only, to hand back if
    /// its connection does not have it acknowledged in time.
    Source(Arc<[u8]>),
}

/// What a leg tells its group.
#[derive(Debug)]
pub(crate) enum Up {
    /// A leg is ready: send it the datagrams from the destination. `attached` is
    /// answered once the group has it, so the leg's reply (and with it anything the
    /// destination sends in answer) comes after.
    Attach {
        /// The leg's index (Group TLV).
        leg: u8,
        down: mpsc::Sender<Down>,
        attached: oneshot::Sender<()>,
    },
    /// A sequenced datagram from the client, one copy of possibly several.
    Datagram { seq: u32, payload: Vec<u8> },
    /// An FEC source datagram from the client, on leg `leg`.
    FecSource { leg: u8, seq: u32, payload: Vec<u8> },
    /// An FEC repair from the client, on leg `leg`.
    FecRepair { leg: u8, repair: OwnedRepair },
    /// FEC source capsules leg `leg`'s connection did not have acknowledged in time (or
    /// took while stuck behind such a one): send them on another leg.
    Late { leg: u8, capsules: Vec<Arc<[u8]>> },
    /// Leg `leg` got stuck behind a late source (`fec` mode: its capsules go to another
    /// leg meanwhile), or its acknowledgements caught up; sent when that changes.
    /// `down` is the channel it attached with (so a leg replaced under the same index
    /// cannot speak for its successor).
    Stuck {
        leg: u8,
        down: mpsc::WeakSender<Down>,
        stuck: bool,
    },
}

/// Why a leg cannot join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinRefusal {
    /// The group has [`MAX_LEGS`] legs already.
    Full,
    /// The group exists with another destination.
    OtherDestination,
}

#[derive(Debug)]
struct Entry {
    generation: u64,
    dest: SocketAddr,
    up: mpsc::WeakSender<Up>,
    legs: usize,
}

/// Every live group, by key.
#[derive(Debug, Default)]
pub(crate) struct FlowGroups {
    inner: Mutex<Directory>,
}

#[derive(Debug, Default)]
struct Directory {
    groups: HashMap<GroupKey, Entry>,
    next_generation: u64,
}

/// A leg's place in its group: the group's channel, and the leg counted in until drop.
#[derive(Debug)]
pub(crate) struct LegTicket {
    groups: Arc<FlowGroups>,
    key: GroupKey,
    generation: u64,
    metrics: Arc<Metrics>,
    /// The group's channel.
    pub up: mpsc::Sender<Up>,
}

/// A leg that joined: of a live group, or of a new one whose task the caller starts
/// with this receiver ([`run_group`]).
#[derive(Debug)]
pub(crate) struct Joined {
    pub ticket: LegTicket,
    pub new_group: Option<mpsc::Receiver<Up>>,
}

impl FlowGroups {
    /// Join the group `key` toward `dest`, or create it if there is none (or only one
    /// that is ending).
    pub(crate) fn join(
        self: &Arc<Self>,
        key: &GroupKey,
        dest: SocketAddr,
        metrics: &Arc<Metrics>,
    ) -> Result<Joined, JoinRefusal> {
        let mut dir = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = dir.groups.get_mut(key) {
            if let Some(up) = entry.up.upgrade().filter(|up| !up.is_closed()) {
                if entry.dest != dest {
                    return Err(JoinRefusal::OtherDestination);
                }
                if entry.legs >= usize::from(MAX_LEGS) {
                    return Err(JoinRefusal::Full);
                }
                entry.legs += 1;
                metrics.udp.leg_attached();
                return Ok(Joined {
                    ticket: self.ticket(key, entry.generation, metrics, up),
                    new_group: None,
                });
            }
        }
        let (up, rx) = mpsc::channel(UP_CHANNEL);
        let generation = dir.next_generation;
        dir.next_generation += 1;
        dir.groups.insert(
            key.clone(),
            Entry {
                generation,
                dest,
                up: up.downgrade(),
                legs: 1,
            },
        );
        metrics.udp.leg_attached();
        Ok(Joined {
            ticket: self.ticket(key, generation, metrics, up),
            new_group: Some(rx),
        })
    }

    fn ticket(
        self: &Arc<Self>,
        key: &GroupKey,
        generation: u64,
        metrics: &Arc<Metrics>,
        up: mpsc::Sender<Up>,
    ) -> LegTicket {
        LegTicket {
            groups: self.clone(),
            key: key.clone(),
            generation,
            metrics: metrics.clone(),
            up,
        }
    }

    /// Live groups (entries with at least one leg).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .groups
            .len()
    }
}

impl Drop for LegTicket {
    fn drop(&mut self) {
        self.metrics.udp.leg_detached();
        let mut dir = self
            .groups
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = dir.groups.get_mut(&self.key) {
            if entry.generation == self.generation {
                entry.legs = entry.legs.saturating_sub(1);
                if entry.legs == 0 {
                    dir.groups.remove(&self.key);
                }
            }
        }
    }
}

/// What a group task needs besides its channel.
pub(crate) struct GroupParams {
    pub metrics: Arc<Metrics>,
    pub udp: UdpSocket,
    pub permit: FlowPermit,
    pub limits: ClientLimits,
    pub idle_timeout: Duration,
}

/// How a group ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupEnd {
    /// Every leg ended.
    LegsGone,
    /// No datagram either way for the idle timeout.
    Idle,
    /// The UDP socket failed in a way that is not an ICMP report.
    DestinationIo(std::io::ErrorKind),
}

/// One attached leg as the group sees it.
struct LegOut {
    index: u8,
    down: mpsc::Sender<Down>,
    /// The FEC leg clock at its last upstream capsule.
    last_up: u64,
    /// Stuck behind a late source, as the leg's last [`Up::Stuck`] said.
    stuck: bool,
}

impl LegClock for LegOut {
    fn last_up(&self) -> u64 {
        self.last_up
    }
}

/// The group's state in its task.
struct Group {
    dedup: Dedup,
    next_seq: u32,
    legs: Vec<LegOut>,
    /// `Some` once the group is in `fec` mode.
    fec: Option<GroupFec>,
    up: Tally,
    down: Tally,
    /// FEC sources sent again on another leg.
    resent: u64,
}

/// Run one group until its legs are gone or it idles out. Counts the group and its flow
/// in the metrics for its lifetime.
pub(crate) async fn run_group(mut rx: mpsc::Receiver<Up>, mut params: GroupParams) -> GroupEnd {
    let metrics = params.metrics.clone();
    metrics.udp.flow_opened();
    metrics.udp.group_opened();
    let mut group = Group {
        dedup: Dedup::new(),
        next_seq: 0,
        legs: Vec::new(),
        fec: None,
        up: Tally::default(),
        down: Tally::default(),
        resent: 0,
    };
    let mut scratch = vec![0u8; 65_536];
    let mut last_activity = Instant::now();
    let idle = tokio::time::sleep(params.idle_timeout);
    tokio::pin!(idle);
    let end = loop {
        let repair_due = group.fec.as_ref().and_then(GroupFec::poll_timeout);
        let active = tokio::select! {
            event = rx.recv() => match event {
                None => break GroupEnd::LegsGone,
                Some(Up::Attach { leg, down, attached }) => {
                    let last_up = group.fec.as_ref().map_or(0, GroupFec::ups);
                    group.legs.push(LegOut { index: leg, down, last_up, stuck: false });
                    let _ = attached.send(());
                    false
                }
                Some(Up::Datagram { seq, payload }) => {
                    group.upstream(seq, &payload, &mut params);
                    true
                }
                Some(Up::FecSource { leg, seq, payload }) => {
                    let mut deliver = Vec::new();
                    group.fec_mode(leg).source(seq, payload, &mut deliver);
                    group.send_up(&deliver, &mut params);
                    true
                }
                Some(Up::FecRepair { leg, repair }) => {
                    let mut deliver = Vec::new();
                    group.fec_mode(leg).repair(&repair, &mut deliver);
                    group.send_up(&deliver, &mut params);
                    true
                }
                Some(Up::Late { leg, capsules }) => {
                    group.resend(leg, capsules);
                    false
                }
                Some(Up::Stuck { leg, down, stuck }) => {
                    group.stuck(leg, &down, stuck);
                    false
                }
            },
            () = sleep_until_std(repair_due), if repair_due.is_some() => {
                let repair = group.fec.as_mut().and_then(|fec| fec.handle_timeout(Instant::now()));
                if let Some(repair) = repair {
                    group.spread(repair, false, &metrics);
                }
                false
            }
            ready = params.udp.readable() => match ready {
                Ok(()) => match group.downstream(&params.udp, &mut scratch, &metrics) {
                    Ok(active) => active,
                    Err(kind) => break GroupEnd::DestinationIo(kind),
                },
                Err(e) => break GroupEnd::DestinationIo(e.kind()),
            },
            () = &mut idle => {
                let deadline = last_activity + params.idle_timeout;
                if Instant::now() >= deadline {
                    break GroupEnd::Idle;
                }
                idle.as_mut().reset(deadline.into());
                false
            }
        };
        metrics.udp.relayed(group.up, group.down);
        group.up = Tally::default();
        group.down = Tally::default();
        if active {
            last_activity = Instant::now();
        }
    };
    metrics.udp.relayed(group.up, group.down);
    if let Some(fec) = &group.fec {
        tracing::debug!(
            recovered_up = fec.recovered_up(),
            resent_down = group.resent,
            "fec group ended"
        );
    }
    metrics.udp.group_closed();
    metrics.udp.flow_closed();
    end
}

/// Sleep until `at` (never returns for `None`).
async fn sleep_until_std(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl Group {
    /// The group's FEC state, turning it to `fec` mode if it was not; leg `leg` brought
    /// an upstream capsule.
    fn fec_mode(&mut self, leg: u8) -> &mut GroupFec {
        let next_seq = self.next_seq;
        let fec = self.fec.get_or_insert_with(|| GroupFec::new(next_seq));
        let now = fec.heard();
        if let Some(out) = self.legs.iter_mut().find(|l| l.index == leg) {
            out.last_up = now;
        }
        fec
    }

    /// Send recovered or first-copy upstream datagrams to the destination, under the
    /// client's rate.
    fn send_up(&mut self, deliver: &[Vec<u8>], params: &mut GroupParams) {
        for payload in deliver {
            if !params.permit.take(params.limits, Instant::now()) {
                params.metrics.udp.dropped(DropReason::RateLimit, 1);
                continue;
            }
            match send_batch(&params.udp, &[payload]) {
                Ok(1) => self.up.add(payload.len()),
                _ => params.metrics.udp.dropped(DropReason::SendError, 1),
            }
        }
    }

    /// The leg attached with `down` as leg `leg` says whether it is stuck.
    fn stuck(&mut self, leg: u8, down: &mpsc::WeakSender<Down>, stuck: bool) {
        let Some(down) = down.upgrade() else {
            return;
        };
        let same = |l: &&mut LegOut| l.index == leg && l.down.same_channel(&down);
        if let Some(out) = self.legs.iter_mut().find(same) {
            out.stuck = stuck;
        }
    }

    /// Hand one encoded FEC capsule (a source, or a repair) to the next live leg that
    /// takes it, those not stuck first. Whether one did.
    fn spread(&mut self, capsule: Arc<[u8]>, source: bool, metrics: &Metrics) -> bool {
        self.legs.retain(|l| !l.down.is_closed());
        let Some(fec) = self.fec.as_mut() else {
            return false;
        };
        let mut order = fec.order(&self.legs, source);
        // A stuck leg would only hand a source back, and a repair would wait behind the
        // stall: the others first.
        order.sort_by_key(|&i| self.legs[i].stuck);
        for i in order {
            let down = if source {
                Down::Source(capsule.clone())
            } else {
                Down::Encoded(capsule.clone())
            };
            if self.legs[i].down.try_send(down).is_ok() {
                return true;
            }
        }
        metrics.udp.dropped(DropReason::QueueFull, 1);
        false
    }

    /// Sources leg `from` handed back late: each to another leg, the live ones first
    /// (not watched there: no second hand-back).
    fn resend(&mut self, from: u8, capsules: Vec<Arc<[u8]>>) {
        self.legs.retain(|l| !l.down.is_closed());
        let Some(fec) = self.fec.as_ref() else {
            return;
        };
        let mut order: Vec<usize> = (0..self.legs.len())
            .filter(|&i| self.legs[i].index != from)
            .collect();
        order.sort_by_key(|&i| !fec.is_live(&self.legs[i]));
        for capsule in capsules {
            let sent = order.iter().any(|&i| {
                self.legs[i]
                    .down
                    .try_send(Down::Encoded(capsule.clone()))
                    .is_ok()
            });
            if sent {
                self.resent += 1;
            }
        }
    }

    /// One copy from a leg: the first copy of its sequence number goes to the
    /// destination (under the client's rate), the others are counted and dropped.
    fn upstream(&mut self, seq: u32, payload: &[u8], params: &mut GroupParams) {
        let udp = &params.metrics.udp;
        let (duplicates, too_old) = (self.dedup.duplicates(), self.dedup.too_old());
        if !self.dedup.accept(seq) {
            udp.duplicates(self.dedup.duplicates() - duplicates, 0);
            udp.dropped(DropReason::TooOld, self.dedup.too_old() - too_old);
            return;
        }
        if !params.permit.take(params.limits, Instant::now()) {
            udp.dropped(DropReason::RateLimit, 1);
            return;
        }
        match send_batch(&params.udp, &[payload]) {
            Ok(1) => self.up.add(payload.len()),
            _ => udp.dropped(DropReason::SendError, 1),
        }
    }

    /// Receive what the socket has (a burst at most) and hand each datagram, numbered,
    /// to every leg. `Ok(active)`, or the error that ends the group.
    fn downstream(
        &mut self,
        udp: &UdpSocket,
        scratch: &mut [u8],
        metrics: &Metrics,
    ) -> Result<bool, std::io::ErrorKind> {
        let mut active = false;
        for _ in 0..DATAGRAMS_PER_TURN {
            let n = match udp.try_recv(scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e)
                    if super::relay::is_icmp_report(&e)
                        || e.kind() == std::io::ErrorKind::Interrupted =>
                {
                    continue
                }
                Err(e) => return Err(e.kind()),
            };
            active = true;
            if let Some(fec) = self.fec.as_mut() {
                let Some((source, repair)) = fec.encode(&scratch[..n], Instant::now()) else {
                    continue;
                };
                if self.spread(source, true, metrics) {
                    self.down.add(n);
                }
                if let Some(repair) = repair {
                    self.spread(repair, false, metrics);
                }
                continue;
            }
            let seq = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(1);
            let payload: Arc<[u8]> = Arc::from(&scratch[..n]);
            let mut copies = 0u64;
            self.legs.retain(|leg| {
                match leg.down.try_send(Down::Sequenced(seq, payload.clone())) {
                    Ok(()) => {
                        copies += 1;
                        true
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        metrics.udp.dropped(DropReason::QueueFull, 1);
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
            if copies > 0 {
                self.down.add(n);
                metrics.udp.duplicates(0, copies - 1);
            } else if self.legs.is_empty() {
                // No leg attached (yet, or any more): nowhere to send it.
                metrics.udp.dropped(DropReason::QueueFull, 1);
            }
        }
        Ok(active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(client: &str, id: u64) -> GroupKey {
        (client.parse().unwrap(), id)
    }

    fn dest() -> SocketAddr {
        "192.0.2.1:3478".parse().unwrap()
    }

    #[test]
    fn a_stuck_leg_gets_neither_sources_nor_repairs_while_another_takes_them() {
        let metrics = Metrics::default();
        let mut group = Group {
            dedup: Dedup::new(),
            next_seq: 0,
            legs: Vec::new(),
            fec: Some(GroupFec::new(0)),
            up: Tally::default(),
            down: Tally::default(),
            resent: 0,
        };
        let mut rxs = Vec::new();
        // Leg 0 was replaced: the old one (still attached) and its successor.
        for index in [0u8, 0, 1] {
            let (down, rx) = mpsc::channel(16);
            group.legs.push(LegOut {
                index,
                down,
                last_up: 0,
                stuck: false,
            });
            rxs.push(rx);
        }
        let weak = |i: usize| group.legs[i].down.downgrade();
        let (old, new, one) = (weak(0), weak(1), weak(2));
        group.stuck(0, &old, true);
        group.stuck(1, &one, true);
        let stuck: Vec<bool> = group.legs.iter().map(|l| l.stuck).collect();
        assert_eq!(stuck, [true, false, true], "only the leg that said so");
        for (i, source) in [true, false, true, false].into_iter().enumerate() {
            let capsule: Arc<[u8]> = vec![i as u8].into();
            assert!(group.spread(capsule, source, &metrics));
        }
        let got = |rx: &mut mpsc::Receiver<Down>| std::iter::from_fn(|| rx.try_recv().ok()).count();
        let counts: Vec<usize> = rxs.iter_mut().map(got).collect();
        assert_eq!(counts, [0, 4, 0], "sources and repairs skip the stuck legs");
        group.stuck(0, &new, true);
        group.stuck(0, &old, false);
        group.stuck(1, &one, false);
        let stuck: Vec<bool> = group.legs.iter().map(|l| l.stuck).collect();
        assert_eq!(stuck, [false, true, false]);
    }

    #[test]
    fn legs_of_one_client_and_id_share_a_group_and_other_clients_never_join_it() {
        let groups = Arc::new(FlowGroups::default());
        let metrics = Arc::new(Metrics::default());
        let first = groups.join(&key("home", 7), dest(), &metrics).unwrap();
        assert!(first.new_group.is_some(), "the first leg creates the group");
        let second = groups.join(&key("home", 7), dest(), &metrics).unwrap();
        assert!(second.new_group.is_none(), "the second leg joins it");
        assert!(second.ticket.up.same_channel(&first.ticket.up));
        // Another client naming the same id gets a group of its own.
        let stranger = groups.join(&key("other", 7), dest(), &metrics).unwrap();
        assert!(stranger.new_group.is_some());
        assert!(!stranger.ticket.up.same_channel(&first.ticket.up));
        assert_eq!(groups.len(), 2);
        assert_eq!(metrics.udp.legs_attached(), 3);
        drop((first, second, stranger));
        assert_eq!(groups.len(), 0, "the last leg's end removes its group");
        assert_eq!(metrics.udp.legs_attached(), 0);
    }

    #[test]
    fn a_group_takes_at_most_max_legs_and_one_destination() {
        let groups = Arc::new(FlowGroups::default());
        let metrics = Arc::new(Metrics::default());
        let mut legs: Vec<Joined> = (0..MAX_LEGS)
            .map(|_| groups.join(&key("home", 1), dest(), &metrics).unwrap())
            .collect();
        assert_eq!(
            groups.join(&key("home", 1), dest(), &metrics).unwrap_err(),
            JoinRefusal::Full
        );
        legs.pop();
        let other: SocketAddr = "192.0.2.2:3478".parse().unwrap();
        assert_eq!(
            groups.join(&key("home", 1), other, &metrics).unwrap_err(),
            JoinRefusal::OtherDestination
        );
        assert!(groups.join(&key("home", 1), dest(), &metrics).is_ok());
    }

    #[test]
    fn a_group_whose_task_ended_is_replaced_and_its_old_legs_leave_the_new_alone() {
        let groups = Arc::new(FlowGroups::default());
        let metrics = Arc::new(Metrics::default());
        let old = groups.join(&key("home", 1), dest(), &metrics).unwrap();
        // The group task ended (idle): its receiver is gone, the old leg lingers.
        let Joined { ticket, new_group } = old;
        drop(new_group);
        let new = groups.join(&key("home", 1), dest(), &metrics).unwrap();
        assert!(new.new_group.is_some(), "a fresh group");
        drop(ticket);
        assert_eq!(groups.len(), 1, "the old leg's end keeps the new group");
        let again = groups.join(&key("home", 1), dest(), &metrics).unwrap();
        assert!(again.ticket.up.same_channel(&new.ticket.up));
    }
}
