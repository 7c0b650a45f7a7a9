//! Security groups in the pipeline: allow-only rules at each host's
//! interface both ways, group references, statefulness through the tracker
//! (the reply of an allowed flow, a removed rule that leaves a tracked flow
//! alive, an untracked flow cut at once), and groups with network ACLs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure
mod common;
use common::*;
use natgw::pipeline::{Action, DropReason, Topology};

const APP2: [u8; 4] = [10, 0, 1, 11];

/// The default lab with groups: bastion admits SSH from the company's
/// network (web's 198.51.100.0/24 stands for it); app admits 8080 from
/// bastion's group only and may send nothing itself; app2 (default group).
fn groups(extra: &str) -> String {
    let lab = natgw::control::config::DEFAULT_LAB.replace("profile = \"aws\"", "profile = \"aws\"\nseed = 42");
    let lab = lab
        .replace("elastic_ip = \"203.0.113.10\"", "elastic_ip = \"203.0.113.10\"\nsecurity_groups = [\"bastion-sg\"]");
    let lab = lab.replace("ip = \"10.0.1.10\"", "ip = \"10.0.1.10\"\nsecurity_groups = [\"app-sg\"]");
    format!(
        r#"{lab}
[[hosts]]
name = "app2"
subnet = "private"
ip = "10.0.1.11"

[[security_groups]]
name = "bastion-sg"
description = "the bastion"
inbound = [
  {{ protocol = "tcp", ports = "22", source = "198.51.100.0/24", description = "SSH from the company" }},
]

[[security_groups]]
name = "app-sg"
inbound = [
  {{ protocol = "tcp", ports = "8080", source = "bastion-sg", description = "the API, from the bastion" }},
]
outbound = []
{extra}"#
    )
}

/// A group that allows all TCP both ways to and from everywhere: AWS does
/// not track such flows.
const BASTION_OPEN: &str = r#"
[[security_groups]]
name = "bastion-open"
inbound = [ { protocol = "tcp", ports = "0-65535", source = "0.0.0.0/0" } ]
outbound = [ { protocol = "all", destination = "0.0.0.0/0" } ]
"#;

fn lab(extra: &str) -> Lab {
    Lab::from_toml(&groups(extra))
}

fn swap(lab: &mut Lab, src: &str) {
    let vpc = natgw::control::config::parse("test.toml", src).expect("config");
    lab.gw.set_topology(Topology::new(vpc.parts));
    lab.pipe.refresh();
}

#[test]
fn a_group_admits_what_a_rule_allows_and_counts_what_it_denies() {
    let mut lab = lab("");
    let back = seen(&lab.pass("internet", "bastion", &tcp(WEB, 40000, BASTION_EIP, 22, "S", 1, 0)));
    assert_eq!(back.dst, addr(BASTION));
    let (a, _) = lab.send("internet", &tcp(WEB, 40001, BASTION_EIP, 80, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::SgDeny));
    let t = lab.totals();
    assert_eq!(t.drop_count("sg_deny"), 1);
    assert_eq!(t.sg_denied, vec![("bastion".to_string(), 1, 0)], "denied arriving at bastion");
}

#[test]
fn the_reply_of_an_allowed_flow_passes_whatever_the_rules_say() {
    let mut lab = lab("");
    // app-sg has no outbound rule: app may start nothing...
    let (a, _) = lab.send("app", &udp(APP, 5000, WEB, 53, b"q"));
    assert_eq!(a, Action::Drop(DropReason::SgDeny));
    assert_eq!(lab.totals().sg_denied, vec![("app".to_string(), 0, 1)]);
    // ...but answers the bastion, both ways, for as long as the flow lives.
    lab.pass("bastion", "app", &tcp(BASTION, 40000, APP, 8080, "S", 1, 0));
    lab.pass("app", "bastion", &tcp(APP, 8080, BASTION, 40000, "SA", 100, 2));
    lab.pass("bastion", "app", &tcp(BASTION, 40000, APP, 8080, "A", 2, 101));
    lab.pass("app", "bastion", &tcp(APP, 8080, BASTION, 40000, "PA", 101, 2));
    assert_eq!(lab.gw.tracker().len(), 1, "one tracked flow");
    let flows = lab.gw.tracker().flows(lab.now.secs());
    assert_eq!(flows[0].1.state.as_deref(), Some("ESTABLISHED"));
}

