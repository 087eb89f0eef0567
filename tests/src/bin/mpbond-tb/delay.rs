//! `mpbond-tb delay`: a userspace delay line between two interfaces, for the
//! test bed's WAN latency (the kernel here has neither `netem` nor `fq` for
//! EDT). Every frame seen on `--a` is sent out of `--b` `--ms` later, and the
//! other way round: an L2 bridge through AF_PACKET sockets.
//!
//! The sockets use `PACKET_VNET_HDR`, so GSO super-frames and frames whose
//! checksum is still to be filled in cross as they are (the kernel segments
//! and checksums on the way out). A constant delay keeps the order, so each
//! direction is a FIFO: one thread reads and stamps, one sleeps and sends.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Options of `delay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// One interface.
    #[arg(long)]
    a: String,
    /// The other interface.
    #[arg(long)]
    b: String,
    /// One-way delay in milliseconds, each direction.
    #[arg(long)]
    ms: u64,
}

const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// Room for a 64 KiB GSO frame, its link header and the virtio header.
const FRAME_MAX: usize = 70 * 1024;

/// Bridge until killed; returns only on a setup error.
pub fn run(args: &Args) -> io::Result<()> {
    let a = PacketSocket::bind(&args.a)?;
    let b = PacketSocket::bind(&args.b)?;
    let delay = Duration::from_millis(args.ms);
    let (a2, b2) = (a.try_clone()?, b.try_clone()?);
    let ab = std::thread::spawn(move || direction(a, b2, delay));
    let ba = std::thread::spawn(move || direction(b, a2, delay));
    println!("{{\"event\":\"ready\"}}");
    let _ = ab.join();
    let _ = ba.join();
    Err(io::Error::other("a direction stopped"))
}

/// Read frames from `from` and send each out of `to` `delay` later.
fn direction(from: PacketSocket, to: PacketSocket, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let sender = std::thread::spawn(move || {
        for (due, frame) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            // A frame the device refuses (it is down, say) is dropped, as a wire would.
            let _ = to.send(&frame);
        }
    });
    let mut buf = vec![0u8; FRAME_MAX];
    loop {
        match from.recv(&mut buf) {
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::ENETDOWN) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                eprintln!("mpbond-tb delay: recv: {e}");
                break;
            }
        }
    }
    drop(tx);
    let _ = sender.join();
}

/// An AF_PACKET socket bound to one interface, with virtio-net headers.
struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    fn bind(ifname: &str) -> io::Result<Self> {
        let name = CString::new(ifname).map_err(|_| io::Error::other("bad interface name"))?;
        // SAFETY: if_nametoindex reads a NUL-terminated string we own.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked below.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto)) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for opt in [PACKET_VNET_HDR, PACKET_IGNORE_OUTGOING] {
            mpbond_netlink::sockopt::set_int(&fd, libc::SOL_PACKET, opt, 1)?;
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        // SAFETY: sll is a valid sockaddr_ll and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
        })
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: frame is valid for reads of frame.len() bytes.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}
