//! What `natgw web` lists: the newest flows of a real pipeline's tables,
//! bounded, with their translation; TCP flows after a FIN only when asked;
//! the topology as the console lists it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure
mod common;
use common::*;
use natgw::control::views;

#[test]
fn the_newest_flows_are_listed_with_their_translation_and_the_rest_counted() {
    let mut lab = Lab::new();
    let mut external = Vec::new();
    for i in 0..5u16 {
        let out = seen(&lab.pass("app", "internet", &udp(APP, 5000 + i, WEB, 53, b"q")));
        external.push(out.sport);
        lab.advance(1);
    }
    let v = views::flows(&lab.gw, &lab.totals(), lab.now.secs(), 2, false);
    assert_eq!((v.nat_sessions, v.tracked_flows, v.closing), (5, 0, 0));
    let listed: Vec<&str> = v.flows.iter().map(|f| f.source.as_str()).collect();
    assert_eq!(listed, ["10.0.1.10:5004", "10.0.1.10:5003"], "the newest two, newest first");
    let f = &v.flows[0];
    assert_eq!((f.via.as_str(), f.proto.as_str(), f.destination.as_str()), ("nat-1", "udp", "198.51.100.10:53"));
    assert_eq!(f.translated, format!("203.0.113.5:{}", external[4]), "the session's external endpoint");
    assert_eq!((f.packets, f.age), ([1, 0], 1), "sent a second ago");
    assert_eq!(v.flows[1].age, 2);
    let pool = v.pools.iter().find(|p| p.proto == "udp").expect("the UDP pool");
    assert_eq!((pool.elastic_ip.as_str(), pool.in_use), ("203.0.113.5", 5));
    assert!(v.drops.iter().any(|(r, n)| r == "no_route" && *n == 0), "every reason, also at 0");
}

#[test]
fn a_tcp_flow_after_its_fin_is_counted_and_listed_only_when_asked() {
    let mut lab = Lab::new();
    let syn = seen(&lab.pass("app", "internet", &tcp(APP, 40000, WEB, 80, "S", 1, 0)));
    lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, syn.sport, "SA", 100, 2));
    lab.pass("app", "internet", &tcp(APP, 40000, WEB, 80, "A", 2, 101));
    let open = views::flows(&lab.gw, &lab.totals(), lab.now.secs(), 10, false);
    assert_eq!((open.flows.len(), open.closing), (1, 0));
    assert_eq!(open.flows[0].state.as_deref(), Some("ESTABLISHED"));
    lab.pass("app", "internet", &tcp(APP, 40000, WEB, 80, "FA", 2, 101));
    let hidden = views::flows(&lab.gw, &lab.totals(), lab.now.secs(), 10, false);
    assert_eq!((hidden.nat_sessions, hidden.closing, hidden.flows.len()), (1, 1, 0), "held, counted, not listed");
    let all = views::flows(&lab.gw, &lab.totals(), lab.now.secs(), 10, true);
    assert_eq!(all.flows.len(), 1);
    assert_eq!(all.flows[0].translated, format!("203.0.113.5:{}", syn.sport));
}

#[test]
fn the_topology_lists_subnets_hosts_gateways_and_route_tables() {
    let vpc = natgw::control::config::parse("lab.toml", natgw::control::config::DEFAULT_LAB).unwrap();
    let t = views::topology(&vpc);
    let subnets: Vec<(&str, &str, bool)> =
        t.subnets.iter().map(|s| (s.name.as_str(), s.cidr.as_str(), s.public)).collect();
    assert_eq!(subnets, [("public", "10.0.0.0/24", true), ("private", "10.0.1.0/24", false)]);
    let bastion = t.hosts.iter().find(|h| h.name == "bastion").unwrap();
    assert_eq!((bastion.private_ip.as_str(), bastion.elastic_ip.as_deref()), ("10.0.0.10", Some("203.0.113.10")));
    assert_eq!(t.nat_gateways[0].elastic_ips, ["203.0.113.5"]);
    assert_eq!(t.internet_gateway.as_deref(), Some("igw"));
    let private = t.route_tables.iter().find(|r| r.name == "private").unwrap();
    assert!(private.main && private.routes.contains(&("0.0.0.0/0".into(), "nat-1".into(), "active".into())));
}
