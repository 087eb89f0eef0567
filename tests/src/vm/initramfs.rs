//! The guest's initramfs: busybox, the kernel modules the agent needs (with their
//! dependencies, in load order), the mipsel agent, the benchmark peer's `sslocal`
//! when it is built (bench case 15) and the init script, as one newc
//! cpio archive. Cached under `target/mips-vm/initramfs-<hash>.cpio`, the hash
//! covering every input, so a second run with the same parts builds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::cpio::{self, Entry};
use super::guest;
use super::packages::GuestParts;
use super::VmError;
use crate::error::BedError;

/// The modules the guest loads (dependencies are added from `modules.dep`): the NIC,
/// nf_tables with what the agent's ruleset uses (redirect, ct, socket; tproxy and
/// masquerade for completeness), socket diagnostics (the agent's `sock_diag` reads
/// TCP and MPTCP sockets), BBR and fq.
pub const MODULES: &[&str] = &[
    // libcrc32c (nf_tables, nf_conntrack) asks the crypto API for "crc32c": a
    // soft dependency that `depends=` does not name.
    "crc32c_generic",
    "virtio_pci",
    "virtio_net",
    "nf_tables",
    "nft_chain_nat",
    "nft_redir",
    "nft_ct",
    "nft_socket",
    "nft_tproxy",
    "nft_masq",
    "inet_diag",
    "tcp_diag",
    "mptcp_diag",
    "tcp_bbr",
    "sch_fq",
];

/// Where the agent lives in the guest.
pub const GUEST_AGENT: &str = "usr/sbin/mpbond-agent";
/// Where the peer's `sslocal` lives in the guest (when it is built).
pub const GUEST_PEER: &str = "usr/bin/sslocal";

/// Build (or find in the cache) the initramfs for `parts`; returns its path.
/// A kernel without modules (`parts.modules` is `None`) gets none: it has
/// everything built in.
pub fn build(parts: &GuestParts, cache: &Path) -> Result<PathBuf, BedError> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let order = match &parts.modules {
        None => Vec::new(),
        Some(dir) => {
            let index = module_index(dir)?;
            load_order(MODULES, |name| {
                let rel = index.get(name).ok_or_else(|| VmError::Guest {
                    what: "the kernel modules".into(),
                    detail: format!("{name} is not in {}", dir.display()),
                })?;
                let bytes = read(&dir.join(rel))?;
                let deps = modinfo_depends(&bytes);
                files.insert(name.to_owned(), bytes);
                Ok(deps)
            })?
        }
    };
    let init = guest::init_script(&order);
    let busybox = read(&parts.busybox)?;
    let agent = read(&parts.agent)?;
    let peer = parts.peer.as_deref().map(read).transpose()?;
    let modules: Vec<(String, Vec<u8>)> = order
        .iter()
        .map(|name| (name.clone(), files.remove(name).unwrap_or_default()))
        .collect();
    let mut h = Sha256::new();
    for part in [init.as_bytes(), &busybox, &agent] {
        h.update(Sha256::digest(part));
    }
    if let Some(peer) = &peer {
        h.update(b"peer");
        h.update(Sha256::digest(peer));
    }
    for (rel, bytes) in &modules {
        h.update(rel.as_bytes());
        h.update(Sha256::digest(bytes));
    }
    let key = crate::datagen::hex(&h.finalize()[..8]);
    let out = cache.join(format!("initramfs-{key}.cpio"));
    if out.is_file() {
        return Ok(out);
    }
    let mut entries = Vec::new();
    for dir in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "var",
        "etc",
        "etc/config",
        "lib",
        "lib/modules",
    ] {
        entries.push(Entry::Dir {
            path: dir.into(),
            mode: 0o755,
        });
    }
    entries.push(Entry::CharDev {
        path: "dev/console".into(),
        major: 5,
        minor: 1,
    });
    entries.push(Entry::Symlink {
        path: "var/run".into(),
        target: "../run".into(),
    });
    entries.push(Entry::File {
        path: "bin/busybox".into(),
        mode: 0o755,
        data: busybox,
    });
    entries.push(Entry::File {
        path: GUEST_AGENT.into(),
        mode: 0o755,
        data: agent,
    });
    if let Some(data) = peer {
        entries.push(Entry::File {
            path: GUEST_PEER.into(),
            mode: 0o755,
            data,
        });
    }
    for (name, data) in modules {
        entries.push(Entry::File {
            path: format!("lib/modules/{name}.ko"),
            mode: 0o644,
            data,
        });
    }
    entries.push(Entry::File {
        path: "init".into(),
        mode: 0o755,
        data: init.into_bytes(),
    });
    let bytes = cpio::archive(&entries);
    // Only the newest archive is kept: the disk is not unlimited.
    if let Ok(old) = std::fs::read_dir(cache) {
        for e in old.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with("initramfs-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|source| BedError::Io {
        what: "cannot write",
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &out).map_err(|source| BedError::Io {
        what: "cannot rename",
        path: tmp,
        source,
    })?;
    Ok(out)
}

