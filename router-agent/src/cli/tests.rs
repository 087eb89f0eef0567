//! Unit tests of the hand-written parser: every command line the init script, the test
//! bed, `cross/ci.sh` and the rpcd plugin use, and the usage errors clap used to give.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use super::{parse, Command, UsageError, HELP, USAGE};

fn args(line: &str) -> Vec<OsString> {
    line.split_whitespace().map(OsString::from).collect()
}

fn ok(line: &str) -> Command {
    match parse(args(line)) {
        Ok(command) => command,
        Err(err) => panic!("{line:?} refused: {err}"),
    }
}

fn err(line: &str) -> UsageError {
    match parse(args(line)) {
        Ok(command) => panic!("{line:?} accepted as {command:?}"),
        Err(err) => err,
    }
}

fn run(file: &str, uci: bool) -> Command {
    Command::Run {
        file: PathBuf::from(file),
        uci,
        dnsmasq_confdir: None,
    }
}

fn check(file: &str, uci: bool) -> Command {
    Command::CheckConfig {
        file: PathBuf::from(file),
        uci,
    }
}

fn status(json: bool, socket: &str) -> Command {
    Command::Status {
        json,
        socket: PathBuf::from(socket),
    }
}

const DEFAULT: &str = mpbond_agent::status::DEFAULT_SOCKET;

#[test]
fn run_with_a_config_or_a_uci_file() {
    // tests/src/daemons.rs and openwrt/mpbond/files/mpbond.init.
    assert_eq!(
        ok("--config /tmp/x/agent.toml"),
        run("/tmp/x/agent.toml", false)
    );
    assert_eq!(
        ok("--uci /etc/config/mpbond"),
        run("/etc/config/mpbond", true)
    );
    assert_eq!(ok("--config=a.json"), run("a.json", false));
    assert_eq!(ok("--uci=-odd"), run("-odd", true));
    assert_eq!(ok("--config -"), run("-", false));
}

#[test]
fn check_config_takes_one_file_and_uci_anywhere() {
    assert_eq!(ok("check-config agent.toml"), check("agent.toml", false));
    assert_eq!(
        ok("check-config --uci mpbond.config"),
        check("mpbond.config", true)
    );
    assert_eq!(
        ok("check-config mpbond.config --uci"),
        check("mpbond.config", true)
    );
    assert_eq!(ok("check-config -- --odd"), check("--odd", false));
    assert_eq!(ok("check-config --uci -- -x"), check("-x", true));
}

#[test]
fn status_defaults_to_the_table_on_the_default_socket() {
    assert_eq!(ok("status"), status(false, DEFAULT));
    // luci-app's rpcd plugin and tests/src/agentstate.rs.
    assert_eq!(ok("status --json"), status(true, DEFAULT));
    assert_eq!(
        ok("status --json --socket /tmp/bed/agent.sock"),
        status(true, "/tmp/bed/agent.sock")
    );
    assert_eq!(ok("status --socket=/s --json"), status(true, "/s"));
}

#[test]
fn help_and_version_win_where_they_appear() {
    for line in [
        "--help",
        "-h",
        "help",
        "help status",
        "help check-config",
        "status --help",
        "check-config -h",
        "check-config --uci --help",
        "--help --bogus",
        "--config x --help",
        "--config x help",
    ] {
        assert_eq!(ok(line), Command::Help, "{line}");
    }
    assert_eq!(ok("--version"), Command::Version);
    assert_eq!(ok("-V"), Command::Version);
    assert_eq!(ok("-V --bogus"), Command::Version);
    assert_eq!(
        err("--bogus --help"),
        UsageError::UnexpectedArgument("--bogus".into())
    );
}

#[test]
fn a_config_source_is_required() {
    assert_eq!(err(""), UsageError::MissingSource);
    assert_eq!(err("--config"), UsageError::MissingValue("--config"));
    assert_eq!(err("--config="), UsageError::MissingValue("--config"));
    assert_eq!(
        err("--config --uci x"),
        UsageError::MissingValue("--config")
    );
    assert_eq!(err("status --socket"), UsageError::MissingValue("--socket"));
    assert_eq!(err("check-config"), UsageError::MissingFile);
    assert_eq!(err("check-config --uci"), UsageError::MissingFile);
}

