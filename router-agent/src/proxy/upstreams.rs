//! The relays' own sockets to the concentrator, as the passive health check's evidence
//! (`control::passive`): [`LiveUpstreams::sample`] reads each subflow's `tcp_info` from
//! the sockets themselves, `getsockopt(SOL_MPTCP)` (`MPTCP_TCPINFO` and
//! `MPTCP_SUBFLOW_ADDRS`, [`crate::udp::subflows::read_with`]), O(subflows), where a
//! `sock_diag` dump walks the kernel's whole TCP hash table (issue 17: 20 % of the
//! agent's CPU during a 100 Mbit/s download).
//!
//! A connection registers its upstream socket once the Convert reply said OK, just before
//! the relay ([`LiveUpstreams::register`]), and the [`Registered`] guard removes it when
//! the connection ends. The registry holds the socket's raw descriptor number, not a
//! duplicate (issue 17: a duplicate cost one more descriptor per live connection). That
//! is safe because the guard borrows the socket: the socket cannot close while the guard
//! lives, and the guard removes the number under the registry's lock, which
//! [`LiveUpstreams::sample`] holds while it reads. So the sampler never reads a closed
//! number, nor another socket that reused it (the relay runs on the borrowed socket,
//! `mpbond_relay::relay::relay_borrowed`, and the caller closes it after the guard went).
//! A socket that fell back to plain TCP answers `TCP_INFO` instead. The subflows kept are those a dump
//! asked for (established, or closing with data in flight:
//! [`crate::net::sock_diag::is_sampled_state`]).
//!
//! Two `getsockopt`s per socket are cheaper than a dump for the few to hundreds of
//! connections a household keeps; past [`MAX_READ`] live sockets (a router holding
//! thousands of idle connections) the dump, one pass in the kernel, is the cheaper one
//! and [`LiveUpstreams::sample`] says so.
//!
//! The registry only observes: the decision (which WAN is stalled) stays with the state
//! machine (`model::wan_health`). It also carries out one decision of the core's, the
//! latency guard's receive-buffer clamp (`core::latency_guard`):
//! [`LiveUpstreams::clamp_receive`] sets `SO_RCVBUF` on every registered socket whose
//! first window was no wider than the clamp (opened with the clamp as its buffer, or
//! autotuned), and such a socket registered while a clamp holds gets it at once. A
//! socket opened with Fast Open or with a wider buffer is left alone: the concentrator's
//! kernel keeps sending into the window its SYN announced (docs/DESIGN.md, "Fast Open
//! on MPTCP"), so it would overrun a smaller one and the download would crawl
//! (measured: 0.07–0.09 Mbit/s). Such a socket is paced instead: its relay reads it
//! within the shared budget ([`Registered::pace`], `mpbond_relay::relay::Pace`) whose
//! rate [`LiveUpstreams::set_pace`] sets from the core's decision.

use std::collections::HashMap;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};

use mpbond_netlink::sockopt;
use mpbond_relay::relay::Pace;
use socket2::SockRef;

use crate::net::sock_diag::{is_sampled_state, tcp_info, TcpSample};
use crate::udp::subflows;

/// The bytes of `struct tcp_info` read from a plain TCP socket (up to `tcpi_rttvar`).
const TCP_INFO_READ: usize = 76;
/// Most sockets read one by one; past this a dump is cheaper.
pub const MAX_READ: usize = 256;

/// The upstream sockets of the live relays (see the module docs).
#[derive(Debug, Default)]
pub struct LiveUpstreams {
    sockets: Mutex<Book>,
    /// The read budget of the sockets the clamp does not reach.
    pace: Arc<Pace>,
}

#[derive(Debug, Default)]
struct Book {
    next: u64,
    /// Raw numbers of sockets that stay open while registered (see [`Registered`]),
    /// and whether the latency guard may clamp them (not opened with Fast Open).
    sockets: HashMap<u64, (RawFd, bool)>,
    /// The receive buffer every socket gets while the latency guard clamps.
    clamp: Option<u32>,
}

/// Keeps one socket in [`LiveUpstreams`]; dropping it removes the socket. It borrows the
/// socket, so the socket outlives its registration: the registry never holds the number
/// of a closed socket.
#[derive(Debug)]
pub struct Registered<'a> {
    live: &'a LiveUpstreams,
    id: u64,
    clampable: bool,
    _socket: PhantomData<BorrowedFd<'a>>,
}

