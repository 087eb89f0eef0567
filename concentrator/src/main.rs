//! `mpbond-concentrator`: CLI, logging and signals; the server itself is the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mpbond_concentrator::{add_client, setup, Config, Server};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[derive(Debug, Parser)]
#[command(
    name = "mpbond-concentrator",
    version,
    about = "mpbond VPS concentrator"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// Config file (TOML) to run with.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Tokio worker threads.
    #[arg(long, value_name = "N", default_value_t = 2)]
    workers: usize,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config file and exit (2 if it is invalid).
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Apply the server sysctls and MPTCP limits (needs root).
    Setup,
    /// Generate a key for a new client, append it to the config, reload the running
    /// service and print the values to enter on the router.
    AddClient {
        /// Client id: 1-32 characters of [A-Za-z0-9._-].
        name: String,
        #[arg(long, value_name = "FILE", default_value = add_client::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Send SIGHUP to this running concentrator (instead of `systemctl reload`).
        #[arg(long, value_name = "PID", conflicts_with = "pidfile")]
        pid: Option<i32>,
        /// Read the running concentrator's pid from this file and send it SIGHUP.
        #[arg(long, value_name = "FILE")]
        pidfile: Option<PathBuf>,
        /// Only write the config; reload nothing.
        #[arg(long, conflicts_with_all = ["pid", "pidfile"])]
        no_reload: bool,
        /// This VPS's address as routers reach it (default: guessed from the routes).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Also generate a SOCKS5 password (`socks_password`) and print it.
        #[arg(long)]
        socks: bool,
    },
    /// Print the values to enter on the router for an existing client.
    ShowClient {
        /// Client id.
        name: String,
        #[arg(long, value_name = "FILE", default_value = add_client::DEFAULT_CONFIG)]
        config: PathBuf,
        /// This VPS's address as routers reach it (default: guessed from the routes).
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
    },
}

/// How `add-client` tells the running concentrator.
#[derive(Debug)]
enum Notify {
    Pid(i32),
    Pidfile(PathBuf),
    Systemd,
    Nothing,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Setup) => run_setup(),
        Some(Command::AddClient {
            name,
            config,
            pid,
            pidfile,
            no_reload,
            host,
            socks,
        }) => {
            let notify = match (pid, pidfile, no_reload) {
                (Some(pid), _, _) => Notify::Pid(pid),
                (None, Some(file), _) => Notify::Pidfile(file),
                (None, None, true) => Notify::Nothing,
                (None, None, false) => Notify::Systemd,
            };
            run_add_client(&name, &config, notify, host.as_deref(), socks)
        }
        Some(Command::ShowClient { name, config, host }) => {
            show_client(&name, &config, host.as_deref())
        }
        None => match cli.config {
            Some(path) => serve(&path, cli.workers),
            None => {
                eprintln!("error: --config FILE is required (see --help)");
                ExitCode::from(2)
            }
        },
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn warn_if_exposed(path: &Path) {
    if add_client::is_exposed(path) {
        eprintln!(
            "warning: {} is readable by group or others and holds client keys; chmod 600 it",
            path.display()
        );
    }
}

