//! The replay journal on disk: `state_dir/replay.journal`.
//!
//! The verifier ([`mpbond_protocol::auth::Verifier`]) decides what must be durable; this
//! module writes it. One record a line, appended and synced (`fdatasync`) before the
//! request it covers is accepted:
//!
//! ```text
//! # mpbond replay journal 1
//! reserve home 1700000010     this process may accept timestamps of "home" up to here
//! stop home 1700000003        clean stop: the highest timestamp accepted for "home"
//! ```
//!
//! Reading it back ([`floors`]): a `reserve` raises the client's floor, a `stop` sets it
//! (it comes after every reservation of its process that it supersedes). A last line
//! without its newline is a write cut short by a crash; the request it was for was never
//! accepted, so it is ignored. Any other unreadable line stops the server from starting.
//! At start the file is rewritten compacted (one `stop` line per client, atomically by
//! rename), and again whenever it grows past [`COMPACT_AT`] bytes.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use mpbond_protocol::auth::{ClientId, ReplayJournal, Verifier};

use crate::config::Config;

/// The environment variable systemd sets from the unit's `StateDirectory=`.
pub const STATE_DIRECTORY_ENV: &str = "STATE_DIRECTORY";

/// The journal's file name inside `state_dir`.
pub const JOURNAL_FILE: &str = "replay.journal";
/// The first line of every journal.
const HEADER: &str = "# mpbond replay journal 1";
/// Compact when the file grows past this many bytes.
pub const COMPACT_AT: u64 = 1 << 20;

/// Why the replay state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}:{line}: not a journal record: {text:?}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        text: String,
    },
}

/// Where replay state lives: the config's `state_dir`, else the first directory of
/// systemd's `$STATE_DIRECTORY` (`env`), else nowhere. `state_dir = ""` means nowhere.
pub fn state_dir(config: &Config, env: Option<&str>) -> Option<PathBuf> {
    let identity = &config.identity;
    if identity.state_disabled {
        return None;
    }
    identity.state_dir.clone().or_else(|| {
        env.and_then(|dirs| dirs.split(':').next())
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
    })
}

/// The verifier for `config`: its window and server binding, and, with a state
/// directory, the journal there and the floors it holds.
pub fn verifier(config: &Config, state_dir: Option<&Path>) -> Result<Verifier, StateError> {
    let verifier =
        Verifier::new(config.limits.auth_window_secs).with_binding(config.identity.binding.clone());
    let Some(dir) = state_dir else {
        return Ok(verifier);
    };
    let (journal, floors) = FileJournal::open(dir)?;
    let verifier = verifier.with_journal(Box::new(journal));
    verifier.restore(floors);
    Ok(verifier)
}

/// Each client's floor from a journal's text, or the number (from 1) of the first line
/// that is not a record.
pub fn floors(text: &str) -> Result<BTreeMap<ClientId, u64>, (usize, String)> {
    let mut floors = BTreeMap::new();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    for (i, line) in complete.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let record = parse_record(line).ok_or_else(|| (i + 1, line.to_owned()))?;
        match record {
            Record::Reserve(client, through) => {
                let floor = floors.entry(client).or_insert(0);
                *floor = through.max(*floor);
            }
            Record::Stop(client, high) => {
                floors.insert(client, high);
            }
        }
    }
    Ok(floors)
}

enum Record {
    Reserve(ClientId, u64),
    Stop(ClientId, u64),
}

fn parse_record(line: &str) -> Option<Record> {
    let mut words = line.split(' ');
    let (kind, client, value) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    let client: ClientId = client.parse().ok()?;
    let value: u64 = value.parse().ok()?;
    match kind {
        "reserve" => Some(Record::Reserve(client, value)),
        "stop" => Some(Record::Stop(client, value)),
        _ => None,
    }
}

/// The journal file, open for appending.
#[derive(Debug)]
pub struct FileJournal {
    path: PathBuf,
    file: File,
    len: u64,
    /// What the file means now, for compaction.
    floors: BTreeMap<ClientId, u64>,
}

