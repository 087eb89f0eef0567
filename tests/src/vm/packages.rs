//! The guest's parts: Debian's mipsel Malta kernel (with its modules) and
//! busybox-static, fetched with `apt-get download` and unpacked with `dpkg -x`
//! under `target/mips-vm/`, the cross-built mipsel agent, and the benchmark peer
//! (shadowsocks-rust's mipsel `sslocal` from `cross/peer.sh`) when it is built.
//!
//! `MPBOND_MIPS_KERNEL=path` boots another kernel instead of Debian's: one with
//! everything the guest needs built in (no modules are loaded), such as the 6.12
//! kernel `cross/mips-kernel.sh` builds (issue 17: a kernel whose MPTCP honours
//! `SO_RCVLOWAT`). Busybox still comes from the packages.
//!
//! Cache: `debs/` keeps the downloaded packages (a second run fetches nothing while
//! a kernel package is there), `root-<hash>/` the unpacked tree, named by the hash of
//! the package file names (which carry their versions). `tests/setup.sh` adds the
//! mipsel architecture to dpkg and installs qemu; without them this fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::VmError;
use crate::error::BedError;
use crate::proc;

/// The kernel's meta package: it depends on the current versioned image.
const KERNEL_META: &str = "linux-image-4kc-malta:mipsel";
const BUSYBOX: &str = "busybox-static:mipsel";
const APT_LIMIT: Duration = Duration::from_secs(600);

/// What the guest is built from.
#[derive(Debug, Clone)]
pub struct GuestParts {
    /// The kernel image (`vmlinuz-*`, an ELF qemu loads with `-kernel`).
    pub kernel: PathBuf,
    /// `lib/modules/<release>/`; `None` for a kernel with everything built in
    /// (`MPBOND_MIPS_KERNEL`): the guest loads no modules.
    pub modules: Option<PathBuf>,
    /// The kernel release, e.g. `6.1.0-50-4kc-malta` (the file name for
    /// `MPBOND_MIPS_KERNEL`).
    pub release: String,
    /// The static mipsel busybox.
    pub busybox: PathBuf,
    /// The static mipsel `mpbond-agent`.
    pub agent: PathBuf,
    /// The static mipsel `sslocal` (bench case 15's peer), if built.
    pub peer: Option<PathBuf>,
}

/// The cache directory: `$MPBOND_MIPS_VM_DIR`, else `target/mips-vm` in the repository
/// (where `tests/setup.sh` downloads the packages, whatever `CARGO_TARGET_DIR` says).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("MPBOND_MIPS_VM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_target().join("mips-vm"))
}

fn repo_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// The mipsel agent: `$MPBOND_MIPS_AGENT`, else where `cross/ci.sh` leaves it
/// (`$CROSS_OUT/bin/mipsel_24kc/mpbond-agent`, `CROSS_OUT` defaulting to
/// `target/ci-cross` in the repository).
pub fn agent_path() -> Result<PathBuf, BedError> {
    let cross_out = std::env::var_os("CROSS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_target().join("ci-cross"));
    let path = std::env::var_os("MPBOND_MIPS_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| cross_out.join("bin/mipsel_24kc/mpbond-agent"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(BedError::from(VmError::Missing {
            what: format!("the mipsel mpbond-agent at {}", path.display()),
            hint: "bash cross/build.sh --out target/ci-cross/bin mipsel_24kc` or set \
                   `MPBOND_MIPS_AGENT"
                .into(),
        }))
    }
}

