//! `mpbond-tb serve`: one thread per connection, a JSON event per step on stdout.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use mpbond_tests::datagen::{hex, Stream};
use mpbond_tests::wire::{Request, ServeEvent, MAX_LINE};
use sha2::{Digest, Sha256};

use crate::sock::{self, BUF_LEN};

/// Sockets give up after this long without progress.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

fn log(ev: &ServeEvent) {
    if let Ok(line) = serde_json::to_string(ev) {
        println!("{line}");
    }
}

/// Listen on `addr` and serve until killed.
pub fn run(addr: SocketAddr, mptcp: bool, tfo: bool) -> io::Result<()> {
    let listener = sock::listen(addr, mptcp, tfo)?;
    log(&ServeEvent {
        event: "listening".into(),
        addr: listener.local_addr()?.to_string(),
        ..Default::default()
    });
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                log(&ServeEvent {
                    event: "accept".into(),
                    addr: peer.to_string(),
                    ..Default::default()
                });
                std::thread::spawn(move || {
                    let mut ev = ServeEvent {
                        event: "done".into(),
                        addr: peer.to_string(),
                        ..Default::default()
                    };
                    if let Err(e) = handle(stream, &mut ev) {
                        ev.event = "error".into();
                        ev.error = Some(e.to_string());
                    }
                    log(&ev);
                });
            }
            Err(e) => {
                eprintln!("mpbond-tb serve: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Read the request line; returns it and the bytes that followed it.
fn read_request(stream: &mut TcpStream) -> io::Result<(Request, Vec<u8>)> {
    let mut buf = [0u8; MAX_LINE];
    let mut len = 0;
    loop {
        if let Some(nl) = buf[..len].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&buf[..nl]).into_owned();
            let req =
                Request::parse(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            return Ok((req, buf[nl + 1..len].to_vec()));
        }
        if len == buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request line too long",
            ));
        }
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a request line",
            ));
        }
        len += n;
    }
}

fn handle(mut stream: TcpStream, ev: &mut ServeEvent) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let (req, early) = read_request(&mut stream)?;
    ev.mode = Some(req.mode().into());
    ev.seed = Some(req.down_seed());
    match req {
        Request::Get { bytes, seed } => {
            ev.bytes_out = send(&mut stream, seed, bytes)?;
            stream.shutdown(Shutdown::Write)?;
        }
        Request::Put { bytes, seed } => {
            let (got, bad, sha) = receive(&mut stream, seed, early)?;
            ev.bytes_in = got;
            let ok = got == bytes && bad.is_none();
            ev.ok = Some(ok);
            let reply = match (ok, bad) {
                (true, _) => format!("OK {sha}\n"),
                (false, off) => format!("BAD {} {sha}\n", off.unwrap_or(got)),
            };
            stream.write_all(reply.as_bytes())?;
            stream.shutdown(Shutdown::Write)?;
        }
        Request::Xch { up, down, seed } => {
            let mut writer = stream.try_clone()?;
            let sender = std::thread::spawn(move || -> io::Result<u64> {
                let n = send(&mut writer, seed, down)?;
                writer.shutdown(Shutdown::Write)?;
                Ok(n)
            });
            let received = receive(&mut stream, req.up_seed(), early);
            let sent = sender
                .join()
                .map_err(|_| io::Error::other("sender thread panicked"))?;
            let (got, bad, _sha) = received?;
            ev.bytes_in = got;
            ev.bytes_out = sent?;
            ev.ok = Some(got == up && bad.is_none());
        }
    }
    Ok(())
}

/// Write `bytes` bytes of stream `seed`.
fn send(stream: &mut TcpStream, seed: u64, bytes: u64) -> io::Result<u64> {
    let mut gen = Stream::new(seed);
    let mut buf = vec![0u8; BUF_LEN];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(BUF_LEN as u64) as usize;
        gen.fill(&mut buf[..n]);
        stream.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(bytes)
}

/// Read to EOF, checking against stream `seed`: (bytes, first bad offset, sha256 hex).
fn receive(
    stream: &mut TcpStream,
    seed: u64,
    early: Vec<u8>,
) -> io::Result<(u64, Option<u64>, String)> {
    let mut check = Stream::new(seed);
    let mut sha = Sha256::new();
    let mut bad = check.check(&early);
    sha.update(&early);
    let mut buf = vec![0u8; BUF_LEN];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let b = check.check(&buf[..n]);
        bad = bad.or(b);
        sha.update(&buf[..n]);
    }
    Ok((check.position(), bad, hex(&sha.finalize())))
}
