//! The legs of one protected flow, sans-IO with time passed in: which WANs carry them,
//! when a leg is replaced, which downstream copy is delivered, and the loss each leg and
//! the merged stream saw.
//!
//! * **Start**: legs on the two best WANs of the core's ranking (`core::protect`). With
//!   fewer than two usable WANs there is nothing to protect against:
//!   [`LegAction::Fallback`] (the flow is bonded as any other).
//! * **Refusal**: a refusal before any leg opened (a concentrator without the Group TLV
//!   answers Unsupported Message, a policy refusal is the flow's): [`LegAction::Fallback`].
//!   Later, a refused or failed leg is only replaced.
//! * **Replacement**: when the core no longer ranks a leg's WAN (down, off, held back),
//!   or a leg *stalls* (the merged stream has had a datagram this leg has not delivered
//!   for longer than its WAN's stall bound, `2 × RTT`) while a spare WAN is ranked, the
//!   leg is closed and one opens on the best WAN not in use. A WAN whose leg failed is
//!   not tried again for [`RETRY_AFTER`]. A stalled leg with no spare WAN stays (its TCP
//!   retransmits catch up; closing it would leave one leg) and shows as stalled.
//! * **Dedup**: every copy goes through one [`Dedup`]; the first copy of a sequence
//!   number is delivered.
//! * **Loss** (downstream, what the agent sees): a leg *missed* the first copies the
//!   merged stream got while the leg was open that it never delivered itself (so far);
//!   the merged stream *lost* the sequence numbers between its first and highest that
//!   no leg delivered.
//!
//! Leg indices go round `0..MAX_LEGS` (the Group TLV's `legs` is [`MAX_LEGS`]), so a
//! replacement never reuses the index of the leg it replaces.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use mpbond_protocol::udp::{Dedup, MAX_LEGS};
use serde::{Deserialize, Serialize};

use crate::core::protect::LegSource;

/// Legs carried at once.
pub const OPEN_LEGS: usize = 2;
/// A WAN whose leg failed gets no new leg for this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);
/// First copies remembered with their arrival time, for the stall check.
const ARRIVALS: usize = 1024;

/// What the flow task must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegAction {
    /// Open leg `leg` from `source`.
    Open { leg: u8, source: LegSource },
    /// Close leg `leg` (drop its connection).
    Close { leg: u8, why: CloseWhy },
    /// Give up protection: carry the flow as a plain bonded one.
    Fallback,
}

/// Why a leg was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhy {
    /// The core no longer ranks its WAN (down, off, held back).
    WanGone,
    /// The merged stream went on without it for longer than its stall bound.
    Stalled,
}

/// One leg as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegStatus {
    pub leg: u8,
    pub wan: String,
    /// `opening` or `open` (or `stalled`: behind the merged stream past its bound).
    pub state: String,
    /// Copies it delivered from the concentrator (first or not).
    pub datagrams_down: u64,
    /// First copies of the merged stream, since it opened, it has not delivered.
    pub missed_down: u64,
}

#[derive(Debug)]
struct Leg {
    index: u8,
    source: LegSource,
    open: bool,
    /// Highest sequence number it delivered.
    highest: Option<u32>,
    received: u64,
    /// The merged stream's first copies when it opened.
    merged_base: u64,
    opened_at: Instant,
    /// Found stalled with no spare WAN: no timer until it delivers again.
    stalled: bool,
}

/// The legs of one protected flow; see the module docs.
#[derive(Debug)]
pub struct LegBook {
    legs: Vec<Leg>,
    sources: Vec<LegSource>,
    next_index: u8,
    dedup: Dedup,
    first_seq: Option<u32>,
    /// First copies: (seq, arrival), oldest first.
    arrivals: VecDeque<(u32, Instant)>,
    ever_open: bool,
    /// The first legs were asked for: later ones are replacements.
    started: bool,
    fell_back: bool,
    /// WANs not to retry until then.
    retry: Vec<(String, Instant)>,
    replaced: u64,
    actions: VecDeque<LegAction>,
}

