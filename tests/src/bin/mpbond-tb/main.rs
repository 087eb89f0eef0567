//! `mpbond-tb`: the test bed's traffic tools.
//!
//! * `serve`: answers the `GET`/`PUT`/`XCH` requests of [`mpbond_tests::wire`],
//!   one thread per connection, and logs JSON events on stdout.
//! * `fetch`: one transfer against `serve`; prints a [`mpbond_tests::FetchReport`].
//! * `load`: N parallel endless downloads, aggregate goodput over one interval.
//! * `convert`: sends a hand-made RFC 8803 Convert message to a concentrator and
//!   prints the reply's error code.
//! * `hold` / `swarm`: many idle connections, held open (the scale benchmark).
//! * `ttfb`: sequential small requests timed to the first byte.
//! * `delay`: a userspace delay line between two interfaces: WAN delay, jitter,
//!   loss and outages (decided by the pure `delay_model`).
//!
//! Plain std threads and blocking sockets keep it simple; the data comes from
//! [`mpbond_tests::datagen`], which is `memcpy` fast even in a debug build.

mod convert;
mod delay;
mod delay_model;
mod fetch;
mod hold;
mod load;
mod serve;
mod sock;
mod swarm;
mod ttfb;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "mpbond-tb", about = "mpbond test-bed traffic tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve GET/PUT/XCH requests.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Listen with an MPTCP socket.
        #[arg(long)]
        mptcp: bool,
        /// Accept data in the SYN (TCP Fast Open without cookies).
        #[arg(long)]
        tfo: bool,
    },
    /// Run one transfer and print a JSON report.
    Fetch(fetch::Args),
    /// Send one Convert message to a concentrator and print the reply.
    Convert(convert::Args),
    /// N parallel endless downloads, aggregate goodput over one interval.
    Load(load::Args),
    /// Accept connections, greet each with one byte and hold them open.
    Hold(hold::Args),
    /// Open many idle connections (optionally Convert to a concentrator) and hold them.
    Swarm(swarm::Args),
    /// Time sequential small requests to their first byte.
    Ttfb(ttfb::Args),
    /// Delay, jitter, lose and black out frames between two interfaces.
    Delay(delay::Args),
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Serve { listen, mptcp, tfo } => match serve::run(listen, mptcp, tfo) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mpbond-tb serve: {listen}: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Fetch(args) => fetch::run(&args),
        Cmd::Convert(args) => convert::run(&args),
        Cmd::Load(args) => load::run(&args),
        Cmd::Hold(args) => failed("hold", hold::run(&args)),
        Cmd::Swarm(args) => swarm::run(&args),
        Cmd::Ttfb(args) => ttfb::run(&args),
        Cmd::Delay(args) => failed("delay", delay::run(&args)),
    }
}

/// Exit status of a command that only returns on error.
fn failed(what: &str, result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpbond-tb {what}: {e}");
            ExitCode::FAILURE
        }
    }
}