#[test]
fn a_group_reference_means_the_members_addresses() {
    let mut lab = lab("");
    lab.pass("bastion", "app", &tcp(BASTION, 40000, APP, 8080, "S", 1, 0));
    // app2 is in the same subnet (no ACL between them) but not in bastion-sg.
    let (a, _) = lab.send("app2", &tcp(APP2, 40000, APP, 8080, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::SgDeny));
    // Put app2 in bastion-sg: no rule changes, and it gets in.
    let src = groups("").replace("ip = \"10.0.1.11\"", "ip = \"10.0.1.11\"\nsecurity_groups = [\"bastion-sg\"]");
    swap(&mut lab, &src);
    lab.pass("app2", "app", &tcp(APP2, 40001, APP, 8080, "S", 1, 0));
}

#[test]
fn the_default_group_admits_its_members_and_lets_everything_out() {
    let src = groups("").replace("\nsecurity_groups = [\"app-sg\"]", "");
    let mut lab = Lab::from_toml(&src);
    // app and app2 both carry the default group.
    lab.pass("app2", "app", &udp(APP2, 5000, APP, 5432, b"q"));
    lab.pass("app", "internet", &udp(APP, 5000, WEB, 53, b"q"));
    // bastion is not a member.
    let (a, _) = lab.send("bastion", &udp(BASTION, 5000, APP, 5432, b"q"));
    assert_eq!(a, Action::Drop(DropReason::SgDeny));
}

#[test]
fn a_removed_rule_leaves_a_tracked_flow_alive_and_stops_new_ones() {
    let mut lab = lab("");
    lab.pass("internet", "bastion", &tcp(WEB, 40000, BASTION_EIP, 22, "S", 1, 0));
    lab.pass("bastion", "internet", &tcp(BASTION, 22, WEB, 40000, "SA", 100, 2));
    lab.pass("internet", "bastion", &tcp(WEB, 40000, BASTION_EIP, 22, "A", 2, 101));
    // The SSH rule goes.
    let src = groups("").replace(
        "{ protocol = \"tcp\", ports = \"22\", source = \"198.51.100.0/24\", description = \"SSH from the company\" },",
        "",
    );
    swap(&mut lab, &src);
    lab.advance(60);
    lab.pass("internet", "bastion", &tcp(WEB, 40000, BASTION_EIP, 22, "PA", 2, 101));
    lab.pass("bastion", "internet", &tcp(BASTION, 22, WEB, 40000, "A", 101, 6));
    let (a, _) = lab.send("internet", &tcp(WEB, 40001, BASTION_EIP, 22, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::SgDeny), "a new connection needs a rule");
}

#[test]
fn an_untracked_flow_is_cut_as_soon_as_its_rule_goes() {
    let src = groups(BASTION_OPEN).replace("[\"bastion-sg\"]", "[\"bastion-open\"]");
    let mut lab = Lab::from_toml(&src);
    lab.pass("internet", "bastion", &tcp(WEB, 40000, BASTION_EIP, 22, "S", 1, 0));
    lab.pass("bastion", "internet", &tcp(BASTION, 22, WEB, 40000, "SA", 100, 2));
    assert_eq!(lab.gw.tracker().len(), 0, "not tracked");
    let cut = src.replace("inbound = [ { protocol = \"tcp\", ports = \"0-65535\", source = \"0.0.0.0/0\" } ]", "");
    swap(&mut lab, &cut);
    let (a, _) = lab.send("internet", &tcp(WEB, 40000, BASTION_EIP, 22, "A", 2, 101));
    assert_eq!(a, Action::Drop(DropReason::SgDeny), "an untracked flow is cut at once");
}

