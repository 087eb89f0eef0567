//! The accept loop on loopback: a connection that was not redirected (no original
//! destination other than the listener itself) is dropped, the loop keeps serving with a
//! limit of one connection, and it stops promptly on shutdown.

mod common;

use std::time::Duration;

use common::{closed_port, key, upstream};
use mpbond_agent::proxy::{bind, serve};
use mpbond_testkit::bounded;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[tokio::test]
async fn unredirected_connections_are_dropped_and_the_loop_stops_on_shutdown() {
    bounded(Duration::from_secs(10), async {
        let listeners = bind(0).expect("bind port 0");
        let addr = listeners.v4.local_addr().unwrap();
        let (ctx, _events) = common::context(upstream(closed_port().await, key()));
        let stats = ctx.stats.clone();
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let server = {
            let (tracker, shutdown) = (tracker.clone(), shutdown.clone());
            tokio::spawn(async move { serve(&listeners, ctx, 1, tracker, shutdown).await })
        };
        for _ in 0..3 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let mut buf = [0u8; 16];
            // EOF or reset: either way the connection was dropped, not relayed.
            let read = client.read(&mut buf).await;
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        }
        shutdown.cancel();
        server.await.expect("serve does not panic");
        tracker.close();
        tracker.wait().await;
        let s = stats.snapshot();
        assert_eq!((s.total, s.active, s.direct), (3, 0, 0));
    })
    .await;
}