impl FileJournal {
    /// Read `dir/replay.journal` (a missing file is an empty journal), rewrite it
    /// compacted and open it for appending. Returns the journal and the floors to
    /// [`restore`](mpbond_protocol::auth::Verifier::restore).
    pub fn open(dir: &Path) -> Result<(FileJournal, BTreeMap<ClientId, u64>), StateError> {
        let path = dir.join(JOURNAL_FILE);
        let io_err = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(|source| StateError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(e)),
        };
        let floors = floors(&text).map_err(|(line, text)| StateError::Corrupt {
            path: path.clone(),
            line,
            text,
        })?;
        let (file, len) = write_compacted(&path, &floors).map_err(io_err)?;
        let journal = FileJournal {
            path,
            file,
            len,
            floors: floors.clone(),
        };
        Ok((journal, floors))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&mut self, text: &str) -> io::Result<()> {
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        self.len += text.len() as u64;
        if self.len > COMPACT_AT {
            let (file, len) = write_compacted(&self.path, &self.floors)?;
            self.file = file;
            self.len = len;
        }
        Ok(())
    }
}

impl ReplayJournal for FileJournal {
    fn reserve(&mut self, client: &ClientId, through: u64) -> io::Result<()> {
        let floor = self.floors.entry(client.clone()).or_insert(0);
        *floor = through.max(*floor);
        self.append(&format!("reserve {client} {through}\n"))
    }

    fn stop(&mut self, marks: &[(ClientId, u64)]) -> io::Result<()> {
        let mut text = String::new();
        for (client, high) in marks {
            self.floors.insert(client.clone(), *high);
            text.push_str(&format!("stop {client} {high}\n"));
        }
        self.append(&text)
    }
}

/// Write `floors` as a fresh journal next to `path`, sync it, rename it over `path`,
/// sync the directory, and open the result for appending.
fn write_compacted(path: &Path, floors: &BTreeMap<ClientId, u64>) -> io::Result<(File, u64)> {
    let mut text = format!("{HEADER}\n");
    for (client, floor) in floors {
        text.push_str(&format!("stop {client} {floor}\n"));
    }
    let tmp = path.with_extension("journal.tmp");
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    drop(out);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    let file = OpenOptions::new().append(true).open(path)?;
    Ok((file, text.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ClientId {
        s.parse().unwrap()
    }

    #[test]
    fn state_dir_from_config_then_systemd() {
        let cfg = |text: &str| Config::parse(text).unwrap();
        let env = Some("/var/lib/mpbond:/var/lib/other");
        assert_eq!(
            state_dir(&cfg("state_dir = \"/srv/s\"\n"), env),
            Some(PathBuf::from("/srv/s"))
        );
        assert_eq!(
            state_dir(&cfg(""), env),
            Some(PathBuf::from("/var/lib/mpbond"))
        );
        assert_eq!(state_dir(&cfg(""), None), None);
        assert_eq!(state_dir(&cfg("state_dir = \"\"\n"), env), None);
    }

    #[test]
    fn reservations_raise_and_stops_set() {
        let text = "# mpbond replay journal 1\nstop home 50\nreserve home 70\nreserve work 9\nreserve home 60\nstop home 65\nreserve home 80\nstop work 5\n";
        let got = floors(text).unwrap();
        assert_eq!(got.get(&id("home")), Some(&80));
        assert_eq!(got.get(&id("work")), Some(&5));
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_other_garbage_is_not() {
        let got = floors("reserve home 70\nreserve home 9999").unwrap();
        assert_eq!(got.get(&id("home")), Some(&70));
        assert_eq!(
            floors("reserve home 70\nrezerve home 1\n"),
            Err((2, "rezerve home 1".to_owned()))
        );
        assert_eq!(
            floors("reserve home\n"),
            Err((1, "reserve home".to_owned()))
        );
        assert_eq!(
            floors("reserve h/me 1\n"),
            Err((1, "reserve h/me 1".to_owned()))
        );
    }

    #[test]
    fn open_compacts_and_appends() {
        let dir = std::env::temp_dir().join(format!("mpbond-journal-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (mut journal, floors0) = FileJournal::open(&dir).unwrap();
        assert!(floors0.is_empty());
        journal.reserve(&id("home"), 100).unwrap();
        journal.reserve(&id("home"), 110).unwrap();
        drop(journal); // a crash: no stop record
        let (mut journal, floors1) = FileJournal::open(&dir).unwrap();
        assert_eq!(floors1.get(&id("home")), Some(&110));
        let text = fs::read_to_string(dir.join(JOURNAL_FILE)).unwrap();
        assert_eq!(text, "# mpbond replay journal 1\nstop home 110\n");
        journal.stop(&[(id("home"), 103)]).unwrap();
        let (_, floors2) = FileJournal::open(&dir).unwrap();
        assert_eq!(floors2.get(&id("home")), Some(&103));
        fs::remove_dir_all(&dir).unwrap();
    }
}
