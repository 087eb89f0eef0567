//! `cross/package.sh` on the host's own mpbond-agent: the .ipk is opened with `tar` and
//! checked member by member (layout, control fields, conffiles, script modes, the binary's
//! ELF machine), the feed index must match the file and be world-readable even under
//! `umask 077`, and two runs give the same bytes. The postinst, run as an image build
//! runs it (`IPKG_INSTROOT` set, the image's rc.common: `openwrt/tests/rc.common`),
//! enables the service in the image root. Needs sh, GNU tar, gzip and sha256sum.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mpbond_testkit::TempDir;

const EPOCH: &str = "1700000000";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The host's debug mpbond-agent, stripped of debug info into `dir` when `strip` exists
/// (the debug binary is ~90 MB, which makes gzip the test's bottleneck).
fn agent(dir: &Path) -> String {
    let debug = env!("CARGO_BIN_EXE_mpbond-agent");
    let stripped = dir.join("mpbond-agent");
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(debug)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        stripped.to_string_lossy().into_owned()
    } else {
        debug.to_owned()
    }
}

/// `cross/package.sh ARCH BINARY OUT` under `umask 077`, so every mode it needs is set
/// explicitly.
fn package(arch: &str, binary: &str, out: &Path) -> Output {
    Command::new("sh")
        .args(["-c", "umask 077 && exec sh \"$@\"", "sh"])
        .arg(repo().join("cross/package.sh"))
        .args([arch, binary])
        .arg(out)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("VERSION", "0.1.0-r1")
        .output()
        .expect("run cross/package.sh")
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `tar -tv` of an archive given as bytes on stdin: (mode, owner, size, name) per member.
fn listing(archive: &Path, inner: Option<&str>) -> Vec<(String, String, u64, String)> {
    let script = match inner {
        None => "tar --numeric-owner -tvzf \"$1\"".to_owned(),
        Some(member) => format!("tar -xzOf \"$1\" {member} | tar --numeric-owner -tvzf -"),
    };
    let text = run(Command::new("sh").args(["-c", &script, "sh"]).arg(archive));
    String::from_utf8_lossy(&text)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(f.len() >= 6, "odd tar line {line:?}");
            (
                f[0].to_owned(),
                f[1].to_owned(),
                f[2].parse().expect("size"),
                f[5].to_owned(),
            )
        })
        .collect()
}

/// The ipk unpacked once: `outer/` holds its three members, `control/` and `data/` the
/// contents of the two inner archives.
fn unpack(ipk: &Path, dir: &Path) -> PathBuf {
    let root = dir.join("unpacked");
    for sub in ["outer", "control", "data"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
    }
    run(Command::new("tar")
        .arg("-xzf")
        .arg(ipk)
        .arg("-C")
        .arg(root.join("outer")));
    for inner in ["control", "data"] {
        let archive = root.join("outer").join(format!("{inner}.tar.gz"));
        run(Command::new("tar")
            .arg("-xzf")
            .arg(archive)
            .arg("-C")
            .arg(root.join(inner)));
    }
    root
}

