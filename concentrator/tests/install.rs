//! The one-command VPS install (`install.sh`), run for real in a namespace "VPS" (see
//! `install/harness.rs`): kernel checks, binary, unit, sysctls, config with a generated
//! key, firewall, service start, the printed LuCI values, idempotence, and
//! `add-client` on the running service. The printed keys are proven by authenticated
//! MPTCP probes against the daemon the install started.
//!
//! Needs root, `ip`, `unshare`, `nsenter`, `setpriv` and `ss`: those tests are
//! `#[ignore = "needs root and netns"]` and fail without them (`tests/run.sh` runs them
//! with `--include-ignored`). The `.deb` is checked by `deb_package_installs_and_serves`,
//! ignored for another reason (build it first with `cargo deb -p mpbond-concentrator`;
//! see `packaging/check-deb.sh`): `.ci/run` runs it alone after building the package,
//! and `tests/run.sh` skips it.

#[path = "install/harness.rs"]
mod harness;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use harness::{uci_value, Answer, Overlays, Vps, UNIT, VPS_ADDR};
use mpbond_protocol::auth::Key;

const CONF: &str = "/etc/mpbond/concentrator.toml";
const BIN: &str = "/usr/local/bin/mpbond-concentrator";

/// A firewall as on a locked-down VPS: drop all input but replies.
const FIREWALL: &str = "table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
    }
}
";

fn install_sh() -> String {
    format!("{}/install.sh", env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run install.sh with `args` in the VPS; panic with its output unless it succeeds.
fn install(vps: &Vps, args: &str, env: &[(&str, &str)]) -> (String, String) {
    let out = vps.sh(&format!("{} {args}", install_sh()), env);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "install.sh {args} failed ({}):\n{stdout}\n{stderr}\ndaemon log:\n{}",
        out.status,
        vps.daemon_log()
    );
    (stdout, stderr)
}

fn key_of(output: &str) -> Key {
    let hex = uci_value(output, "key").unwrap_or_else(|| panic!("no key in:\n{output}"));
    Key::from_hex(&hex).expect("printed key is 64 hex characters")
}

fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
        .expect("effective uid")
}

fn sysctl(vps: &Vps, name: &str) -> u32 {
    let out = vps.sh(&format!("sysctl -n {name}"), &[]);
    text(&out).0.trim().parse().expect("sysctl value")
}

