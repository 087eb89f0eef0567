//! The kernel's SNMP counters of the calling thread's network namespace
//! (`/proc/thread-self/net/netstat`), for tests that check what the kernel did: a Fast
//! Open cookie asked for, a SYN's data accepted, an MP_CAPABLE SYN received. Call it from
//! a thread inside the namespace ([`crate::Netns::run`]).

use std::collections::HashMap;

/// Every counter, keyed `"<group>.<name>"`: `"TcpExt.TCPFastOpenPassive"`,
/// `"MPTcpExt.MPCapableSYNRX"` and so on.
pub fn counters() -> HashMap<String, u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").expect("read netstat");
    parse(&text)
}

/// How much the counter `key` grew from `before` to `after` (a missing one counts as 0).
pub fn grown(before: &HashMap<String, u64>, after: &HashMap<String, u64>, key: &str) -> u64 {
    let get = |m: &HashMap<String, u64>| m.get(key).copied().unwrap_or(0);
    get(after).saturating_sub(get(before))
}

/// The file's pairs of lines: a group's names, then its values, each led by `Group:`.
fn parse(text: &str) -> HashMap<String, u64> {
    let lines: Vec<&str> = text.lines().collect();
    let mut counters = HashMap::new();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let mut names = names.split_whitespace();
        let Some(group) = names.next().map(|g| g.trim_end_matches(':')) else {
            continue;
        };
        for (name, value) in names.zip(values.split_whitespace().skip(1)) {
            counters.insert(format!("{group}.{name}"), value.parse().unwrap_or(0));
        }
    }
    counters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_names_pair_with_their_values() {
        let text = "TcpExt: SyncookiesSent TCPFastOpenPassive\nTcpExt: 0 3\n\
                    MPTcpExt: MPCapableSYNRX\nMPTcpExt: 7\n";
        let before = parse(text);
        assert_eq!(before["TcpExt.TCPFastOpenPassive"], 3);
        assert_eq!(before["MPTcpExt.MPCapableSYNRX"], 7);
        let after = parse(&text.replace(": 0 3", ": 0 5"));
        assert_eq!(grown(&before, &after, "TcpExt.TCPFastOpenPassive"), 2);
        assert_eq!(grown(&before, &after, "TcpExt.NoSuchCounter"), 0);
    }
}