/// The mipsel `sslocal`: `$MPBOND_MIPS_PEER`, else where `cross/peer.sh` leaves it
/// (`target/ss-mipsel/sslocal` in the repository); `None` when it is not there.
pub fn peer_path() -> Option<PathBuf> {
    let path = std::env::var_os("MPBOND_MIPS_PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_target().join("ss-mipsel/sslocal"));
    path.is_file().then_some(path)
}

/// `$MPBOND_MIPS_KERNEL`: a kernel with everything the guest needs built in, booted
/// instead of Debian's (it must exist when set).
pub fn kernel_override() -> Result<Option<PathBuf>, BedError> {
    let Some(path) = std::env::var_os("MPBOND_MIPS_KERNEL").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    if path.is_file() {
        Ok(Some(path))
    } else {
        Err(VmError::Missing {
            what: format!("the kernel MPBOND_MIPS_KERNEL names, {}", path.display()),
            hint: "bash cross/mips-kernel.sh` (it prints the path) or unset `MPBOND_MIPS_KERNEL"
                .into(),
        }
        .into())
    }
}

/// Fetch (if needed) and unpack (if needed) the guest's packages; find the agent.
pub fn guest_parts() -> Result<GuestParts, BedError> {
    let agent = agent_path()?;
    let dir = cache_dir();
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs).map_err(|e| io_err("cannot create", &debs, e))?;
    let mut kernel_deb = newest(&debs, "linux-image-")?;
    let mut busybox_deb = newest(&debs, "busybox-static_")?;
    if kernel_deb.is_none() || busybox_deb.is_none() {
        download(&debs)?;
        kernel_deb = newest(&debs, "linux-image-")?;
        busybox_deb = newest(&debs, "busybox-static_")?;
    }
    let (Some(kernel_deb), Some(busybox_deb)) = (kernel_deb, busybox_deb) else {
        return Err(VmError::Missing {
            what: format!("the kernel and busybox packages in {}", debs.display()),
            hint: "sh tests/setup.sh".into(),
        }
        .into());
    };
    let root = unpack(&dir, &[&kernel_deb, &busybox_deb])?;
    let boot = root.join("boot");
    let kernel = first_with_prefix(&boot, "vmlinuz-")?.ok_or_else(|| VmError::Missing {
        what: format!("a vmlinuz in {}", boot.display()),
        hint: format!("remove {} and run again", root.display()),
    })?;
    let release = kernel
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_owned();
    let (kernel, modules, release) = match kernel_override()? {
        Some(own) => {
            let name = own
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (own, None, name)
        }
        None => (
            kernel,
            Some(root.join("lib/modules").join(&release)),
            release,
        ),
    };
    Ok(GuestParts {
        modules,
        kernel,
        release,
        busybox: root.join("bin/busybox"),
        agent,
        peer: peer_path(),
    })
}

/// The newest (by name) `prefix*_mipsel.deb` in `dir`.
fn newest(dir: &Path, prefix: &str) -> Result<Option<PathBuf>, BedError> {
    let mut found: Vec<PathBuf> = read_dir(dir)?
        .into_iter()
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(prefix) && n.ends_with("_mipsel.deb") && !n.contains("-dbg")
            })
        })
        .collect();
    found.sort();
    Ok(found.pop())
}

fn first_with_prefix(dir: &Path, prefix: &str) -> Result<Option<PathBuf>, BedError> {
    Ok(read_dir(dir)?.into_iter().find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix))
    }))
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, BedError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_err("cannot read", dir, e))?;
    Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
}

/// `apt-get download` the kernel named by the meta package, and busybox, into `debs`.
fn download(debs: &Path) -> Result<(), BedError> {
    let mut deps = Command::new("apt-cache");
    deps.args(["depends", KERNEL_META]);
    let out = proc::run(deps, None, APT_LIMIT).map_err(|e| VmError::Missing {
        what: format!("the package {KERNEL_META} ({e})"),
        hint: "sh tests/setup.sh (it runs dpkg --add-architecture mipsel and apt-get update)"
            .into(),
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let image = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|d| d.starts_with("linux-image-"))
        .ok_or_else(|| VmError::Missing {
            what: format!("the versioned kernel image in `apt-cache depends {KERNEL_META}`"),
            hint: "sh tests/setup.sh".into(),
        })?
        .to_owned();
    let mut get = Command::new("apt-get");
    get.args(["download", &image, BUSYBOX]).current_dir(debs);
    proc::run(get, None, APT_LIMIT).map_err(|e| VmError::Missing {
        what: format!("{image} and {BUSYBOX} ({e})"),
        hint: "sh tests/setup.sh".into(),
    })?;
    Ok(())
}

/// Unpack `debs` into `dir/root-<hash of their names>` unless it is there already.
fn unpack(dir: &Path, debs: &[&Path]) -> Result<PathBuf, BedError> {
    let mut h = Sha256::new();
    for d in debs {
        h.update(
            d.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        h.update([0]);
    }
    let key = crate::datagen::hex(&h.finalize()[..8]);
    let root = dir.join(format!("root-{key}"));
    if root.join(".complete").is_file() {
        return Ok(root);
    }
    let _ = std::fs::remove_dir_all(&root);
    for deb in debs {
        let mut x = Command::new("dpkg");
        x.arg("-x").arg(deb).arg(&root);
        proc::run(x, None, APT_LIMIT)?;
    }
    std::fs::write(root.join(".complete"), b"").map_err(|e| io_err("cannot write", &root, e))?;
    Ok(root)
}

fn io_err(what: &'static str, path: &Path, source: std::io::Error) -> BedError {
    BedError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