impl Registered<'_> {
    /// The read budget for this socket's relay: the shared one when the clamp cannot
    /// reach it (opened with Fast Open or wider), else none.
    pub fn pace(&self) -> Option<Arc<Pace>> {
        (!self.clampable).then(|| Arc::clone(&self.live.pace))
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.live.book().sockets.remove(&self.id);
    }
}

/// Why the sockets are not sampled one by one: fall back to a `sock_diag` dump.
#[derive(Debug, thiserror::Error)]
pub enum Unsampled {
    #[error("cannot read the tcp_info of an upstream socket")]
    Unreadable(#[source] io::Error),
    #[error("{0} live upstream sockets, more than {MAX_READ}: a dump is cheaper")]
    TooMany(usize),
}

impl LiveUpstreams {
    /// Register `socket` (an upstream relay's, opened with `fastopen` or not, with the
    /// receive buffer `rcvbuf` set by hand or autotuned) until the guard drops; the guard
    /// borrows the socket, so it cannot be closed first. No descriptor is duplicated.
    ///
    /// Only a socket whose first window was no wider than the clamp is ever clamped:
    /// one opened with Fast Open, or with a receive buffer set wider than the clamp
    /// holding now (or with none holding), announced a window the concentrator keeps
    /// sending into, and clamped afterwards its download stalls (measured: 0.07–0.09
    /// Mbit/s, case 21).
    pub fn register<'a>(
        &'a self,
        socket: &'a impl AsFd,
        fastopen: bool,
        rcvbuf: Option<u32>,
    ) -> Registered<'a> {
        let fd = socket.as_fd().as_raw_fd();
        let mut book = self.book();
        let clampable =
            !fastopen && rcvbuf.map_or(true, |bytes| book.clamp.is_some_and(|c| bytes <= c));
        if let Some(bytes) = book.clamp.filter(|_| clampable) {
            set_rcvbuf(fd, bytes);
        }
        let id = book.next;
        book.next += 1;
        book.sockets.insert(id, (fd, clampable));
        Registered {
            live: self,
            id,
            clampable,
            _socket: PhantomData,
        }
    }

    /// Pace the sockets the clamp does not reach at `rate` bytes a second together
    /// (`None`: read them freely).
    pub fn set_pace(&self, rate: Option<u64>) {
        self.pace.set_rate(rate);
    }

    /// Bytes the paced relays have read within the budget so far (for the status).
    pub fn paced_bytes(&self) -> u64 {
        self.pace.paced_bytes()
    }

    /// How many sockets are registered.
    pub fn len(&self) -> usize {
        self.book().sockets.len()
    }

    /// True when no relay to the concentrator is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The subflows of every registered socket. An error when a socket answers neither
    /// `MPTCP_TCPINFO` + `MPTCP_SUBFLOW_ADDRS` nor `TCP_INFO` (a kernel older than 5.17),
    /// or when more than [`MAX_READ`] are registered: the caller dumps instead. A socket
    /// that is no longer connected has no subflows.
    pub fn sample(&self) -> Result<Vec<TcpSample>, Unsampled> {
        let book = self.book();
        if book.sockets.len() > MAX_READ {
            return Err(Unsampled::TooMany(book.sockets.len()));
        }
        let mut out = Vec::new();
        for &(fd, _) in book.sockets.values() {
            // SAFETY: a number stays in the book only while its `Registered` guard lives,
            // and the guard borrows the socket, so the socket is open; the guard takes
            // the number out under this lock before the socket can close.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            sample_one(&fd, &mut out)?;
        }
        Ok(out)
    }

    /// Set the receive buffer of every registered socket not opened with Fast Open to
    /// `clamp`, and keep it for such sockets registered from now on; `None` gives them
    /// `release` and ends the clamp. Returns how many sockets were set.
    pub fn clamp_receive(&self, clamp: Option<u32>, release: u32) -> usize {
        let mut book = self.book();
        if book.clamp == clamp {
            return 0;
        }
        book.clamp = clamp;
        let bytes = clamp.unwrap_or(release);
        let mut set = 0;
        for &(fd, clampable) in book.sockets.values() {
            if clampable {
                set_rcvbuf(fd, bytes);
                set += 1;
            }
        }
        set
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        // A panic elsewhere while holding the lock leaves a consistent map.
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `SO_RCVBUF(FORCE)` on a registered socket (called under the registry's lock, so
/// the number is an open socket, see [`LiveUpstreams::sample`]). A failure is logged:
/// the socket keeps its buffer.
fn set_rcvbuf(fd: RawFd, bytes: u32) {
    // SAFETY: as in `sample`: the number is in the book, or is being put there by
    // `register`, which holds the borrowed socket.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
    if let Err(error) = sockopt::set_rcvbuf_force(&fd, bytes) {
        tracing::debug!(%error, bytes, "cannot set an upstream socket's receive buffer");
    }
}

/// Add the sampled subflows of one socket to `out`.
fn sample_one(fd: &BorrowedFd<'_>, out: &mut Vec<TcpSample>) -> Result<(), Unsampled> {
    let mptcp = subflows::read_with(fd, |local, remote, info| {
        is_sampled_state(info[0])
            .then(|| tcp_info(info, local.ip(), remote))
            .flatten()
    });
    let mptcp_error = match mptcp {
        Ok(samples) => {
            out.extend(samples);
            return Ok(());
        }
        Err(error) => error,
    };
    // Not MPTCP (a fallback to TCP answers SOL_MPTCP with an error): the socket is its
    // own only subflow.
    let info = match sockopt::get::<[u8; TCP_INFO_READ]>(fd, libc::SOL_TCP, libc::TCP_INFO) {
        Ok(info) => info,
        Err(_) => return Err(Unsampled::Unreadable(mptcp_error)),
    };
    if !is_sampled_state(info[0]) {
        return Ok(());
    }
    let sock = SockRef::from(fd);
    let addrs = sock.local_addr().and_then(|l| Ok((l, sock.peer_addr()?)));
    let Ok((local, peer)) = addrs else {
        return Ok(()); // no longer connected
    };
    if let (Some(local), Some(peer)) = (local.as_socket(), peer.as_socket()) {
        out.extend(tcp_info(&info, local.ip(), peer));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    fn remotes(samples: &[TcpSample]) -> Vec<SocketAddr> {
        samples.iter().map(|s| s.dst).collect()
    }

    fn pair() -> (TcpStream, TcpStream, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server, addr)
    }

    #[test]
    fn a_registered_tcp_socket_is_sampled_until_its_guard_drops() {
        let live = LiveUpstreams::default();
        let (client, _server, addr) = pair();
        let guard = live.register(&client, false, None);
        assert_eq!(live.len(), 1);
        let got = live.sample().unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].src, client.local_addr().unwrap().ip());
        assert_eq!(remotes(&got), [addr]);
        assert_eq!(got[0].unacked, 0);
        drop(guard);
        assert!(live.is_empty());
        assert!(live.sample().unwrap().is_empty());
    }

    fn rcvbuf(socket: &TcpStream) -> usize {
        SockRef::from(socket).recv_buffer_size().unwrap()
    }

    #[test]
    fn the_latency_guard_clamp_reaches_live_and_new_sockets_and_is_released() {
        let live = LiveUpstreams::default();
        let (first, _s1, _) = pair();
        let _g1 = live.register(&first, false, None);
        // The kernel doubles what SO_RCVBUF is given (its bookkeeping overhead).
        assert_eq!(live.clamp_receive(Some(48 << 10), 96 << 10), 1);
        assert_eq!(rcvbuf(&first), 96 << 10);
        assert_eq!(live.clamp_receive(Some(48 << 10), 96 << 10), 0, "unchanged");
        let (second, _s2, _) = pair();
        let _g2 = live.register(&second, false, None);
        assert_eq!(rcvbuf(&second), 96 << 10, "registered while clamped");
        assert_eq!(live.clamp_receive(None, 80 << 10), 2);
        assert_eq!((rcvbuf(&first), rcvbuf(&second)), (160 << 10, 160 << 10));
        let (third, _s3, _) = pair();
        let before = rcvbuf(&third);
        let _g3 = live.register(&third, false, None);
        assert_eq!(rcvbuf(&third), before, "no clamp: left alone");
        // A Fast Open socket is never clamped.
        assert_eq!(live.clamp_receive(Some(32 << 10), 80 << 10), 3);
        let (fourth, _s4, _) = pair();
        let before = rcvbuf(&fourth);
        let _g4 = live.register(&fourth, true, None);
        assert_eq!(rcvbuf(&fourth), before, "Fast Open: left alone");
        assert_eq!(
            live.clamp_receive(Some(40 << 10), 80 << 10),
            3,
            "not the Fast Open one"
        );
        assert_eq!(rcvbuf(&fourth), before);
    }

    /// A socket opened with a receive buffer wider than the clamp (or with none holding)
    /// announced a window the concentrator keeps sending into: it is never clamped. One
    /// opened with the clamp as its buffer is, and is released with the others.
    #[test]
    fn a_socket_opened_wide_is_never_clamped_one_opened_with_the_clamp_is() {
        let live = LiveUpstreams::default();
        let (wide, _s1, _) = pair();
        let before = rcvbuf(&wide);
        let _g1 = live.register(&wide, false, Some(8 << 20));
        assert_eq!(
            live.clamp_receive(Some(48 << 10), 8 << 20),
            0,
            "opened wide"
        );
        assert_eq!(rcvbuf(&wide), before);
        let (narrow, _s2, _) = pair();
        let _g2 = live.register(&narrow, false, Some(48 << 10));
        assert_eq!(rcvbuf(&narrow), 96 << 10, "opened with the clamp");
        let (wider, _s3, _) = pair();
        let before = rcvbuf(&wider);
        let _g3 = live.register(&wider, false, Some(64 << 10));
        assert_eq!(rcvbuf(&wider), before, "wider than the clamp: left alone");
        assert_eq!(
            live.clamp_receive(None, 160 << 10),
            1,
            "only the narrow one"
        );
        assert_eq!(rcvbuf(&narrow), 320 << 10);
    }

    /// The guard borrows the socket, so the relay closes it only after the guard took
    /// its number out; a sampler reading all along never reads a closed number (an
    /// error) nor the socket that reuses it (another address).
    #[test]
    fn a_sampler_racing_the_close_never_reads_another_socket() {
        const ROUNDS: usize = 200;
        let live = LiveUpstreams::default();
        let ours = TcpListener::bind("127.0.0.1:0").unwrap();
        let theirs = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours_addr = ours.local_addr().unwrap();
        let theirs_addr = theirs.local_addr().unwrap();
        let (done, passes) = (AtomicBool::new(false), AtomicUsize::new(0));
        let reused = std::thread::scope(|scope| {
            let sampler = scope.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    let got = live.sample().expect("only open sockets are read");
                    assert!(
                        got.iter().all(|s| s.dst == ours_addr),
                        "read another socket: {got:?}"
                    );
                    passes.fetch_add(1, Ordering::AcqRel);
                }
            });
            let mut reused = 0;
            for _ in 0..ROUNDS {
                let client = TcpStream::connect(ours_addr).unwrap();
                let _server = ours.accept().unwrap();
                let number = client.as_raw_fd();
                let guard = live.register(&client, false, None);
                // The sampler reads this socket at least once while it is registered.
                let start = passes.load(Ordering::Acquire);
                while passes.load(Ordering::Acquire) < start + 2 {
                    std::thread::yield_now();
                }
                drop(guard);
                drop(client);
                // The lowest free number is the one just closed (unless another test
                // thread took it first).
                let other = TcpStream::connect(theirs_addr).unwrap();
                let _other_server = theirs.accept().unwrap();
                reused += usize::from(other.as_raw_fd() == number);
            }
            done.store(true, Ordering::Release);
            sampler.join().unwrap();
            reused
        });
        assert!(live.is_empty());
        assert!(reused > 0, "no number was reused: the race was never run");
    }

    #[test]
    fn a_socket_that_is_not_tcp_is_unreadable() {
        let live = LiveUpstreams::default();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let _guard = live.register(&udp, false, None);
        assert!(matches!(live.sample(), Err(Unsampled::Unreadable(_))));
    }

    #[test]
    fn past_the_limit_the_caller_is_told_to_dump() {
        let live = LiveUpstreams::default();
        let (client, _server, _) = pair();
        let mut guards: Vec<_> = (0..=MAX_READ)
            .map(|_| live.register(&client, false, None))
            .collect();
        assert!(matches!(live.sample(), Err(Unsampled::TooMany(n)) if n == MAX_READ + 1));
        guards.truncate(1);
        assert_eq!(live.sample().unwrap().len(), 1);
    }

    #[test]
    #[ignore = "needs a kernel with MPTCP (5.17+, net.mptcp.enabled=1)"]
    fn an_mptcp_socket_is_sampled_per_subflow() {
        let listener = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::MPTCP),
        )
        .unwrap();
        listener
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        listener.listen(1).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let client = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::MPTCP),
        )
        .unwrap();
        client.connect(&addr.into()).unwrap();
        let _server = listener.accept().unwrap();
        let live = LiveUpstreams::default();
        let _guard = live.register(&client, false, None);
        let mut got = Vec::new();
        sample_one(&client.as_fd(), &mut got).unwrap();
        assert!(subflows::read(&client).is_ok(), "read through SOL_MPTCP");
        assert_eq!(remotes(&got), [addr]);
    }
}
