//! `mpbond-concentrator add-client NAME`: generate a key and append a `[[client]]` entry
//! to the config file (with `--socks`, a SOCKS5 password too); `show-client NAME`: print
//! an existing client's values.
//!
//! The file is validated before and after: the id must be new, and the result must still
//! be a valid config, or the file is not touched. A missing file is created (mode 0600)
//! with only the new client, so the defaults apply to everything else. Appending keeps
//! the file's owner and mode (the packaged service reads it as user `mpbond`).
//!
//! * [`luci`]: the values a router needs, as LuCI and `uci` name them.
//! * [`reload_service`]: `systemctl reload` of the packaged unit, if it is running.

pub mod luci;

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use mpbond_protocol::auth::{ClientId, Key};
use mpbond_protocol::DEFAULT_PORT;

use crate::config::{Config, ConfigError};
use crate::socks::config::SocksPassword;

/// The config file of the packaged service.
pub const DEFAULT_CONFIG: &str = "/etc/mpbond/concentrator.toml";
/// The systemd unit the package and `install.sh` install.
pub const SERVICE: &str = "mpbond-concentrator";

/// Why a client could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddClientError {
    #[error("invalid client id {0:?}: expected 1-32 characters of [A-Za-z0-9._-]")]
    BadId(String),
    #[error("{path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error("client {0} already exists")]
    Exists(String),
    #[error("cannot get random bytes for the key: {0}")]
    Random(#[source] getrandom::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no client {0} in the config")]
    NoSuchClient(String),
    #[error("invalid host {0:?}: expected an IP address or a DNS name")]
    BadHost(String),
    #[error("cannot run systemctl: {0}")]
    Systemctl(#[source] std::io::Error),
    #[error("systemctl reload {SERVICE} failed ({0}); see journalctl -u {SERVICE}")]
    ReloadFailed(ExitStatus),
}

/// Whether a config file can be read by group or others (it holds keys).
pub fn is_exposed(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

/// A fresh random key.
pub fn generate_key() -> Result<Key, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(Key::from_bytes(bytes))
}

/// The TOML text appended for one client.
pub fn client_entry(id: &ClientId, key: &Key) -> String {
    format!(
        "\n[[client]]\nid = \"{}\"\nkey = \"{}\"\n",
        id.as_str(),
        key.to_hex()
    )
}

/// Append a new client to the config at `path`; returns its id and key.
pub fn add_client(path: &Path, name: &str) -> Result<(ClientId, Key), AddClientError> {
    add_client_with(path, name, false).map(|(id, key, _)| (id, key))
}

/// [`add_client`], with a generated SOCKS5 password (`socks_password`) when `socks`.
pub fn add_client_with(
    path: &Path,
    name: &str,
    socks: bool,
) -> Result<(ClientId, Key, Option<SocksPassword>), AddClientError> {
    let id: ClientId = name
        .parse()
        .map_err(|_| AddClientError::BadId(name.to_owned()))?;
    let cfg_err = |source| AddClientError::Config {
        path: path.to_owned(),
        source,
    };
    let before = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            let path = path.to_owned();
            return Err(cfg_err(ConfigError::Read { path, source }));
        }
    };
    let config = Config::parse(&before).map_err(cfg_err)?;
    if config.key_for(&id).is_some() {
        return Err(AddClientError::Exists(id.to_string()));
    }
    let key = generate_key().map_err(AddClientError::Random)?;
    let password = match socks {
        true => Some(SocksPassword::generate().map_err(AddClientError::Random)?),
        false => None,
    };
    let mut text = before.clone();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&client_entry(&id, &key));
    if let Some(password) = &password {
        text.push_str(&format!("socks_password = \"{}\"\n", password.as_str()));
    }
    // Make sure the result parses before touching the file.
    Config::parse(&text).map_err(cfg_err)?;
    let write_err = |source| AddClientError::Write {
        path: path.to_owned(),
        source,
    };
    // A new file is created private (0600): it holds keys.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err)?;
    let appended = &text[before.len()..];
    file.write_all(appended.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    Ok((id, key, password))
}

