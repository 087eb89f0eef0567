//! `mpbond-tb convert`: one hand-made Convert message to a concentrator.
//!
//! The message is `Connect(--dest)` (or an Info probe), sealed with the given
//! client and key, with a random wrong key (`--wrong-key`), or left unsealed
//! (`--no-cookie`). `--replay` sends the very same bytes again on a second
//! connection. The reply of each connection is read with the protocol's
//! `ClientHandshake` and printed as a [`mpbond_tests::wire::ConvertReport`] JSON line.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mpbond_protocol::auth::{seal, ClientId, Key};
use mpbond_protocol::{Accepted, Asked, ClientHandshake, Message, ReplyError, Step};
use mpbond_tests::wire::{ConvertAttempt, ConvertReport};

use crate::sock;

/// Options of `convert`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The concentrator.
    #[arg(long)]
    connect: SocketAddr,
    /// Destination to ask for (omit with --info).
    #[arg(long)]
    dest: Option<SocketAddr>,
    /// Send an Info probe instead of a Connect.
    #[arg(long)]
    info: bool,
    /// Client id.
    #[arg(long, default_value = "home")]
    client: String,
    /// Client key, 64 hex characters.
    #[arg(long)]
    key: String,
    /// Seal with a random key instead of --key.
    #[arg(long)]
    wrong_key: bool,
    /// Send the message without a Cookie TLV.
    #[arg(long)]
    no_cookie: bool,
    /// Send the same bytes a second time, on a new connection.
    #[arg(long)]
    replay: bool,
    /// Added to the timestamp in the cookie.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    skew_secs: i64,
    /// Use an MPTCP socket.
    #[arg(long)]
    mptcp: bool,
}

/// Build the message, send it (twice with --replay), print the replies.
pub fn run(args: &Args) -> ExitCode {
    let wire = match build(args) {
        Ok(wire) => wire,
        Err(e) => {
            eprintln!("mpbond-tb convert: {e}");
            return ExitCode::from(2);
        }
    };
    let mut report = ConvertReport::default();
    for _ in 0..if args.replay { 2 } else { 1 } {
        report.attempts.push(attempt(args, &wire));
    }
    match serde_json::to_string(&report) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("mpbond-tb convert: cannot print the report: {e}"),
    }
    ExitCode::SUCCESS
}

fn build(args: &Args) -> Result<Vec<u8>, String> {
    let message = match (args.info, args.dest) {
        (true, _) => Message::info(),
        (false, Some(dest)) => Message::connect(dest),
        (false, None) => return Err("give --dest or --info".into()),
    };
    if args.no_cookie {
        return message
            .encode()
            .map_err(|e| format!("cannot encode: {e:?}"));
    }
    let client: ClientId = args
        .client
        .parse()
        .map_err(|e| format!("bad --client: {e:?}"))?;
    let key = if args.wrong_key {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| format!("no randomness: {e}"))?;
        Key::from_bytes(raw)
    } else {
        Key::from_hex(&args.key).map_err(|e| format!("bad --key: {e:?}"))?
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
    seal(
        &message,
        &client,
        &key,
        now.saturating_add_signed(args.skew_secs),
        nonce,
    )
    .map_err(|e| format!("cannot seal: {e:?}"))
}

fn attempt(args: &Args, wire: &[u8]) -> ConvertAttempt {
    match exchange(args, wire) {
        Ok(Some(Ok(_))) => ConvertAttempt {
            reply: "ok".into(),
            ..Default::default()
        },
        Ok(Some(Err(ReplyError::Refused(code)))) => ConvertAttempt {
            reply: "error".into(),
            error_code: Some(code.code()),
            detail: None,
        },
        Ok(Some(Err(bad))) => ConvertAttempt {
            reply: "io".into(),
            detail: Some(bad.to_string()),
            ..Default::default()
        },
        Ok(None) => ConvertAttempt {
            reply: "closed".into(),
            ..Default::default()
        },
        Err(e) => ConvertAttempt {
            reply: "io".into(),
            detail: Some(e.to_string()),
            ..Default::default()
        },
    }
}

/// Send `wire` and read the reply, exactly, with the client handshake; `None` if the
/// peer closed before a whole one.
fn exchange(args: &Args, wire: &[u8]) -> io::Result<Option<Result<Accepted, ReplyError>>> {
    let timeout = Duration::from_secs(10);
    let mut stream = sock::connect(args.connect, args.mptcp, false, None, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(wire)?;
    let asked = if args.info {
        Asked::Info
    } else {
        Asked::Connect
    };
    let mut handshake = ClientHandshake::expecting(asked);
    let mut piece = Vec::new();
    loop {
        match handshake.receive(&piece).step {
            Step::Done(outcome) => return Ok(Some(outcome)),
            Step::NeedMore { needed } => {
                piece.resize(needed, 0);
                if !read_full(&mut stream, &mut piece)? {
                    return Ok(None);
                }
            }
        }
    }
}

/// Fill `buf`; false on EOF first. A reset counts as EOF: the peer closed on us.
fn read_full(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match stream.read(&mut buf[done..]) {
            Ok(0) => return Ok(false),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
