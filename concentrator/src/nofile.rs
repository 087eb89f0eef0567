//! The descriptor limit: each relayed connection holds two sockets while idle (and two
//! pipes while data moves), so `max_connections` connections need about twice as many
//! descriptors. At start the concentrator raises its soft `RLIMIT_NOFILE` to the hard
//! limit (allowed without privileges) and warns when even that is too small.

use std::io;

/// Descriptors a connection holds while idle: its two sockets.
pub const PER_IDLE_CONNECTION: u64 = 2;
/// Descriptors kept for everything else: the relay's pool of idle pipes, listeners,
/// epoll, the journal.
pub const SPARE: u64 = mpbond_relay::relay::POOL_MAX_DESCRIPTORS as u64 + 64;

/// `RLIMIT_NOFILE` before and after [`raise_to_hard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The soft limit found.
    pub before: u64,
    /// The soft limit now (the hard limit, unless setting it failed).
    pub now: u64,
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit.
pub fn raise_to_hard() -> io::Result<Raised> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes exactly one rlimit, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads exactly one rlimit, which we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(Raised {
        before,
        now: lim.rlim_max,
    })
}

/// The descriptors `max_connections` idle relayed connections need, with the spare.
pub fn needed(max_connections: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(PER_IDLE_CONNECTION)
        .saturating_add(SPARE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soft_and_hard() -> (u64, u64) {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes exactly one rlimit, which we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        (lim.rlim_cur, lim.rlim_max)
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let (_, hard) = soft_and_hard();
        // Lower the soft limit a little (never below what other tests may need).
        let lowered = libc::rlimit {
            rlim_cur: hard.saturating_sub(1).max(1024).min(hard),
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads exactly one rlimit, which we own.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        let raised = raise_to_hard().expect("raise");
        assert_eq!(raised.before, lowered.rlim_cur);
        assert_eq!(raised.now, hard);
        assert_eq!(soft_and_hard(), (hard, hard));
    }

    #[test]
    fn each_connection_needs_two_descriptors_and_the_spare_more() {
        assert_eq!(needed(0), SPARE);
        assert_eq!(needed(9_000), 18_000 + SPARE);
        assert_eq!(needed(usize::MAX), u64::MAX);
    }
}
