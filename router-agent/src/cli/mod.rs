//! The agent's command line, parsed by hand (clap cost ~140 KiB of the MIPS binary).
//!
//! ```text
//! mpbond-agent --config FILE | --uci FILE       run
//! mpbond-agent check-config [--uci] FILE        check a config file
//! mpbond-agent status [--json] [--socket PATH]  ask a running agent
//! mpbond-agent --help | -h | help [COMMAND]     print HELP, exit 0
//! mpbond-agent --version | -V                   print "mpbond-agent VERSION", exit 0
//! ```
//!
//! [`parse`] is pure: arguments in (without the program name), a [`Command`] or a
//! [`UsageError`] out. Options take their value as the next argument or after `=`
//! (`--config=FILE`); a value that looks like an option (`--config --uci`) is refused,
//! as clap did. `--` ends the options of `check-config`, so a FILE may start with `-`.
//! Arguments are processed in order: the first `--help`/`--version` or the first error
//! wins. A bad command line is exit code 2: `main` prints the error and [`USAGE`].

#[cfg(test)]
mod tests;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `--config FILE` (TOML or JSON) or `--uci FILE`: run the agent; `--dnsmasq-confdir
    /// DIR`: where bypass by name writes dnsmasq's file when the config names none.
    Run {
        file: PathBuf,
        uci: bool,
        dnsmasq_confdir: Option<PathBuf>,
    },
    /// `check-config [--uci] FILE`.
    CheckConfig { file: PathBuf, uci: bool },
    /// `status [--json] [--socket PATH]`.
    Status { json: bool, socket: PathBuf },
    /// `--help`, `-h`, `help [COMMAND]` or `COMMAND --help`: print [`HELP`].
    Help,
    /// `--version` or `-V`: print `mpbond-agent VERSION`.
    Version,
}

