//! Child processes: a guard that kills on drop, and waiting with deadlines.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::BedError;

/// How often process and condition polls look again.
pub const POLL: Duration = Duration::from_millis(50);

/// A spawned process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    cmd: String,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawn `cmd` (whose stdio the caller has set up).
    pub fn spawn(mut cmd: Command) -> Result<Self, BedError> {
        let line = describe(&cmd);
        let child = cmd.spawn().map_err(|source| BedError::Spawn {
            cmd: line.clone(),
            source,
        })?;
        Ok(Self {
            child,
            cmd: line,
            status: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command line, for messages.
    pub fn cmd(&self) -> &str {
        &self.cmd
    }

    /// The underlying child, e.g. to take its stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Wait up to `limit` for the process to exit.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Send a signal (ignored if the process is gone).
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.try_wait().is_none() {
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: kill(2) has no memory-safety preconditions; the child is not reaped yet.
                unsafe { libc::kill(pid, sig) };
            }
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        if let Some(status) = self.wait_timeout(grace) {
            return Some(status);
        }
        self.kill()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.status
    }

    /// Wait up to `limit`, then collect stdout and stderr (kills on timeout).
    pub fn output_within(mut self, limit: Duration) -> Result<Output, BedError> {
        let mut stdout = self.child.stdout.take();
        let mut stderr = self.child.stderr.take();
        let out_reader = std::thread::spawn(move || read_all(stdout.as_mut()));
        let err_reader = std::thread::spawn(move || read_all(stderr.as_mut()));
        let status = self.wait_timeout(limit);
        let status = match status {
            Some(status) => status,
            None => {
                self.kill();
                return Err(BedError::Timeout {
                    cmd: self.cmd.clone(),
                    secs: limit.as_secs(),
                });
            }
        };
        Ok(Output {
            status,
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
        })
    }
}

fn read_all(stream: Option<&mut impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(s) = stream {
        let _ = s.read_to_end(&mut buf);
    }
    buf
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The command line of `cmd`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Run `cmd` to completion within `limit`, feeding it `stdin`; fail on a non-zero exit.
pub fn run(mut cmd: Command, stdin: Option<&str>, limit: Duration) -> Result<Output, BedError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut guard = ChildGuard::spawn(cmd)?;
    if let Some(text) = stdin {
        if let Some(mut pipe) = guard.child_mut().stdin.take() {
            use std::io::Write;
            let _ = pipe.write_all(text.as_bytes());
        }
    }
    let line = guard.cmd().to_owned();
    let out = guard.output_within(limit)?;
    if !out.status.success() {
        return Err(BedError::Command {
            cmd: line,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// Poll `cond` every [`POLL`] until it holds or `limit` passes. Returns whether it held.
pub fn wait_until(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    mpbond_testkit::wait_until(limit, POLL, cond)
}
