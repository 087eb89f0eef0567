//! Throw-away network namespaces for root-only tests.
//!
//! [`in_new_netns`] runs a closure on a fresh thread that first calls
//! `unshare(CLONE_NEWNET)`: that thread, the sockets it makes and the processes it starts
//! live in a new, empty network namespace, which the kernel deletes when the thread ends,
//! whatever happens. There is no name to clean up and the root namespace is never touched.

use std::collections::HashMap;
use std::io;
use std::process::Command;

/// Why a namespace test could not run.
#[derive(Debug)]
pub enum Skip {
    NotRoot,
    Unshare(io::Error),
}

/// Print a clear skip message; returns true when the test must stop.
pub fn skipped<T>(result: &Result<T, Skip>) -> bool {
    match result {
        Ok(_) => false,
        Err(Skip::NotRoot) => {
            eprintln!("SKIP: namespace test needs root");
            true
        }
        Err(Skip::Unshare(error)) => {
            eprintln!("SKIP: unshare(CLONE_NEWNET) failed: {error}");
            true
        }
    }
}

/// Run `f` on a thread in a new network namespace with `lo` up and
/// `net.ipv4.tcp_fastopen` set to `tcp_fastopen`. A panic in `f` is passed on.
pub fn in_new_netns<T: Send + 'static>(
    tcp_fastopen: u32,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Skip> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Skip::NotRoot);
    }
    let thread = std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread's namespaces.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(Skip::Unshare(io::Error::last_os_error()));
        }
        lo_up().expect("bring lo up in the new netns");
        // /proc/sys/net follows the netns of the task that opens it: this thread.
        std::fs::write("/proc/sys/net/ipv4/tcp_fastopen", tcp_fastopen.to_string())
            .expect("set tcp_fastopen in the new netns");
        Ok(f())
    });
    match thread.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Run `ip ARGS` in this thread's network namespace.
pub fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// Load an nft ruleset (`nft -f -`) in this thread's network namespace.
pub fn nft(ruleset: &str) {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .expect("nft stdin")
        .write_all(ruleset.as_bytes())
        .expect("write ruleset");
    let status = child.wait().expect("wait for nft");
    assert!(status.success(), "nft -f failed for:\n{ruleset}");
}

/// SIOCSIFFLAGS IFF_UP on `lo`, with an ioctl so no tool is needed.
fn lo_up() -> io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: ifreq is a plain C struct; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write an ifreq we own.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The SNMP counters of this thread's network namespace (`/proc/thread-self/net/netstat`),
/// keyed `"TcpExt.TCPFastOpenPassive"`, `"MPTcpExt.MPCapableSYNRX"` and so on.
pub fn netstat() -> HashMap<String, u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").expect("read netstat");
    let mut counters = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let mut names = names.split_whitespace();
        let Some(group) = names.next().map(|g| g.trim_end_matches(':')) else {
            continue;
        };
        for (name, value) in names.zip(values.split_whitespace().skip(1)) {
            counters.insert(format!("{group}.{name}"), value.parse().unwrap_or(0));
        }
    }
    counters
}

/// How much each counter in `keys` grew from `before` to `after`.
pub fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, key: &str) -> u64 {
    let get = |m: &HashMap<String, u64>| m.get(key).copied().unwrap_or(0);
    get(after).saturating_sub(get(before))
}
