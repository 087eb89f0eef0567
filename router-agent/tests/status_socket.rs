//! The control socket and the `status` client against each other, in a throw-away
//! directory (`$TMPDIR/mpbond-status-<pid>-<n>`): one document per connection, errors for bad
//! requests, mode 0600, stale-socket handling, removal at exit, and exit code 3 with
//! the documented message when no agent is running.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpbond_testkit::TempDir;

use mpbond_agent::status::client::{fetch, fetch_raw};
use mpbond_agent::status::{
    status_command, ClientError, ControlError, ControlSocket, StatusDoc, StatusModel, WanInfo,
    WanMode, WanState, EXIT_NOT_RUNNING, SCHEMA,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(10);

/// A scratch directory, removed on drop.
struct Scratch(TempDir);

impl Scratch {
    fn new() -> Scratch {
        Scratch(TempDir::new("status"))
    }
    /// A socket path in a sub-directory that does not exist yet.
    fn socket(&self) -> PathBuf {
        self.0.join("run/agent.sock")
    }
}

fn model() -> Arc<Mutex<StatusModel>> {
    let mut model = StatusModel::new("9.9.9", Instant::now(), "192.0.2.1");
    model.set_wans(vec![WanInfo {
        name: "wan1".into(),
        device: "eth1".into(),
        addresses: vec!["10.200.1.2".parse().unwrap()],
        gateway: Some("10.200.1.1".parse().unwrap()),
        table: Some(2001),
        endpoint_id: Some(1),
        mode: WanMode::On,
        state: WanState::Up,
    }]);
    Arc::new(Mutex::new(model))
}

/// Bind and serve `model` at `path`; returns the token and the server task.
fn start(
    path: &Path,
    model: Arc<Mutex<StatusModel>>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let socket = ControlSocket::bind(path).expect("bind the control socket");
    let shutdown = CancellationToken::new();
    let source = move || model.lock().unwrap().render(Instant::now());
    let task = tokio::spawn(socket.serve(source, shutdown.clone()));
    (shutdown, task)
}

/// Send raw bytes (then shut down our write side) and read the whole answer.
async fn ask(path: &Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(path).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    timeout(LIMIT, tokio::task::spawn_blocking(f))
        .await
        .expect("client finished")
        .expect("client did not panic")
}

#[tokio::test]
async fn serves_the_document_and_cleans_up() {
    let scratch = Scratch::new();
    let path = scratch.socket();
    let model = model();
    let (shutdown, task) = start(&path, model.clone());

    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    for request in [&b"status\n"[..], b"", b"\n", b"status"] {
        let doc: StatusDoc = serde_json::from_str(&ask(&path, request).await).unwrap();
        assert_eq!(doc.schema, SCHEMA);
        assert_eq!(doc.version, "9.9.9");
        assert_eq!(doc.wans[0].name, "wan1");
    }
    // The document follows the model.
    model.lock().unwrap().set_subflows("wan1", 5);
    let p = path.clone();
    let (text, doc) = blocking(move || fetch(&p, LIMIT)).await.unwrap();
    assert_eq!(doc.wans[0].subflows, 5);
    assert!(text.ends_with("}\n"));

    let p = path.clone();
    assert_eq!(blocking(move || status_command(true, &p)).await, 0);
    let p = path.clone();
    assert_eq!(blocking(move || status_command(false, &p)).await, 0);

    shutdown.cancel();
    timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(!path.exists(), "socket file removed at exit");
    let p = path.clone();
    assert_eq!(
        blocking(move || status_command(false, &p)).await,
        EXIT_NOT_RUNNING
    );
}

#[tokio::test]
async fn bad_requests_get_an_error_document() {
    let scratch = Scratch::new();
    let path = scratch.socket();
    let (shutdown, task) = start(&path, model());
    let long = vec![b'x'; 4096];
    for request in [&b"reload\n"[..], b"\xff\xfe\n", &long, b"{\"json\": 1}\n"] {
        let answer: Value = serde_json::from_str(&ask(&path, request).await).unwrap();
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{answer}");
    }
    let p = path.clone();
    let err = blocking(move || fetch_raw(&p, "nonsense", LIMIT))
        .await
        .unwrap();
    assert!(err.contains("nonsense"), "{err}");
    // Still serving after all that.
    let p = path.clone();
    assert!(blocking(move || fetch(&p, LIMIT)).await.is_ok());
    shutdown.cancel();
    timeout(LIMIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn many_clients_and_a_silent_one() {
    let scratch = Scratch::new();
    let path = scratch.socket();
    let (shutdown, task) = start(&path, model());
    // A client that connects and says nothing holds one slot until the timeout.
    let mut silent = UnixStream::connect(&path).await.unwrap();
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let p = path.clone();
            tokio::task::spawn_blocking(move || fetch(&p, LIMIT).map(|(_, doc)| doc.schema))
        })
        .collect();
    for client in clients {
        let schema = timeout(LIMIT, client).await.unwrap().unwrap().unwrap();
        assert_eq!(schema, SCHEMA);
    }
    // The silent client is closed by the server, without an answer.
    let mut buf = Vec::new();
    let n = timeout(LIMIT, silent.read_to_end(&mut buf)).await.unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?} {buf:?}");
    shutdown.cancel();
    timeout(LIMIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn stale_live_and_foreign_files() {
    let scratch = Scratch::new();
    let path = scratch.socket();
    // A stale socket (bound, then its listener gone) is replaced.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let p = path.clone();
    let err = blocking(move || fetch(&p, LIMIT)).await.unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    assert_eq!(err.exit_code(), EXIT_NOT_RUNNING);
    assert_eq!(
        err.to_string(),
        format!(
            "mpbond-agent is not running (no control socket at {})",
            path.display()
        )
    );

    let (shutdown, task) = start(&path, model());
    // A second agent on the same path is refused, and the first keeps its socket.
    let second = ControlSocket::bind(&path);
    assert!(
        matches!(second, Err(ControlError::InUse { .. })),
        "{second:?}"
    );
    let p = path.clone();
    assert!(blocking(move || fetch(&p, LIMIT)).await.is_ok());
    shutdown.cancel();
    timeout(LIMIT, task).await.unwrap().unwrap();

    // A regular file is not ours to delete.
    std::fs::write(&path, b"not a socket").unwrap();
    let bound = ControlSocket::bind(&path);
    assert!(
        matches!(bound, Err(ControlError::NotSocket { .. })),
        "{bound:?}"
    );
    assert!(path.exists());
}

#[test]
fn absent_socket_means_not_running() {
    let scratch = Scratch::new();
    assert_eq!(status_command(false, &scratch.socket()), EXIT_NOT_RUNNING);
    assert_eq!(status_command(true, &scratch.socket()), EXIT_NOT_RUNNING);
}
