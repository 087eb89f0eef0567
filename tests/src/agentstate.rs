//! What the agent's control plane shows: its status document and the kernel
//! state it owns in the router.
//!
//! [`TestBed::owned_state`] dumps routes, rules, MPTCP endpoints and nft
//! tables in the router and keeps what falls in the agent's default ranges
//! ([`OWNED_TABLES`], [`OWNED_PRIORITIES`], [`OWNED_ENDPOINT_IDS`],
//! [`OWNED_PROTOCOL`], nft tables named `mpbond*`). [`TestBed::agent_status`]
//! runs `mpbond-agent status --json` in the router namespace.
//! [`TestBed::subflows_on`] counts the MPTCP subflows a WAN carries, from `ss`.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use crate::bed::TestBed;
use crate::daemons::bin_path;
use crate::error::BedError;
use crate::proc;
use crate::topology::{Node, VPS_V4};

/// Routing tables the agent owns by default.
pub const OWNED_TABLES: RangeInclusive<u32> = 2000..=2031;
/// Rule priorities the agent owns by default.
pub const OWNED_PRIORITIES: RangeInclusive<u32> = 2000..=2063;
/// MPTCP endpoint ids the agent owns.
pub const OWNED_ENDPOINT_IDS: RangeInclusive<u32> = 1..=8;
/// The agent's route protocol.
pub const OWNED_PROTOCOL: u32 = 93;

/// The agent's share of the router's kernel state, one `ip`/`nft` line each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedState {
    /// Routes in an owned table or with the owned protocol (v4 and v6).
    pub routes: Vec<String>,
    /// Rules with an owned priority (v4 and v6).
    pub rules: Vec<String>,
    /// MPTCP endpoints with an owned id.
    pub endpoints: Vec<String>,
    /// nft tables named `mpbond*`.
    pub nft_tables: Vec<String>,
}

impl OwnedState {
    /// Nothing of the agent's is left.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
            && self.rules.is_empty()
            && self.endpoints.is_empty()
            && self.nft_tables.is_empty()
    }

    /// No routes, rules or endpoints (nft tables aside).
    pub fn no_routing(&self) -> bool {
        self.routes.is_empty() && self.rules.is_empty() && self.endpoints.is_empty()
    }

    /// Routes, rules and endpoints whose line names `word` (an address or a device).
    pub fn mentioning(&self, word: &str) -> Vec<&str> {
        let hit = |l: &&String| l.split_whitespace().any(|w| w == word);
        self.routes
            .iter()
            .chain(&self.rules)
            .chain(&self.endpoints)
            .filter(hit)
            .map(String::as_str)
            .collect()
    }

    /// The rules whose source is `addr`.
    pub fn rules_from(&self, addr: IpAddr) -> Vec<&str> {
        let from = addr.to_string();
        self.rules
            .iter()
            .filter(|l| {
                l.split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| w == ["from", &from])
            })
            .map(String::as_str)
            .collect()
    }

    /// The endpoints on `addr`.
    pub fn endpoints_on(&self, addr: IpAddr) -> Vec<&str> {
        let a = addr.to_string();
        self.endpoints
            .iter()
            .filter(|l| l.split_whitespace().next() == Some(a.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// The owned routes that go out of `dev`.
    pub fn routes_via(&self, dev: &str) -> Vec<&str> {
        let words = |l: &String| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        self.routes
            .iter()
            .filter(|l| words(l).windows(2).any(|w| w[0] == "dev" && w[1] == dev))
            .map(String::as_str)
            .collect()
    }
}

impl fmt::Display for OwnedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (what, lines) in [
            ("routes", &self.routes),
            ("rules", &self.rules),
            ("endpoints", &self.endpoints),
            ("nft", &self.nft_tables),
        ] {
            writeln!(f, "{what}:")?;
            for l in lines {
                writeln!(f, "  {l}")?;
            }
        }
        Ok(())
    }
}

/// The number after `key` in `line`'s words, if any.
fn number_after(line: &str, key: &str) -> Option<u32> {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            return words.next().and_then(|n| n.parse().ok());
        }
    }
    None
}

/// Whether an `ip route show table all` line is the agent's.
pub fn is_owned_route(line: &str) -> bool {
    number_after(line, "table").is_some_and(|t| OWNED_TABLES.contains(&t))
        || number_after(line, "proto") == Some(OWNED_PROTOCOL)
}

/// Whether an `ip rule show` line (`PRIO:\tfrom ...`) is the agent's.
pub fn is_owned_rule(line: &str) -> bool {
    line.split(':')
        .next()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| OWNED_PRIORITIES.contains(&p))
}

/// Whether an `ip mptcp endpoint show` line is the agent's.
pub fn is_owned_endpoint(line: &str) -> bool {
    number_after(line, "id").is_some_and(|id| OWNED_ENDPOINT_IDS.contains(&id))
}