fn check_config(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(cfg) => {
            warn_if_exposed(path);
            let listen: Vec<String> = cfg.listen.iter().map(|a| a.to_string()).collect();
            println!(
                "config OK: {} clients, listening on {}",
                cfg.clients.len(),
                listen.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

fn run_setup() -> ExitCode {
    let state_dir = setup::state_dir(
        std::env::var(mpbond_concentrator::replay_state::STATE_DIRECTORY_ENV).ok(),
    );
    match setup::apply(state_dir.as_deref(), |line| println!("{line}")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("setup failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_add_client(
    name: &str,
    config: &Path,
    notify: Notify,
    host: Option<&str>,
    socks: bool,
) -> ExitCode {
    if let Some(host) = host.filter(|h| !add_client::luci::valid_host(h)) {
        eprintln!(
            "add-client failed: {}",
            add_client::AddClientError::BadHost(host.into())
        );
        return ExitCode::from(2);
    }
    let (id, password) = match add_client::add_client_with(config, name, socks) {
        Ok((id, _, password)) => (id, password),
        Err(e) => {
            eprintln!("add-client failed: {e}");
            return ExitCode::from(2);
        }
    };
    println!("added client {name} to {}", config.display());
    if let (Some(password), Ok(cfg)) = (&password, Config::load(config)) {
        let guessed = add_client::luci::guess_host().map(|ip| ip.to_string());
        let host = host.or(guessed.as_deref()).unwrap_or("VPS");
        print!("{}", add_client::socks_values(&cfg, &id, password, host));
    }
    let notified = notify_running(notify);
    let shown = show_client(name, config, host);
    if notified {
        shown
    } else {
        ExitCode::FAILURE
    }
}

/// Tell the running concentrator to reload; false (and a message) if that failed.
fn notify_running(notify: Notify) -> bool {
    let pid = match notify {
        Notify::Nothing => {
            println!(
                "not reloaded (--no-reload): systemctl reload {}",
                add_client::SERVICE
            );
            return true;
        }
        Notify::Systemd => {
            return match add_client::reload_service(add_client::SERVICE) {
                Ok(add_client::ServiceReload::Reloaded) => {
                    println!(
                        "reloaded {} (SIGHUP): the new client can connect",
                        add_client::SERVICE
                    );
                    true
                }
                Ok(add_client::ServiceReload::NotActive) => {
                    println!(
                        "{} is not running under systemd: start it, or send SIGHUP to the concentrator you run (--pid PID)",
                        add_client::SERVICE
                    );
                    true
                }
                Err(e) => {
                    eprintln!("{e}");
                    false
                }
            };
        }
        Notify::Pid(pid) => pid,
        Notify::Pidfile(file) => match std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            Some(pid) => pid,
            None => {
                eprintln!(
                    "cannot read a pid from {}; send SIGHUP to the concentrator yourself",
                    file.display()
                );
                return false;
            }
        },
    };
    // SAFETY: kill(2) with a pid and a signal number has no memory effects.
    if pid > 0 && unsafe { libc::kill(pid, libc::SIGHUP) } == 0 {
        println!("sent SIGHUP to {pid}: the concentrator reloads its config");
        true
    } else {
        eprintln!(
            "cannot signal pid {pid}: {}",
            std::io::Error::last_os_error()
        );
        false
    }
}

fn show_client(name: &str, config: &Path, host: Option<&str>) -> ExitCode {
    match add_client::router_values(config, name, host) {
        Ok(values) => {
            for warning in values.warnings() {
                eprintln!("{warning}");
            }
            println!();
            print!("{values}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn serve(path: &Path, workers: usize) -> ExitCode {
    let config = match Config::load(path) {
        Ok(cfg) => {
            warn_if_exposed(path);
            cfg
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    raise_nofile(config.limits.max_connections);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let server = Server::bind(config).await?;
        let shutdown = CancellationToken::new();
        // Without handlers the default dispositions apply (SIGTERM/SIGINT kill, no reload).
        let signals = signals(server.handle(), path.to_owned(), shutdown.clone())
            .map_err(
                |e| error!(error = %e, "cannot install signal handlers; SIGHUP will not reload"),
            )
            .ok();
        let result = server.run(shutdown).await;
        if let Some(task) = signals {
            task.abort();
        }
        result
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => {
            info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Raise the soft descriptor limit to the hard one; warn if `max_connections` idle
/// connections would not fit.
fn raise_nofile(max_connections: usize) {
    use mpbond_concentrator::nofile;
    match nofile::raise_to_hard() {
        Ok(raised) => {
            info!(
                before = raised.before,
                now = raised.now,
                "RLIMIT_NOFILE soft limit"
            );
            let needed = nofile::needed(max_connections);
            if raised.now < needed {
                tracing::warn!(
                    limit = raised.now,
                    needed,
                    max_connections,
                    "RLIMIT_NOFILE is below what max_connections idle connections need; \
                     raise LimitNOFILE or lower max_connections"
                );
            }
        }
        Err(error) => tracing::warn!(%error, "cannot raise RLIMIT_NOFILE"),
    }
}

/// SIGTERM/SIGINT cancel `shutdown`; SIGHUP reloads the config file.
fn signals(
    handle: mpbond_concentrator::Handle,
    path: PathBuf,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { info!("SIGTERM: shutting down"); shutdown.cancel(); }
                _ = int.recv() => { info!("SIGINT: shutting down"); shutdown.cancel(); }
                _ = hup.recv() => match handle.reload_from(&path) {
                    Ok(summary) => info!(%summary, "config reloaded"),
                    Err(e) => error!("config reload failed, keeping the running config: {}: {e}", path.display()),
                },
            }
        }
    }))
}
