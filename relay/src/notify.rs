//! The systemd notify protocol: send a state string such as `READY=1` to the unix datagram
//! socket named by `$NOTIFY_SOCKET`.
//!
//! The variable holds a filesystem path, or a name in the abstract namespace when it starts
//! with `@`. When it is unset nothing happens. Errors are logged at debug level and
//! otherwise ignored, as sd_notify(3) does.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::UnixDatagram;

/// The environment variable that names the notify socket.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// sd_notify: send `state` (e.g. `"READY=1"`) to `$NOTIFY_SOCKET` if it is set (a path, or
/// `@name` for the abstract namespace). Errors are ignored (logged at debug).
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
        return;
    };
    if let Err(error) = notify_to(&target, state) {
        tracing::debug!(%error, state, "sd_notify failed");
    }
}

/// Send `state` to the notify socket `target` (a path, or `@name` for the abstract
/// namespace). This is [`notify`] without the environment lookup, for tests and callers
/// that know the socket.
pub fn notify_to(target: &OsStr, state: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_encoded_bytes();
    let sent = match bytes.split_first() {
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty NOTIFY_SOCKET",
            ))
        }
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?
        }
        Some(_) => socket.send_to(state.as_bytes(), target)?,
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short notify datagram",
        ));
    }
    Ok(())
}
