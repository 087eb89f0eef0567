//! `mpbond-agent`: parse the CLI ([`cli`], by hand: clap was 5 % of the MIPS binary), set
//! up tracing and signals, then run the agent.
//!
//! ```text
//! mpbond-agent --config FILE | --uci FILE       run
//! mpbond-agent check-config [--uci] FILE        check a config file
//! mpbond-agent status [--json] [--socket PATH]  ask a running agent
//! mpbond-agent --help | --version
//! ```
//!
//! SIGTERM and SIGINT stop the agent. SIGHUP re-reads the config: if it is valid, the
//! running agent applies what changed in place (the log filter here, the rest through the
//! decision core: see `mpbond_agent::driver`), and live connections carry on; if not, the
//! error is logged and nothing changes.
//!
//! Log lines go to stdout for info, debug and trace, to stderr for warnings and errors,
//! so procd (`stdout 1`, `stderr 1`) files them in logd as `daemon.info` and `daemon.err`.
//!
//! Exit codes: 0 after a clean shutdown, 1 when the agent cannot run, 2 for a bad config
//! (or bad command line), 3 from `status` when no agent answers.

mod cli;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cli::Command;
use mpbond_agent::config::uci::load_uci_file;
use mpbond_agent::Config;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, Level};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

/// A config file and its format, and dnsmasq's conf-dir from the command line.
#[derive(Debug, Clone)]
struct ConfigFile {
    path: PathBuf,
    uci: bool,
    dnsmasq_confdir: Option<PathBuf>,
}

impl ConfigFile {
    fn new(path: PathBuf, uci: bool) -> Self {
        ConfigFile {
            path,
            uci,
            dnsmasq_confdir: None,
        }
    }

    fn with_dnsmasq_confdir(mut self, dir: Option<PathBuf>) -> Self {
        self.dnsmasq_confdir = dir;
        self
    }

    fn load(&self) -> Result<Config, String> {
        let mut config = if self.uci {
            load_uci_file(&self.path).map_err(|e| e.to_string())?
        } else {
            Config::load(&self.path).map_err(|e| e.to_string())?
        };
        if let Some(dir) = &self.dnsmasq_confdir {
            config.bypass.names.in_confdir(dir);
        }
        Ok(config)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// Print `text` on stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("mpbond-agent: {err}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

fn main() -> ExitCode {
    let file = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run {
            file,
            uci,
            dnsmasq_confdir,
        }) => ConfigFile::new(file, uci).with_dnsmasq_confdir(dnsmasq_confdir),
        Ok(Command::CheckConfig { file, uci }) => {
            return match ConfigFile::new(file, uci).load() {
                Ok(_) => print("config OK\n"),
                Err(err) => {
                    eprintln!("{err}");
                    ExitCode::from(2)
                }
            };
        }
        Ok(Command::Status { json, socket }) => {
            let code = mpbond_agent::status::status_command(json, &socket);
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        Ok(Command::Help) => return print(cli::HELP),
        Ok(Command::Version) => {
            return print(concat!("mpbond-agent ", env!("CARGO_PKG_VERSION"), "\n"))
        }
        Err(err) => {
            eprintln!("mpbond-agent: error: {err}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };

    let (filter, log) = reload::Layer::new(log_filter(None));
    let writer = std::io::stderr
        .with_max_level(Level::WARN)
        .or_else(std::io::stdout);
    tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer)
        .finish()
        .with(filter)
        .init();

    info!(version = env!("CARGO_PKG_VERSION"), config = %file.path().display(), "starting");
    let config = match file.load() {
        Ok(config) => config,
        Err(err) => {
            error!("{err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = log.reload(log_filter(Some(&config))) {
        error!("cannot set the log filter: {err}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!("cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let signals = match Signals::new() {
            Ok(signals) => signals,
            Err(err) => {
                error!("cannot install signal handlers: {err}");
                return ExitCode::FAILURE;
            }
        };
        info!(version = env!("CARGO_PKG_VERSION"), config = %file.path().display(), "starting");
        let log: LogHandle = Box::new(move |filter| log.reload(filter));
        supervise(config, &file, signals, log).await
    })
}

/// The signals main reacts to.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// Run the agent; on SIGHUP hand a valid config to it (and apply its log filter), on
/// SIGTERM/SIGINT stop it.
async fn supervise(
    config: Config,
    file: &ConfigFile,
    mut signals: Signals,
    log: LogHandle,
) -> ExitCode {
    let shutdown = CancellationToken::new();
    let (reloads, reload_rx) = mpsc::unbounded_channel();
    let run = mpbond_agent::run(config, reload_rx, shutdown.clone());
    tokio::pin!(run);
    loop {
        tokio::select! {
            result = &mut run => return exit_code(result),
            _ = signals.term.recv() => {
                info!("SIGTERM received");
                break;
            }
            _ = signals.int.recv() => {
                info!("SIGINT received");
                break;
            }
            _ = signals.hup.recv() => match file.load() {
                Ok(new) => {
                    if let Err(err) = log(log_filter(Some(&new))) {
                        error!("SIGHUP: cannot change the log filter: {err}");
                    }
                    info!(config = %file.path().display(), "SIGHUP: config valid, applying what changed");
                    let _ = reloads.send(new);
                }
                Err(err) => error!("SIGHUP: {err}; keeping the running config"),
            },
        }
    }
    shutdown.cancel();
    exit_code(run.await)
}

fn exit_code(result: Result<(), mpbond_agent::RunError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// Swaps the log filter on reload.
type LogHandle = Box<dyn Fn(Targets) -> Result<(), reload::Error>>;

/// The log filter: `RUST_LOG` when set (`level` or `target=level,...`), else the
/// config's `log.level` (UCI `globals.log_level`, already validated), else `info`. The
/// agent does without `EnvFilter`'s span and regex directives to stay small on routers.
fn log_filter(config: Option<&Config>) -> Targets {
    let default = || Targets::new().with_default(LevelFilter::INFO);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        if !spec.trim().is_empty() {
            return spec.parse().unwrap_or_else(|e| {
                eprintln!("mpbond-agent: ignoring RUST_LOG={spec:?}: {e}");
                default()
            });
        }
    }
    config
        .and_then(|c| c.log_level.parse().ok())
        .unwrap_or_else(default)
}