#[test]
fn icmp_is_always_tracked_and_its_errors_follow_their_flow() {
    let open = r#"
[[security_groups]]
name = "ping"
inbound = [ { protocol = "icmp", icmp_type = 8, icmp_code = -1, source = "198.51.100.0/24" } ]
"#;
    let src = groups(open).replace("[\"bastion-sg\"]", "[\"bastion-sg\", \"ping\"]");
    let mut lab = Lab::from_toml(&src);
    lab.pass("internet", "bastion", &echo(WEB, BASTION_EIP, 7, 1));
    lab.pass("bastion", "internet", &echo_reply(BASTION, WEB, 7, 1));
    assert_eq!(lab.gw.tracker().len(), 1);
    // An echo reply nobody asked for is no reply to anything.
    let (a, _) = lab.send("internet", &echo_reply(WEB, BASTION_EIP, 9, 1));
    assert_eq!(a, Action::Drop(DropReason::SgDeny));
    // An ICMP error about a tracked flow passes (app2's default group admits
    // no ICMP from the internet)...
    let sent = lab.pass("app2", "internet", &udp(APP2, 5000, WEB, 53, b"q"));
    let err = icmp_error(WEB, NAT_IP, port_unreachable(), &sent);
    assert_eq!(seen(&lab.pass("internet", "app2", &err)).dst, addr(APP2));
    // ...and one about a flow bastion never had does not.
    let other = udp(BASTION_EIP, 5001, WEB, 53, b"q");
    let (a, _) = lab.send("internet", &icmp_error(WEB, BASTION_EIP, port_unreachable(), &other));
    assert_eq!(a, Action::Drop(DropReason::SgDeny));
}

#[test]
fn groups_apply_inside_a_subnet_where_acls_do_not() {
    // A deny-all ACL on the private subnet does not stop app2 -> app (same
    // subnet); app's group does.
    let acl = r#"
[[network_acls]]
name = "closed"
"#;
    let src = groups(acl).replace("route_table = \"private\"", "route_table = \"private\"\nnetwork_acl = \"closed\"");
    let mut lab = Lab::from_toml(&src);
    let (a, _) = lab.send("app2", &tcp(APP2, 40000, APP, 8080, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::SgDeny), "the group denies inside the subnet");
    // Across the boundary, the ACL denies first even what the group allows.
    let (a, _) = lab.send("bastion", &tcp(BASTION, 40000, APP, 8080, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::AclDeny));
    assert_eq!(lab.gw.tracker().len(), 0, "a denied packet tracks nothing");
}

#[test]
fn tracked_flows_expire_by_awss_timeouts() {
    let mut lab = lab("");
    let (a, _) = lab.send("bastion", &udp(BASTION, 5000, APP, 8080, b"q"));
    assert_eq!(a, Action::Drop(DropReason::SgDeny));
    assert_eq!(lab.gw.tracker().len(), 0, "no rule allows UDP 8080: nothing to track");
    lab.pass("bastion", "app", &tcp(BASTION, 40000, APP, 8080, "S", 1, 0));
    lab.advance(121);
    lab.expire();
    assert_eq!(lab.gw.tracker().len(), 0, "a SYN never answered: 120 s");
    let (a, _) = lab.send("app", &tcp(APP, 8080, BASTION, 40000, "SA", 100, 2));
    assert_eq!(a, Action::Drop(DropReason::SgDeny), "too late for the reply");
}

#[test]
fn the_file_refuses_what_aws_refuses() {
    let cases = [
        (groups("").replace("description = \"the API, from the bastion\"", "action = \"deny\""), "only allow rules"),
        (
            groups("").replace("source = \"bastion-sg\"", "source = \"nobody\""),
            "neither a CIDR block nor a security group",
        ),
        (groups("").replace("[\"app-sg\"]", "[\"app-sg\", \"nobody\"]"), "no security group named `nobody`"),
        (
            groups("").replace("[\"app-sg\"]", "[\"app-sg\", \"bastion-sg\", \"default\", \"a\", \"b\", \"c\"]"),
            "1 to 5 security groups",
        ),
        (
            groups("").replace("source = \"bastion-sg\"", "destination = \"bastion-sg\""),
            "inbound rules name a `source`",
        ),
        (groups("").replace("description = \"SSH from the company\"", "rule = 100"), "no numbers"),
    ];
    for (src, want) in cases {
        let e = natgw::control::config::parse("groups.toml", &src).expect_err(want);
        let text = e.to_string();
        assert!(text.contains(want), "{text}");
        assert!(text.contains("groups.toml:"), "names the file and line: {text}");
    }
}

