//! When a direction that reads an MPTCP socket asks the kernel to batch its arrivals
//! (`SO_RCVLOWAT`), and for how long it waits for the batch (issue 17, fourth round).
//!
//! A bulk download at 100 Mbit/s woke the agent 300–700 times a second, each wake-up a
//! `recv` of about 32 KB, a `send` of the same and the kernel's window update on every
//! subflow (`mptcp_cleanup_rbuf`). With a receive low-water mark the kernel wakes the
//! reader only once [`Config::mark`] bytes are queued (for MPTCP since Linux 6.7, and in
//! 6.6 since 6.6.45: "mptcp: give rcvlowat some love", `mptcp_epollin_ready`; end of
//! stream and errors wake it regardless), so each wake-up moves more and there are fewer
//! of them.
//!
//! The mark alone would hold a response's tail that stays below it on a connection that
//! stays open. So:
//!
//! * **Only bulk transfers get a mark:** a direction turns bulk after it moved
//!   [`Config::after`] bytes *and* one wake-up found at least half a mark queued
//!   (arrivals faster than the wake-ups). A small request, a slow stream, an interactive
//!   session never get one.
//! * **A bulk direction waits at most [`Config::hold`]** for the mark, then reads what is
//!   there. A read on the hold that finds less than half a mark ends the bulk mode (the
//!   mark is cleared, the count starts again): that was a tail, and the next one is read
//!   at once. So the most a bulk transfer's tail waits is one hold.
//! * **A kernel that ignores the mark** (without that change the MPTCP socket accepts
//!   `SO_RCVLOWAT` but its poll wakes on every byte) shows as wake-ups that find less than
//!   the mark; after [`STRIKES`] of them in a row the direction stops asking. A kernel
//!   that refuses the option ([`Coalesce::refused`]) is asked no more either.
//!
//! This module decides; the `recv` module sets the option, waits and reads.

use std::time::Duration;

/// Consecutive wake-ups below the mark after which the kernel is taken to ignore it.
pub(crate) const STRIKES: u8 = 3;

/// The batching knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Config {
    /// The low-water mark in bulk mode, bytes; 0 turns batching off.
    pub(crate) mark: usize,
    /// Bytes a direction moves before it may turn bulk.
    pub(crate) after: u64,
    /// Longest wait for the mark before reading what is queued.
    pub(crate) hold: Duration,
}

impl Config {
    /// The defaults: a 48 KiB mark (below the 64 KiB a `recv` asks for, so one read
    /// takes a batch), after 256 KiB, held at most 10 ms.
    pub(crate) const DEFAULT: Config = Config {
        mark: 48 * 1024,
        after: 256 * 1024,
        hold: Duration::from_millis(10),
    };

    /// [`Config::DEFAULT`], with `MPBOND_RCVLOWAT` (bytes, or `0`/`off`) and
    /// `MPBOND_RCVLOWAT_HOLD_MS` from the environment, for measurements. Read once.
    pub(crate) fn from_env() -> Config {
        static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
        *CONFIG.get_or_init(|| {
            let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned());
            Config::parse(
                var("MPBOND_RCVLOWAT").as_deref(),
                var("MPBOND_RCVLOWAT_HOLD_MS").as_deref(),
            )
        })
    }

    fn parse(mark: Option<&str>, hold_ms: Option<&str>) -> Config {
        let mut config = Config::DEFAULT;
        match mark {
            Some("off" | "false") => config.mark = 0,
            Some(v) => config.mark = v.parse().unwrap_or(config.mark),
            None => {}
        }
        if let Some(ms) = hold_ms.and_then(|v| v.parse().ok()) {
            config.hold = Duration::from_millis(ms);
        }
        config
    }
}

/// What ended a direction's wait before a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The socket turned readable.
    Ready,
    /// The hold ran out before it did.
    Hold,
    /// The previous read filled the buffer, so this one continues the same wake-up.
    More,
}

/// A change of the socket's low-water mark for the shell to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetMark {
    /// `SO_RCVLOWAT` to this many bytes.
    To(usize),
    /// Back to the kernel's default, 1 byte.
    Clear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No mark; counting bytes toward [`Config::after`].
    Plain { moved: u64 },
    /// The mark is set.
    Bulk { strikes: u8 },
    /// The kernel refused or ignores the mark: never again on this direction.
    Never,
}

/// One direction's batching state.
#[derive(Debug, Clone)]
pub(crate) struct Coalesce {
    config: Config,
    state: State,
}

impl Coalesce {
    pub(crate) fn new(config: Config) -> Self {
        let state = if config.mark > 1 {
            State::Plain { moved: 0 }
        } else {
            State::Never
        };
        Coalesce { config, state }
    }

    /// The longest the next wait may last before reading anyway; `None`: until readable.
    pub(crate) fn hold(&self) -> Option<Duration> {
        matches!(self.state, State::Bulk { .. }).then_some(self.config.hold)
    }

