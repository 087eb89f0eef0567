//! `mpbond-tb quic-server` and `mpbond-tb quic-fetch`: downloads over QUIC (the `quinn`
//! crate, its default congestion control, NewReno-like Cubic) for the UDP tests and the
//! bench.
//!
//! The client opens one bidirectional stream, writes the seed and the byte count (two
//! big-endian `u64`s) and finishes its side; the server answers with that many bytes of
//! [`mpbond_tests::datagen`]'s stream for the seed. The client checks every byte and
//! prints one JSON report. The certificate is the test's own (`tests/testdata`), which
//! the client trusts alone, for the name `mpbond.test`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpbond_tests::datagen::{random_seed, Stream};
use quinn::{ClientConfig, Endpoint, ServerConfig, TransportConfig, VarInt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

const CERT: &[u8] = include_bytes!("../../../testdata/quic-cert.pem");
const KEY: &[u8] = include_bytes!("../../../testdata/quic-key.pem");
const SERVER_NAME: &str = "mpbond.test";

/// Options of `quic-server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
}

/// Options of `quic-fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The QUIC server.
    #[arg(long)]
    to: SocketAddr,
    /// Bytes to download.
    #[arg(long)]
    bytes: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

/// What `quic-fetch` prints.
#[derive(Debug, Serialize)]
struct Report {
    bytes: u64,
    seconds: f64,
    mbit_per_s: f64,
    ok: bool,
    first_bad_offset: Option<u64>,
    /// Longest time without a byte, in milliseconds.
    longest_stall_ms: f64,
    error: Option<String>,
}

fn transport() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    // Room for 100 Mbit/s over tens of ms: the default windows are the limit otherwise.
    t.stream_receive_window(VarInt::from_u32(16 << 20));
    t.receive_window(VarInt::from_u32(32 << 20));
    t.send_window(32 << 20);
    t.max_idle_timeout(Some(VarInt::from_u32(30_000).into()));
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    Arc::new(t)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

pub fn serve(args: &ServerArgs) -> ExitCode {
    match runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(server(args.listen)))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpbond-tb quic-server: {}: {e}", args.listen);
            ExitCode::FAILURE
        }
    }
}

async fn server(listen: SocketAddr) -> Result<(), String> {
    let certs = vec![CertificateDer::from_pem_slice(CERT).map_err(|e| e.to_string())?];
    let key = PrivateKeyDer::from_pem_slice(KEY).map_err(|e| e.to_string())?;
    let mut config = ServerConfig::with_single_cert(certs, key).map_err(|e| e.to_string())?;
    config.transport_config(transport());
    let endpoint = Endpoint::server(config, listen).map_err(|e| e.to_string())?;
    println!("{{\"event\":\"listening\",\"addr\":\"{listen}\"}}");
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            println!(
                "{{\"event\":\"peer\",\"addr\":\"{}\"}}",
                conn.remote_address()
            );
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let mut head = [0u8; 16];
                    if recv.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let seed = u64::from_be_bytes(head[..8].try_into().unwrap_or_default());
                    let mut left = u64::from_be_bytes(head[8..].try_into().unwrap_or_default());
                    let mut stream = Stream::new(seed);
                    let mut buf = vec![0u8; 64 * 1024];
                    while left > 0 {
                        let n = buf.len().min(left as usize);
                        stream.fill(&mut buf[..n]);
                        if send.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        left -= n as u64;
                    }
                    let _ = send.finish();
                    let _ = send.stopped().await;
                });
            }
        });
    }
    Ok(())
}

pub fn fetch(args: &FetchArgs) -> ExitCode {
    let report = match runtime() {
        Ok(rt) => rt.block_on(async {
            let limit = Duration::from_secs(args.timeout);
            match tokio::time::timeout(limit, client(args)).await {
                Ok(report) => report,
                Err(_) => Report::failed(format!("timed out after {limit:?}")),
            }
        }),
        Err(e) => Report::failed(e.to_string()),
    };
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

impl Report {
    fn failed(error: String) -> Report {
        Report {
            bytes: 0,
            seconds: 0.0,
            mbit_per_s: 0.0,
            ok: false,
            first_bad_offset: None,
            longest_stall_ms: 0.0,
            error: Some(error),
        }
    }
}

async fn client(args: &FetchArgs) -> Report {
    match download(args).await {
        Ok(report) => report,
        Err(e) => Report::failed(e),
    }
}

async fn download(args: &FetchArgs) -> Result<Report, String> {
    let mut roots = rustls::RootCertStore::empty();
    let cert = CertificateDer::from_pem_slice(CERT).map_err(|e| e.to_string())?;
    roots.add(cert).map_err(|e| e.to_string())?;
    let mut config =
        ClientConfig::with_root_certificates(Arc::new(roots)).map_err(|e| e.to_string())?;
    config.transport_config(transport());
    let bind: SocketAddr = if args.to.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let mut endpoint = Endpoint::client(bind).map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(config);
    let started = Instant::now();
    let conn = endpoint
        .connect(args.to, SERVER_NAME)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let seed = random_seed();
    let mut head = [0u8; 16];
    head[..8].copy_from_slice(&seed.to_be_bytes());
    head[8..].copy_from_slice(&args.bytes.to_be_bytes());
    send.write_all(&head).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    let mut check = Stream::new(seed);
    let mut first_bad = None;
    let mut got = 0u64;
    let mut last = Instant::now();
    let mut stall = Duration::ZERO;
    let mut buf = vec![0u8; 256 * 1024];
    while let Some(n) = recv.read(&mut buf).await.map_err(|e| e.to_string())? {
        let now = Instant::now();
        stall = stall.max(now - last);
        last = now;
        if let Some(bad) = check.check(&buf[..n]) {
            first_bad.get_or_insert(bad);
        }
        got += n as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    conn.close(VarInt::from_u32(0), b"done");
    endpoint.wait_idle().await;
    Ok(Report {
        bytes: got,
        seconds,
        mbit_per_s: got as f64 * 8.0 / seconds / 1e6,
        ok: got == args.bytes && first_bad.is_none(),
        first_bad_offset: first_bad,
        longest_stall_ms: stall.as_secs_f64() * 1000.0,
        error: None,
    })
}