#[test]
#[ignore = "needs root and netns"]
fn installs_serves_and_adds_a_client_without_restart() {
    harness::require();
    let vps = Vps::create(Overlays::Binary, Some(FIREWALL));
    let binary = env!("CARGO_BIN_EXE_mpbond-concentrator");

    // First run, as on Debian 12's kernel: a warning about Fast Open, then everything.
    let (stdout, stderr) = install(
        &vps,
        &format!("--binary {binary}"),
        &[("MPBOND_KERNEL_RELEASE", "6.1.0-18-amd64")],
    );
    assert!(
        stderr.contains("no TCP Fast Open on MPTCP"),
        "no 6.1 warning:\n{stderr}"
    );
    println!("{stdout}");
    assert_eq!(uci_value(&stdout, "host").as_deref(), Some(VPS_ADDR));
    assert_eq!(uci_value(&stdout, "port").as_deref(), Some("4850"));
    assert_eq!(uci_value(&stdout, "client_id").as_deref(), Some("router1"));
    assert!(
        stdout.contains("  Concentrator host  192.0.2.1\n"),
        "{stdout}"
    );
    assert!(stdout.contains("uci commit mpbond"), "{stdout}");
    let key1 = key_of(&stdout);

    // Kernel settings, inside the namespace.
    assert_eq!(sysctl(&vps, "net.mptcp.enabled"), 1);
    assert_eq!(sysctl(&vps, "net.ipv4.tcp_fastopen") & 2, 2);
    let limits = text(&vps.sh("ip mptcp limits show", &[])).0;
    assert!(
        limits.contains("subflows 8") && limits.contains("add_addr_accepted 8"),
        "{limits}"
    );

    // Files: a private config readable by the service user, the unit, the drop-in.
    let conf_meta = std::fs::metadata(vps.path(CONF)).expect("config written");
    assert_eq!(conf_meta.mode() & 0o777, 0o600);
    let passwd = vps.read("/etc/passwd").expect("passwd");
    let mpbond_uid: u32 = passwd
        .lines()
        .find_map(|l| l.strip_prefix("mpbond:x:"))
        .and_then(|l| l.split(':').next())
        .and_then(|uid| uid.parse().ok())
        .expect("user mpbond created");
    assert_eq!(conf_meta.uid(), mpbond_uid);
    let unit = vps
        .read(&format!("/etc/systemd/system/{UNIT}.service"))
        .expect("unit installed");
    assert!(
        unit.contains(&format!("ExecStart={BIN} --config {CONF}")),
        "{unit}"
    );
    assert!(
        unit.contains(&format!("ExecStartPre=-+{BIN} setup")),
        "{unit}"
    );
    assert!(vps.read("/etc/sysctl.d/99-mpbond.conf").is_some());
    let verify = vps.sh(
        &format!("systemd-analyze verify /etc/systemd/system/{UNIT}.service"),
        &[],
    );
    let (v_out, v_err) = text(&verify);
    if verify.status.code() == Some(127) {
        eprintln!("systemd-analyze not installed: unit not verified");
    } else {
        assert!(verify.status.success(), "verify: {v_out}{v_err}");
        assert!(v_err.trim().is_empty(), "verify warnings: {v_err}");
    }

    // The firewall rule, and the service as systemd would run it: as user mpbond.
    let rules = text(&vps.sh("nft list chain inet filter input", &[])).0;
    assert!(
        rules.contains("tcp dport 4850 accept comment \"mpbond\""),
        "{rules}"
    );
    let calls = vps.systemctl_calls();
    for call in [
        "daemon-reload",
        &format!("enable --quiet {UNIT}"),
        &format!("restart {UNIT}"),
    ] {
        assert!(calls.iter().any(|c| c == call), "no `{call}` in {calls:?}");
    }
    let pid = vps.daemon_pid().expect("daemon started");
    assert_eq!(uid_of(pid), mpbond_uid, "the daemon must not run as root");

    // The printed key works, over MPTCP through the firewall; a wrong key does not.
    let ok = vps.probe(4850, "router1", &key1).expect("probe");
    assert_eq!(
        ok.answer,
        Answer::Ok,
        "printed key refused; log:\n{}",
        vps.daemon_log()
    );
    assert!(ok.mptcp, "the probe fell back to plain TCP");
    // Quiet mode (the installed default): a wrong key gets no answer at all.
    let wrong = vps.probe(4850, "router1", &Key::from_bytes([7; 32]));
    assert_eq!(wrong.expect("probe").answer, Answer::Silence);

    // Second run: same key, same file, no restart, one firewall rule.
    let conf_before = vps.read(CONF).expect("config");
    let calls_before = vps.systemctl_calls().len();
    let (again, _) = install(&vps, "", &[]);
    assert_eq!(key_of(&again), key1, "a re-run must keep the key");
    assert!(again.contains("already in"), "{again}");
    assert_eq!(vps.read(CONF).as_deref(), Some(conf_before.as_str()));
    assert_eq!(vps.daemon_pid(), Some(pid), "a re-run must not restart");
    let new_calls = &vps.systemctl_calls()[calls_before..];
    assert!(
        new_calls
            .iter()
            .any(|c| c == &format!("reload-or-restart {UNIT}")),
        "{new_calls:?}"
    );
    let rules = text(&vps.sh("nft list chain inet filter input", &[])).0;
    assert_eq!(rules.matches("tcp dport 4850").count(), 1, "{rules}");

    // add-client on the running service: a second key, live without a restart.
    let out = vps.sh(&format!("{BIN} add-client router2"), &[]);
    let (added, added_err) = text(&out);
    assert!(out.status.success(), "add-client: {added}{added_err}");
    assert!(added.contains(&format!("reloaded {UNIT}")), "{added}");
    assert_eq!(uci_value(&added, "client_id").as_deref(), Some("router2"));
    assert_eq!(uci_value(&added, "host").as_deref(), Some(VPS_ADDR));
    let key2 = key_of(&added);
    assert_ne!(key2, key1);
    let calls = vps.systemctl_calls();
    assert_eq!(calls.last(), Some(&format!("reload {UNIT}")), "{calls:?}");
    let reply = vps.probe_until_ok(4850, "router2", &key2, Duration::from_secs(10));
    assert_eq!(
        reply.answer,
        Answer::Ok,
        "new key refused; log:\n{}",
        vps.daemon_log()
    );
    assert_eq!(
        vps.probe(4850, "router1", &key1).expect("probe").answer,
        Answer::Ok
    );
    assert_eq!(vps.daemon_pid(), Some(pid));
    assert!(
        vps.daemon_log().contains("client router2 added"),
        "{}",
        vps.daemon_log()
    );
}

