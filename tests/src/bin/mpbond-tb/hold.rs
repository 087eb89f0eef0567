//! `mpbond-tb hold`: a server that accepts connections, writes one byte
//! ([`HELLO`]) on each so the client knows the whole path is up, and then
//! keeps them open and idle until it is killed. The scale case fills the
//! concentrator and the agent with these.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};

use crate::sock;

/// The byte each held connection gets on accept.
pub const HELLO: u8 = b'H';

/// Options of `hold`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Listen with an MPTCP socket.
    #[arg(long)]
    mptcp: bool,
}

/// Accept and hold forever; returns only on a listener error.
pub fn run(args: &Args) -> io::Result<()> {
    raise_nofile();
    let listener = sock::listen(args.listen, args.mptcp, false)?;
    println!("{{\"event\":\"listening\",\"addr\":\"{}\"}}", args.listen);
    let mut held: Vec<TcpStream> = Vec::new();
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                // A client that is already gone is simply not held.
                if stream.write_all(&[HELLO]).is_ok() {
                    held.push(stream);
                }
            }
            // Out of descriptors or a transient error: keep what we hold.
            Err(e) if is_transient(&e) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => return Err(e),
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED)
    ) || e.kind() == io::ErrorKind::Interrupted
}

/// Raise the soft RLIMIT_NOFILE to the hard limit (holding thousands of sockets).
pub fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write or read exactly one rlimit struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