impl TestBed {
    /// The agent's routes, rules, endpoints and nft tables in the router now.
    pub fn owned_state(&self) -> Result<OwnedState, BedError> {
        let lines = |cmd: &str, keep: fn(&str) -> bool| -> Result<Vec<String>, BedError> {
            Ok(self
                .exec(Node::Router, cmd)?
                .lines()
                .filter(|l| keep(l))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect())
        };
        let mut routes = lines("ip -4 route show table all", is_owned_route)?;
        routes.extend(lines("ip -6 route show table all", is_owned_route)?);
        let mut rules = lines("ip -4 rule show", is_owned_rule)?;
        rules.extend(lines("ip -6 rule show", is_owned_rule)?);
        Ok(OwnedState {
            routes,
            rules,
            endpoints: lines("ip mptcp endpoint show", is_owned_endpoint)?,
            nft_tables: lines("nft list tables", |l| {
                l.split_whitespace()
                    .last()
                    .is_some_and(|name| name.starts_with("mpbond"))
            })?,
        })
    }

    /// `mpbond-agent status --json` on the bed's control socket, parsed.
    pub fn agent_status(&self) -> Result<serde_json::Value, BedError> {
        self.agent_status_at(&self.agent_socket())
    }

    /// `mpbond-agent status --json --socket <socket>`, parsed.
    pub fn agent_status_at(&self, socket: &Path) -> Result<serde_json::Value, BedError> {
        let bin = bin_path("mpbond-agent")?;
        let mut cmd = self.netns(Node::Router)?.command(&bin.to_string_lossy());
        cmd.args(["status", "--json", "--socket"]).arg(socket);
        let line = proc::describe(&cmd);
        let out = proc::run(cmd, None, Duration::from_secs(10))?;
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&text).map_err(|source| BedError::BadOutput {
            cmd: line,
            output: text.into_owned(),
            source,
        })
    }

    /// MPTCP subflows from `wan<i>`'s current IPv4 address to the VPS
    /// (established TCP sockets with the `mptcp` ULP, from `ss -tni`).
    pub fn subflows_on(&self, i: usize) -> usize {
        let cmd = format!(
            "ss -Htni state established src {} dst {VPS_V4}",
            self.wan_v4(i)
        );
        self.exec(Node::Router, &cmd)
            .map(|out| count_mptcp_subflows(&out))
            .unwrap_or(0)
    }
}

/// Count the sockets of `ss -Htni` output whose info mentions the mptcp ULP.
/// A socket is a line that starts in column 0; its info lines are indented.
pub fn count_mptcp_subflows(ss: &str) -> usize {
    let mut count = 0;
    let mut current = false;
    for line in ss.lines() {
        if !line.starts_with(char::is_whitespace) {
            if current {
                count += 1;
            }
            current = false;
        }
        if line.contains("tcp-ulp-mptcp") {
            current = true;
        }
    }
    count + usize::from(current)
}

/// `wans[]` entry `name` of a status document.
pub fn status_wan<'a>(doc: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    doc.get("wans")?
        .as_array()?
        .iter()
        .find(|w| w.get("name").and_then(|n| n.as_str()) == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_filters_follow_the_default_ranges() {
        assert!(is_owned_route(
            "default via 10.200.1.1 dev wan1 table 2000 proto 93 metric 1"
        ));
        assert!(is_owned_route("10.200.1.0/24 dev wan1 proto 93 scope link"));
        assert!(!is_owned_route("default via 10.200.1.1 dev wan1 table 101"));
        assert!(!is_owned_route(
            "local 10.200.1.2 dev wan1 table local proto kernel"
        ));
        assert!(is_owned_rule(
            "2000:\tfrom 10.200.1.2 lookup 2000 proto static"
        ));
        assert!(!is_owned_rule("32765:\tfrom 10.200.1.2 lookup 101"));
        assert!(!is_owned_rule("0:\tfrom all lookup local"));
        assert!(is_owned_endpoint("10.200.1.2 id 1 subflow dev wan1 "));
        assert!(!is_owned_endpoint("10.200.1.2 id 21 subflow dev wan1 "));
    }

    #[test]
    fn state_queries_match_whole_words() {
        let s = OwnedState {
            routes: vec!["default via 10.200.2.1 dev wan2 table 2001 proto 93".into()],
            rules: vec!["2001: from 10.200.2.2 lookup 2001".into()],
            endpoints: vec!["10.200.2.2 id 2 subflow dev wan2".into()],
            nft_tables: Vec::new(),
        };
        let a: IpAddr = "10.200.2.2".parse().unwrap();
        assert_eq!(s.rules_from(a).len(), 1);
        assert_eq!(s.endpoints_on(a).len(), 1);
        assert_eq!(s.routes_via("wan2").len(), 1);
        assert!(s.routes_via("wan1").is_empty());
        assert_eq!(s.mentioning("wan2").len(), 2);
        assert!(s.mentioning("10.200.2.22").is_empty());
        assert!(!s.is_empty() && !s.no_routing());
    }

    #[test]
    fn subflows_are_counted_from_ss_info_lines() {
        let ss = "0 0 10.200.2.2:41000 192.0.2.1:4850\n\t cubic tcp-ulp-mptcp flags:J\n\
                  0 0 10.200.2.2:41001 192.0.2.1:4850\n\t cubic rto:204\n\
                  0 0 10.200.2.2:41002 192.0.2.1:4850\n\t tcp-ulp-mptcp flags:Jj\n";
        assert_eq!(count_mptcp_subflows(ss), 2);
        assert_eq!(count_mptcp_subflows(""), 0);
    }
}
