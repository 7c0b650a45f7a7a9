//! `natgw trace` on config files: the recorded decisions name the route
//! tables, the ACL rule numbers, the groups and the NAT's mapping, and the
//! verdict is what the pipeline does with such a packet.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure
use natgw::control::config;
use natgw::control::trace::{Query, Report, trace};

fn run(src: &str, q: (&str, &str, &str, Option<u16>)) -> Report {
    let vpc = config::parse("trace.toml", src).expect("config");
    let query = Query { src: q.0.into(), dst: q.1.into(), proto: q.2.into(), port: q.3, sport: None };
    trace(&vpc, &query).expect("trace")
}

fn details(r: &Report) -> Vec<String> {
    let mut v: Vec<String> = r.request.hops.iter().map(|h| format!("{}: {}", h.step, h.detail)).collect();
    if let Some(reply) = &r.reply {
        v.push("--- reply".into());
        v.extend(reply.hops.iter().map(|h| format!("{}: {}", h.step, h.detail)));
    }
    v
}

#[test]
fn the_nat_path_names_both_route_tables_and_the_mapping() {
    let r = run(config::DEFAULT_LAB, ("app", "198.51.100.10", "tcp", Some(80)));
    let d = details(&r);
    let at = |needle: &str| d.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}: {d:#?}"));
    // private subnet -> private route table -> NAT gateway -> public route table -> internet gateway
    assert!(at("private (subnet private): 0.0.0.0/0 -> nat-1") < at("nat-1: new mapping, source 10.0.1.10:40000"));
    assert!(at("nat-1: new mapping") < at("public (subnet public): 0.0.0.0/0 -> igw"));
    assert!(at("0.0.0.0/0 -> igw") < at("out to the internet"));
    assert_eq!(r.request.verdict, "forwarded");
    assert_eq!(r.reply.as_ref().unwrap().verdict, "forwarded");
    assert!(r.summary.contains("its reply comes back"), "{}", r.summary);
}

#[test]
fn a_nacl_without_the_ephemeral_range_is_named_at_rule_star() {
    let src = config::DEFAULT_LAB.replacen(
        "route_table = \"private\"",
        "route_table = \"private\"\nnetwork_acl = \"no-ephemeral\"",
        1,
    ) + r#"
[[network_acls]]
name = "no-ephemeral"
outbound = [ { rule = 100, action = "allow", protocol = "all", cidr = "0.0.0.0/0" } ]
inbound = [ { rule = 100, action = "allow", protocol = "tcp", cidr = "10.0.0.0/16", ports = "22" } ]
"#;
    let r = run(&src, ("app", "198.51.100.10", "tcp", Some(80)));
    assert_eq!(r.request.verdict, "forwarded", "the request passes");
    assert!(details(&r).iter().any(|l| l == "network ACL: no-ephemeral (subnet private) outbound: rule 100 allow"));
    let reply = r.reply.as_ref().unwrap();
    assert_eq!(reply.verdict, "dropped (acl_deny)");
    let last = reply.hops.iter().rev().find(|h| h.step == "network ACL").unwrap();
    assert_eq!(last.detail, "no-ephemeral (subnet private) inbound: rule * deny");
}

#[test]
fn groups_are_named_with_their_rule_or_their_silence() {
    let src = config::DEFAULT_LAB
        .replace("elastic_ip = \"203.0.113.10\"", "elastic_ip = \"203.0.113.10\"\nsecurity_groups = [\"bastion-sg\"]")
        + r#"
[[security_groups]]
name = "bastion-sg"
inbound = [ { protocol = "tcp", ports = "22", source = "198.51.100.0/24", description = "SSH from the company" } ]
"#;
    let ok = run(&src, ("198.51.100.10", "203.0.113.10", "tcp", Some(22)));
    let d = details(&ok);
    assert!(
        d.contains(&"security group: bastion inbound: group bastion-sg inbound rule 1 (tcp port 22 from 198.51.100.0/24) allows".to_string()),
        "{d:#?}"
    );
    assert!(d.iter().any(|l| l.contains("Elastic IP 203.0.113.10 is bastion's")), "{d:#?}");
    let reply = ok.reply.as_ref().unwrap();
    assert!(reply.hops.iter().any(|h| h.detail.contains("a tracked flow (Reply direction)")), "{:#?}", reply.hops);
    assert!(reply.hops.iter().any(|h| h.detail.contains("source 10.0.0.10 -> Elastic IP 203.0.113.10")));
    let denied = run(&src, ("198.51.100.10", "203.0.113.10", "tcp", Some(80)));
    assert_eq!(denied.request.verdict, "dropped (sg_deny)");
    assert!(details(&denied).contains(&"security group: bastion inbound: no rule of bastion-sg allows it".to_string()));
    assert!(denied.reply.is_none());
}

#[test]
fn bad_queries_get_clear_errors() {
    let vpc = config::parse("trace.toml", config::DEFAULT_LAB).unwrap();
    let q = |s: &str, d: &str, p: &str, port: Option<u16>| {
        trace(&vpc, &Query { src: s.into(), dst: d.into(), proto: p.into(), port, sport: None }).unwrap_err()
    };
    assert!(
        q("nobody", "198.51.100.10", "tcp", Some(80)).contains("neither a host (bastion, app) nor an IPv4 address")
    );
    assert!(q("app", "198.51.100.10", "sctp", Some(80)).contains("trace tcp, udp or icmp"));
    assert!(q("app", "198.51.100.10", "tcp", None).contains("needs a destination port"));
    assert!(q("app", "198.51.100.10", "icmp", Some(1)).contains("icmp has no port"));
    assert!(q("10.0.1.99", "198.51.100.10", "udp", Some(53)).contains("no host has the address 10.0.1.99"));
}

#[test]
fn ping_is_traced_both_ways() {
    let r = run(config::DEFAULT_LAB, ("app", "198.51.100.10", "icmp", None));
    assert_eq!(r.request.verdict, "forwarded");
    assert_eq!(r.reply.unwrap().out.unwrap(), "icmp 198.51.100.10 -> 10.0.1.10 id 1");
}
