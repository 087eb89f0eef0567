//! Waiting for a condition with a deadline, for tests that watch another process, thread
//! or namespace: the condition decides, the deadline only bounds a failure.

use std::time::{Duration, Instant};

/// Check `cond` every `every` until it holds or `limit` passes; returns whether it held.
/// It is checked once more at the deadline, so a `limit` of zero still looks once.
pub fn wait_until(limit: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_that_holds_returns_at_once_and_one_that_never_does_times_out() {
        assert!(wait_until(
            Duration::from_secs(60),
            Duration::from_secs(60),
            || true
        ));
        let mut looks = 0;
        let held = wait_until(Duration::ZERO, Duration::from_millis(1), || {
            looks += 1;
            false
        });
        assert!(!held);
        assert_eq!(looks, 1);
    }

    #[test]
    fn it_looks_again_until_the_condition_holds() {
        let mut looks = 0;
        let held = wait_until(Duration::from_secs(60), Duration::ZERO, || {
            looks += 1;
            looks == 3
        });
        assert!(held);
        assert_eq!(looks, 3);
    }
}
