//! `mpbond-agent`: parse the CLI, set up tracing and signals, then run the agent.
//!
//! ```text
//! mpbond-agent --config FILE | --uci FILE       run
//! mpbond-agent check-config [--uci] FILE        check a config file
//! mpbond-agent status [--json] [--socket PATH]  ask a running agent
//! ```
//!
//! SIGTERM and SIGINT stop the agent. SIGHUP re-reads the config: if it is valid, the
//! running agent is stopped (it cleans up) and started again with it; if not, the error is
//! logged and the agent keeps running as it was.
//!
//! Exit codes: 0 after a clean shutdown, 1 when the agent cannot run, 2 for a bad config
//! (or bad command line), 3 from `status` when no agent answers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mpbond_agent::config::uci::load_uci_file;
use mpbond_agent::Config;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// mpbond router agent: carries LAN TCP over MPTCP to the concentrator.
#[derive(Debug, Parser)]
#[command(
    name = "mpbond-agent",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(flatten)]
    source: Source,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the config comes from.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Source {
    /// Config file (TOML or JSON).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UCI config file (OpenWrt /etc/config/mpbond).
    #[arg(long, value_name = "FILE")]
    uci: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a config file: prints "config OK" or the error (exit code 2).
    CheckConfig {
        /// The file is in UCI format.
        #[arg(long)]
        uci: bool,
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the running agent's status.
    Status {
        /// The JSON document (docs/STATUS.md) instead of the table.
        #[arg(long)]
        json: bool,
        /// The agent's control socket.
        #[arg(long, value_name = "PATH", default_value = mpbond_agent::status::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
}

/// A config file and its format.
#[derive(Debug, Clone)]
enum ConfigFile {
    Native(PathBuf),
    Uci(PathBuf),
}

impl ConfigFile {
    fn load(&self) -> Result<Config, String> {
        match self {
            ConfigFile::Native(path) => Config::load(path).map_err(|e| e.to_string()),
            ConfigFile::Uci(path) => load_uci_file(path).map_err(|e| e.to_string()),
        }
    }

    fn path(&self) -> &Path {
        match self {
            ConfigFile::Native(path) | ConfigFile::Uci(path) => path,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match (cli.command, cli.source) {
        (Some(Command::CheckConfig { uci, file }), _) => {
            let file = if uci {
                ConfigFile::Uci(file)
            } else {
                ConfigFile::Native(file)
            };
            return match file.load() {
                Ok(_) => {
                    println!("config OK");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("{err}");
                    ExitCode::from(2)
                }
            };
        }
        (Some(Command::Status { json, socket }), _) => {
            let code = mpbond_agent::status::status_command(json, &socket);
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        (
            None,
            Source {
                uci: Some(path), ..
            },
        ) => ConfigFile::Uci(path),
        (
            None,
            Source {
                config: Some(path), ..
            },
        ) => ConfigFile::Native(path),
        (None, _) => {
            eprintln!("mpbond-agent: --config FILE or --uci FILE is required");
            return ExitCode::from(2);
        }
    };

    let filter = log_filter();
    tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr)
        .finish()
        .with(filter)
        .init();

    let config = match file.load() {
        Ok(config) => config,
        Err(err) => {
            error!("{err}");
            return ExitCode::from(2);
        }
    };
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
        supervise(config, &file, signals).await
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

/// Run the agent; on SIGHUP with a valid config, stop it and run it again with the new
/// one (a short fail-open gap while it restarts); on SIGTERM/SIGINT, stop it.
async fn supervise(mut config: Config, file: &ConfigFile, mut signals: Signals) -> ExitCode {
    loop {
        let shutdown = CancellationToken::new();
        let run = mpbond_agent::run(config, shutdown.clone());
        tokio::pin!(run);
        let reload = loop {
            tokio::select! {
                result = &mut run => return exit_code(result),
                _ = signals.term.recv() => info!("SIGTERM received"),
                _ = signals.int.recv() => info!("SIGINT received"),
                _ = signals.hup.recv() => match file.load() {
                    Ok(new) => {
                        info!(config = %file.path().display(), "SIGHUP: config valid, restarting");
                        break new;
                    }
                    Err(err) => {
                        error!("SIGHUP: {err}; keeping the running config");
                        continue;
                    }
                },
            }
            shutdown.cancel();
            return exit_code(run.await);
        };
        shutdown.cancel();
        if let Err(err) = run.await {
            error!("{err}");
        }
        config = reload;
    }
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

/// `RUST_LOG` as `level` or `target=level,...` (what `log_level` in
/// /etc/config/mpbond sets); `info` when unset or unparsable. The agent does
/// without `EnvFilter`'s span and regex directives to stay small on routers.
fn log_filter() -> Targets {
    let default = || Targets::new().with_default(LevelFilter::INFO);
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec.parse().unwrap_or_else(|e| {
            eprintln!("mpbond-agent: ignoring RUST_LOG={spec:?}: {e}");
            default()
        }),
        _ => default(),
    }
}
