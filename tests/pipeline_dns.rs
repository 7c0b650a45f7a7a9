//! The way to the VPC's resolver in the pipeline: a host's query to 10.0.0.2
//! or 169.254.169.253 goes out of the resolver's interface untouched,
//! filtered by no security group or network ACL, in no flow log; the answer
//! comes back the same way; a spoofed answer, a query while DNS support is
//! off, and other ports are dropped and counted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure
mod common;
use common::*;
use natgw::pipeline::{Action, DropReason};

const RESOLVER: [u8; 4] = [10, 0, 0, 2];
const LINK_LOCAL: [u8; 4] = [169, 254, 169, 253];

fn drops(lab: &Lab, reason: DropReason) -> u64 {
    lab.totals().drops.iter().find(|(k, _)| k == reason.label()).map_or(0, |(_, v)| *v)
}

#[test]
fn queries_reach_the_resolver_and_answers_come_back_untouched() {
    let mut lab = Lab::new();
    for dst in [RESOLVER, LINK_LOCAL] {
        let q = udp(APP, 40000, dst, 53, b"query");
        let out = lab.pass("app", "dns", &q);
        // Not routed: no hop, no TTL spent, nothing rewritten.
        assert_eq!(out, q);
        let a = udp(dst, 53, APP, 40000, b"answer");
        assert_eq!(lab.pass("dns", "app", &a), a);
    }
    let t = tcp(BASTION, 40001, RESOLVER, 53, "S", 1, 0);
    assert_eq!(lab.pass("bastion", "dns", &t), t);
}

#[test]
fn groups_and_acls_do_not_filter_the_resolver() {
    // app may send nothing (no outbound rule) and its subnet's ACL denies all:
    // its queries still pass, as on AWS, and so do the answers.
    let mut lab = Lab::with(&[
        ("ip = \"10.0.1.10\"", "ip = \"10.0.1.10\"\nsecurity_groups = [\"mute\"]"),
        ("[[route_tables]]", "[[security_groups]]\nname = \"mute\"\noutbound = []\n\n[[route_tables]]"),
        ("route_table = \"private\"", "route_table = \"private\"\nnetwork_acl = \"closed\""),
        ("[[hosts]]", "[[network_acls]]\nname = \"closed\"\n\n[[hosts]]"),
    ]);
    let out = lab.pass("app", "dns", &udp(APP, 40000, RESOLVER, 53, b"q"));
    assert_eq!(seen(&out).dst, addr(RESOLVER));
    lab.pass("dns", "app", &udp(RESOLVER, 53, APP, 40000, b"a"));
    // The same group and ACL do stop app's traffic anywhere else.
    let (a, _) = lab.send("app", &udp(APP, 40000, BASTION, 53, b"q"));
    assert_eq!(a, Action::Drop(DropReason::SgDeny));
    let (a, _) = lab.send("bastion", &udp(BASTION, 40000, APP, 53, b"q"));
    assert_eq!(a, Action::Drop(DropReason::AclDeny));
}

#[test]
fn what_the_resolver_does_not_take_is_dropped_and_counted() {
    let mut lab = Lab::new();
    // Not DNS.
    let (a, _) = lab.send("app", &udp(APP, 40000, RESOLVER, 123, b"ntp"));
    assert_eq!(a, Action::Drop(DropReason::ToGateway));
    // The resolver's interface speaks only from its own addresses.
    let (a, _) = lab.send("dns", &udp(WEB, 53, APP, 40000, b"spoofed"));
    assert_eq!(a, Action::Drop(DropReason::SourceCheck));
    // To an address no host has.
    let (a, _) = lab.send("dns", &udp(RESOLVER, 53, [10, 0, 1, 99], 40000, b"a"));
    assert_eq!(a, Action::Drop(DropReason::HostUnreachable));
    assert_eq!(drops(&lab, DropReason::SourceCheck), 1);

    // DNS support off: no resolver interface, and queries die with a reason.
    let mut off =
        Lab::with(&[("enable_dns_support = true\nenable_dns_hostnames = true", "enable_dns_support = false")]);
    assert!(off.gw.topology().interfaces.iter().all(|i| i.name != "dns"));
    let (a, _) = off.send("app", &udp(APP, 40000, RESOLVER, 53, b"q"));
    assert_eq!(a, Action::Drop(DropReason::DnsDisabled));
    assert_eq!(drops(&off, DropReason::DnsDisabled), 1);
}

#[test]
fn resolver_traffic_is_not_in_the_flow_logs() {
    let dir = std::env::temp_dir().join(format!("natgw-dns-fl-{}", std::process::id()));
    let path = dir.join("flows.log");
    let mut lab = Lab::with(&[(
        "[[route_tables]]",
        &format!("[flow_logs]\npath = \"{}\"\ninterval = 1\n\n[[route_tables]]", path.display()),
    )]);
    lab.pass("app", "dns", &udp(APP, 40000, RESOLVER, 53, b"q"));
    lab.pass("dns", "app", &udp(RESOLVER, 53, APP, 40000, b"a"));
    // A flow that is logged, as a control.
    lab.pass("app", "bastion", &udp(APP, 40001, BASTION, 9, b"x"));
    lab.advance(5);
    lab.poll();
    let records = lab.gw.flow_sink().records.lock().clone();
    let ports: Vec<(u16, u16)> = records.iter().map(|r| (r.key.flow.sport, r.key.flow.dport)).collect();
    assert!(ports.contains(&(40001, 9)), "the control flow is logged: {ports:?}");
    assert!(ports.iter().all(|p| p.0 != 53 && p.1 != 53), "resolver traffic is not: {ports:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
