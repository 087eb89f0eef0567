//! The direction whose source is an MPTCP socket: `recv` into a pooled buffer, then
//! `send`, instead of splicing (issue 17).
//!
//! An MPTCP socket has no `splice_read` of its own (checked on 6.18; OpenWrt's 6.1/6.6
//! have none either), so `splice(2)` out of it is the kernel's generic copying splice
//! (`copy_splice_read` since 6.5, seen in the profile): it allocates up to a pipe's worth
//! of pages (16 for 64 KiB), copies into them with `recvmsg` and frees the ones it did
//! not fill, on every call, the `EAGAIN` that ends each round included. The
//! payload is copied either way; a `recv` into a buffer we keep copies it without the page
//! allocations, and a `recv` that returns less than asked means the socket's queue was
//! empty, so the round ends without the extra call that must return `EAGAIN` (the read
//! readiness is cleared, as tokio's own `poll_read` does: epoll is edge-triggered, so
//! bytes that arrive afterwards wake the direction again). The write side stays a plain
//! `send` of what was read: two calls a round where splicing made three. In the bed
//! (docs/PERFORMANCE.md, issue 17's third round) the agent's CPU per GB fell by a quarter
//! at 500 Mbit/s and an eighth unshaped, and stayed level at 100 Mbit/s.
//!
//! A bulk transfer's direction also asks the kernel to batch arrivals with a receive
//! low-water mark (`SO_RCVLOWAT`), waiting at most a hold for it; the `coalesce` module
//! decides when, and this one sets the option, waits and reads. A read on the hold uses a
//! plain `recv`, since the socket is not readable by the mark and tokio's readiness must
//! stay as it is.
//!
//! The buffer is held only while data moves, as a pipe is: taken when the source turns
//! readable, given back to a small pool once a short read emptied the socket and its
//! bytes were written, so an idle connection holds no buffer.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::coalesce::{Coalesce, Config, SetMark, Wake};
use super::pace::{Grant, Pace, Transfer};
use super::pump::{write_all, Meter, PumpError};

/// Bytes one `recv` asks for unless `MPBOND_RECV_BUF` says otherwise: a pipe's worth,
/// as the splice path moves.
pub(crate) const RECV_BUF: usize = 64 * 1024;

/// The bytes one `recv` asks for: `$MPBOND_RECV_BUF` (bytes, 4 KiB to 1 MiB; a tuning
/// knob for measurements, as `MPBOND_PIPE_SIZE` is for pipes), else [`RECV_BUF`]. Read
/// once.
pub(crate) fn recv_buf() -> usize {
    static SIZE: OnceLock<usize> = OnceLock::new();
    *SIZE.get_or_init(|| {
        std::env::var("MPBOND_RECV_BUF")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map_or(RECV_BUF, |n| n.clamp(4096, 1 << 20))
    })
}
/// Most idle buffers the pool keeps (64 KiB each, shared by all connections).
const POOL_MAX: usize = 8;
static POOL: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// True when `src` is an MPTCP socket (`SO_PROTOCOL`), whose splice is a copy anyway.
pub(crate) fn splice_copies(src: &TcpStream) -> bool {
    mpbond_netlink::sockopt::get_int(src, libc::SOL_SOCKET, libc::SO_PROTOCOL)
        .is_ok_and(|p| p == libc::IPPROTO_MPTCP)
}

/// A buffer from the pool, or a new one.
fn take() -> Box<[u8]> {
    let pooled = POOL.lock().ok().and_then(|mut pool| pool.pop());
    pooled.unwrap_or_else(|| vec![0; recv_buf()].into_boxed_slice())
}

/// Put a buffer back into the pool, or free it if the pool is full.
fn give_back(buf: Box<[u8]>) {
    if let Ok(mut pool) = POOL.lock() {
        if pool.len() < POOL_MAX {
            pool.push(buf);
        }
    }
}

/// What one `recv` gave.
enum Got {
    /// This many bytes; `drained` when fewer than asked (the socket's queue is empty).
    Bytes { n: usize, drained: bool },
    /// End of stream.
    Eof,
    /// Nothing to read now.
    Empty,
}