#[test]
fn conflicts_and_repeats_are_refused() {
    assert_eq!(
        err("--config a --uci b"),
        UsageError::Conflict("--config", "--uci".into())
    );
    assert_eq!(err("--uci a --uci b"), UsageError::Repeated("--uci"));
    assert_eq!(
        err("--config x status"),
        UsageError::Conflict("--config", "status".into())
    );
    assert_eq!(
        err("--uci x check-config y"),
        UsageError::Conflict("--uci", "check-config".into())
    );
    assert_eq!(err("status --json --json"), UsageError::Repeated("--json"));
    assert_eq!(
        err("status --socket a --socket b"),
        UsageError::Repeated("--socket")
    );
    assert_eq!(
        err("check-config --uci --uci f"),
        UsageError::Repeated("--uci")
    );
}

#[test]
fn unknown_words_and_options_are_refused() {
    assert_eq!(err("bogus"), UsageError::UnknownCommand("bogus".into()));
    assert_eq!(
        err("help bogus"),
        UsageError::UnknownCommand("bogus".into())
    );
    assert_eq!(err("--foo"), UsageError::UnexpectedArgument("--foo".into()));
    assert_eq!(
        err("status -j"),
        UsageError::UnexpectedArgument("-j".into())
    );
    assert_eq!(
        err("status extra"),
        UsageError::UnexpectedArgument("extra".into())
    );
    assert_eq!(
        err("check-config a b"),
        UsageError::UnexpectedArgument("b".into())
    );
    assert_eq!(
        err("--json"),
        UsageError::UnexpectedArgument("--json".into())
    );
    assert_eq!(
        err("check-config --json f"),
        UsageError::UnexpectedArgument("--json".into())
    );
    assert_eq!(
        err("--config a extra"),
        UsageError::UnknownCommand("extra".into())
    );
    assert_eq!(
        err("status --json=1"),
        UsageError::UnexpectedValue("--json")
    );
    assert_eq!(
        err("check-config --uci=1 f"),
        UsageError::UnexpectedValue("--uci")
    );
    assert_eq!(
        err("--help=1"),
        UsageError::UnexpectedArgument("--help=1".into())
    );
    assert_eq!(
        err("help status x"),
        UsageError::UnexpectedArgument("x".into())
    );
}

#[test]
fn paths_need_not_be_utf8() {
    let bad = OsString::from_vec(b"/tmp/\xff.toml".to_vec());
    let mut inline = b"--config=".to_vec();
    inline.extend_from_slice(b"/tmp/\xff.toml");
    assert_eq!(
        parse([OsString::from("--config"), bad.clone()]),
        Ok(Command::Run {
            file: PathBuf::from(bad.clone()),
            uci: false,
            dnsmasq_confdir: None,
        })
    );
    assert_eq!(
        parse([OsString::from_vec(inline)]),
        Ok(Command::Run {
            file: PathBuf::from(bad.clone()),
            uci: false,
            dnsmasq_confdir: None,
        })
    );
    assert_eq!(
        parse([OsString::from("check-config"), bad.clone()]),
        Ok(Command::CheckConfig {
            file: PathBuf::from(bad.clone()),
            uci: false
        })
    );
    // A non-UTF-8 word is never a command or an option, and the error still prints.
    let err = parse([bad.clone()]).expect_err("not a command");
    assert_eq!(err, UsageError::UnknownCommand("/tmp/\u{fffd}.toml".into()));
    let mut option = b"--\xff".to_vec();
    option.push(b'x');
    let err = parse([OsString::from_vec(option)]).expect_err("not an option");
    assert!(
        err.to_string().starts_with("unexpected argument '--"),
        "{err}"
    );
}

#[test]
fn the_texts_name_every_command_and_option() {
    for word in [
        "--config FILE",
        "--uci FILE",
        "check-config [--uci] FILE",
        "status [--json] [--socket PATH]",
    ] {
        assert!(USAGE.contains(word), "usage lacks {word}");
        assert!(HELP.contains(word), "help lacks {word}");
    }
    for word in [
        "--help",
        "--version",
        "--json",
        DEFAULT,
        "RUST_LOG",
        "exit code 2",
    ] {
        assert!(HELP.contains(word), "help lacks {word}");
    }
    assert!(USAGE.contains("--help"));
}

#[test]
fn the_dnsmasq_confdir_goes_with_a_run() {
    assert_eq!(
        parse(args(
            "--uci /etc/config/mpbond --dnsmasq-confdir /tmp/dnsmasq.cfg01411c.d"
        )),
        Ok(Command::Run {
            file: PathBuf::from("/etc/config/mpbond"),
            uci: true,
            dnsmasq_confdir: Some(PathBuf::from("/tmp/dnsmasq.cfg01411c.d")),
        })
    );
    assert_eq!(
        err("--uci /c --dnsmasq-confdir /a --dnsmasq-confdir /b"),
        UsageError::Repeated("--dnsmasq-confdir")
    );
    assert_eq!(err("--dnsmasq-confdir /a"), UsageError::MissingSource);
}
