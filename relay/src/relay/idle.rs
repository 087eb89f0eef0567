//! The idle timer of a relay: it fires once no byte has moved in either direction for the
//! configured time. Uses tokio's clock, so tests can run it with paused time.

use std::time::Duration;

// 64-bit atomics that also build on 32-bit MIPS.
use portable_atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

/// Milliseconds since the relay started, on tokio's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
}

impl Clock {
    pub(crate) fn start() -> Self {
        Clock {
            start: Instant::now(),
        }
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at_ms(&self, ms: u64) -> Instant {
        self.start
            .checked_add(Duration::from_millis(ms))
            .unwrap_or(self.start)
    }
}

/// Resolve once `activity` (milliseconds on `clock` of the last byte moved) is `idle` old.
/// Never resolves when `idle` is None.
pub(crate) async fn expired(clock: Clock, activity: &AtomicU64, idle: Option<Duration>) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    loop {
        let last = clock.at_ms(activity.load(Ordering::Relaxed));
        // A timeout too large to represent never fires.
        let Some(deadline) = last.checked_add(idle) else {
            return std::future::pending().await;
        };
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}
