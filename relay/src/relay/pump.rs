//! One direction of a relay: move bytes from `src` to `dst` until end of stream, then
//! `shutdown(Write)` on `dst`.
//!
//! The fast path is `splice(2)` through a [`Pipe`]: socket → pipe, then pipe → socket,
//! driven by tokio readiness (`readable()`/`writable()` + `try_io`, so that `EAGAIN` clears
//! the readiness it came from). Filling and draining overlap. `EAGAIN` on the way in
//! clears the socket's read readiness only when the pipe was empty, since only then can it
//! not mean "the pipe is full"; otherwise filling pauses until the drain makes room. If the kernel
//! refuses to splice (`EINVAL`), or no pipe can be made, the direction falls back to a
//! buffered copy.
//!
//! The pipe is held only while data moves: it is taken when `src` turns readable and given
//! back (the `pool` module) at that `EAGAIN` with an empty pipe, so an idle direction holds
//! no pipe.
//!
//! A source that is an MPTCP socket is not spliced but read with `recv` into a pooled
//! buffer (the `recv` module): the kernel's splice out of MPTCP is a copy into freshly
//! allocated pages.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;

// 64-bit atomics that also build on 32-bit MIPS.
use portable_atomic::{AtomicU64, Ordering};
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::pipe::Pipe;
use super::pool::PipeSlot;

/// Buffer size of the copy fallback.
const COPY_BUF: usize = 64 * 1024;

/// Which socket of a direction an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The socket we read from.
    Src,
    /// The socket we write to.
    Dst,
}

/// A failed direction: the error and the socket that gave it.
#[derive(Debug)]
pub(crate) struct PumpError {
    pub(crate) end: End,
    pub(crate) error: io::Error,
}

impl PumpError {
    pub(crate) fn src(error: io::Error) -> Self {
        PumpError {
            end: End::Src,
            error,
        }
    }
    fn dst(error: io::Error) -> Self {
        PumpError {
            end: End::Dst,
            error,
        }
    }
}

/// Counters shared by both directions of one relay; atomics so the relay future is `Send`.
#[derive(Debug)]
pub(crate) struct Meter<'a> {
    /// Bytes of this direction written to `dst`.
    pub(crate) bytes: &'a AtomicU64,
    /// Milliseconds since the relay started at the last moment any byte moved.
    pub(crate) activity: &'a AtomicU64,
    pub(crate) clock: super::idle::Clock,
}

impl Meter<'_> {
    fn moved(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }
    pub(crate) fn touch(&self) {
        self.activity
            .store(self.clock.elapsed_ms(), Ordering::Relaxed);
    }
}

/// How a direction may move its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// splice(2) through a pipe, falling back to copying if the kernel refuses.
    Splice,
    /// Always a buffered copy through user space.
    Copy,
}

/// Move bytes from `src` to `dst` until end of stream, then shut down `dst` for writing.
pub(crate) async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    mode: Mode,
    meter: &Meter<'_>,
    pace: Option<&super::pace::Pace>,
) -> Result<(), PumpError> {
    if mode == Mode::Splice && super::recv::splice_copies(src) {
        // Splicing out of MPTCP copies anyway, at a higher price (the `recv` module).
        super::recv::recv_loop(src, dst, meter, pace).await?;
        return finish(dst);
    }
    if mode == Mode::Splice {
        match PipeSlot::new() {
            Ok(mut slot) => match splice_loop(src, dst, &mut slot, meter).await? {
                Spliced::Eof => {
                    // Everything spliced in went out: the pipe is empty, reuse it.
                    slot.put_back();
                    return finish(dst);
                }
                Spliced::Refused => {}
            },
            Err(error) => tracing::debug!(%error, "no pipe for splice; copying instead"),
        }
    }
    copy_loop(src, dst, meter).await?;
    finish(dst)
}

/// End of stream from `src`: pass it on as FIN to `dst`'s peer.
fn finish(dst: &TcpStream) -> Result<(), PumpError> {
    match SockRef::from(dst).shutdown(Shutdown::Write) {
        Ok(()) => Ok(()),
        // Already gone: the other direction will report why, if it matters.
        Err(error) if error.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
        Err(error) => Err(PumpError::dst(error)),
    }
}

enum Spliced {
    /// `src` reached end of stream and the pipe is empty.
    Eof,
    /// The kernel refused to splice these sockets, or no pipe could be had; the pipe is
    /// empty, copy instead.
    Refused,
}

/// Marks an `EAGAIN` from splicing into a pipe that already holds data: the pipe may be
/// full rather than the socket empty, so the socket's read readiness must not be cleared.
#[derive(Debug)]
struct PipeBusy;

impl std::fmt::Display for PipeBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pipe busy")
    }
}

impl std::error::Error for PipeBusy {}

fn is_pipe_busy(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<PipeBusy>())
}