/// ufw and firewalld, which this host lacks, as stand-ins that log their calls.
#[test]
#[ignore = "needs root and netns"]
fn opens_the_port_in_ufw_and_firewalld_when_active() {
    harness::require();
    let vps = Vps::create(Overlays::Binary, None);
    let log = vps.state.join("firewall-calls");
    let tool = |status: &str| {
        format!(
            "#!/bin/sh\necho \"$(basename \"$0\") $*\" >>'{}'\n{status}\n",
            log.display()
        )
    };
    vps.add_tool(
        "ufw",
        &tool("[ \"$1\" = status ] && echo 'Status: active'; exit 0"),
    );
    vps.add_tool("firewall-cmd", &tool("exit 0"));
    let binary = env!("CARGO_BIN_EXE_mpbond-concentrator");
    let args = format!("--binary {binary} --client home --host vps.example.net");
    let (stdout, _) = install(&vps, &args, &[]);
    assert_eq!(
        uci_value(&stdout, "host").as_deref(),
        Some("vps.example.net")
    );
    assert_eq!(uci_value(&stdout, "client_id").as_deref(), Some("home"));
    let calls = std::fs::read_to_string(&log).expect("firewall calls");
    for call in [
        "ufw allow 4850/tcp comment mpbond",
        "firewall-cmd --quiet --permanent --add-port=4850/tcp",
        "firewall-cmd --quiet --add-port=4850/tcp",
    ] {
        assert!(calls.lines().any(|l| l == call), "no `{call}` in:\n{calls}");
    }
    let key = key_of(&stdout);
    assert_eq!(
        vps.probe(4850, "home", &key).expect("probe").answer,
        Answer::Ok
    );
    // --host fills the template's empty server_id; a DNS name is no public_address.
    let conf = vps.read(CONF).expect("config");
    assert!(
        conf.contains("\nserver_id = [\"vps.example.net:4850\"]\n"),
        "{conf}"
    );
    assert!(conf.contains("\npublic_address = []\n"), "{conf}");

    // --no-firewall leaves them alone. An IP --host fills the still empty
    // public_address, and leaves the server_id set before alone.
    std::fs::remove_file(&log).expect("reset the log");
    let (again, _) = install(&vps, "--no-firewall --client home --host 192.0.2.1", &[]);
    let conf = vps.read(CONF).expect("config");
    assert!(
        conf.contains("\npublic_address = [\"192.0.2.1\"]\n"),
        "{conf}"
    );
    assert!(
        conf.contains("\nserver_id = [\"vps.example.net:4850\"]\n"),
        "{conf}"
    );
    assert!(again.contains("firewall left alone"), "{again}");
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !calls.contains("allow") && !calls.contains("add-port"),
        "{calls}"
    );
    assert_eq!(key_of(&again), key);
}

#[test]
#[ignore = "needs root and netns"]
fn refuses_kernels_without_mptcp_and_changes_nothing() {
    harness::require();
    let vps = Vps::create(Overlays::Binary, None);
    let binary = env!("CARGO_BIN_EXE_mpbond-concentrator");
    let no_mptcp = vps.state.join("proc-sys-without-mptcp");
    std::fs::create_dir_all(no_mptcp.join("net/ipv4")).expect("fake /proc/sys");
    let fake = no_mptcp.display().to_string();
    for (env, want) in [
        (vec![("MPBOND_PROC_SYS", fake.as_str())], "has no MPTCP"),
        (
            vec![("MPBOND_KERNEL_RELEASE", "5.10.0-28-amd64")],
            "older than 5.15",
        ),
    ] {
        let out = vps.sh(&format!("{} --binary {binary}", install_sh()), &env);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(stderr.contains(want), "{stderr}");
        assert!(stderr.contains("Nothing was changed"), "{stderr}");
    }
    assert!(!vps.path("/etc/mpbond").exists());
    assert!(!vps.path(BIN).exists());
    assert!(vps.systemctl_calls().is_empty());
}

