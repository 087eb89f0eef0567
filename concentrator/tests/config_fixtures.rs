//! Every file in `tests/fixtures/valid` must load; every file in `tests/fixtures/invalid`
//! must fail with the substring given on its first line (`# expect: ...`).

use std::path::{Path, PathBuf};

use mpbond_concentrator::Config;
use mpbond_testkit::fixture_files;

fn files(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    fixture_files(&dir, |p| p.extension().is_some_and(|x| x == "toml"))
}

#[test]
fn valid_fixtures_load() {
    for path in files("valid") {
        if let Err(e) = Config::load(&path) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn invalid_fixtures_fail_with_the_expected_message() {
    for path in files("invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()));
        match Config::load(&path) {
            Ok(cfg) => panic!("{}: loaded but should fail: {cfg:?}", path.display()),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(expect),
                    "{}: error {msg:?} lacks {expect:?}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("concentrator.example.toml");
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!cfg.clients.is_empty());
}

#[test]
fn full_fixture_values() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/many_clients.toml");
    let cfg = Config::load(&path).unwrap();
    assert_eq!(cfg.clients.len(), 3);
    assert_eq!(cfg.listen, vec!["192.0.2.1:4850".parse().unwrap()]);
    assert_eq!(cfg.policy.deny.len(), 3);
    assert_eq!(cfg.policy.allow[1].to_string(), "192.168.7.0/24");
}