/// Fill the pipe from `src` while draining it into `dst`, each as soon as its socket is
/// ready, so reading and writing overlap.
async fn splice_loop(
    src: &TcpStream,
    dst: &TcpStream,
    slot: &mut PipeSlot,
    meter: &Meter<'_>,
) -> Result<Spliced, PumpError> {
    let (src_fd, dst_fd) = (src.as_raw_fd(), dst.as_raw_fd());
    let mut in_pipe = 0usize;
    // No more filling: end of stream, or the kernel refused to splice from `src`.
    let (mut eof, mut refused) = (false, false);
    // Filling hit EAGAIN with data in the pipe; wait for the drain to make room.
    let mut busy = false;
    loop {
        if in_pipe == 0 {
            if refused {
                return Ok(Spliced::Refused);
            }
            if eof {
                return Ok(Spliced::Eof);
            }
        }
        let capacity = slot.held().map_or(usize::MAX, Pipe::capacity);
        let fill = !eof && !refused && !busy && in_pipe < capacity;
        tokio::select! {
            biased;
            ready = dst.writable(), if in_pipe > 0 => {
                ready.map_err(PumpError::dst)?;
                // Bytes in the pipe mean the slot holds it.
                let pipe = slot.held().ok_or_else(stalled)?;
                match dst.try_io(Interest::WRITABLE, || pipe.splice_out(dst_fd, in_pipe)) {
                    Ok(0) => return Err(PumpError::dst(io::ErrorKind::WriteZero.into())),
                    Ok(n) => {
                        in_pipe = in_pipe.saturating_sub(n);
                        busy = false;
                        meter.moved(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        copy_out(dst, pipe, in_pipe, meter).await?;
                        in_pipe = 0;
                        busy = false;
                    }
                    Err(e) => return Err(PumpError::dst(e)),
                }
            }
            ready = src.readable(), if fill => {
                ready.map_err(PumpError::src)?;
                let pipe = match slot.get() {
                    Ok(pipe) => pipe,
                    Err(error) => {
                        // Only an empty slot takes a pipe, so nothing is lost.
                        tracing::debug!(%error, "no pipe for splice; copying instead");
                        return Ok(Spliced::Refused);
                    }
                };
                let capacity = pipe.capacity();
                let held = in_pipe;
                let result = src.try_io(Interest::READABLE, || {
                    match pipe.splice_in(src_fd, capacity.saturating_sub(held)) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock && held > 0 => {
                            Err(io::Error::other(PipeBusy))
                        }
                        other => other,
                    }
                });
                match result {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        in_pipe += n;
                        meter.touch();
                    }
                    // Only an empty pipe gets a plain EAGAIN: give it back while idle.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.idle(),
                    Err(e) if is_pipe_busy(&e) => busy = true,
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => refused = true,
                    Err(e) => return Err(PumpError::src(e)),
                }
            }
            else => {
                // Unreachable by the invariants above; fail the direction, never spin.
                return Err(stalled());
            }
        }
    }
}

/// A direction that broke the invariants of [`splice_loop`] fails rather than spin.
fn stalled() -> PumpError {
    PumpError::src(io::Error::other("splice relay stalled"))
}

/// Splicing into `dst` was refused: read the `pending` bytes out of the pipe and write
/// them with a plain copy.
async fn copy_out(
    dst: &TcpStream,
    pipe: &Pipe,
    pending: usize,
    meter: &Meter<'_>,
) -> Result<(), PumpError> {
    let mut buf = vec![0; pending];
    let mut got = 0;
    while got < pending {
        match pipe.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(error) => return Err(PumpError::dst(error)),
        }
    }
    write_all(dst, &buf[..got], meter).await
}

async fn copy_loop(src: &TcpStream, dst: &TcpStream, meter: &Meter<'_>) -> Result<(), PumpError> {
    let mut buf = vec![0; COPY_BUF];
    loop {
        src.readable().await.map_err(PumpError::src)?;
        let n = match src.try_read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(PumpError::src(e)),
        };
        meter.touch();
        write_all(dst, &buf[..n], meter).await?;
    }
}

pub(crate) async fn write_all(
    dst: &TcpStream,
    buf: &[u8],
    meter: &Meter<'_>,
) -> Result<(), PumpError> {
    write_all_after(dst, buf, 0, meter).await
}

/// [`write_all`] where the first `ours` bytes of `buf` are our own, not relayed: they are
/// written but not counted.
pub(crate) async fn write_all_after(
    dst: &TcpStream,
    mut buf: &[u8],
    mut ours: usize,
    meter: &Meter<'_>,
) -> Result<(), PumpError> {
    while !buf.is_empty() {
        dst.writable().await.map_err(PumpError::dst)?;
        match dst.try_write(buf) {
            Ok(0) => return Err(PumpError::dst(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                let n = n.min(buf.len());
                buf = &buf[n..];
                let relayed = n.saturating_sub(ours);
                ours = ours.saturating_sub(n);
                if relayed > 0 {
                    meter.moved(relayed);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(PumpError::dst(e)),
        }
    }
    Ok(())
}