#[test]
#[ignore = "needs root and netns"]
fn rejects_bad_arguments_before_changing_anything() {
    harness::require();
    let vps = Vps::create(Overlays::Binary, None);
    for args in [
        "--client 'bad id'",
        "--client abcdefghijklmnopqrstuvwxyz0123456",
        "--host 'x;reboot'",
        "--deb a.deb --binary b",
        "--bogus",
    ] {
        let out = vps.sh(&format!("{} {args}", install_sh()), &[]);
        assert!(!out.status.success(), "{args} was accepted");
    }
    let out = vps.sh(&install_sh(), &[]);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("not installed"), "{stderr}");
    assert!(!vps.path("/etc/mpbond").exists());
}

/// The shell scripts of the install and the package.
const SCRIPTS: [&str; 5] = [
    "install.sh",
    "packaging/check-deb.sh",
    "packaging/debian/postinst",
    "packaging/debian/postrm",
    "tests/install/systemctl-shim.sh",
];

/// The shell scripts are POSIX sh (they run under dash on Debian). Needs no root.
#[test]
fn scripts_are_posix_sh() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for script in SCRIPTS {
        let out = Command::new("sh")
            .arg("-n")
            .arg(dir.join(script))
            .output()
            .expect("sh");
        assert!(out.status.success(), "{script}: {}", text(&out).1);
    }
}

#[test]
#[ignore = "needs shellcheck"]
fn scripts_pass_shellcheck() {
    mpbond_testkit::require_tools(&["shellcheck"]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("shellcheck")
        .args(["-s", "sh"])
        .args(SCRIPTS.map(|s| dir.join(s)))
        .output()
        .expect("shellcheck");
    assert!(out.status.success(), "shellcheck:\n{}", text(&out).0);
}

/// `MPBOND_DEB`, or the newest `target/debian/mpbond-concentrator_*.deb`.
fn find_deb() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MPBOND_DEB") {
        return Some(PathBuf::from(path));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let mut debs: Vec<PathBuf> = std::fs::read_dir(target.join("debian"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("mpbond-concentrator_") && n.ends_with(".deb"))
        })
        .collect();
    debs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    debs.pop()
}

/// The release package: its contents (check-deb.sh), then `install.sh --deb` in a
/// namespace VPS and a probe with the printed key.
#[test]
#[ignore = "needs a .deb: cargo deb -p mpbond-concentrator (a release build)"]
fn deb_package_installs_and_serves() {
    harness::require();
    let deb = find_deb().expect("no .deb: run cargo deb -p mpbond-concentrator or set MPBOND_DEB");
    let check = Command::new("sh")
        .arg(format!(
            "{}/packaging/check-deb.sh",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(&deb)
        .output()
        .expect("check-deb.sh");
    let (c_out, c_err) = text(&check);
    assert!(check.status.success(), "check-deb.sh:\n{c_out}{c_err}");

    let vps = Vps::create(Overlays::Package, None);
    let (stdout, _) = install(&vps, &format!("--deb {}", deb.display()), &[]);
    println!("{stdout}");
    let key = key_of(&stdout);
    assert!(vps.path("/usr/bin/mpbond-concentrator").exists());
    let pid = vps.daemon_pid().expect("daemon started");
    let reply = vps.probe(4850, "router1", &key).expect("probe");
    assert_eq!(reply.answer, Answer::Ok, "log:\n{}", vps.daemon_log());
    assert!(reply.mptcp);
    let (again, _) = install(&vps, "", &[]);
    assert_eq!(key_of(&again), key);
    assert_eq!(vps.daemon_pid(), Some(pid));
}
