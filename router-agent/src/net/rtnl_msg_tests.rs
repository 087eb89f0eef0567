//! Unit tests for the route and rule messages.

use super::*;

fn own() -> Ownership {
    Ownership::default()
}

fn route(dst: &str, gw: Option<&str>) -> Route {
    Route {
        table: 2001,
        dst: dst.parse().expect("test prefix"),
        gateway: gw.map(|g| g.parse().expect("test gateway")),
        oif: 4,
        prefsrc: None,
        metric: 10,
    }
}

#[test]
fn routes_round_trip() {
    let own = own();
    for r in [
        route("0.0.0.0/0", Some("10.200.1.1")),
        route("10.200.1.0/24", None),
        route("::/0", Some("fe80::1")),
        route("2001:db8:201::/64", None),
    ] {
        // Through the bytes, as a dump would bring it back.
        let msg = RouteMsg::parse(&route_message(&own, &r).encode()).expect("parses");
        assert_eq!(parse_route(&own, &msg), Some(r));
    }
}

#[test]
fn v4_route_without_gateway_is_link_scope() {
    let msg = route_message(&own(), &route("10.200.1.0/24", None));
    assert_eq!(msg.scope, RT_SCOPE_LINK);
    let msg = route_message(&own(), &route("0.0.0.0/0", Some("10.200.1.1")));
    assert_eq!(msg.scope, RT_SCOPE_UNIVERSE);
}

#[test]
fn foreign_routes_are_not_ours() {
    let own = own();
    let mut msg = route_message(&own, &route("0.0.0.0/0", Some("10.200.1.1")));
    msg.protocol = 4; // RTPROT_STATIC
    assert_eq!(parse_route(&own, &msg), None, "foreign protocol");
    let mut other = route("0.0.0.0/0", None);
    other.table = 254;
    assert_eq!(
        parse_route(&own, &route_message(&own, &other)),
        None,
        "main table"
    );
}

#[test]
fn rules_round_trip_and_foreign_priorities_are_skipped() {
    let own = own();
    let rule = Rule {
        priority: 2005,
        from: "10.200.1.2/32".parse().expect("prefix"),
        table: 2001,
    };
    let msg = RuleMsg::parse(&rule_message(&own, &rule).encode()).expect("parses");
    assert_eq!(parse_rule(&own, &msg), Some(rule.clone()));
    let foreign = Rule {
        priority: 32766,
        ..rule
    };
    assert_eq!(parse_rule(&own, &rule_message(&own, &foreign)), None);
}