    /// A read of `n` bytes (0: nothing was queued) after `wake`; the mark to set, if any.
    pub(crate) fn read(&mut self, n: usize, wake: Wake) -> Option<SetMark> {
        let (mark, half) = (self.config.mark, self.config.mark / 2);
        match &mut self.state {
            State::Never => None,
            State::Plain { moved } => {
                *moved = moved.saturating_add(n as u64);
                if *moved >= self.config.after && wake == Wake::Ready && n >= half {
                    self.state = State::Bulk { strikes: 0 };
                    return Some(SetMark::To(mark));
                }
                None
            }
            State::Bulk { strikes } => match wake {
                // A readiness that found nothing (raced by a read on the hold).
                Wake::More | Wake::Ready if n == 0 => None,
                Wake::More => None,
                Wake::Ready if n >= mark => {
                    *strikes = 0;
                    None
                }
                Wake::Ready => {
                    *strikes += 1;
                    if *strikes >= STRIKES {
                        self.state = State::Never;
                        return Some(SetMark::Clear);
                    }
                    None
                }
                Wake::Hold if n >= half => None,
                Wake::Hold => {
                    self.state = State::Plain { moved: 0 };
                    Some(SetMark::Clear)
                }
            },
        }
    }

    /// The kernel refused to set the mark: the direction reads as before, for good.
    pub(crate) fn refused(&mut self) {
        self.state = State::Never;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: usize = 1024;

    fn bulk() -> Coalesce {
        let mut c = Coalesce::new(Config::DEFAULT);
        assert_eq!(c.read(256 * K, Wake::Ready), Some(SetMark::To(48 * K)));
        c
    }

    #[test]
    fn a_small_response_never_gets_a_mark() {
        let mut c = Coalesce::new(Config::DEFAULT);
        for _ in 0..30 {
            assert_eq!(c.read(8 * K, Wake::Ready), None);
        }
        assert_eq!(c.hold(), None);
    }

    #[test]
    fn a_slow_stream_never_gets_a_mark_however_long() {
        let mut c = Coalesce::new(Config::DEFAULT);
        for _ in 0..10_000 {
            assert_eq!(c.read(4 * K, Wake::Ready), None);
        }
        assert_eq!(c.hold(), None);
    }

    #[test]
    fn a_bulk_download_turns_bulk_once_it_moved_enough_in_large_reads() {
        let mut c = Coalesce::new(Config::DEFAULT);
        for _ in 0..7 {
            assert_eq!(c.read(32 * K, Wake::Ready), None);
        }
        // 256 KiB moved, and this wake-up found more than half a mark.
        assert_eq!(c.read(32 * K, Wake::Ready), Some(SetMark::To(48 * K)));
        assert_eq!(c.hold(), Some(Duration::from_millis(10)));
        // Wake-ups at the mark, and the reads that continue them, change nothing.
        for _ in 0..100 {
            assert_eq!(c.read(60 * K, Wake::Ready), None);
            assert_eq!(c.read(64 * K, Wake::More), None);
            assert_eq!(c.read(3 * K, Wake::More), None);
        }
        assert!(c.hold().is_some());
    }

    #[test]
    fn a_tail_below_the_mark_waits_one_hold_and_ends_the_bulk_mode() {
        let mut c = bulk();
        assert_eq!(c.read(5 * K, Wake::Hold), Some(SetMark::Clear));
        assert_eq!(c.hold(), None);
        // The next response counts from nothing again.
        assert_eq!(c.read(200 * K, Wake::Ready), None);
        assert_eq!(c.read(56 * K, Wake::Ready), Some(SetMark::To(48 * K)));
    }

    #[test]
    fn an_idle_hold_ends_the_bulk_mode() {
        let mut c = bulk();
        assert_eq!(c.read(0, Wake::Hold), Some(SetMark::Clear));
        assert_eq!(c.hold(), None);
    }

    #[test]
    fn a_slower_but_steady_flow_stays_bulk_on_the_hold() {
        let mut c = bulk();
        for _ in 0..50 {
            assert_eq!(c.read(30 * K, Wake::Hold), None);
        }
        assert!(c.hold().is_some());
    }

    #[test]
    fn a_kernel_that_ignores_the_mark_is_asked_no_more() {
        let mut c = bulk();
        // A short wake-up now and then (memory pressure) is forgiven.
        assert_eq!(c.read(10 * K, Wake::Ready), None);
        assert_eq!(c.read(50 * K, Wake::Ready), None);
        for _ in 1..STRIKES {
            assert_eq!(c.read(10 * K, Wake::Ready), None);
        }
        assert_eq!(c.read(10 * K, Wake::Ready), Some(SetMark::Clear));
        assert_eq!(c.hold(), None);
        for _ in 0..100 {
            assert_eq!(c.read(64 * K, Wake::Ready), None);
        }
    }

    #[test]
    fn a_refused_mark_is_not_asked_again() {
        let mut c = Coalesce::new(Config::DEFAULT);
        assert!(c.read(300 * K, Wake::Ready).is_some());
        c.refused();
        assert_eq!(c.hold(), None);
        assert_eq!(c.read(300 * K, Wake::Ready), None);
    }

    #[test]
    fn off_means_never() {
        let mut c = Coalesce::new(Config::parse(Some("0"), None));
        assert_eq!(c.read(1 << 30, Wake::Ready), None);
        assert_eq!(Config::parse(Some("off"), None).mark, 0);
        assert_eq!(Config::parse(None, None), Config::DEFAULT);
        let tuned = Config::parse(Some("65536"), Some("4"));
        assert_eq!((tuned.mark, tuned.hold), (65536, Duration::from_millis(4)));
    }
}