/// What a device needs to use the SOCKS5 listener as client `id`: one line per listen
/// address, or a note that `[socks] listen` is empty.
pub fn socks_values(
    config: &Config,
    id: &ClientId,
    password: &SocksPassword,
    host: &str,
) -> String {
    let mut out = format!(
        "SOCKS5 username: {}\nSOCKS5 password: {}\n",
        id.as_str(),
        password.as_str()
    );
    if config.socks.listen.is_empty() {
        out.push_str("SOCKS5 is off: add [socks] listen = [\"0.0.0.0:1080\"] to the config\n");
    }
    for addr in &config.socks.listen {
        out.push_str(&format!(
            "  e.g. mptcpize run curl --socks5-hostname {}:{}@{host}:{} https://example.com/\n",
            id.as_str(),
            password.as_str(),
            addr.port()
        ));
    }
    out
}

/// The router's values for client `name` of the config at `path`: its key, the port of
/// the first listener, and `host` (checked) or else the guessed address of this host.
pub fn router_values(
    path: &Path,
    name: &str,
    host: Option<&str>,
) -> Result<luci::RouterValues, AddClientError> {
    let id: ClientId = name
        .parse()
        .map_err(|_| AddClientError::BadId(name.to_owned()))?;
    let host = match host {
        Some(h) if luci::valid_host(h) => Some(h.to_owned()),
        Some(h) => return Err(AddClientError::BadHost(h.to_owned())),
        None => luci::guess_host().map(|ip| ip.to_string()),
    };
    let config = Config::load(path).map_err(|source| AddClientError::Config {
        path: path.to_owned(),
        source,
    })?;
    let key = config
        .key_for(&id)
        .ok_or_else(|| AddClientError::NoSuchClient(id.to_string()))?;
    let port = config.listen.first().map_or(DEFAULT_PORT, |a| a.port());
    Ok(luci::RouterValues {
        host,
        port,
        client: id,
        key,
    })
}

/// What [`reload_service`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceReload {
    /// The unit was active and `systemctl reload` succeeded (it sends SIGHUP).
    Reloaded,
    /// The unit is not active, or there is no systemd (or no `systemctl`).
    NotActive,
}

/// `systemctl reload UNIT` if `systemctl is-active UNIT` says it runs. `systemctl` is taken
/// from `PATH` (the install test puts a stand-in there).
pub fn reload_service(unit: &str) -> Result<ServiceReload, AddClientError> {
    let active = Command::new("systemctl")
        .args(["is-active", "--quiet", unit])
        .stderr(std::process::Stdio::null())
        .status();
    match active {
        Ok(status) if status.success() => {}
        Ok(_) => return Ok(ServiceReload::NotActive),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ServiceReload::NotActive),
        Err(e) => return Err(AddClientError::Systemctl(e)),
    }
    let status = Command::new("systemctl")
        .args(["reload", unit])
        .status()
        .map_err(AddClientError::Systemctl)?;
    if status.success() {
        Ok(ServiceReload::Reloaded)
    } else {
        Err(AddClientError::ReloadFailed(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_missing_file_private() {
        let name = format!("mpbond-addclient-new-{}.toml", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        let (id, key) = add_client(&path, "first").unwrap();
        assert_eq!(Config::load(&path).unwrap().key_for(&id), Some(key));
        assert!(!is_exposed(&path));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn appends_a_valid_client() {
        let path =
            std::env::temp_dir().join(format!("mpbond-addclient-{}.toml", std::process::id()));
        std::fs::write(&path, "listen = [\"127.0.0.1:0\"]").unwrap();
        let (id, key) = add_client(&path, "home").unwrap();
        let cfg = Config::load(&path).unwrap();
        assert_eq!(cfg.key_for(&id), Some(key.clone()));
        assert!(matches!(
            add_client(&path, "home"),
            Err(AddClientError::Exists(_))
        ));
        assert!(matches!(
            add_client(&path, "bad id"),
            Err(AddClientError::BadId(_))
        ));
        let (work, _, password) = add_client_with(&path, "work", true).unwrap();
        let cfg = Config::load(&path).unwrap();
        let stored = cfg.clients.iter().find(|c| c.id == work).unwrap();
        assert_eq!(stored.socks_password, password);
        assert!(password.is_some());
        assert_eq!(Config::load(&path).unwrap().clients.len(), 2);
        let values = router_values(&path, "home", Some("vps.example.net")).unwrap();
        assert_eq!((values.key, values.port), (key, 0));
        assert_eq!(values.host.as_deref(), Some("vps.example.net"));
        assert!(matches!(
            router_values(&path, "nobody", Some("192.0.2.1")),
            Err(AddClientError::NoSuchClient(_))
        ));
        assert!(matches!(
            router_values(&path, "home", Some("a'b")),
            Err(AddClientError::BadHost(_))
        ));
        std::fs::remove_file(&path).unwrap();
    }
}
