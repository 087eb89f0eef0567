//! The `mpbond-agent` binary's command line end to end: what it prints and its exit codes
//! for `--version`, `--help`, `check-config` and bad usage (the parser's cases are unit
//! tests in `src/cli/tests.rs`).

use std::path::Path;
use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mpbond-agent"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run mpbond-agent")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn shipped_uci() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../openwrt/mpbond/files/mpbond.config")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn version_prints_the_package_version() {
    for flag in ["--version", "-V"] {
        let out = agent(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            text(&out.stdout),
            format!("mpbond-agent {}\n", env!("CARGO_PKG_VERSION"))
        );
        assert!(out.stderr.is_empty());
    }
}

#[test]
fn help_prints_usage_on_stdout_and_exits_0() {
    for args in [&["--help"][..], &["-h"], &["help"], &["status", "--help"]] {
        let out = agent(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with("mpbond router agent"), "{stdout}");
        assert!(stdout.contains("check-config [--uci] FILE"), "{stdout}");
        assert!(out.stderr.is_empty());
    }
}

#[test]
fn bad_usage_exits_2_with_the_reason_and_the_usage() {
    for (args, reason) in [
        (&[][..], "--config FILE or --uci FILE is required"),
        (&["--config"], "a value is required for '--config'"),
        (
            &["--config", "a", "--uci", "b"],
            "'--config' cannot be used with '--uci'",
        ),
        (&["bogus"], "unrecognized command 'bogus'"),
        (&["status", "-j"], "unexpected argument '-j'"),
        (&["check-config"], "check-config needs a FILE"),
    ] {
        let out = agent(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with(&format!("mpbond-agent: error: {reason}\n")),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("Usage: mpbond-agent"), "{stderr}");
    }
}

#[test]
fn check_config_accepts_the_shipped_uci_file_and_refuses_a_missing_one() {
    let out = agent(&["check-config", "--uci", &shipped_uci()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "config OK\n");

    let out = agent(&["check-config", "/nonexistent/mpbond-agent.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(!out.stderr.is_empty());
}

#[test]
fn status_without_an_agent_exits_3() {
    let dir = std::env::temp_dir().join(format!("mpbond-cli-{}", std::process::id()));
    let socket = dir.join("absent.sock");
    let out = agent(&["status", "--json", "--socket", &socket.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is not running"));
}

#[test]
fn info_goes_to_stdout_and_errors_to_stderr() {
    // procd files stdout as daemon.info and stderr as daemon.err: a missing config is an
    // error on stderr, the start line before it is info on stdout, and neither stream
    // carries the other's levels.
    let missing = std::env::temp_dir().join(format!("mpbond-no-such-{}.toml", std::process::id()));
    let out = agent(&["--config", &missing.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        stdout.contains("INFO") && stdout.contains("starting"),
        "stdout: {stdout}"
    );
    assert!(
        stderr.contains("ERROR") && stderr.contains("cannot read"),
        "stderr: {stderr}"
    );
    assert!(!stdout.contains("ERROR"), "stdout: {stdout}");
    assert!(!stderr.contains("INFO"), "stderr: {stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "no colour off a terminal: {stderr:?}"
    );
}
