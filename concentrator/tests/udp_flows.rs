//! UDP flows through the real concentrator binary, in a namespace of its own, driven by
//! the independent Python client (`tests/independent/udp_client.py`: `struct`, `hmac`,
//! `socket`, written from docs/PROTOCOL.md): echoes both ways, policy, replay, bad tags,
//! the per-client flow limit, idle timeouts, unknown and malformed capsules, the two legs
//! of a protected flow.

mod common;
mod udp_bed;

use std::net::SocketAddr;

use udp_bed::{Bed, OTHER_KEY_HEX};

const OK: &str = "\"reply\": \"01012263\"";

/// `01 02 22 63 1e 01 CODE 00`: the error reply with `code`.
fn refused(code: u8) -> String {
    format!("\"reply\": \"010222631e01{code:02x}00\"")
}

fn assert_has(result: &str, want: &str, bed: &Bed) {
    assert!(
        result.contains(want),
        "want {want} in {result}\nconcentrator log:\n{}",
        bed.log()
    );
}

#[test]
#[ignore = "needs root, netns and python3"]
fn datagrams_of_every_size_are_echoed_both_ways() {
    let bed = Bed::start("udp-echo", "");
    let sizes = "[1, 2, 63, 64, 100, 512, 1200, 1400, 0, 16383, 65000, 1399]";
    let result = bed.client("echo", bed.echo.addr, &format!(", \"sizes\": {sizes}"));
    assert_has(&result, OK, &bed);
    assert_has(&result, &format!("\"echoed\": {sizes}"), &bed);
    bed.wait_metric("mpbond_udp_flows_total", 1);
    bed.wait_metric("mpbond_udp_flows_active", 0);
    let total: u64 = [1, 2, 63, 64, 100, 512, 1200, 1400, 0, 16383, 65000, 1399]
        .iter()
        .sum();
    assert_eq!(
        bed.metric("mpbond_udp_datagrams_total{direction=\"up\"}"),
        12
    );
    assert_eq!(
        bed.metric("mpbond_udp_datagrams_total{direction=\"down\"}"),
        12
    );
    assert_eq!(
        bed.metric("mpbond_udp_bytes_total{direction=\"up\"}"),
        total
    );
    assert_eq!(
        bed.metric("mpbond_udp_bytes_total{direction=\"down\"}"),
        total
    );
    assert_eq!(
        bed.metric("mpbond_bytes_total{client=\"home\",direction=\"up\"}"),
        total
    );
}

#[test]
#[ignore = "needs root, netns and python3"]
fn a_forbidden_destination_is_refused_with_32_and_counted() {
    let bed = Bed::start("udp-policy", "");
    let forbidden: SocketAddr = "10.1.2.3:443".parse().unwrap();
    let result = bed.client("reply", forbidden, "");
    assert_has(&result, &refused(32), &bed);
    assert_eq!(bed.metric("mpbond_policy_refusals_total"), 1);
    assert_eq!(bed.metric("mpbond_udp_drops_total{reason=\"policy\"}"), 1);
    assert_eq!(bed.metric("mpbond_udp_flows_total"), 0);
}

#[test]
#[ignore = "needs root, netns and python3"]
fn a_replayed_request_is_refused_by_the_replay_cache() {
    let bed = Bed::start("udp-replay", "");
    let result = bed.client("replay", bed.echo.addr, "");
    assert_has(&result, "\"first\": \"01012263\"", &bed);
    assert_has(&result, "\"again\": \"010222631e012000\"", &bed);
    assert_eq!(
        bed.metric("mpbond_auth_failures_total{reason=\"replay\"}"),
        1
    );
}

#[test]
#[ignore = "needs root, netns and python3"]
fn a_bad_tag_is_refused_and_counted() {
    let bed = Bed::start("udp-badtag", "");
    let result = bed.client("bad_tag", bed.echo.addr, "");
    assert_has(&result, &refused(32), &bed);
    assert_eq!(
        bed.metric("mpbond_auth_failures_total{reason=\"bad_tag\"}"),
        1
    );
    assert_eq!(bed.metric("mpbond_udp_flows_total"), 0);
}