/// Every module under `dir` (`lib/modules/<release>/`): its name (dashes as
/// underscores, as `depends=` spells them) → its path relative to `dir`.
pub fn module_index(dir: &Path) -> Result<BTreeMap<String, String>, BedError> {
    let mut index = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| BedError::Io {
            what: "cannot read",
            path: d.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if let (Some(stem), Ok(rel)) = (name.strip_suffix(".ko"), path.strip_prefix(dir)) {
                    index.insert(stem.replace('-', "_"), rel.to_string_lossy().into_owned());
                }
            }
        }
    }
    Ok(index)
}

/// The `depends=` list of a module's `.modinfo` (NUL-separated `key=value` strings).
pub fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    ko.split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(b"depends="))
        .map(|v| {
            String::from_utf8_lossy(v)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The names of `wanted` and everything they depend on (`deps` gives a module's
/// direct dependencies), each after its dependencies, each once.
pub fn load_order(
    wanted: &[&str],
    mut deps: impl FnMut(&str) -> Result<Vec<String>, BedError>,
) -> Result<Vec<String>, BedError> {
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stack: Vec<(String, bool)> = wanted
        .iter()
        .rev()
        .map(|w| (w.to_string(), false))
        .collect();
    while let Some((name, expanded)) = stack.pop() {
        if expanded {
            order.push(name);
            continue;
        }
        if !seen.insert(name.clone()) {
            continue;
        }
        stack.push((name.clone(), true));
        for d in deps(&name)?.into_iter().rev() {
            if !seen.contains(&d) {
                stack.push((d, false));
            }
        }
    }
    Ok(order)
}

fn read(path: &Path) -> Result<Vec<u8>, BedError> {
    std::fs::read(path).map_err(|source| BedError::Io {
        what: "cannot read",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_load_first_and_once() {
        let deps: BTreeMap<&str, Vec<String>> = [
            ("nft_redir", vec!["nf_nat".into(), "nf_tables".into()]),
            ("nf_nat", vec!["nf_conntrack".into()]),
            ("nf_tables", vec!["libcrc32c".into()]),
            ("nf_conntrack", vec!["libcrc32c".into()]),
            ("libcrc32c", vec![]),
        ]
        .into_iter()
        .collect();
        let order = load_order(&["nft_redir", "nf_tables"], |m| {
            deps.get(m)
                .cloned()
                .ok_or_else(|| BedError::Usage(format!("unknown {m}")))
        })
        .expect("known modules");
        let pos = |m: &str| order.iter().position(|o| o == m).expect(m);
        assert_eq!(order.len(), 5, "{order:?}");
        assert!(pos("libcrc32c") < pos("nf_conntrack"));
        assert!(pos("nf_conntrack") < pos("nf_nat"));
        assert!(pos("nf_tables") < pos("nft_redir"));
        assert_eq!(order.last().map(String::as_str), Some("nft_redir"));
        let err = load_order(&["nft_nope"], |m| {
            Err(BedError::Usage(format!("unknown {m}")))
        });
        assert!(err.is_err_and(|e| e.to_string().contains("nft_nope")));
    }

    #[test]
    fn depends_come_from_the_modinfo_strings() {
        let ko = b"\x7fELF junk\0license=GPL\0depends=nf_tables,nf_nat\0intree=Y\0";
        assert_eq!(modinfo_depends(ko), ["nf_tables", "nf_nat"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
    }
}
