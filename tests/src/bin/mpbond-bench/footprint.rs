//! Case 7, footprint: stripped binary sizes per OpenWrt architecture, from
//! `cross/build.sh`'s `target/cross/sizes.json` (`{arch: {binary: bytes}}`),
//! and the host's release binaries. The full run builds the cross binaries
//! when `sizes.json` is missing; the short run never does (it takes minutes
//! and installs toolchains) and says so. `MPBOND_CROSS_DIR` overrides where
//! the cross output is looked for ([`cross_dir`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ctx::{BenchError, Ctx};
use crate::report::{Figure, Mode, Target};

const CASE: &str = "7 footprint";
/// The architecture and binary the size target is about.
const TARGET_ARCH: &str = "mipsel_24kc";
const TARGET_BIN: &str = "mpbond-agent";
/// `mpbond-agent` on mipsel_24kc, stripped: at most 2 MiB.
pub const TARGET_KIB: f64 = 2048.0;

/// `{arch: {binary: bytes}}`.
type Sizes = BTreeMap<String, BTreeMap<String, u64>>;

/// Run case 7.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    let root = repo_root();
    let sizes_path = cross_dir().join("sizes.json");
    let mut figures = Vec::new();
    for name in ["mpbond-agent", "mpbond-concentrator"] {
        let path = ctx.bin(name)?;
        let bytes = file_len(&path)?;
        figures.push(figure(
            &format!("{name} host release binary"),
            bytes,
            None,
            format!("{} (host target, release profile)", path.display()),
        ));
    }
    let mut note = String::new();
    if !sizes_path.is_file() {
        match ctx.mode {
            Mode::Short => {
                note = "cross build skipped in short mode (run cross/build.sh, or the full suite)"
                    .into()
            }
            Mode::Full => {
                if let Err(e) = build(ctx, &root) {
                    note = e.to_string();
                }
            }
        }
    }
    let sizes = if sizes_path.is_file() {
        Some(read_sizes(&sizes_path)?)
    } else {
        None
    };
    match sizes {
        Some(sizes) => figures.extend(cross_figures(&sizes, &sizes_path)),
        None => figures.push(Figure {
            case: CASE.into(),
            name: format!("{TARGET_BIN} stripped, {TARGET_ARCH}"),
            value: f64::NAN,
            unit: "KiB".into(),
            target: None,
            runs: Vec::new(),
            steal_pct: 0.0,
            detail: format!("skipped: {note}"),
        }),
    }
    Ok(figures)
}

/// One figure per (arch, binary) of `sizes`; the target on mipsel's agent.
pub fn cross_figures(sizes: &Sizes, from: &Path) -> Vec<Figure> {
    let mut out = Vec::new();
    for (arch, bins) in sizes {
        for (bin, &bytes) in bins {
            let target =
                (arch == TARGET_ARCH && bin == TARGET_BIN).then_some(Target::AtMost(TARGET_KIB));
            out.push(figure(
                &format!("{bin} stripped, {arch}"),
                bytes,
                target,
                format!("{bytes} bytes, from {}", from.display()),
            ));
        }
    }
    out
}

fn figure(name: &str, bytes: u64, target: Option<Target>, detail: String) -> Figure {
    let kib = (bytes as f64 / 1024.0 * 10.0).round() / 10.0;
    Figure {
        case: CASE.into(),
        name: name.into(),
        value: kib,
        unit: "KiB".into(),
        target,
        runs: vec![kib],
        steal_pct: 0.0,
        detail,
    }
}

/// Parse `sizes.json`.
pub fn parse_sizes(text: &str) -> Result<Sizes, serde_json::Error> {
    serde_json::from_str(text)
}

fn read_sizes(path: &Path) -> Result<Sizes, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
        what: "cannot read",
        path: path.to_owned(),
        source,
    })?;
    parse_sizes(&text).map_err(|e| BenchError::measure(CASE, format!("{}: {e}", path.display())))
}

/// `bash cross/build.sh`, its output in `cross-build.log` under the out dir.
fn build(ctx: &Ctx, root: &Path) -> Result<(), BenchError> {
    let log = ctx.out("cross-build.log");
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| BenchError::Io { what, path, source }
    };
    let file = std::fs::File::create(&log).map_err(io("cannot create", &log))?;
    let err = file.try_clone().map_err(io("cannot create", &log))?;
    eprintln!(
        "{CASE}: building the cross binaries (log: {})",
        log.display()
    );
    let status = Command::new("bash")
        .arg(root.join("cross/build.sh"))
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(io("cannot run", &root.join("cross/build.sh")))?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::measure(
            CASE,
            format!("cross/build.sh failed ({status}); see {}", log.display()),
        ))
    }
}

fn file_len(path: &Path) -> Result<u64, BenchError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| BenchError::Io {
            what: "cannot stat",
            path: path.to_owned(),
            source,
        })
}

/// Where `cross/build.sh` puts its output: `$MPBOND_CROSS_DIR`, else
/// `target/cross` in the workspace.
pub fn cross_dir() -> PathBuf {
    std::env::var_os("MPBOND_CROSS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/cross"))
}

/// The workspace root: the parent of this crate's manifest directory.
fn repo_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_json_gives_one_figure_per_binary_and_the_target_on_mipsel() {
        let sizes = parse_sizes(
            r#"{"mipsel_24kc":{"mpbond-agent":2000000},
                "x86_64":{"mpbond-agent":1500000,"mpbond-concentrator":1800000}}"#,
        )
        .unwrap();
        let figs = cross_figures(&sizes, Path::new("sizes.json"));
        assert_eq!(figs.len(), 3);
        let mips = &figs[0];
        assert_eq!(mips.name, "mpbond-agent stripped, mipsel_24kc");
        assert_eq!(mips.pass(), Some(true));
        assert!(figs[1..].iter().all(|f| f.target.is_none()));
        assert!(parse_sizes("{\"x\": 1}").is_err());
    }
}
