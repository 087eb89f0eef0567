//! The accept loop: the limit holds, errors back off (doubling, reset by a success)
//! and shutdown ends the loop even in the middle of a backoff. Time is paused, so the
//! backoff is measured on tokio's clock; the loopback test uses port 0.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mpbond_relay::accept::{AcceptLoop, Listener, BACKOFF_MAX, BACKOFF_MIN};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A listener that plays a script of accept results, then fails with EMFILE forever,
/// and records when each accept was called.
struct Scripted {
    script: Mutex<VecDeque<io::Result<u32>>>,
    calls: Mutex<Vec<Instant>>,
}

impl Scripted {
    fn new(script: Vec<io::Result<u32>>) -> Self {
        Self {
            script: Mutex::new(script.into()),
            calls: Mutex::new(Vec::new()),
        }
    }

    fn gaps(&self) -> Vec<Duration> {
        let calls = self.calls.lock().unwrap();
        calls.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

fn emfile() -> io::Error {
    io::Error::from_raw_os_error(libc::EMFILE)
}

impl Listener for Scripted {
    type Stream = u32;
    type Peer = ();

    fn accept(&self) -> impl Future<Output = io::Result<(u32, ())>> + Send {
        self.calls.lock().unwrap().push(Instant::now());
        let next = self.script.lock().unwrap().pop_front();
        std::future::ready(next.unwrap_or_else(|| Err(emfile())).map(|n| (n, ())))
    }
}

#[tokio::test(start_paused = true)]
async fn errors_back_off_doubling_and_a_success_resets_it() {
    let listener = Arc::new(Scripted::new(vec![
        Err(emfile()),
        Err(emfile()),
        Err(emfile()),
        Ok(7),
    ]));
    let shutdown = CancellationToken::new();
    let accept = AcceptLoop::new("test", 4, TaskTracker::new(), shutdown.clone());
    let (served_tx, mut served) = mpsc::unbounded_channel();
    let task = {
        let listener = listener.clone();
        tokio::spawn(async move {
            accept
                .run(&*listener, move |n, (), permit| {
                    let served_tx = served_tx.clone();
                    async move {
                        served_tx.send(n).unwrap();
                        drop(permit);
                    }
                })
                .await;
        })
    };
    assert_eq!(served.recv().await, Some(7));
    // Let the backoff after the success run past its maximum, then stop in the middle
    // of a wait.
    let ms = |n| Duration::from_millis(n);
    let mut after = Duration::ZERO;
    let mut wait = BACKOFF_MIN;
    while wait < BACKOFF_MAX {
        after += wait;
        wait = (wait * 2).min(BACKOFF_MAX);
    }
    tokio::time::sleep(after + BACKOFF_MAX + ms(1)).await;
    shutdown.cancel();
    task.await.expect("the loop does not panic");

    let gaps = listener.gaps();
    // Three errors, the success (no wait), then a fresh backoff from the minimum.
    assert_eq!(gaps[..5], [ms(10), ms(20), ms(40), ms(0), ms(10)]);
    assert!(gaps.iter().all(|gap| *gap <= BACKOFF_MAX), "{gaps:?}");
    assert_eq!(gaps.last(), Some(&BACKOFF_MAX), "{gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_a_backoff_at_once() {
    let listener = Arc::new(Scripted::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let accept = AcceptLoop::new("test", 1, TaskTracker::new(), shutdown.clone());
    let task = {
        let listener = listener.clone();
        tokio::spawn(async move {
            accept.run(&*listener, |_, (), _permit| async {}).await;
        })
    };
    // Wait until the loop is in its first backoff (one accept call made).
    while listener.calls.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    let cancelled_at = Instant::now();
    shutdown.cancel();
    task.await.expect("the loop does not panic");
    assert_eq!(
        Instant::now(),
        cancelled_at,
        "no time passed on the paused clock"
    );
    assert_eq!(listener.calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn at_the_limit_the_next_connection_waits_for_a_permit() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
    let accept = AcceptLoop::new("test", 1, tracker.clone(), shutdown.clone());
    let active = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let server = {
        let active = active.clone();
        tokio::spawn(async move {
            accept
                .run(&listener, move |mut stream: TcpStream, _peer, permit| {
                    let (active, started_tx) = (active.clone(), started_tx.clone());
                    async move {
                        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                        started_tx.send(now).unwrap();
                        // Serve until the client closes.
                        let mut sink = Vec::new();
                        let _ = stream.read_to_end(&mut sink).await;
                        active.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                    }
                })
                .await;
        })
    };
    let first = TcpStream::connect(addr).await.unwrap();
    assert_eq!(started.recv().await, Some(1));
    let second = TcpStream::connect(addr).await.unwrap();
    // The loop has the second connection but no permit: nothing starts, however long
    // (paused) time runs.
    let waited = tokio::time::timeout(Duration::from_secs(3600), started.recv()).await;
    assert!(
        waited.is_err(),
        "a second handler ran at the limit: {waited:?}"
    );
    drop(first);
    assert_eq!(started.recv().await, Some(1), "one at a time");
    drop(second);
    shutdown.cancel();
    server.await.expect("the loop does not panic");
    tracker.close();
    tracker.wait().await;
    assert_eq!(active.load(Ordering::SeqCst), 0);
}
