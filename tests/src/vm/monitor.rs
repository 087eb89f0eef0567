//! qemu's human monitor on a unix socket: one command, its answer up to the next
//! `(qemu)` prompt.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::VmError;

const PROMPT: &str = "(qemu) ";
const LIMIT: Duration = Duration::from_secs(10);

/// Run `cmd` on the monitor at `path`; what it printed.
pub fn command(path: &Path, cmd: &str) -> Result<String, VmError> {
    let io = |what: &str| {
        let what = format!("monitor: {what} ({})", path.display());
        move |source| VmError::Channel { what, source }
    };
    let mut s = UnixStream::connect(path).map_err(io("cannot connect"))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(io("cannot set a timeout"))?;
    let mut seen = String::new();
    read_until_prompt(&mut s, &mut seen, 1)?;
    s.write_all(format!("{cmd}\n").as_bytes())
        .map_err(io("cannot write"))?;
    read_until_prompt(&mut s, &mut seen, 2)?;
    let answer = seen
        .split(PROMPT)
        .nth(1)
        .unwrap_or_default()
        .replace('\r', "");
    if answer.to_lowercase().contains("error") || answer.contains("not found") {
        return Err(VmError::Guest {
            what: format!("monitor `{cmd}`"),
            detail: answer,
        });
    }
    Ok(answer)
}

fn read_until_prompt(s: &mut UnixStream, seen: &mut String, prompts: usize) -> Result<(), VmError> {
    let deadline = Instant::now() + LIMIT;
    let mut buf = [0u8; 4096];
    while seen.matches(PROMPT).count() < prompts {
        if Instant::now() >= deadline {
            return Err(VmError::Guest {
                what: "monitor".into(),
                detail: format!("no prompt within {} s: {seen:?}", LIMIT.as_secs()),
            });
        }
        match s.read(&mut buf) {
            Ok(0) => {
                return Err(VmError::Guest {
                    what: "monitor".into(),
                    detail: "closed".into(),
                })
            }
            Ok(k) => seen.push_str(&String::from_utf8_lossy(&buf[..k])),
            Err(_) => {}
        }
    }
    Ok(())
}
