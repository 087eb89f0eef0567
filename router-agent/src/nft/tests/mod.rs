//! Tests of the nft module as a whole: the golden rendering (no privileges), and the
//! kernel behaviour in throw-away namespaces (root only: ignored unless run with
//! `--include-ignored`): create, apply, owner semantics on drop and on SIGKILL, stale
//! tables, error reporting, real redirects.

mod names;
mod netns;
mod traffic;

use std::time::Duration;

use super::netlink::Socket;
use super::{batch, render, validate, NftError, NftTable, RedirectSpec};
use netns::{normalize, require_root_and_nft, wait_until, NetNs};

/// The spec of the golden files.
pub(super) fn golden_spec(redirect: bool) -> RedirectSpec {
    let net = |s: &str| s.parse().expect("test prefix");
    RedirectSpec {
        table: "mpbond".into(),
        lan_interfaces: vec!["br-lan".into(), "wlan0".into()],
        port: 4851,
        bypass_dst: vec![net("10.0.0.0/8"), net("192.0.2.1/32"), net("fc00::/7")],
        bypass_src: vec![net("192.168.1.50/32"), net("2001:db8:50::/64")],
        redirect,
        udp: Some(crate::model::udp_plan::UdpRedirect {
            port: 4852,
            fwmark: 0x4d42,
            rules: vec![crate::config::udp::UdpRule {
                ports: Some((443, 443)),
                prefix: None,
                action: crate::config::udp::UdpAction::Block,
                mode: Default::default(),
            }],
            default: crate::config::udp::UdpAction::Bond,
        }),
        bypass_names: false,
    }
}

/// `UPDATE_GOLDEN=1` rewrites the files from the current rendering.
#[test]
fn render_matches_golden_files() {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/nft/testdata");
        std::fs::write(format!("{dir}/redirect.nft"), render(&golden_spec(true))).expect("write");
        std::fs::write(format!("{dir}/failopen.nft"), render(&golden_spec(false))).expect("write");
    }
    assert_eq!(
        render(&golden_spec(true)),
        include_str!("../testdata/redirect.nft")
    );
    assert_eq!(
        render(&golden_spec(false)),
        include_str!("../testdata/failopen.nft")
    );
}

#[test]
fn validate_rejects_what_the_kernel_or_nft_would() {
    assert!(validate(&golden_spec(true)).is_ok());
    let bad_table = ["", "1abc", "my table", "a\"b"];
    for table in bad_table {
        let spec = RedirectSpec {
            table: table.into(),
            ..golden_spec(true)
        };
        assert!(
            matches!(validate(&spec), Err(NftError::InvalidSpec { .. })),
            "{table:?}"
        );
    }
    let bad_if = ["", "sixteen-chars-xx", "a b", "a/b", "a\"b", "..", "eth*"];
    for name in bad_if {
        let spec = RedirectSpec {
            lan_interfaces: vec![name.into()],
            ..golden_spec(true)
        };
        assert!(
            matches!(validate(&spec), Err(NftError::InvalidSpec { .. })),
            "{name:?}"
        );
    }
    let spec = RedirectSpec {
        port: 0,
        ..golden_spec(true)
    };
    assert!(validate(&spec).is_err());
}

#[test]
#[ignore = "needs root, ip and nft"]
fn create_lists_as_rendered_and_apply_toggles_redirect() {
    require_root_and_nft();
    let ns = NetNs::new();
    let list = || ns.ok(&["nft", "list", "table", "inet", "mpbond"]);
    let mut table = ns
        .run(|| NftTable::create(&golden_spec(true)))
        .expect("create");
    let listing = list();
    assert!(listing.contains("flags owner"), "{listing}");
    assert_eq!(
        normalize(&listing),
        normalize(&render(&golden_spec(true))),
        "{listing}"
    );

    table.apply(&golden_spec(false)).expect("apply fail-open");
    let listing = list();
    assert!(!listing.contains("redirect to"), "{listing}");
    assert_eq!(
        normalize(&listing),
        normalize(&render(&golden_spec(false))),
        "{listing}"
    );

    table.apply(&golden_spec(true)).expect("apply redirect");
    assert_eq!(normalize(&list()), normalize(&render(&golden_spec(true))));

    // Changing the spec's lists replaces the rules, not appends to them.
    let smaller = RedirectSpec {
        lan_interfaces: vec!["lan9".into()],
        bypass_src: vec![],
        ..golden_spec(true)
    };
    table.apply(&smaller).expect("apply smaller");
    assert_eq!(normalize(&list()), normalize(&render(&smaller)));
}

#[test]
#[ignore = "needs root, ip and nft"]
fn the_table_goes_with_its_socket() {
    require_root_and_nft();
    let ns = NetNs::new();
    let has_table = || ns.tables().contains("table inet mpbond");

    let table = ns
        .run(|| NftTable::create(&golden_spec(true)))
        .expect("create");
    assert!(has_table());
    drop(table);
    assert!(
        wait_until(Duration::from_secs(5), || !has_table()),
        "table outlived its socket"
    );

    let table = ns
        .run(|| NftTable::create(&golden_spec(false)))
        .expect("create again");
    assert!(has_table());
    table.remove().expect("remove");
    assert!(!has_table());
}

#[test]
#[ignore = "needs root, ip and nft"]
fn a_stale_plain_table_is_replaced() {
    require_root_and_nft();
    let ns = NetNs::new();
    ns.ok(&["nft", "add", "table", "inet", "mpbond"]);
    ns.ok(&["nft", "add", "chain", "inet", "mpbond", "junk"]);
    let _table = ns
        .run(|| NftTable::create(&golden_spec(true)))
        .expect("create over stale");
    let listing = ns.ok(&["nft", "list", "table", "inet", "mpbond"]);
    assert!(
        listing.contains("flags owner") && !listing.contains("junk"),
        "{listing}"
    );
}