impl LegBook {
    /// Legs for a new flow, given the core's ranking of WANs at `now`.
    pub fn new(sources: Vec<LegSource>, now: Instant) -> LegBook {
        let mut book = LegBook {
            legs: Vec::new(),
            sources,
            next_index: 0,
            dedup: Dedup::new(),
            first_seq: None,
            arrivals: VecDeque::new(),
            ever_open: false,
            started: false,
            fell_back: false,
            retry: Vec::new(),
            replaced: 0,
            actions: VecDeque::new(),
        };
        if book.sources.len() < OPEN_LEGS {
            book.fall_back();
        } else {
            book.fill(now);
        }
        book.started = true;
        book
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<LegAction> {
        self.actions.pop_front()
    }

    /// Leg `leg` got its Convert reply.
    pub fn opened(&mut self, leg: u8) {
        if let Some(l) = self.leg_mut(leg) {
            l.open = true;
            self.ever_open = true;
        }
    }

    /// Leg `leg` was refused by the concentrator.
    pub fn refused(&mut self, leg: u8, now: Instant) {
        if !self.ever_open {
            self.legs.retain(|l| l.index != leg);
            self.fall_back();
            return;
        }
        self.failed(leg, now);
    }

    /// Leg `leg` could not connect, or its connection ended.
    pub fn failed(&mut self, leg: u8, now: Instant) {
        let Some(at) = self.legs.iter().position(|l| l.index == leg) else {
            return;
        };
        let gone = self.legs.remove(at);
        self.retry.push((gone.source.wan, now + RETRY_AFTER));
        if self.legs.is_empty() && !self.ever_open {
            self.fall_back();
            return;
        }
        self.fill(now);
    }

    /// The core's new ranking: legs on WANs it no longer ranks close, and the free
    /// places fill.
    pub fn set_sources(&mut self, sources: Vec<LegSource>, now: Instant) {
        self.sources = sources;
        if self.fell_back {
            return;
        }
        let gone: Vec<u8> = self
            .legs
            .iter()
            .filter(|l| !self.sources.iter().any(|s| s.wan == l.source.wan))
            .map(|l| l.index)
            .collect();
        for leg in gone {
            self.close(leg, CloseWhy::WanGone);
        }
        self.replace_stalled(now);
    }

    /// A copy of sequence number `seq` arrived on leg `leg` at `now`: whether it is the
    /// first (deliver it).
    pub fn datagram(&mut self, leg: u8, seq: u32, now: Instant) -> bool {
        if let Some(l) = self.leg_mut(leg) {
            l.received += 1;
            l.stalled = false;
            l.highest = Some(match l.highest {
                Some(h) if (seq.wrapping_sub(h) as i32) <= 0 => h,
                _ => seq,
            });
        }
        let first = self.dedup.accept(seq);
        if first {
            self.first_seq.get_or_insert(seq);
            if self.arrivals.len() == ARRIVALS {
                self.arrivals.pop_front();
            }
            self.arrivals.push_back((seq, now));
        }
        first
    }

    /// When [`LegBook::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stalls = self
            .legs
            .iter()
            .filter(|l| !l.stalled)
            .filter_map(|l| self.behind_since(l).map(|t| t + l.source.stall_after));
        let retries = self.retry.iter().map(|(_, at)| *at);
        stalls.chain(retries).min()
    }