#[test]
#[ignore = "needs root, netns and python3"]
fn a_udp_tlv_without_connect_is_unsupported() {
    let bed = Bed::start("udp-noconn", "");
    let result = bed.client("udp_without_connect", bed.echo.addr, "");
    assert_has(&result, &refused(2), &bed);
}

#[test]
#[ignore = "needs root, netns and python3"]
fn udp_disabled_refuses_with_2_like_a_concentrator_without_udp() {
    let bed = Bed::start("udp-off", "[udp]\nenabled = false\n");
    let result = bed.client("reply", bed.echo.addr, "");
    assert_has(&result, &refused(2), &bed);
    assert_eq!(bed.metric("mpbond_udp_flows_total"), 0);
}

#[test]
#[ignore = "needs root, netns and python3"]
fn a_flood_of_flows_hits_the_client_limit_and_nothing_else_breaks() {
    let bed = Bed::start("udp-flood", "[udp]\nmax_flows_per_client = 4\n");
    let extra =
        format!(", \"count\": 7, \"other_client\": \"work\", \"other_key\": \"{OTHER_KEY_HEX}\"");
    let result = bed.client("flood", bed.echo.addr, &extra);
    let ok = "\"01012263\"";
    let limit = "\"010222631e014000\"";
    let want = format!("\"replies\": [{ok}, {ok}, {ok}, {ok}, {limit}, {limit}, {limit}]");
    assert_has(&result, &want, &bed);
    assert_has(&result, "\"a_works\": true", &bed);
    assert_has(&result, "\"b_works\": true", &bed);
    assert_eq!(
        bed.metric("mpbond_udp_drops_total{reason=\"flow_limit\"}"),
        3
    );
    assert_eq!(bed.metric("mpbond_limit_refusals_total"), 3);
    // Once the client's flows end, it may open new ones.
    bed.wait_metric("mpbond_udp_flows_active", 0);
    let again = bed.client("echo", bed.echo.addr, ", \"sizes\": [10]");
    assert_has(&again, OK, &bed);
}

#[test]
#[ignore = "needs root, netns and python3"]
fn an_idle_flow_ends_with_a_fin() {
    let bed = Bed::start("udp-idle", "[udp]\nidle_timeout_secs = 1\n");
    let result = bed.client("idle", bed.echo.addr, "");
    assert_has(&result, OK, &bed);
    assert_has(&result, "\"echoed\": true", &bed);
    assert_has(&result, "\"closed\": \"fin\"", &bed);
    bed.wait_metric("mpbond_udp_flows_active", 0);
    assert!(bed.log().contains("udp idle_timeout"), "{}", bed.log());
}

#[test]
#[ignore = "needs root, netns and python3"]
fn unknown_capsules_are_skipped_and_other_contexts_dropped() {
    let bed = Bed::start("udp-unknown", "");
    let result = bed.client("unknown", bed.echo.addr, "");
    assert_has(&result, OK, &bed);
    assert_has(&result, "\"got\": [\"one\", \"two\"]", &bed);
    bed.wait_metric("mpbond_udp_flows_active", 0);
    assert_eq!(
        bed.metric("mpbond_udp_drops_total{reason=\"unknown_capsule\"}"),
        3
    );
    assert_eq!(
        bed.metric("mpbond_udp_drops_total{reason=\"bad_context\"}"),
        1
    );
    assert_eq!(
        bed.metric("mpbond_udp_datagrams_total{direction=\"up\"}"),
        2
    );
}

#[test]
#[ignore = "needs root, netns and python3"]
fn a_malformed_capsule_resets_the_flow() {
    let bed = Bed::start("udp-malformed", "");
    let result = bed.client("malformed", bed.echo.addr, "");
    assert_has(&result, OK, &bed);
    assert_has(&result, "\"echoed\": true", &bed);
    assert_has(&result, "\"closed\": \"reset\"", &bed);
    bed.wait_metric("mpbond_udp_flows_active", 0);
    assert!(
        bed.log()
            .contains("capsule of type 0x0 is 65552 bytes long"),
        "{}",
        bed.log()
    );
}