/// Move bytes from `src` to `dst` by `recv` and `send` until end of stream (see the
/// module docs). The caller shuts `dst` down afterwards.
pub(crate) async fn recv_loop(
    src: &TcpStream,
    dst: &TcpStream,
    meter: &Meter<'_>,
    pace: Option<&Pace>,
) -> Result<(), PumpError> {
    let mut held: Option<Box<[u8]>> = None;
    let config = Config::from_env();
    let mut batch = Coalesce::new(config);
    // The last read filled the buffer: more is queued, read on without waiting.
    let mut more = false;
    // A direction is paced only while it is a bulk transfer.
    let mut transfer = Transfer::default();
    let result = async {
        loop {
            let wake = if more {
                Wake::More
            } else {
                wait(src, batch.hold()).await.map_err(PumpError::src)?
            };
            // Only a direction that may be paced keeps the transfer's clock.
            let bulk = pace.is_some() && transfer.paced(tokio::time::Instant::now().into_std());
            let allowed = match pace.filter(|_| bulk) {
                Some(pace) => budget(pace).await,
                None => None,
            };
            if allowed.is_some() && batch.hold().is_some() {
                // Paced: read in the budget's slices, not held for a batch.
                let _ = set_mark(src, SetMark::Clear);
                batch = Coalesce::new(config);
            }
            let buf = held.get_or_insert_with(take);
            let len = allowed.unwrap_or(buf.len());
            let slice = &mut buf[..len];
            let got = if wake == Wake::Hold {
                recv_now(src, slice)
            } else {
                recv_once(src, slice)
            };
            let got = got.map_err(PumpError::src)?;
            let (n, drained) = match got {
                Got::Bytes { n, drained } => (n, drained),
                Got::Eof | Got::Empty => (0, false),
            };
            if pace.is_some() {
                transfer.read(n, drained, tokio::time::Instant::now().into_std());
            }
            if let (Some(pace), Some(allowed)) = (pace, allowed) {
                pace.refund(allowed - n);
            } else if let Some(change) = batch.read(n, wake) {
                if set_mark(src, change).is_err() {
                    batch.refused();
                }
            }
            more = false;
            match got {
                Got::Eof => return Ok(()),
                Got::Empty => {
                    if let Some(buf) = held.take() {
                        give_back(buf);
                    }
                }
                Got::Bytes { n, drained } => {
                    meter.touch();
                    write_all(dst, &buf[..n], meter).await?;
                    more = !drained;
                    if drained {
                        if let Some(buf) = held.take() {
                            give_back(buf);
                        }
                    }
                }
            }
        }
    }
    .await;
    if let Some(buf) = held {
        give_back(buf);
    }
    result
}

/// Wait for the pace's tokens: `Some(bytes)` to read at most, `None` when not paced.
/// The time is tokio's, as the sleep's (paused in tests).
async fn budget(pace: &Pace) -> Option<usize> {
    match pace.grant(recv_buf(), tokio::time::Instant::now().into_std()) {
        Grant::Free => None,
        Grant::Take(n) => Some(n),
        Grant::After(wait, n) => {
            tokio::time::sleep(wait).await;
            Some(n)
        }
    }
}

/// Wait until `src` is readable, or at most `hold`.
async fn wait(src: &TcpStream, hold: Option<Duration>) -> io::Result<Wake> {
    match hold {
        None => src.readable().await.map(|()| Wake::Ready),
        Some(hold) => tokio::select! {
            ready = src.readable() => ready.map(|()| Wake::Ready),
            () = tokio::time::sleep(hold) => Ok(Wake::Hold),
        },
    }
}

/// Set or clear `src`'s receive low-water mark. A refusal is logged once per process.
fn set_mark(src: &TcpStream, change: SetMark) -> io::Result<()> {
    let bytes = match change {
        SetMark::To(bytes) => bytes,
        SetMark::Clear => 1,
    };
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let result = mpbond_netlink::sockopt::set_int(src, libc::SOL_SOCKET, libc::SO_RCVLOWAT, value);
    if let Err(error) = &result {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            tracing::debug!(%error, "SO_RCVLOWAT refused on an MPTCP socket; reading every arrival");
        });
    }
    result
}