    /// Time has passed: replace a stalled leg when a spare WAN is ranked, retry WANs.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.retry.retain(|(_, at)| *at > now);
        self.replace_stalled(now);
    }

    /// Close stalled legs while a spare WAN is ranked (marking the others), then fill.
    fn replace_stalled(&mut self, now: Instant) {
        let stalled: Vec<u8> = self
            .legs
            .iter()
            .filter(|l| self.is_stalled(l, now))
            .map(|l| l.index)
            .collect();
        for leg in stalled {
            let Some(at) = self.legs.iter().position(|l| l.index == leg) else {
                continue;
            };
            if self.spare(now).is_some() {
                let wan = self.legs[at].source.wan.clone();
                self.retry.push((wan, now + RETRY_AFTER));
                self.close(leg, CloseWhy::Stalled);
            } else {
                self.legs[at].stalled = true;
            }
        }
        self.fill(now);
    }

    /// Whether protection was given up.
    pub fn fell_back(&self) -> bool {
        self.fell_back
    }

    /// The open legs' indices.
    pub fn open_legs(&self) -> impl Iterator<Item = u8> + '_ {
        self.legs.iter().filter(|l| l.open).map(|l| l.index)
    }

    /// The legs that should carry the next capsules in `fec` mode, at `now`: the open
    /// ones not stalled, else every open one, else every one being opened (their
    /// capsules wait for the connection).
    pub fn carrying(&self, now: Instant) -> Vec<u8> {
        let open = || self.legs.iter().filter(|l| l.open);
        let fresh: Vec<u8> = open()
            .filter(|l| !self.is_stalled(l, now))
            .map(|l| l.index)
            .collect();
        if !fresh.is_empty() {
            return fresh;
        }
        let open: Vec<u8> = open().map(|l| l.index).collect();
        if !open.is_empty() {
            return open;
        }
        self.legs.iter().map(|l| l.index).collect()
    }

    /// Downstream first copies the leg that missed least missed (`duplicate` mode's loss
    /// before protection).
    pub fn least_missed(&self) -> u64 {
        self.legs
            .iter()
            .filter(|l| l.open)
            .map(|l| (self.dedup.accepted() - l.merged_base).saturating_sub(l.received))
            .min()
            .unwrap_or(0)
    }

    /// Legs opened (or being opened) at once now.
    pub fn legs(&self) -> usize {
        self.legs.len()
    }

    /// Legs closed and replaced so far.
    pub fn replaced(&self) -> u64 {
        self.replaced
    }

    /// First copies delivered.
    pub fn delivered(&self) -> u64 {
        self.dedup.accepted()
    }

    /// Copies dropped as duplicates (or too old).
    pub fn duplicates(&self) -> u64 {
        self.dedup.duplicates() + self.dedup.too_old()
    }

    /// Sequence numbers between the first and the highest that no leg delivered.
    pub fn lost(&self) -> u64 {
        match (self.first_seq, self.dedup.highest()) {
            (Some(first), Some(highest)) => {
                let span = u64::from(highest.wrapping_sub(first)) + 1;
                span.saturating_sub(self.dedup.accepted())
            }
            _ => 0,
        }
    }

    /// The legs as the status shows them, at `now`.
    pub fn status(&self, now: Instant) -> Vec<LegStatus> {
        self.legs
            .iter()
            .map(|l| LegStatus {
                leg: l.index,
                wan: l.source.wan.clone(),
                state: if !l.open {
                    "opening"
                } else if self.is_stalled(l, now) {
                    "stalled"
                } else {
                    "open"
                }
                .to_owned(),
                datagrams_down: l.received,
                missed_down: (self.dedup.accepted() - l.merged_base).saturating_sub(l.received),
            })
            .collect()
    }

    fn leg_mut(&mut self, leg: u8) -> Option<&mut Leg> {
        self.legs.iter_mut().find(|l| l.index == leg)
    }

    /// When the oldest first copy this (open) leg has not delivered arrived.
    fn behind_since(&self, leg: &Leg) -> Option<Instant> {
        if !leg.open {
            return None;
        }
        self.arrivals
            .iter()
            .find(|(seq, at)| {
                *at >= leg.opened_at
                    && match leg.highest {
                        Some(h) => (seq.wrapping_sub(h) as i32) > 0,
                        None => true,
                    }
            })
            .map(|(_, at)| *at)
    }

    fn is_stalled(&self, leg: &Leg, now: Instant) -> bool {
        self.behind_since(leg)
            .is_some_and(|since| now.saturating_duration_since(since) >= leg.source.stall_after)
    }

    /// The best ranked WAN with no leg that may be tried at `now`.
    fn spare(&self, now: Instant) -> Option<&LegSource> {
        self.sources.iter().find(|s| {
            !self.legs.iter().any(|l| l.source.wan == s.wan)
                && !self.retry.iter().any(|(w, at)| *w == s.wan && *at > now)
        })
    }

    /// Open legs on spare WANs until [`OPEN_LEGS`] are carried.
    fn fill(&mut self, now: Instant) {
        while !self.fell_back && self.legs.len() < OPEN_LEGS {
            let Some(source) = self.spare(now).cloned() else {
                return;
            };
            let index = self.next_index;
            self.next_index = (self.next_index + 1) % MAX_LEGS;
            if self.started {
                self.replaced += 1;
            }
            self.legs.push(Leg {
                index,
                source: source.clone(),
                open: false,
                highest: None,
                received: 0,
                merged_base: self.dedup.accepted(),
                opened_at: now,
                stalled: false,
            });
            self.actions
                .push_back(LegAction::Open { leg: index, source });
        }
    }

    fn close(&mut self, leg: u8, why: CloseWhy) {
        self.legs.retain(|l| l.index != leg);
        self.actions.push_back(LegAction::Close { leg, why });
    }

    fn fall_back(&mut self) {
        if !self.fell_back {
            self.fell_back = true;
            for leg in std::mem::take(&mut self.legs) {
                self.actions.push_back(LegAction::Close {
                    leg: leg.index,
                    why: CloseWhy::WanGone,
                });
            }
            self.actions.push_back(LegAction::Fallback);
        }
    }
}

#[cfg(test)]
#[path = "legs_tests.rs"]
mod tests;
