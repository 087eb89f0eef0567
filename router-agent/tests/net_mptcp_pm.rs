//! The mptcp_pm genetlink client against a real kernel, in a namespace of its own.

mod net_ns;

use std::time::Duration;

use mpbond_agent::model::netops::{Endpoint, Limits};
use mpbond_agent::net::mptcp_pm::PmHandle;
use net_ns::{ifindex, Netns};

const LIMIT: Duration = Duration::from_secs(20);

#[test]
#[ignore = "needs root and netns"]
fn endpoints_add_dump_backup_delete_flush() {
    let ns = Netns::new();
    ns.veth("wan1", "isp1");
    ns.ip(&["addr", "add", "10.200.1.2/24", "dev", "wan1"]);
    ns.ip(&["addr", "add", "2001:db8:201::2/64", "dev", "wan1", "nodad"]);
    let shown = ns.run(LIMIT, || async {
        let pm = PmHandle::connect().await.expect("mptcp_pm family");
        assert!(pm.family().events_group.is_some(), "events group resolved");
        pm.flush_endpoints().execute().await.expect("flush");
        let wan1 = ifindex("wan1");
        let v4 = Endpoint {
            id: 3,
            addr: "10.200.1.2".parse().expect("ip"),
            ifindex: wan1,
            backup: false,
        };
        let v6 = Endpoint {
            id: 4,
            addr: "2001:db8:201::2".parse().expect("ip"),
            ifindex: wan1,
            backup: true,
        };
        pm.add_endpoint(&v4).execute().await.expect("add v4");
        pm.add_endpoint(&v6).execute().await.expect("add v6");
        let mut dumped = pm.dump_endpoints().await.expect("dump");
        dumped.sort();
        assert_eq!(dumped, vec![v4.clone(), v6.clone()]);

        // A duplicate id is an error that names the operation.
        let err = pm.add_endpoint(&v4).execute().await.expect_err("duplicate");
        assert!(err.to_string().contains("adding MPTCP endpoint 3"), "{err}");

        pm.set_backup(3, true).execute().await.expect("backup on");
        pm.set_backup(4, false).execute().await.expect("backup off");
        let mut dumped = pm.dump_endpoints().await.expect("dump");
        dumped.sort();
        let flipped: Vec<bool> = dumped.iter().map(|e| e.backup).collect();
        assert_eq!(flipped, [true, false]);
        let shown = std::process::Command::new("ip")
            .args(["mptcp", "endpoint", "show"])
            .output()
            .expect("ip mptcp");
        let shown = String::from_utf8_lossy(&shown.stdout).into_owned();

        pm.del_endpoint(3).execute().await.expect("del");
        let err = pm.del_endpoint(3).execute().await.expect_err("gone");
        assert!(
            err.to_string().contains("deleting MPTCP endpoint 3"),
            "{err}"
        );
        let left = pm.dump_endpoints().await.expect("dump");
        assert_eq!(left.iter().map(|e| e.id).collect::<Vec<_>>(), [4]);

        pm.flush_endpoints().execute().await.expect("flush");
        assert!(pm.dump_endpoints().await.expect("dump").is_empty());
        shown
    });
    // `ip mptcp` (run from the namespace thread) saw what we wrote.
    assert!(
        shown.contains("10.200.1.2 id 3 subflow backup dev wan1"),
        "{shown}"
    );
}

#[test]
#[ignore = "needs root and netns"]
fn limits_set_and_get() {
    let ns = Netns::new();
    ns.run(LIMIT, || async {
        let pm = PmHandle::connect().await.expect("mptcp_pm family");
        for want in [
            Limits {
                subflows: 8,
                add_addr_accepted: 2,
            },
            Limits {
                subflows: 3,
                add_addr_accepted: 0,
            },
        ] {
            pm.set_limits(want).execute().await.expect("set limits");
            assert_eq!(pm.get_limits().await.expect("get limits"), want);
        }
        let too_many = Limits {
            subflows: 1000,
            add_addr_accepted: 0,
        };
        let err = pm.set_limits(too_many).execute().await.expect_err("EINVAL");
        assert!(err.to_string().contains("setting MPTCP limits"), "{err}");
    });
    let shown = ns.ip_out(&["mptcp", "limits", "show"]);
    assert!(shown.contains("subflows 3"), "{shown}");
}
