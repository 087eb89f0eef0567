//! Several concentrators with failover (issue 12 part 1): an agent configured with two
//! (priority 1 and 2, each in its own VPS namespace). Stop the first: new downloads go
//! through the second, and the time from the kill to the first download through the
//! second is printed. Restart it: new downloads come back to the first. Stop both: the
//! agent fails open and the download goes direct from the WAN address. The status shows
//! both concentrators with their states all along.
//!
//! Which way a download went is read on the server: an nft counter per source address
//! counts the connections' SYNs (VPS 1, VPS 2, anything else = the router's NAT).

mod common;

use std::time::{Duration, Instant};

use common::{at, wait_redirect};
use mpbond_tests::second_vps::VPS2_V4;
use mpbond_tests::topology::{SERVER_V4, VPS_V4};
use mpbond_tests::{proc, Fetch, Node, TestBed};

/// Where the server saw a download's connection come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Vps1,
    Vps2,
    Direct,
}

const COUNTERS: &str = "table inet mc_src {\n\
    \tchain input {\n\
    \t\ttype filter hook input priority 0; policy accept;\n\
    \t\ttcp dport 5001 tcp flags & (syn | ack) == syn ip saddr 192.0.2.1 counter comment \"vps1\"\n\
    \t\ttcp dport 5001 tcp flags & (syn | ack) == syn ip saddr 192.0.2.2 counter comment \"vps2\"\n\
    \t\ttcp dport 5001 tcp flags & (syn | ack) == syn counter comment \"other\"\n\
    \t}\n\
    }\n";

/// SYN counts at the server: (VPS 1, VPS 2, all).
fn syns(bed: &TestBed) -> (u64, u64, u64) {
    let text = bed
        .exec(Node::Server, "nft list table inet mc_src")
        .expect("counters");
    let count = |tag: &str| {
        text.lines()
            .find(|l| l.contains(&format!("comment \"{tag}\"")))
            .and_then(|l| l.split("packets ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {tag} counter in {text}"))
    };
    (count("vps1"), count("vps2"), count("other"))
}

/// One small download from the LAN: whether it completed, and where it came from.
fn download(bed: &TestBed) -> (bool, Via) {
    let before = syns(bed);
    let fetch = Fetch::get(at(SERVER_V4), 200_000).timeout(Duration::from_secs(10));
    let ok = bed.fetch(Node::Lan, &fetch).is_ok_and(|r| r.ok);
    let after = syns(bed);
    let via = if after.0 > before.0 {
        Via::Vps1
    } else if after.1 > before.1 {
        Via::Vps2
    } else {
        Via::Direct
    };
    (ok, via)
}

/// Download until one completes through `want` (or `limit` passes); the time it took.
fn download_until(bed: &TestBed, want: Via, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if download(bed) == (true, want) {
            return Some(start.elapsed());
        }
    }
    None
}

/// The concentrators' states in the agent's status, by name.
fn states(bed: &TestBed) -> Vec<(String, String)> {
    let status = bed.agent_status().expect("agent status");
    status["concentrators"]
        .as_array()
        .expect("a concentrators list")
        .iter()
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (field("name"), field("state"))
        })
        .collect()
}

fn wait_states(bed: &TestBed, want: &[(&str, &str)], limit: Duration) -> bool {
    proc::wait_until(limit, || {
        let got = states(bed);
        got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|((n, s), (wn, ws))| n == wn && s == ws)
    })
}

#[test]
#[ignore = "needs root and netns"]
fn new_connections_fail_over_to_the_second_concentrator_and_come_back() {
    let bed = TestBed::builder().wans(&[40, 60]).build();
    let vps2 = bed.add_second_vps().expect("second VPS");
    let cfg = bed.concentrator_config();
    let conc1 = bed.start_concentrator(&cfg).expect("concentrator 1");
    let conc2 = bed
        .start_concentrator_in(&vps2, &cfg)
        .expect("concentrator 2");
    let _server = bed
        .serve(Node::Server, at(SERVER_V4), false)
        .expect("server");
    bed.nft(Node::Server, COUNTERS).expect("counters");

    let agent_cfg = bed.agent_config();
    let single = agent_cfg.to_toml();
    assert!(single.contains("[concentrator]\n"), "{single}");
    let second = format!(
        "\n[[concentrators]]\nname = \"vps2\"\npriority = 2\nhost = \"{VPS2_V4}\"\n\
         client_id = {:?}\nkey = {:?}\n",
        agent_cfg.client_id, agent_cfg.key
    );
    let toml = single
        .replacen(
            "[concentrator]\n",
            "[[concentrators]]\nname = \"vps1\"\npriority = 1\n",
            1,
        )
        .replacen("\n[proxy]\n", &format!("{second}\n[proxy]\n"), 1);
    assert!(toml.contains(&format!("host = \"{VPS_V4}\"")), "{toml}");
    let mut agent = bed.start_agent_toml(&toml).expect("agent starts");

    assert!(wait_redirect(&bed, true, Duration::from_secs(10)));
    let both_up = [("vps1", "active"), ("vps2", "standby")];
    assert!(
        wait_states(&bed, &both_up, Duration::from_secs(10)),
        "status: {:?}",
        states(&bed)
    );
    assert_eq!(download(&bed), (true, Via::Vps1), "the preferred one first");

    // Stop the first: new downloads go through the second.
    conc1.kill();
    let took = download_until(&bed, Via::Vps2, Duration::from_secs(15));
    let took = took.unwrap_or_else(|| panic!("no download via VPS 2:\n{}", agent.log_tail(30)));
    // `download_until` started right after the kill: `took` is from the kill.
    println!(
        "failover: first download through the second concentrator {} ms after the kill",
        took.as_millis()
    );
    assert!(
        wait_states(
            &bed,
            &[("vps1", "down"), ("vps2", "active")],
            Duration::from_secs(5)
        ),
        "status: {:?}",
        states(&bed)
    );
    assert!(
        wait_redirect(&bed, true, Duration::from_secs(1)),
        "no fail open"
    );

    // Restart it: after the hold-down, new downloads come back to it.
    let conc1 = bed.start_concentrator(&cfg).expect("concentrator 1 again");
    let back = download_until(&bed, Via::Vps1, Duration::from_secs(25));
    let back =
        back.unwrap_or_else(|| panic!("no download back via VPS 1:\n{}", agent.log_tail(30)));
    println!(
        "return: first download through the first concentrator {} ms after its restart",
        back.as_millis()
    );
    assert!(
        back >= Duration::from_secs(2),
        "hysteresis: not back before three good probes ({back:?})"
    );
    assert!(
        wait_states(&bed, &both_up, Duration::from_secs(5)),
        "status: {:?}",
        states(&bed)
    );

    // Stop both: fail open, the download goes direct.
    conc1.kill();
    conc2.kill();
    assert!(
        wait_redirect(&bed, false, Duration::from_secs(15)),
        "no fail open:\n{}",
        agent.log_tail(30)
    );
    assert_eq!(download(&bed), (true, Via::Direct), "fail open goes direct");
    assert!(
        wait_states(
            &bed,
            &[("vps1", "down"), ("vps2", "down")],
            Duration::from_secs(5)
        ),
        "status: {:?}",
        states(&bed)
    );
    assert!(agent.is_running());
}
