//! `mpbond-tb`: the test bed's traffic tools.
//!
//! * `serve`: answers the `GET`/`PUT`/`XCH` requests of [`mpbond_tests::wire`],
//!   one thread per connection, and logs JSON events on stdout.
//! * `fetch`: one transfer against `serve`; prints a [`mpbond_tests::FetchReport`].
//! * `convert`: sends a hand-made RFC 8803 Convert message to a concentrator and
//!   prints the reply's error code.
//!
//! Plain std threads and blocking sockets keep it simple; the data comes from
//! [`mpbond_tests::datagen`], which is `memcpy` fast even in a debug build.

mod convert;
mod fetch;
mod serve;
mod sock;

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
    }
}
