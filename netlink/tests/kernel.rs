//! The codec against a real kernel: each test runs on a thread of its own that unshares a
//! fresh network namespace (gone with the thread), so nothing outside it changes.

use std::future::Future;

use mpbond_netlink::mptcp::{Endpoint, Limits};
use mpbond_netlink::rtnl::{self, LinkMsg, AF_INET};
use mpbond_netlink::{protocol, AsyncSocket, PmClient, Socket};

/// Run `f` on a current-thread runtime, on a new thread in a new network namespace.
fn in_new_netns<T: Send + 'static, F: Future<Output = T> + 'static>(f: fn() -> F) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread, which nothing else uses.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) needs root: {}",
            std::io::Error::last_os_error()
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        runtime.block_on(f())
    })
    .join()
    .expect("namespace thread")
}

#[test]
#[ignore = "needs root and netns"]
fn a_fresh_namespace_has_only_lo() {
    let links = in_new_netns(|| async {
        let mut sock = AsyncSocket::open(protocol::ROUTE).expect("rtnetlink socket");
        let replies = sock.request(&rtnl::dump_links()).await.expect("dump");
        let links: Vec<LinkMsg> = replies
            .iter()
            .filter_map(|r| LinkMsg::parse(&r.payload))
            .collect();
        // A blocking socket gives the same answer.
        let mut blocking = Socket::open(protocol::ROUTE).expect("socket");
        blocking
            .set_recv_timeout(std::time::Duration::from_secs(5))
            .expect("timeout");
        let again = blocking.request(&rtnl::dump_links()).expect("dump");
        assert_eq!(again.len(), replies.len());
        links
    });
    let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["lo"]);
}

#[test]
#[ignore = "needs root and netns"]
fn kernel_errors_carry_the_errno() {
    let errno = in_new_netns(|| async {
        let mut sock = AsyncSocket::open(protocol::ROUTE).expect("rtnetlink socket");
        // Deleting a rule that does not exist.
        let rule = rtnl::RuleMsg {
            family: AF_INET,
            table: 4242,
            action: rtnl::FR_ACT_TO_TBL,
            priority: Some(4242),
            ..rtnl::RuleMsg::default()
        };
        let err = sock
            .request(&rtnl::del_rule(&rule))
            .await
            .expect_err("ENOENT");
        err.errno()
    });
    assert_eq!(errno, Some(libc::ENOENT));
}

#[test]
#[ignore = "needs root and netns"]
fn path_manager_limits_and_endpoints() {
    let (limits, endpoints, left) = in_new_netns(|| async {
        let pm = PmClient::connect().await.expect("mptcp_pm family");
        assert!(pm.events_group().is_some(), "events group resolved");
        let _events = pm.events().expect("subscribe");
        let want = Limits {
            subflows: 4,
            add_addr_accepted: 2,
        };
        pm.set_limits(want).await.expect("set limits");
        let limits = pm.get_limits().await.expect("get limits");
        let ep = Endpoint {
            id: 7,
            addr: "127.0.0.1".parse().expect("ip"),
            ifindex: 1,
            backup: true,
        };
        pm.add_endpoint(&ep).await.expect("add");
        let err = pm.add_endpoint(&ep).await.expect_err("a duplicate id");
        assert!(err.errno().is_some(), "{err}");
        let endpoints = pm.dump_endpoints().await.expect("dump");
        pm.set_backup(7, false).await.expect("backup off");
        pm.del_endpoint(7).await.expect("del");
        let left = pm.dump_endpoints().await.expect("dump");
        (limits, endpoints, left)
    });
    assert_eq!(
        limits,
        Limits {
            subflows: 4,
            add_addr_accepted: 2
        }
    );
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    assert_eq!((endpoints[0].id, endpoints[0].backup), (7, true));
    assert!(left.is_empty(), "{left:?}");
}
