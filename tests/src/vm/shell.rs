//! The command channel into the guest: a shell on the guest's second serial port,
//! reached through qemu's unix-socket chardev. Each command is framed by two marker
//! lines the guest prints (`@@B<n>` before, `@@E<n>:<exit status>` after), so its
//! output and status are read back exactly, without prompts or echo.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::VmError;

const SYNC_TRIES: usize = 10;
const NUDGE_AFTER: Duration = Duration::from_millis(100);
const SYNC_WAIT: Duration = Duration::from_secs(2);

/// What one command printed (stdout and stderr together) and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestOutput {
    /// The exit status.
    pub status: i32,
    /// Its output.
    pub output: String,
}

/// The connected channel.
#[derive(Debug)]
pub struct Shell {
    stream: UnixStream,
    buf: Vec<u8>,
    next: u64,
}

impl Shell {
    /// Connect to the chardev socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, VmError> {
        let stream = UnixStream::connect(path).map_err(|source| VmError::Channel {
            what: format!("cannot connect to {}", path.display()),
            source,
        })?;
        let mut shell = Self {
            stream,
            buf: Vec::new(),
            next: 1,
        };
        // The first bytes may arrive before the guest's shell reads: ask until it answers.
        let mut last = None;
        for _ in 0..SYNC_TRIES {
            match shell.run("true", SYNC_WAIT) {
                Ok(_) => return Ok(shell),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(VmError::Guest {
            what: "the guest shell".into(),
            detail: "no answer".into(),
        }))
    }

    /// Run `cmd` (one shell line or a here-document) and wait up to `limit` for it.
    pub fn run(&mut self, cmd: &str, limit: Duration) -> Result<GuestOutput, VmError> {
        let n = self.next;
        self.next += 1;
        let text = frame(n, cmd);
        self.stream
            .write_all(text.as_bytes())
            .map_err(|source| VmError::Channel {
                what: "cannot write to the guest shell".into(),
                source,
            })?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some((out, rest)) = parse(&self.buf, n) {
                self.buf = rest;
                return Ok(out);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(VmError::Guest {
                    what: format!("`{}`", first_line(cmd)),
                    detail: format!(
                        "no answer within {} s; so far: {}",
                        limit.as_secs(),
                        String::from_utf8_lossy(&self.buf)
                    ),
                });
            }
            let _ = self.stream.set_read_timeout(Some(left.min(NUDGE_AFTER)));
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(VmError::Guest {
                        what: format!("`{}`", first_line(cmd)),
                        detail: "the guest's serial socket closed".into(),
                    })
                }
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    // Malta's second UART sometimes holds its output until the next
                    // received byte (a lost transmit interrupt): an empty line is a
                    // no-op for the shell and wakes it.
                    let _ = self.stream.write_all(b"\n");
                }
                Err(source) => {
                    return Err(VmError::Channel {
                        what: "cannot read from the guest shell".into(),
                        source,
                    })
                }
            }
        }
    }
}

fn first_line(cmd: &str) -> &str {
    cmd.lines().next().unwrap_or_default()
}

/// The text sent for command `n`: the begin marker, the command in a subshell with
/// stdin closed (it must not eat the next command), the end marker with `$?`.
pub fn frame(n: u64, cmd: &str) -> String {
    if cmd.contains('\n') {
        // A here-document: it needs its own lines, so no subshell around it.
        format!("echo @@B{n}\n{cmd}\necho @@E{n}:$?\n")
    } else {
        format!("echo @@B{n}; ( {cmd} ) </dev/null 2>&1; echo @@E{n}:$?\n")
    }
}

/// The output and status of command `n` in `buf`, and what follows it, once the end
/// marker line is complete.
pub fn parse(buf: &[u8], n: u64) -> Option<(GuestOutput, Vec<u8>)> {
    let text = String::from_utf8_lossy(buf);
    let begin = format!("@@B{n}\n");
    let end = format!("@@E{n}:");
    let b = text.find(&begin)? + begin.len();
    let e = b + text[b..].find(&end)?;
    let status_start = e + end.len();
    let nl = status_start + text[status_start..].find('\n')?;
    let status = text[status_start..nl].trim().parse().unwrap_or(-1);
    let output = text[b..e].to_owned();
    let rest = text[nl + 1..].as_bytes().to_vec();
    Some((GuestOutput { status, output }, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_framed_in_a_subshell_without_stdin() {
        assert_eq!(
            frame(7, "uname -r"),
            "echo @@B7; ( uname -r ) </dev/null 2>&1; echo @@E7:$?\n"
        );
        assert!(frame(8, "cat >f <<'X'\nhi\nX").starts_with("echo @@B8\ncat >f"));
    }

    #[test]
    fn output_and_status_come_from_between_the_markers() {
        let buf = b"noise\n@@B3\nline one\nline two\n@@E3:2\n@@B4\n";
        let (out, rest) = parse(buf, 3).expect("complete");
        assert_eq!(out.output, "line one\nline two\n");
        assert_eq!(out.status, 2);
        assert_eq!(rest, b"@@B4\n");
        assert!(
            parse(b"@@B5\npartial\n@@E5:0", 5).is_none(),
            "no newline yet"
        );
        assert!(parse(buf, 4).is_none());
    }
}