#[test]
fn the_flow_cache_carries_tracked_flows() {
    let mut lab = lab("");
    lab.pass("bastion", "app", &tcp(BASTION, 40000, APP, 8080, "S", 1, 0));
    lab.pass("app", "bastion", &tcp(APP, 8080, BASTION, 40000, "SA", 100, 2));
    for i in 0..10 {
        lab.pass("bastion", "app", &tcp(BASTION, 40000, APP, 8080, "PA", 2 + i * 4, 101));
        lab.pass("app", "bastion", &tcp(APP, 8080, BASTION, 40000, "A", 101, 6 + i * 4));
    }
    let t = lab.totals();
    let hits = t.cache.iter().find(|(n, _)| n == "hits").unwrap().1;
    assert!(hits >= 18, "{hits}");
    let flow = &lab.gw.tracker().flows(lab.now.secs())[0].1;
    assert_eq!(flow.packets, [11, 11], "every cached packet was counted in its flow");
    // The tracked flow expires: the cache lets go and the walk decides again.
    lab.advance(432_001);
    lab.expire();
    let (a, _) = lab.send("app", &tcp(APP, 8080, BASTION, 40000, "A", 101, 50));
    assert_eq!(a, Action::Drop(DropReason::SgDeny));
}

#[test]
fn a_flow_through_the_nat_is_tracked_by_its_nat_session() {
    let default = "\n[[security_groups]]\nname = \"default\"\ninbound = [ { source = \"default\" } ]\noutbound = [ { destination = \"0.0.0.0/0\" } ]\n";
    let src = groups(default);
    let mut lab = Lab::from_toml(&src);
    let out = seen(&lab.pass("app2", "internet", &tcp(APP2, 40000, WEB, 80, "S", 1, 0)));
    lab.pass("internet", "app2", &tcp(WEB, 80, NAT_IP, out.sport, "SA", 100, 2));
    assert_eq!(lab.gw.tracker().len(), 0, "no second entry: the NAT session tracks it");
    assert_eq!(lab.gw.nats()[0].session_count(), 1);
    // The default group loses its outbound rule: the flow carries on, a new one does not start.
    swap(&mut lab, &src.replace("outbound = [ { destination = \"0.0.0.0/0\" } ]", "outbound = []"));
    lab.pass("app2", "internet", &tcp(APP2, 40000, WEB, 80, "A", 2, 101));
    lab.pass("internet", "app2", &tcp(WEB, 80, NAT_IP, out.sport, "PA", 101, 2));
    let (a, _) = lab.send("app2", &tcp(APP2, 40001, WEB, 80, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::SgDeny));
    // Without the session (expired: the aws profile's 350 s), the flow is gone too.
    lab.advance(351);
    lab.expire();
    let (a, _) = lab.send("app2", &tcp(APP2, 40000, WEB, 80, "A", 2, 101));
    assert_eq!(a, Action::Drop(DropReason::SgDeny));
}

#[test]
fn an_interfaces_connection_tracking_settings_set_its_flows_timeouts() {
    // bastion's interface keeps established TCP 60 s (AWS's minimum), not 5 days.
    let own = groups("").replace(
        "security_groups = [\"bastion-sg\"]",
        "security_groups = [\"bastion-sg\"]\nconnection_tracking = { tcp_established_timeout = 60, udp_timeout = 45 }",
    );
    for (src, gone) in [(own, true), (groups(""), false)] {
        let mut lab = Lab::from_toml(&src);
        // Leaving bastion, and arriving at it from the internet: both are
        // tracked at bastion's interface, the first they meet.
        lab.pass("bastion", "app", &tcp(BASTION, 40000, APP, 8080, "S", 1, 0));
        lab.pass("app", "bastion", &tcp(APP, 8080, BASTION, 40000, "SA", 100, 2));
        lab.pass("bastion", "app", &tcp(BASTION, 40000, APP, 8080, "A", 2, 101));
        lab.pass("internet", "bastion", &tcp(WEB, 40001, BASTION_EIP, 22, "S", 1, 0));
        lab.pass("bastion", "internet", &tcp(BASTION, 22, WEB, 40001, "SA", 100, 2));
        lab.pass("internet", "bastion", &tcp(WEB, 40001, BASTION_EIP, 22, "A", 2, 101));
        assert_eq!(lab.gw.tracker().len(), 2);
        lab.advance(61);
        lab.expire();
        assert_eq!(lab.gw.tracker().len(), if gone { 0 } else { 2 }, "own settings: {gone}");
        // app-sg admits nothing new from app: a reply on an expired flow is denied.
        let (a, _) = lab.send("app", &tcp(APP, 8080, BASTION, 40000, "A", 101, 2));
        if gone {
            assert_eq!(a, Action::Drop(DropReason::SgDeny));
        } else {
            assert!(matches!(a, Action::Forward(_)), "{a:?}");
        }
    }
}