fn read(root: &Path, path: &str) -> Vec<u8> {
    std::fs::read(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fields(control: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut last = String::new();
    for line in control.lines() {
        if let Some(rest) = line.strip_prefix(' ') {
            map.entry(last.clone()).and_modify(|v: &mut String| {
                v.push('\n');
                v.push_str(rest)
            });
        } else if let Some((k, v)) = line.split_once(':') {
            last = k.to_owned();
            assert!(
                map.insert(k.to_owned(), v.trim().to_owned()).is_none(),
                "{k} twice"
            );
        }
    }
    map
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.permissions().mode() & 0o7777
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_ipk_has_the_opkg_layout_and_fields() {
    let scratch = TempDir::new("ipk-test");
    let bin = TempDir::new("ipk-test");
    let agent = agent(bin.path());
    let out = package("x86_64", &agent, scratch.path());
    assert!(
        out.status.success(),
        "package.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ipk = scratch.join("mpbond_0.1.0-r1_x86_64.ipk");
    assert!(ipk.is_file(), "{} missing", ipk.display());

    // Outer archive: exactly these three, in ipkg-build's order, root-owned.
    let outer = listing(&ipk, None);
    let names: Vec<&str> = outer.iter().map(|m| m.3.as_str()).collect();
    assert_eq!(
        names,
        ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
    );
    assert!(outer.iter().all(|m| m.1 == "0/0"), "{outer:?}");
    let root = unpack(&ipk, scratch.path());
    assert_eq!(read(&root, "outer/debian-binary"), b"2.0\n");

    // control.tar.gz
    let control_members = listing(&ipk, Some("./control.tar.gz"));
    let modes: BTreeMap<&str, &str> = control_members
        .iter()
        .map(|m| (m.3.as_str(), m.0.as_str()))
        .collect();
    assert_eq!(modes.get("./control"), Some(&"-rw-r--r--"));
    assert_eq!(modes.get("./conffiles"), Some(&"-rw-r--r--"));
    assert_eq!(modes.get("./postinst"), Some(&"-rwxr-xr-x"));
    assert_eq!(modes.get("./prerm"), Some(&"-rwxr-xr-x"));
    assert!(control_members.iter().all(|m| m.1 == "0/0"));

    let control = String::from_utf8(read(&root, "control/control")).expect("utf8");
    let f = fields(&control);
    let expect = [
        ("Package", "mpbond"),
        ("Version", "0.1.0-r1"),
        ("Depends", "kmod-nft-core, kmod-nft-nat, kmod-nf-nat"),
        ("Source", "openwrt/mpbond"),
        ("SourceName", "mpbond"),
        ("License", "Apache-2.0"),
        ("Section", "net"),
        ("Architecture", "x86_64"),
        ("SourceDateEpoch", EPOCH),
    ];
    for (k, v) in expect {
        assert_eq!(f.get(k).map(String::as_str), Some(v), "{k} in\n{control}");
    }
    assert!(
        f.get("Maintainer").is_some_and(|m| m.contains('@')),
        "{control}"
    );
    assert!(
        f.get("Description").is_some_and(|d| d.contains('\n')),
        "{control}"
    );

    let conffiles = read(&root, "control/conffiles");
    assert_eq!(conffiles, b"/etc/config/mpbond\n");
    for script in ["control/postinst", "control/prerm"] {
        let text = String::from_utf8(read(&root, script)).expect("utf8");
        assert!(text.starts_with("#!/bin/sh\n"), "{script}: {text}");
        assert!(text.contains("IPKG_INSTROOT"), "{script}: {text}");
        let checked = Command::new("sh")
            .args(["-n", "-c", &text])
            .status()
            .expect("sh -n");
        assert!(checked.success(), "{script} is not valid sh");
    }
    let postinst = String::from_utf8(read(&root, "control/postinst")).unwrap_or_default();
    assert!(
        postinst.contains("/etc/init.d/mpbond enable")
            && postinst.contains("/etc/init.d/mpbond start")
    );
    assert!(
        postinst.contains("99-mpbond"),
        "postinst runs the uci-defaults script"
    );

    // data.tar.gz: files, modes, ownership, fixed mtime.
    let data = listing(&ipk, Some("./data.tar.gz"));
    let files: BTreeMap<&str, &str> = data.iter().map(|m| (m.3.as_str(), m.0.as_str())).collect();
    assert_eq!(files.get("./usr/sbin/mpbond-agent"), Some(&"-rwxr-xr-x"));
    assert_eq!(files.get("./etc/init.d/mpbond"), Some(&"-rwxr-xr-x"));
    assert_eq!(
        files.get("./etc/uci-defaults/99-mpbond"),
        Some(&"-rwxr-xr-x")
    );
    assert_eq!(files.get("./etc/config/mpbond"), Some(&"-rw-------"));
    assert!(data.iter().all(|m| m.1 == "0/0"), "{data:?}");
    for conffile in String::from_utf8_lossy(&conffiles).lines() {
        assert!(
            files.contains_key(format!(".{conffile}").as_str()),
            "{conffile} not in data"
        );
    }
    let installed: u64 = f["Installed-Size"].parse().expect("Installed-Size");
    let data_tar = run(Command::new("sh")
        .args(["-c", "gzip -dc \"$1\" | wc -c", "sh"])
        .arg(root.join("outer/data.tar.gz")));
    assert_eq!(
        String::from_utf8_lossy(&data_tar)
            .trim()
            .parse::<u64>()
            .ok(),
        Some(installed)
    );

    // The binary: the input's bytes, ELF64 little-endian x86-64 (e_machine 62).
    let binary = read(&root, "data/usr/sbin/mpbond-agent");
    assert_eq!(&binary[..4], b"\x7fELF");
    assert_eq!((binary[4], binary[5]), (2, 1), "class/data");
    assert_eq!(
        u16::from_le_bytes([binary[18], binary[19]]),
        62,
        "e_machine"
    );
    assert!(
        binary == std::fs::read(&agent).expect("read agent"),
        "binary differs"
    );

    // The shipped config inside the package is valid for the agent.
    let config = read(&root, "data/etc/config/mpbond");
    let text = String::from_utf8(config).expect("utf8");
    mpbond_agent::config::uci::load_uci(&text).unwrap_or_else(|e| panic!("packaged config: {e}"));

    // The feed index.
    let index = std::fs::read_to_string(scratch.join("Packages")).expect("Packages");
    let entry = fields(index.trim_end());
    let size = std::fs::metadata(&ipk).expect("ipk").len();
    assert_eq!(
        entry.get("Filename").map(String::as_str),
        Some("mpbond_0.1.0-r1_x86_64.ipk")
    );
    assert_eq!(entry.get("Size").and_then(|s| s.parse().ok()), Some(size));
    assert_eq!(entry.get("SHA256sum"), Some(&sha256(&ipk)));
    for k in [
        "Package",
        "Version",
        "Depends",
        "Architecture",
        "Description",
    ] {
        assert_eq!(entry.get(k), f.get(k), "{k}");
    }
    let gz = run(Command::new("gzip")
        .arg("-dc")
        .arg(scratch.join("Packages.gz")));
    assert_eq!(gz, index.as_bytes());
    // A plain web server serves the feed: the index and the package are 0644.
    for name in ["Packages", "Packages.gz", "mpbond_0.1.0-r1_x86_64.ipk"] {
        assert_eq!(mode(&scratch.join(name)), 0o644, "{name}");
    }

    // Reproducible: a second run elsewhere gives the same bytes.
    let again = TempDir::new("ipk-test");
    assert!(package("x86_64", &agent, again.path()).status.success());
    assert_eq!(
        sha256(&again.join("mpbond_0.1.0-r1_x86_64.ipk")),
        sha256(&ipk)
    );
}

#[test]
fn the_postinst_of_an_image_build_enables_the_service_in_the_image_root() {
    let scratch = TempDir::new("ipk-test");
    let bin = TempDir::new("ipk-test");
    let out = package("x86_64", &agent(bin.path()), scratch.path());
    assert!(
        out.status.success(),
        "package.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unpacked = unpack(&scratch.join("mpbond_0.1.0-r1_x86_64.ipk"), scratch.path());
    // The image root as the image builder has it when the postinst runs: base-files'
    // rc.common and /etc/rc.d, the package's files.
    let image = scratch.join("image");
    run(Command::new("cp")
        .arg("-a")
        .arg(unpacked.join("data"))
        .arg(&image));
    std::fs::copy(
        repo().join("openwrt/tests/rc.common"),
        image.join("etc/rc.common"),
    )
    .expect("rc.common");
    std::fs::create_dir_all(image.join("etc/rc.d")).expect("rc.d");

    let status = Command::new("sh")
        .arg(unpacked.join("control/postinst"))
        .env("IPKG_INSTROOT", &image)
        .env_remove("IPKG_NO_SCRIPT")
        .env_remove("PKG_UPGRADE")
        .status()
        .expect("run the postinst");
    assert!(status.success());
    for link in ["S95mpbond", "K10mpbond"] {
        let target = std::fs::read_link(image.join("etc/rc.d").join(link))
            .unwrap_or_else(|e| panic!("etc/rc.d/{link}: {e}"));
        assert_eq!(target, Path::new("../init.d/mpbond"), "{link}");
    }
    assert!(
        image.join("etc/uci-defaults/99-mpbond").is_file(),
        "the uci-defaults script is left for the first boot"
    );
}

#[test]
fn a_binary_of_another_architecture_is_refused() {
    let scratch = TempDir::new("ipk-test");
    let out = package(
        "mipsel_24kc",
        env!("CARGO_BIN_EXE_mpbond-agent"),
        scratch.path(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not '1 1 8'"), "{stderr}");
    let leftovers = std::fs::read_dir(scratch.path())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "nothing is written for a refused binary");

    let not_elf = scratch.join("not-elf");
    std::fs::write(&not_elf, b"#!/bin/sh\n").expect("write");
    let out = package(
        "x86_64",
        not_elf.to_str().expect("utf8 path"),
        &scratch.join("out"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an ELF file"));
}
