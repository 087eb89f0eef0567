//! The OpenWrt shell files: the uci-defaults script against a fake root
//! (`openwrt/tests/uci_defaults.sh`), the init script under the rc.common stand-in
//! (`openwrt/tests/init_script.sh`), and `sh -n` (plus shellcheck, when installed) on
//! every script the package ships.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

const SCRIPTS: &[&str] = &[
    "openwrt/mpbond/files/mpbond.init",
    "openwrt/mpbond/files/mpbond.uci-defaults",
    "openwrt/tests/uci_defaults.sh",
    "openwrt/tests/init_script.sh",
    "openwrt/tests/rc.common",
    "cross/package.sh",
    "cross/package-luci.sh",
    "cross/ipk.sh",
];

#[test]
fn uci_defaults_creates_the_wan_sections() {
    let out = Command::new("sh")
        .arg(repo().join("openwrt/tests/uci_defaults.sh"))
        .output()
        .expect("run openwrt/tests/uci_defaults.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all 9 checks passed"), "{stdout}");
}

#[test]
fn the_init_script_reloads_in_place_and_logs_through_procd() {
    let out = Command::new("sh")
        .arg(repo().join("openwrt/tests/init_script.sh"))
        .output()
        .expect("run openwrt/tests/init_script.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all 11 checks passed"), "{stdout}");
}

#[test]
fn shipped_scripts_parse() {
    for script in SCRIPTS {
        let status = Command::new("sh")
            .arg("-n")
            .arg(repo().join(script))
            .status()
            .expect("sh -n");
        assert!(status.success(), "sh -n {script}");
    }
}

#[test]
#[ignore = "needs shellcheck"]
fn shipped_scripts_pass_shellcheck() {
    mpbond_testkit::require_tools(&["shellcheck"]);
    for script in SCRIPTS {
        // -x: follow the `. cross/ipk.sh` the packaging scripts source.
        let out = Command::new("shellcheck")
            .current_dir(repo())
            .arg("-x")
            .arg(repo().join(script))
            .output()
            .expect("shellcheck");
        assert!(
            out.status.success(),
            "shellcheck {script}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