/// A command line that [`parse`] refuses. `Display` is the one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("--config FILE or --uci FILE is required")]
    MissingSource,
    #[error("a value is required for '{0}'")]
    MissingValue(&'static str),
    #[error("'{0}' takes no value")]
    UnexpectedValue(&'static str),
    #[error("'{0}' cannot be used more than once")]
    Repeated(&'static str),
    #[error("'{0}' cannot be used with '{1}'")]
    Conflict(&'static str, String),
    #[error("unexpected argument '{0}'")]
    UnexpectedArgument(String),
    #[error("unrecognized command '{0}'")]
    UnknownCommand(String),
    #[error("check-config needs a FILE")]
    MissingFile,
}

/// The short usage printed after a [`UsageError`].
pub const USAGE: &str = "\
Usage: mpbond-agent (--config FILE | --uci FILE) [--dnsmasq-confdir DIR]
       mpbond-agent check-config [--uci] FILE
       mpbond-agent status [--json] [--socket PATH]

For more information, try '--help'.";

/// `--help`: every command and option. The tests check that it names
/// `status::DEFAULT_SOCKET`.
pub const HELP: &str = "\
mpbond router agent: carries LAN TCP over MPTCP to the concentrator

Usage: mpbond-agent (--config FILE | --uci FILE) [--dnsmasq-confdir DIR]
       mpbond-agent check-config [--uci] FILE
       mpbond-agent status [--json] [--socket PATH]

Options:
      --config FILE  Run with this config file (TOML or JSON)
      --uci FILE     Run with this UCI config file (OpenWrt /etc/config/mpbond)
      --dnsmasq-confdir DIR
                     dnsmasq's conf-dir: bypass by name writes mpbond-bypass.conf
                     there unless the config names a dnsmasq_conf (OpenWrt's init
                     script passes the first dnsmasq instance's)
  -h, --help         Print help (also `help` and `COMMAND --help`)
  -V, --version      Print version

Commands:
  check-config [--uci] FILE
      Check a config file: prints \"config OK\" or the error (exit code 2)
      --uci          The file is in UCI format
  status [--json] [--socket PATH]
      Print the running agent's status (exit code 3 when no agent answers)
      --json         The JSON document (docs/STATUS.md) instead of the table
      --socket PATH  The agent's control socket [default: /var/run/mpbond/agent.sock]

Environment:
  RUST_LOG  log filter: LEVEL or TARGET=LEVEL,... [default: info]

Exit codes: 0 clean shutdown, 1 cannot run, 2 bad config or command line,
3 no agent answers `status`.
";

/// Parse the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut args = Args::new(args.into_iter().collect());
    let mut source: Option<(&'static str, PathBuf)> = None;
    let mut dnsmasq_confdir: Option<PathBuf> = None;
    while let Some(arg) = args.next_arg() {
        match arg {
            Arg::Flag("-h" | "--help", None) => return Ok(Command::Help),
            Arg::Flag("-V" | "--version", None) => return Ok(Command::Version),
            Arg::Flag(name @ "--dnsmasq-confdir", inline) => {
                let dir = args.value(name, inline)?;
                if dnsmasq_confdir.replace(PathBuf::from(dir)).is_some() {
                    return Err(UsageError::Repeated(name));
                }
            }
            Arg::Flag(name @ ("--config" | "--uci"), inline) => {
                let path = args.value(name, inline)?;
                if let Some((previous, _)) = &source {
                    return Err(if *previous == name {
                        UsageError::Repeated(name)
                    } else {
                        UsageError::Conflict(previous, name.to_owned())
                    });
                }
                source = Some((name, PathBuf::from(path)));
            }
            Arg::Positional(word) => {
                let command = match word.to_str() {
                    Some("check-config") => check_config(&mut args)?,
                    Some("status") => status(&mut args)?,
                    Some("help") => help(&mut args)?,
                    _ => {
                        return Err(UsageError::UnknownCommand(lossy(&word)));
                    }
                };
                if let (Some((name, _)), false) = (&source, command == Command::Help) {
                    return Err(UsageError::Conflict(name, lossy(&word)));
                }
                return Ok(command);
            }
            other => return Err(other.unexpected()),
        }
    }
    match source {
        Some((name, file)) => Ok(Command::Run {
            file,
            uci: name == "--uci",
            dnsmasq_confdir,
        }),
        None => Err(UsageError::MissingSource),
    }
}

/// `check-config [--uci] FILE`, after the command name.
fn check_config(args: &mut Args) -> Result<Command, UsageError> {
    let mut uci = false;
    let mut file = None;
    while let Some(arg) = args.next_arg() {
        match arg {
            Arg::Flag("-h" | "--help", None) => return Ok(Command::Help),
            Arg::Flag("--uci", inline) => {
                flag("--uci", inline, &mut uci)?;
            }
            Arg::Positional(word) if file.is_none() => file = Some(PathBuf::from(word)),
            other => return Err(other.unexpected()),
        }
    }
    match file {
        Some(file) => Ok(Command::CheckConfig { file, uci }),
        None => Err(UsageError::MissingFile),
    }
}

/// `status [--json] [--socket PATH]`, after the command name.
fn status(args: &mut Args) -> Result<Command, UsageError> {
    let mut json = false;
    let mut socket = None;
    while let Some(arg) = args.next_arg() {
        match arg {
            Arg::Flag("-h" | "--help", None) => return Ok(Command::Help),
            Arg::Flag("--json", inline) => flag("--json", inline, &mut json)?,
            Arg::Flag("--socket", inline) => {
                let path = args.value("--socket", inline)?;
                if socket.replace(PathBuf::from(path)).is_some() {
                    return Err(UsageError::Repeated("--socket"));
                }
            }
            other => return Err(other.unexpected()),
        }
    }
    let socket = socket.unwrap_or_else(|| PathBuf::from(mpbond_agent::status::DEFAULT_SOCKET));
    Ok(Command::Status { json, socket })
}

/// `help [COMMAND]`: one help text covers every command.
fn help(args: &mut Args) -> Result<Command, UsageError> {
    match args.next_arg() {
        None => Ok(Command::Help),
        Some(Arg::Positional(word)) => match word.to_str() {
            Some("check-config" | "status" | "help") => match args.next_arg() {
                None => Ok(Command::Help),
                Some(other) => Err(other.unexpected()),
            },
            _ => Err(UsageError::UnknownCommand(lossy(&word))),
        },
        Some(other) => Err(other.unexpected()),
    }
}

/// Set a boolean flag once.
fn flag(name: &'static str, inline: Option<OsString>, seen: &mut bool) -> Result<(), UsageError> {
    if inline.is_some() {
        return Err(UsageError::UnexpectedValue(name));
    }
    if std::mem::replace(seen, true) {
        return Err(UsageError::Repeated(name));
    }
    Ok(())
}

fn lossy(word: &OsStr) -> String {
    word.to_string_lossy().into_owned()
}

/// One argument, classified.
#[derive(Debug)]
enum Arg {
    /// `-x`, `--name` or `--name=VALUE` (VALUE inline). Non-UTF-8 option names are
    /// [`Arg::Unknown`].
    Flag(&'static str, Option<OsString>),
    /// Anything else starting with `-`, except `-` itself.
    Unknown(OsString),
    /// A word, or anything after `--`.
    Positional(OsString),
}

impl Arg {
    /// The error for an argument that is not allowed where it is.
    fn unexpected(self) -> UsageError {
        match self {
            Arg::Flag(name, None) => UsageError::UnexpectedArgument(name.to_owned()),
            Arg::Flag(name, Some(value)) => {
                UsageError::UnexpectedArgument(format!("{name}={}", value.to_string_lossy()))
            }
            Arg::Unknown(word) | Arg::Positional(word) => {
                UsageError::UnexpectedArgument(lossy(&word))
            }
        }
    }
}

/// The options any command knows; others are [`Arg::Unknown`].
const KNOWN: [&str; 9] = [
    "-h",
    "--help",
    "-V",
    "--version",
    "--config",
    "--uci",
    "--dnsmasq-confdir",
    "--json",
    "--socket",
];

/// The argument stream: splits `--name=VALUE` and honours `--`.
struct Args {
    inner: std::vec::IntoIter<OsString>,
    only_positional: bool,
}

impl Args {
    fn new(args: Vec<OsString>) -> Self {
        Args {
            inner: args.into_iter(),
            only_positional: false,
        }
    }

    fn next_arg(&mut self) -> Option<Arg> {
        let word = self.inner.next()?;
        if self.only_positional {
            return Some(Arg::Positional(word));
        }
        let bytes = word.as_bytes();
        if bytes == b"--" {
            self.only_positional = true;
            return self.next_arg();
        }
        if bytes.len() < 2 || bytes[0] != b'-' {
            return Some(Arg::Positional(word));
        }
        let (name, inline) = match bytes.iter().position(|&b| b == b'=') {
            Some(eq) if bytes.starts_with(b"--") => (
                &bytes[..eq],
                Some(OsStr::from_bytes(&bytes[eq + 1..]).to_owned()),
            ),
            _ => (bytes, None),
        };
        match KNOWN.iter().find(|known| known.as_bytes() == name) {
            Some(known) => Some(Arg::Flag(known, inline)),
            None => Some(Arg::Unknown(word)),
        }
    }

    /// The value of option `name`: `inline` (from `--name=VALUE`) or the next argument,
    /// which must not look like an option.
    fn value(
        &mut self,
        name: &'static str,
        inline: Option<OsString>,
    ) -> Result<OsString, UsageError> {
        let value = match inline {
            Some(value) => value,
            None => match self.inner.next() {
                Some(value) if value.len() > 1 && value.as_bytes()[0] == b'-' => {
                    return Err(UsageError::MissingValue(name))
                }
                Some(value) => value,
                None => return Err(UsageError::MissingValue(name)),
            },
        };
        if value.is_empty() {
            return Err(UsageError::MissingValue(name));
        }
        Ok(value)
    }
}