#[test]
fn connection_tracking_settings_outside_awss_ranges_are_refused() {
    let with = |v: &str| {
        groups("").replace(
            "security_groups = [\"bastion-sg\"]",
            &format!("security_groups = [\"bastion-sg\"]\nconnection_tracking = {{ {v} }}"),
        )
    };
    let cases = [
        ("udp_timeout = 10", "AWS allows 30 to 60 seconds"),
        ("udp_stream_timeout = 600", "AWS allows 60 to 180 seconds"),
        ("tcp_established_timeout = 59", "AWS allows 60 to 432000 seconds"),
        ("icmp_timeout = 30", "unknown field `icmp_timeout`"),
    ];
    for (v, want) in cases {
        let e = natgw::control::config::parse("ct.toml", &with(v)).expect_err(want);
        let text = e.to_string();
        assert!(text.contains(want), "{text}");
        assert!(text.contains("ct.toml:"), "names the file and line: {text}");
    }
    // Two hosts with the same settings share one profile.
    let same = with("udp_timeout = 45").replace(
        "security_groups = [\"app-sg\"]",
        "security_groups = [\"app-sg\"]\nconnection_tracking = { udp_timeout = 45 }",
    );
    let vpc = natgw::control::config::parse("ct.toml", &same).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(vpc.conntrack_timeouts.len(), 1);
    assert_eq!(vpc.timeouts_of(1).udp, 45);
}

#[test]
fn a_flow_the_sender_leaves_untracked_gets_the_receivers_timeouts() {
    // bastion's group allows all TCP both ways (its flows go untracked
    // there); app tracks them, with its own 60 s.
    let src = groups(BASTION_OPEN)
        .replace("[\"bastion-sg\"]", "[\"bastion-open\"]")
        .replace("source = \"bastion-sg\"", "source = \"10.0.0.0/24\"")
        .replace(
            "security_groups = [\"app-sg\"]",
            "security_groups = [\"app-sg\"]\nconnection_tracking = { tcp_established_timeout = 60 }",
        );
    let mut lab = Lab::from_toml(&src);
    lab.pass("bastion", "app", &tcp(BASTION, 40000, APP, 8080, "S", 1, 0));
    lab.pass("app", "bastion", &tcp(APP, 8080, BASTION, 40000, "SA", 100, 2));
    lab.pass("bastion", "app", &tcp(BASTION, 40000, APP, 8080, "A", 2, 101));
    assert_eq!(lab.gw.tracker().len(), 1, "tracked at app");
    lab.advance(61);
    lab.expire();
    assert_eq!(lab.gw.tracker().len(), 0, "app's 60 s, not 5 days");
}

#[test]
fn the_web_page_lists_a_tracked_flow_with_the_hosts_elastic_ip() {
    let mut lab = lab("");
    lab.pass("internet", "bastion", &tcp(WEB, 40000, BASTION_EIP, 22, "S", 1, 0));
    let v = natgw::control::views::flows(&lab.gw, &lab.totals(), lab.now.secs(), 10, false);
    assert_eq!((v.nat_sessions, v.tracked_flows), (0, 1));
    let f = &v.flows[0];
    assert_eq!((f.via.as_str(), f.source.as_str()), ("elastic-ip", "198.51.100.10:40000"));
    assert_eq!(f.translated, "203.0.113.10:22", "the bastion as the internet addressed it");
}