#[test]
#[ignore = "needs root, netns and python3"]
fn a_client_that_does_not_read_gets_drops_not_a_growing_queue() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    let bed = Bed::start("udp-stall", "");
    const COUNT: u64 = 2000;
    const SIZE: u64 = 1200;
    let mut client = bed
        .client_command(
            "stall",
            bed.echo.addr,
            &format!(", \"count\": {COUNT}, \"size\": {SIZE}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_has(&line, &format!("\"sent\": {COUNT}"), &bed);
    // Every datagram went up; the echoes come back into a stream nobody reads.
    bed.wait_metric("mpbond_udp_datagrams_total{direction=\"up\"}", COUNT);
    let dropped = "mpbond_udp_drops_total{reason=\"queue_full\"}";
    let settled =
        mpbond_testkit::wait_until(udp_bed::WAIT, std::time::Duration::from_millis(20), || {
            bed.metric(dropped) > 0
        });
    assert!(settled, "no queue_full drops\n{}", bed.scrape());
    // What was taken is bounded by the client's window, the socket's unsent low-water
    // mark and the queue (64 KiB each, and then some): far below the 2.4 MB sent.
    let down = bed.metric("mpbond_udp_datagrams_total{direction=\"down\"}");
    println!("taken downstream: {down} of {COUNT} datagrams; the rest dropped at the queue");
    assert!(down * SIZE < 1_000_000, "{down} datagrams taken downstream");
    // Everything taken is delivered once the client reads.
    writeln!(client.stdin.as_mut().unwrap(), "{down}").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_has(&line, &format!("\"received\": {down}"), &bed);
    client.wait().unwrap();
}

#[test]
#[ignore = "needs root, netns and python3"]
fn an_ipv6_destination_is_echoed() {
    let bed = Bed::start("udp-echo6", "");
    let echo6 = udp_bed::Echo::start(&bed.ns, "[::1]:0");
    let result = bed.client("echo", echo6.addr, ", \"sizes\": [1, 1400, 9000]");
    assert_has(&result, OK, &bed);
    assert_has(&result, "\"echoed\": [1, 1400, 9000]", &bed);
    assert!(bed.log().contains("dest=udp:[::1]:"), "{}", bed.log());
}

#[test]
#[ignore = "needs root, netns and python3"]
fn the_clients_datagram_rate_is_limited() {
    let bed = Bed::start(
        "udp-rate",
        "[udp]\ndatagrams_per_sec_per_client = 1\ndatagram_burst_per_client = 5\n",
    );
    let result = bed.client("burst", bed.echo.addr, ", \"count\": 50");
    assert_has(&result, OK, &bed);
    assert_has(&result, "\"sent\": 50", &bed);
    bed.wait_metric("mpbond_udp_flows_active", 0);
    let up = bed.metric("mpbond_udp_datagrams_total{direction=\"up\"}");
    let limited = bed.metric("mpbond_udp_drops_total{reason=\"rate_limit\"}");
    assert_eq!(up + limited, 50, "every datagram sent or counted");
    assert!(up >= 5 && limited > 0, "{up} sent, {limited} rate-limited");
}

#[test]
#[ignore = "needs root, netns and python3"]
fn two_legs_of_a_protected_flow_are_deduplicated_and_both_get_every_echo() {
    let bed = Bed::start("udp-legs", "");
    let result = bed.client("protected", bed.echo.addr, ", \"count\": 50");
    assert_has(&result, "\"replies\": [\"01012263\", \"01012263\"]", &bed);
    assert_has(&result, "\"legs_match\": true", &bed);
    assert_has(&result, "\"counts\": [50, 50]", &bed);
    bed.wait_metric("mpbond_udp_groups_active", 0);
    assert_eq!(bed.metric("mpbond_udp_groups_total"), 1);
    assert_eq!(bed.metric("mpbond_udp_flows_total"), 1);
    // 51 datagrams (the marker too), each once to the echo and twice back.
    assert_eq!(
        bed.metric("mpbond_udp_datagrams_total{direction=\"up\"}"),
        51
    );
    assert_eq!(
        bed.metric("mpbond_udp_datagrams_total{direction=\"down\"}"),
        51
    );
    assert_eq!(
        bed.metric("mpbond_udp_duplicates_total{direction=\"down\"}"),
        51
    );
    assert_eq!(
        bed.metric("mpbond_udp_duplicates_total{direction=\"up\"}"),
        51
    );
}
