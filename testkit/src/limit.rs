//! [`bounded`]: an async test body under a time limit, so a hang fails the test with a
//! message instead of stalling the suite. The limit only bounds a failure; it is never a
//! timing assertion, and a passing test never comes near it.

use std::future::Future;
use std::time::Duration;

/// Run `body` to its end and return what it returns; panic with "test timed out" when
/// `limit` passes first. Needs a tokio runtime with time enabled (`#[tokio::test]` has
/// one); under paused time the limit is in the runtime's time.
pub async fn bounded<F: Future>(limit: Duration, body: F) -> F::Output {
    match tokio::time::timeout(limit, body).await {
        Ok(out) => out,
        Err(_) => panic!("test timed out (after {limit:?})"),
    }
}

/// [`bounded`] on a current-thread runtime of its own with every driver on, for a test
/// (or a namespace thread) that is not itself `async`.
pub fn block_on_bounded<F: Future>(limit: Duration, body: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(bounded(limit, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_ends_gives_its_value() {
        assert_eq!(bounded(Duration::from_secs(1), async { 7 }).await, 7);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "test timed out")]
    async fn a_body_that_hangs_fails_at_the_limit() {
        bounded(Duration::from_secs(1), std::future::pending::<()>()).await;
    }

    #[test]
    fn a_blocking_caller_gets_the_value() {
        let got = block_on_bounded(Duration::from_secs(60), async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            7
        });
        assert_eq!(got, 7);
    }
}
