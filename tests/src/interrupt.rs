//! Ctrl-C for the binaries (`mpbond-bench`, `mpbond-demo`): SIGINT or SIGTERM removes
//! every namespace and scratch directory the process still owns, then exits 130.

/// SIGINT/SIGTERM: a self-pipe wakes a thread that deletes our namespaces and exits.
pub fn install_signal_cleanup(program: &'static str) {
    static mut PIPE_WR: libc::c_int = -1;
    extern "C" fn on_signal(_: libc::c_int) {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; PIPE_WR was set before the handler was installed.
        unsafe { libc::write(PIPE_WR, (&byte as *const u8).cast(), 1) };
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    // SAFETY: written once, before any handler can run.
    unsafe { PIPE_WR = fds[1] };
    let read_fd = fds[0];
    std::thread::spawn(move || {
        let mut byte = 0u8;
        // SAFETY: read_fd is the open read end of the pipe; byte is a valid buffer.
        let n = unsafe { libc::read(read_fd, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            eprintln!("\n{program}: interrupted, removing the test bed");
            crate::cleanup_all();
            std::process::exit(130);
        }
    });
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: on_signal only calls write(2), which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}