#[test]
#[ignore = "needs root, ip and nft"]
fn a_second_agent_is_refused() {
    require_root_and_nft();
    let ns = NetNs::new();
    let _first = ns
        .run(|| NftTable::create(&golden_spec(true)))
        .expect("first create");
    let err = ns
        .run(|| NftTable::create(&golden_spec(true)))
        .expect_err("second create");
    assert!(matches!(err, NftError::Owned { .. }), "{err:?}");
    assert!(
        err.to_string().contains("is another mpbond-agent running?"),
        "{err}"
    );
    assert_eq!(err.errno(), Some(libc::EPERM));
}

#[test]
#[ignore = "needs root, ip and nft"]
fn a_rejected_batch_names_its_message_and_applies_nothing() {
    require_root_and_nft();
    let ns = NetNs::new();
    let err = ns.run(|| {
        let mut socket = Socket::open().expect("socket");
        let mut batch = batch::create(&golden_spec(true));
        // A failing message at the end aborts the whole transaction.
        for msg in batch::delete_table("no_such_table").into_messages() {
            batch.push(msg);
        }
        socket.execute(&batch).expect_err("batch must fail")
    });
    match &err {
        NftError::Rejected { message, .. } => {
            assert_eq!(message, "DELTABLE table inet no_such_table")
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(err.errno(), Some(libc::ENOENT));
    assert!(
        !ns.tables().contains("mpbond"),
        "aborted batch left a table"
    );
}

#[test]
#[ignore = "needs root, ip and nft"]
fn a_large_spec_fits_in_one_batch() {
    require_root_and_nft();
    let ns = NetNs::new();
    let v4 = (0..1500u32).map(|i| ipnet::Ipv4Net::new((0x0a00_0000 + (i << 8)).into(), 24));
    let v6 =
        (0..1500u16).map(|i| ipnet::Ipv6Net::new([0x2001, 0xdb8, i, 0, 0, 0, 0, 0].into(), 48));
    let mut bypass_dst: Vec<ipnet::IpNet> = v4.map(|n| n.expect("v4 net").into()).collect();
    bypass_dst.extend(v6.map(|n| ipnet::IpNet::from(n.expect("v6 net"))));
    let spec = RedirectSpec {
        bypass_dst,
        udp: None,
        ..golden_spec(true)
    };
    let mut table = ns.run(|| NftTable::create(&spec)).expect("create large");
    table.apply(&spec).expect("apply large");
    let listing = ns.ok(&["nft", "list", "table", "inet", "mpbond"]);
    assert_eq!(
        listing.matches(" return").count(),
        3002,
        "bypass rules missing"
    );
}

/// The path of `child_holds_table_until_killed` for the test harness's filter.
fn child_test_name() -> String {
    let path = module_path!();
    let path = path.split_once("::").map_or(path, |(_, rest)| rest);
    format!("{path}::child_holds_table_until_killed")
}

const CHILD_ENV: &str = "MPBHE_NFT_CHILD_NETNS";
const CHILD_READY: &str = "MPBHE-CHILD-READY";

/// Not a test on its own: the body of the child process that `sigkill_leaves_no_table`
/// starts. It creates the table in the namespace named by `CHILD_ENV` and waits on stdin.
#[test]
fn child_holds_table_until_killed() {
    let Ok(name) = std::env::var(CHILD_ENV) else {
        return;
    };
    let table = std::thread::scope(|s| {
        s.spawn(|| {
            netns::enter(&name).expect("child setns");
            NftTable::create(&golden_spec(true)).expect("child create")
        })
        .join()
        .expect("child thread")
    });
    println!("{CHILD_READY}");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line); // until killed, or the parent goes away
    drop(table);
}

#[test]
#[ignore = "needs root, ip and nft"]
fn sigkill_leaves_no_table() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    require_root_and_nft();
    let ns = NetNs::new();
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            child_test_name().as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, ns.name())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains(CHILD_READY) => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        panic!("child never created its table");
    }
    assert!(
        ns.tables().contains("table inet mpbond"),
        "child's table missing"
    );
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap child");
    assert!(!status.success());
    let gone = wait_until(Duration::from_secs(5), || !ns.tables().contains("mpbond"));
    assert!(gone, "table survived SIGKILL: {}", ns.tables());
}

#[test]
fn a_refused_udp_interception_is_left_out_and_tcp_kept() {
    let spec = golden_spec(true);
    let plain = super::without_udp(&spec).expect("the golden spec intercepts UDP");
    assert_eq!(plain.udp, None);
    assert_eq!(
        RedirectSpec {
            udp: spec.udp.clone(),
            ..plain.clone()
        },
        spec,
        "only the UDP part goes"
    );
    assert!(super::without_udp(&plain).is_none());
    let refused = |errno| NftError::Rejected {
        message: "NEWRULE".into(),
        detail: None,
        source: std::io::Error::from_raw_os_error(errno),
    };
    assert!(super::udp_may_be_the_cause(&refused(libc::ENOENT)));
    assert!(super::udp_may_be_the_cause(&refused(libc::EOPNOTSUPP)));
    assert!(!super::udp_may_be_the_cause(&refused(libc::EINVAL)));
    let owned = NftError::Owned {
        table: "mpbond".into(),
        message: "NEWRULE".into(),
        source: std::io::Error::from_raw_os_error(libc::EPERM),
    };
    assert!(!super::udp_may_be_the_cause(&owned));
}
