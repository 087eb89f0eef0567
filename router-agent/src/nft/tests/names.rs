//! Bypass by name in a kernel (root only): the companion table lists as rendered, another
//! process (here `nft`, on the machine dnsmasq) can add addresses to its sets, a reload
//! keeps them, and the companion goes with `remove` or when the names leave the config.

use super::netns::{normalize, require_root_and_nft, NetNs};
use super::*;
use crate::nft::name_sets::render_companion;

fn names_spec() -> RedirectSpec {
    RedirectSpec {
        bypass_names: true,
        ..golden_spec(true)
    }
}

#[test]
#[ignore = "needs root, ip and nft"]
fn the_name_sets_are_filled_from_outside_and_survive_a_reload() {
    require_root_and_nft();
    let ns = NetNs::new();
    let list = |t: &str| ns.ok(&["nft", "list", "table", "inet", t]);
    let mut table = ns.run(|| NftTable::create(&names_spec())).expect("create");
    assert_eq!(
        normalize(&list("mpbond")),
        normalize(&render(&names_spec()))
    );
    assert_eq!(
        normalize(&list("mpbond_names")),
        normalize(&render_companion("mpbond"))
    );

    // What dnsmasq's nftset does: another socket adds elements.
    ns.ok(&[
        "nft",
        "add",
        "element",
        "inet",
        "mpbond_names",
        "bypass4",
        "{ 198.51.100.7 }",
    ]);
    ns.ok(&[
        "nft",
        "add",
        "element",
        "inet",
        "mpbond_names",
        "bypass6",
        "{ 2001:db8::7 }",
    ]);

    let counts = ns
        .run(|| crate::nft::count_name_sets("mpbond"))
        .expect("count");
    assert_eq!(counts, (1, 1));

    // A reload (also to fail open and back) keeps them.
    table
        .apply(&RedirectSpec {
            redirect: false,
            ..names_spec()
        })
        .expect("apply");
    table.apply(&names_spec()).expect("apply");
    let companion = list("mpbond_names");
    assert!(companion.contains("198.51.100.7"), "{companion}");
    assert!(companion.contains("2001:db8::7"), "{companion}");
    assert_eq!(
        normalize(&list("mpbond")),
        normalize(&render(&names_spec()))
    );

    // A new agent finds them too (the old one was killed: its owner table went away).
    drop(table);
    let mut table = ns
        .run(|| NftTable::create(&names_spec()))
        .expect("re-create");
    assert!(list("mpbond_names").contains("198.51.100.7"));

    // Without names the companion goes; with them again it comes back, empty.
    table.apply(&golden_spec(true)).expect("names off");
    assert!(!ns.tables().contains("mpbond_names"), "{}", ns.tables());
    table.apply(&names_spec()).expect("names on");
    assert!(ns.tables().contains("mpbond_names"));
    table.remove().expect("remove");
    let tables = ns.tables();
    assert!(!tables.contains("mpbond"), "{tables}");
}
