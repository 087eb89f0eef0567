//! `mpbond-agent`: parse the CLI, set up tracing and signals, then run the agent.
//!
//! Exit codes: 0 after a clean shutdown, 1 when the agent cannot run, 2 for a bad config
//! (or bad command line).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mpbond_agent::Config;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// mpbond router agent: carries LAN TCP over MPTCP to the concentrator.
#[derive(Debug, Parser)]
#[command(
    name = "mpbond-agent",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Config file (TOML or JSON).
    #[arg(long, value_name = "FILE", required = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a config file: prints "config OK" or the error (exit code 2).
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = match (cli.command, cli.config) {
        (Some(Command::CheckConfig { file }), _) => {
            return match Config::load(&file) {
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
        (None, Some(path)) => path,
        (None, None) => {
            eprintln!("mpbond-agent: --config FILE is required");
            return ExitCode::from(2);
        }
    };

    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    let config = match Config::load(&path) {
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
        let shutdown = CancellationToken::new();
        if let Err(err) = watch_signals(shutdown.clone()) {
            error!("cannot install signal handlers: {err}");
            return ExitCode::FAILURE;
        }
        info!(version = env!("CARGO_PKG_VERSION"), config = %path.display(), "starting");
        match mpbond_agent::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                error!("{err}");
                ExitCode::FAILURE
            }
        }
    })
}

/// SIGTERM and SIGINT cancel `shutdown`; SIGHUP is logged (no reload yet).
fn watch_signals(shutdown: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM received"); break; }
                _ = int.recv() => { info!("SIGINT received"); break; }
                _ = hup.recv() => warn!("SIGHUP: reload not yet supported, restart to apply"),
            }
        }
        shutdown.cancel();
    });
    Ok(())
}