/// One non-blocking `recv` into `buf`. A short read clears the read readiness, as
/// `EAGAIN` does, so the next round waits for new bytes instead of asking again.
fn recv_once(src: &TcpStream, buf: &mut [u8]) -> io::Result<Got> {
    let mut got = 0usize;
    let result = src.try_io(Interest::READABLE, || {
        let n = raw_recv(src, buf)?;
        got = n;
        if n > 0 && n < buf.len() {
            // Drained: end the round here and clear the readiness it came from.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match result {
        Ok(0) => Ok(Got::Eof),
        Ok(n) => Ok(Got::Bytes { n, drained: false }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(Got::Bytes {
            n: got,
            drained: true,
        }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Got::Empty),
        Err(e) => Err(e),
    }
}

/// One non-blocking `recv` after the hold ran out: the socket is not readable by the
/// mark, so tokio's readiness (not set) is left alone; whatever is queued is read.
fn recv_now(src: &TcpStream, buf: &mut [u8]) -> io::Result<Got> {
    match raw_recv(src, buf) {
        Ok(0) => Ok(Got::Eof),
        Ok(n) => Ok(Got::Bytes {
            n,
            drained: n < buf.len(),
        }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Got::Empty),
        Err(e) => Err(e),
    }
}

fn raw_recv(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let fd = src.as_raw_fd();
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `fd` stays open while `src`
    // is borrowed.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::connect::{connect_with, ConnectOpts};
    use crate::relay::{relay, Pace, RelayOpts};

    /// Bytes `i` of the test stream: a pattern that shows a lost or repeated chunk.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
            .collect()
    }

    /// LAN client ⇄ relay ⇄ MPTCP server: the download direction (MPTCP source) goes
    /// through `recv_loop`, whole and in order, in writes of every size, and the end of
    /// stream comes through; the upload direction (TCP source) still splices.
    #[test]
    #[ignore = "needs a kernel with MPTCP (5.17+, net.mptcp.enabled=1)"]
    fn an_mptcp_source_is_relayed_whole_through_recv() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (mut lan_client, mut server, relayed, _watch) = relayed_pair().await;
            let down = pattern(3 << 20);
            let up = pattern(1 << 20);
            let (sent_down, sent_up) = (down.clone(), up.clone());
            let server_side = tokio::spawn(async move {
                // Chunks of growing odd sizes, so reads end short and full.
                let (mut at, mut step) = (0, 1);
                while at < sent_down.len() {
                    let end = (at + step).min(sent_down.len());
                    server.write_all(&sent_down[at..end]).await.unwrap();
                    at = end;
                    step = (step * 3 + 7) % (200 << 10) + 1;
                }
                server.shutdown().await.unwrap();
                let mut got = Vec::new();
                server.read_to_end(&mut got).await.unwrap();
                got
            });
            let (mut lan_rd, mut lan_wr) = lan_client.split();
            let upload = async {
                lan_wr.write_all(&sent_up).await.unwrap();
                lan_wr.shutdown().await.unwrap();
            };
            let download = async {
                let mut got = Vec::new();
                lan_rd.read_to_end(&mut got).await.unwrap();
                got
            };
            let ((), got_down) = tokio::join!(upload, download);
            assert!(
                got_down == down,
                "download corrupted ({} bytes)",
                got_down.len()
            );
            assert!(server_side.await.unwrap() == up, "upload corrupted");
            let stats = relayed.await.unwrap();
            assert_eq!(stats.b_to_a, down.len() as u64);
            assert_eq!(stats.a_to_b, up.len() as u64);
        });
    }

    /// A connected MPTCP pair through the relay: (LAN client, server end of the
    /// upstream, the relay's task, a duplicate of the relay's upstream socket to read its
    /// options).
    async fn relayed_pair() -> (
        TcpStream,
        TcpStream,
        tokio::task::JoinHandle<crate::relay::RelayStats>,
        std::os::fd::OwnedFd,
    ) {
        relayed_pair_with(RelayOpts::default()).await
    }

    /// [`relayed_pair`] with the relay's options.
    async fn relayed_pair_with(
        relay_opts: RelayOpts,
    ) -> (
        TcpStream,
        TcpStream,
        tokio::task::JoinHandle<crate::relay::RelayStats>,
        std::os::fd::OwnedFd,
    ) {
        let lan_listener =
            crate::sys::tcp_listener("127.0.0.1:0".parse().unwrap(), 8).expect("tcp listener");
        let up_listener = crate::sys::mptcp_listener("127.0.0.1:0".parse().unwrap(), 8, None)
            .expect("mptcp listener");
        let lan_client = TcpStream::connect(lan_listener.local_addr().unwrap())
            .await
            .unwrap();
        let (lan, _) = lan_listener.accept().await.unwrap();
        let opts = ConnectOpts {
            congestion: None,
            mptcp: true,
            fastopen: false,
            timeout: Duration::from_secs(10),
            mark: None,
            bind: None,
        };
        let up_addr = up_listener.local_addr().unwrap();
        let (connected, accepted) =
            tokio::join!(connect_with(up_addr, b"hello", &opts), up_listener.accept());
        let upstream = connected.expect("mptcp connect").stream;
        let (mut server, _) = accepted.unwrap();
        assert!(splice_copies(&upstream), "the upstream is not MPTCP");
        let mut hello = [0; 5];
        server.read_exact(&mut hello).await.unwrap();
        let watch = socket2::SockRef::from(&upstream)
            .try_clone()
            .expect("dup")
            .into();
        let relayed = tokio::spawn(async move { relay(lan, upstream, &relay_opts).await });
        (lan_client, server, relayed, watch)
    }

    /// A bulk download turns the upstream's low-water mark on, and a tail below the mark
    /// on a connection that stays open still comes through (the hold), after which the
    /// mark is off again. No timing is asserted; a stall fails after 30 s.
    #[test]
    #[ignore = "needs a kernel with MPTCP (5.17+, net.mptcp.enabled=1)"]
    fn a_tail_below_the_mark_comes_through_on_an_open_connection() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (mut lan_client, mut server, _relayed, watch) = relayed_pair().await;
            let lowat = || {
                mpbond_netlink::sockopt::get_int(&watch, libc::SOL_SOCKET, libc::SO_RCVLOWAT)
                    .expect("SO_RCVLOWAT")
            };
            let bulk = pattern(4 << 20);
            let sent = bulk.clone();
            let (read_all, all_read) = tokio::sync::oneshot::channel::<()>();
            let server_side = tokio::spawn(async move {
                server.write_all(&sent).await.unwrap();
                all_read.await.unwrap();
                server.write_all(b"tail").await.unwrap();
                // Open until the test ends: only the hold can deliver the tail.
                server
            });
            let mut got = vec![0; bulk.len()];
            let (mut at, mut most) = (0, 0);
            while at < got.len() {
                let end = (at + (16 << 10)).min(got.len());
                lan_client.read_exact(&mut got[at..end]).await.unwrap();
                at = end;
                most = most.max(lowat());
            }
            assert!(got == bulk, "bulk corrupted");
            assert_eq!(
                most,
                Config::DEFAULT.mark as i32,
                "the mark was never set during the bulk download"
            );
            read_all.send(()).unwrap();
            let mut tail = [0; 4];
            tokio::time::timeout(Duration::from_secs(30), lan_client.read_exact(&mut tail))
                .await
                .expect("the tail stalled below the mark")
                .unwrap();
            assert_eq!(&tail, b"tail");
            assert_eq!(lowat(), 1, "the mark stayed on after the tail");
            drop(server_side.await.unwrap());
        });
    }

    /// A paced download direction (the latency guard's budget, `pace`) still delivers
    /// everything whole and in order, and the bulk hold (`SO_RCVLOWAT`) is not used
    /// once paced (from `PACED_AFTER`); the pace lifted midway, it reads freely again.
    /// No timing asserted.
    #[test]
    #[ignore = "needs a kernel with MPTCP (5.17+, net.mptcp.enabled=1)"]
    fn a_paced_mptcp_source_is_relayed_whole_without_the_hold() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let pace = std::sync::Arc::new(Pace::default());
            pace.set_rate(Some(40_000_000));
            let opts = RelayOpts {
                pace: Some(pace.clone()),
                ..RelayOpts::default()
            };
            let (mut lan_client, mut server, relayed, watch) = relayed_pair_with(opts).await;
            let lowat = || {
                mpbond_netlink::sockopt::get_int(&watch, libc::SOL_SOCKET, libc::SO_RCVLOWAT)
                    .expect("SO_RCVLOWAT")
            };
            let down = pattern(6 << 20);
            let sent = down.clone();
            let server_side = tokio::spawn(async move {
                server.write_all(&sent).await.unwrap();
                server.shutdown().await.unwrap();
                server
            });
            let mut got = vec![0; down.len()];
            let (mut at, mut most) = (0, 0);
            while at < got.len() {
                let end = (at + (64 << 10)).min(got.len());
                lan_client.read_exact(&mut got[at..end]).await.unwrap();
                at = end;
                // Past PACED_AFTER (and what was in flight), before the pace is lifted.
                if (2 << 20..got.len() / 2).contains(&at) {
                    most = most.max(lowat());
                }
                if at >= got.len() / 2 {
                    pace.set_rate(None);
                }
            }
            assert!(got == down, "paced download corrupted");
            assert_eq!(most, 1, "a paced direction set the low-water mark");
            drop(lan_client);
            drop(server_side.await.unwrap());
            let stats = relayed.await.unwrap();
            assert_eq!(stats.b_to_a, down.len() as u64);
        });
    }

    #[test]
    fn pooled_buffers_are_bounded() {
        let many: Vec<Box<[u8]>> = (0..POOL_MAX + 3).map(|_| take()).collect();
        assert!(many.iter().all(|b| b.len() == recv_buf()));
        many.into_iter().for_each(give_back);
        assert!(POOL.lock().expect("pool").len() <= POOL_MAX);
    }
}
