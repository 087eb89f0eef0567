//! Walks `tests/fixtures/{valid,invalid}`: every valid file must load, every invalid one
//! must fail with the message in its `<name>.expect` sidecar. Empty folders fail the test.

use std::fs;
use std::path::{Path, PathBuf};

use mpbond_agent::Config;
use mpbond_testkit::fixture_files;

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    fixture_files(&dir, |p| p.extension().map_or(true, |e| e != "expect"))
}

#[test]
fn valid_configs_load() {
    for path in fixtures("valid") {
        if let Err(e) = Config::load(&path) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn invalid_configs_fail_with_the_expected_message() {
    for path in fixtures("invalid") {
        let mut expect_path = path.clone().into_os_string();
        expect_path.push(".expect");
        let expected = fs::read_to_string(&expect_path)
            .unwrap_or_else(|e| panic!("{}.expect: {e}", path.display()));
        match Config::load(&path) {
            Ok(_) => panic!("{} loaded but should not", path.display()),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains(expected.trim()),
                    "{}: {message:?} does not contain {:?}",
                    path.display(),
                    expected.trim()
                );
            }
        }
    }
}

#[test]
fn example_config_is_valid_and_matches_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
    let example = Config::load(&path).expect("agent.example.toml loads");
    let minimal_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/minimal.toml");
    let minimal = Config::load(&minimal_path).expect("minimal.toml loads");
    assert_eq!(
        format!("{:?}", example.proxy),
        format!("{:?}", minimal.proxy)
    );
    assert_eq!(
        format!("{:?}", example.health),
        format!("{:?}", minimal.health)
    );
    assert_eq!(example.concentrator.port, minimal.concentrator.port);
}

#[test]
fn the_key_never_prints() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
    let config = Config::load(&path).expect("agent.example.toml loads");
    let debug = format!("{config:?}");
    assert!(!debug.contains("abababab"), "{debug}");
    assert!(debug.contains("***"), "{debug}");
}

#[test]
fn json_values_are_typed() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/minimal.json");
    let c = Config::load(&path).expect("minimal.json loads");
    assert_eq!(c.concentrator.host, "2001:db8:100::1");
    assert_eq!(c.concentrator.client_id.as_str(), "home-1.a_b");
    assert_eq!(c.proxy.lan_interfaces, ["br-lan", "wlan0"]);
    let dsts: Vec<String> = c
        .bypass
        .destinations
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        dsts,
        ["198.51.100.0/24", "2001:db8:300::/48", "203.0.113.7/32"]
    );
    assert_eq!(c.health.down_after, 3);
    assert_eq!(c.health.up_after, 2);
    assert_eq!(c.health.interval.as_millis(), 500);
    assert_eq!(c.health.timeout.as_millis(), 1500);
}

#[test]
fn concentrators_are_sorted_by_priority_and_the_single_form_is_a_list_of_one() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid");
    let two = Config::load(&dir.join("concentrators.toml")).expect("concentrators.toml");
    let names: Vec<(&str, u8)> = two
        .concentrators
        .iter()
        .map(|c| (c.name.as_str(), c.priority))
        .collect();
    assert_eq!(names, vec![("home", 1), ("backup", 2)]);
    assert_eq!(two.concentrator.name, "home", "the preferred one");
    assert_eq!(two.concentrators[1].port, 4850, "the default port");

    let one = Config::load(&dir.join("minimal.toml")).expect("minimal.toml");
    assert_eq!(one.concentrators.len(), 1);
    assert_eq!(
        one.concentrators[0].name, "vps.example.net",
        "named after its host"
    );
    assert_eq!(one.concentrators[0].priority, 1);
    assert_eq!(one.concentrator.host, one.concentrators[0].host);
}
