//! Several VPCs in one gateway: peering as AWS defines it (not transitive,
//! no edge-to-edge routing), overlapping VPCs kept apart (addresses and
//! connection tracking), and the file's refusals with their lines and fixes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure
mod common;
use common::*;
use natgw::control::config;
use natgw::pipeline::{Action, DropReason};

const PEERING: &str = include_str!("../examples/scenarios/peering-not-transitive.toml");
const AUTH: [u8; 4] = [10, 1, 1, 10];
const LOGS: [u8; 4] = [10, 2, 1, 10];

#[test]
fn a_peering_carries_its_two_vpcs_traffic_both_ways() {
    let mut lab = Lab::from_toml(PEERING);
    let out = lab.pass("app", "auth", &tcp(APP, 40000, AUTH, 80, "S", 1, 0));
    let s = seen(&out);
    assert_eq!((s.src, s.dst, s.sport), (addr(APP), addr(AUTH), 40000), "no translation across a peering");
    assert_eq!(s.ttl, 63, "one router hop");
    lab.pass("auth", "app", &tcp(AUTH, 80, APP, 40000, "SA", 9, 2));
    lab.pass("auth", "logs", &echo(AUTH, LOGS, 7, 1));
    lab.pass("logs", "auth", &echo_reply(LOGS, AUTH, 7, 1));
}

#[test]
fn a_peering_is_not_transitive_and_lends_no_edge() {
    let mut lab = Lab::from_toml(PEERING);
    // The positive control on the same lab: shared's own host reaches both.
    lab.pass("auth", "logs", &echo(AUTH, LOGS, 1, 1));
    lab.pass("auth", "internet", &echo(AUTH, WEB, 2, 1));
    // app's table sends both to pcx-app-shared: AWS drops them there.
    let (a, _) = lab.send("app", &echo(APP, LOGS, 3, 1));
    assert_eq!(a, Action::Drop(DropReason::PeeringTransit), "app -> logs through shared");
    let (a, _) = lab.send("app", &echo(APP, WEB, 4, 1));
    assert_eq!(a, Action::Drop(DropReason::PeeringTransit), "app -> internet through shared's NAT gateway");
    // Nor from the far side: logs has no route to app at all.
    let (a, _) = lab.send("logs", &echo(LOGS, APP, 5, 1));
    assert!(matches!(a, Action::Drop(DropReason::NoRoute) | Action::Reply { cause: DropReason::NoRoute, .. }));
    assert_eq!(lab.totals().drop_count("peering_transit"), 2);
}

#[test]
fn overlapping_vpcs_that_are_not_connected_keep_their_hosts_apart() {
    let mut lab = Lab::from_toml(PEERING);
    // legacy has app's address: its packets leave as its own Elastic IP ...
    let out = lab.pass("legacy", "internet", &echo(APP, WEB, 9, 1));
    assert_eq!(seen(&out).src, addr([203, 0, 113, 20]));
    // ... and the reply reaches legacy, not app.
    lab.pass("internet", "legacy", &echo_reply(WEB, [203, 0, 113, 20], 9, 1));
    // app has no Elastic IP and no route to the internet of its own.
    let (a, _) = lab.send("app", &echo(APP, WEB, 9, 2));
    assert_eq!(a, Action::Drop(DropReason::PeeringTransit));
}

/// Two VPCs with the same block, each two hosts; in `a`, a2 admits TCP 80
/// from a1; in `b`, b1 admits nothing.
const TWINS: &str = r#"
[vpc]
name = "a"
cidr = "10.0.0.0/16"

[[vpcs]]
name = "b"
cidr = "10.0.0.0/16"

[[subnets]]
name = "a-1"
cidr = "10.0.1.0/24"
route_table = "a-rt"

[[subnets]]
name = "a-2"
cidr = "10.0.2.0/24"
route_table = "a-rt"

[[subnets]]
name = "b-1"
vpc = "b"
cidr = "10.0.1.0/24"
route_table = "b-rt"

[[subnets]]
name = "b-2"
vpc = "b"
cidr = "10.0.2.0/24"
route_table = "b-rt"

[[hosts]]
name = "a1"
subnet = "a-1"
ip = "10.0.1.10"
security_groups = ["client"]

[[hosts]]
name = "a2"
subnet = "a-2"
ip = "10.0.2.20"
security_groups = ["server"]

[[hosts]]
name = "b1"
subnet = "b-1"
ip = "10.0.1.10"
security_groups = ["closed"]

[[hosts]]
name = "b2"
subnet = "b-2"
ip = "10.0.2.20"
security_groups = ["closed"]

[[route_tables]]
name = "a-rt"

[[route_tables]]
name = "b-rt"
vpc = "b"

[[security_groups]]
name = "client"

[[security_groups]]
name = "server"
inbound = [ { protocol = "tcp", ports = "80", source = "client" } ]

[[security_groups]]
name = "closed"
vpc = "b"
"#;

#[test]
fn one_five_tuple_in_two_overlapping_vpcs_is_two_flows() {
    let mut lab = Lab::from_toml(TWINS);
    const A1: [u8; 4] = [10, 0, 1, 10];
    const A2: [u8; 4] = [10, 0, 2, 20];
    lab.pass("a1", "a2", &tcp(A1, 40000, A2, 80, "S", 1, 0));
    lab.pass("a2", "a1", &tcp(A2, 80, A1, 40000, "SA", 9, 2));
    // In b, the same addresses and ports: the reply's 5-tuple belongs to no
    // tracked flow there, and b1's group admits nothing.
    let (a, _) = lab.send("b2", &tcp(A2, 80, A1, 40000, "SA", 9, 2));
    assert_eq!(a, Action::Drop(DropReason::SgDeny), "a's tracked flow must not open b1");
    // And a's flow carries on.
    lab.pass("a1", "a2", &tcp(A1, 40000, A2, 80, "A", 2, 10));
}

/// TWINS with a way out: a1 through a's NAT gateway, b1 at an Elastic IP.
fn twins_online() -> String {
    TWINS
        .replace(
            "[[subnets]]\nname = \"a-1\"",
            "[internet]\ngateway = \"198.51.100.1\"\naddresses = [\"198.51.100.10/24\"]\nnamespace = \"web\"\n\n[[subnets]]\nname = \"a-pub\"\ncidr = \"10.0.0.0/24\"\nroute_table = \"a-pub-rt\"\n\n[[nat_gateways]]\nname = \"nat-a\"\nsubnet = \"a-pub\"\nprivate_ip = \"10.0.0.5\"\nelastic_ips = [\"203.0.113.5\"]\n\n[[route_tables]]\nname = \"a-pub-rt\"\nroutes = [ { destination = \"0.0.0.0/0\", target = \"igw\" } ]\n\n[[subnets]]\nname = \"a-1\"",
        )
        .replace("[[route_tables]]\nname = \"a-rt\"", "[[route_tables]]\nname = \"a-rt\"\nroutes = [ { destination = \"0.0.0.0/0\", target = \"nat-a\" } ]")
        .replace(
            "[[route_tables]]\nname = \"b-rt\"\nvpc = \"b\"",
            "[[route_tables]]\nname = \"b-rt\"\nvpc = \"b\"\nroutes = [ { destination = \"0.0.0.0/0\", target = \"igw\" } ]",
        )
        .replace(
            "ip = \"10.0.1.10\"\nsecurity_groups = [\"closed\"]",
            "ip = \"10.0.1.10\"\nelastic_ip = \"203.0.113.30\"\nsecurity_groups = [\"closed\"]",
        )
}

#[test]
fn a_nat_session_in_one_vpc_relates_nothing_in_an_overlapping_one() {
    let mut lab = Lab::from_toml(&twins_online());
    const A1: [u8; 4] = [10, 0, 1, 10];
    const B1_EIP: [u8; 4] = [203, 0, 113, 30];
    let out = lab.pass("a1", "internet", &tcp(A1, 40000, WEB, 80, "S", 1, 0));
    assert_eq!(seen(&out).src, addr(NAT_IP));
    // An error about a1's flow, as the internet would send it to its NAT address: a1 gets it.
    let q = tcp(NAT_IP, seen(&out).sport, WEB, 80, "S", 1, 0);
    lab.pass("internet", "a1", &icmp_error(WEB, NAT_IP, port_unreachable(), &q));
    // The same quoted flow at b1's Elastic IP is b's (10.0.1.10:40000 in b):
    // no flow of b's relates it, and b1's group admits nothing.
    let q = tcp(B1_EIP, 40000, WEB, 80, "S", 1, 0);
    let (a, _) = lab.send("internet", &icmp_error(WEB, B1_EIP, port_unreachable(), &q));
    assert_eq!(a, Action::Drop(DropReason::SgDeny), "a's NAT session must not open b1's groups");
}

#[test]
fn one_datagram_id_in_two_overlapping_vpcs_is_two_datagrams() {
    let mut lab = Lab::from_toml(&twins_online());
    const A1: [u8; 4] = [10, 0, 1, 10];
    let fa = fragments(&udp_no_df(A1, 5000, WEB, 53, &[0u8; 600]), 256);
    let fb = fragments(&udp_no_df(A1, 6000, WEB, 53, &[1u8; 600]), 256);
    assert_eq!(fa[0][4..6], fb[0][4..6], "the same IP identification");
    let out = lab.pass("a1", "internet", &fa[0]);
    assert_eq!(seen(&out).src, addr(NAT_IP));
    // b1 (a1's address, in b) sends a later fragment of its own datagram:
    // it waits for b1's first fragment, never takes a1's ports.
    let (a, _) = lab.send("b1", &fb[1]);
    assert_eq!(a, Action::Held, "b1's fragment must not join a1's datagram");
    let out = lab.pass("b1", "internet", &fb[0]);
    assert_eq!(seen(&out).src, addr([203, 0, 113, 30]));
}

#[test]
fn another_vpcs_query_to_the_resolver_is_dropped_and_named() {
    let mut lab = Lab::from_toml(PEERING);
    let (a, _) = lab.send("auth", &udp(AUTH, 5353, [169, 254, 169, 253], 53, b"q"));
    assert_eq!(a, Action::Drop(DropReason::DnsOtherVpc), "the resolver is the first VPC's");
    assert_eq!(lab.totals().drop_count("dns_other_vpc"), 1);
}

#[test]
fn a_reload_keeps_the_vpcs_and_how_they_are_joined() {
    let mut old = config::parse("vpcs.toml", PEERING).unwrap();
    // Routes may change.
    let routes = PEERING.replace("{ destination = \"10.2.0.0/16\", target = \"pcx-app-shared\" },\n", "");
    old.reload(config::parse("vpcs.toml", &routes).unwrap()).expect("a route change reloads");
    // A VPC's block, or a peering that joins or parts VPCs, may not.
    let moved = PEERING.replace(
        "name = \"logs\"\ncidr = \"10.2.0.0/16\"",
        "name = \"logs\"\ncidr = \"10.2.0.0/16\"\nid = \"vpc-0a1b2c3d\"",
    );
    let e = old.reload(config::parse("vpcs.toml", &moved).unwrap()).unwrap_err();
    assert!(e.to_string().contains("the VPCs"), "{e}");
    let i = PEERING.find("[[peerings]]\nname = \"pcx-shared-logs\"").unwrap();
    let parted = format!(
        "{}{}",
        &PEERING[..i],
        &PEERING[i..].replacen("[[peerings]]\nname = \"pcx-shared-logs\"\nvpcs = [\"shared\", \"logs\"]\n", "", 1)
    )
    .replace("target = \"pcx-shared-logs\"", "target = \"blackhole\"");
    let e = old.reload(config::parse("vpcs.toml", &parted).unwrap()).unwrap_err();
    assert!(e.to_string().contains("peerings and transit gateways join"), "{e}");
}

#[test]
fn routes_to_a_peering_inside_the_own_vpc_are_refused_everywhere() {
    let mut vpc = config::parse("vpcs.toml", PEERING).unwrap();
    let e = vpc.add_route("app-rt", "10.0.9.0/24", "pcx-app-shared").unwrap_err();
    assert!(e.to_string().contains("inside the table's own VPC app"), "{e}");
    // A host may not take a peering's name (both are route targets).
    let e = refused(&PEERING.replace("name = \"logs\"\nsubnet", "name = \"pcx-app-shared\"\nsubnet"));
    assert!(e.message.contains("`pcx-app-shared` is already used"), "{e}");
}

fn refused(src: &str) -> config::ConfigError {
    config::parse("vpcs.toml", src).expect_err("the file must be refused")
}

#[test]
fn the_file_refuses_what_aws_refuses_with_the_line_and_the_fix() {
    // A peering between overlapping VPCs.
    let e = refused(&PEERING.replace("vpcs = [\"app\", \"shared\"]", "vpcs = [\"app\", \"legacy\"]"));
    assert!(e.message.contains("overlap"), "{e}");
    assert_eq!(e.line, PEERING.lines().position(|l| l.contains("vpcs = [\"app\", \"shared\"]")).unwrap() + 1);
    // A route to a NAT gateway of another VPC.
    let e = refused(&PEERING.replace(
        "{ destination = \"10.1.0.0/16\", target = \"pcx-app-shared\" },",
        "{ destination = \"10.1.0.0/16\", target = \"nat-shared\" },",
    ));
    assert!(e.message.contains("is a NAT gateway of VPC shared, not of this table's VPC app"), "{e}");
    assert!(e.fix.contains("peering"), "{}", e.fix);
    // A peering that does not end in the table's VPC.
    let e = refused(&PEERING.replace(
        "{ destination = \"10.1.0.0/16\", target = \"pcx-app-shared\" },",
        "{ destination = \"10.1.0.0/16\", target = \"pcx-shared-logs\" },",
    ));
    assert!(e.message.contains("does not connect this table's VPC app"), "{e}");
    // A peering route inside the table's own VPC.
    let e = refused(&PEERING.replace(
        "{ destination = \"10.1.0.0/16\", target = \"pcx-app-shared\" },",
        "{ destination = \"10.0.9.0/24\", target = \"pcx-app-shared\" },",
    ));
    assert!(e.message.contains("inside the table's own VPC"), "{e}");
    // A subnet outside its VPC, a route table of another VPC, an unknown VPC.
    let e =
        refused(&PEERING.replace("vpc = \"logs\"\ncidr = \"10.2.1.0/24\"", "vpc = \"logs\"\ncidr = \"10.3.1.0/24\""));
    assert!(e.message.contains("not inside the VPC 10.2.0.0/16"), "{e}");
    let e = refused(&PEERING.replace("route_table = \"logs-rt\"", "route_table = \"app-rt\""));
    assert!(e.message.contains("route table `app-rt` is VPC app's"), "{e}");
    let e = refused(&PEERING.replace("vpc = \"logs\"\ncidr", "vpc = \"log\"\ncidr"));
    assert!(e.message.contains("no VPC named `log`") && e.fix.contains("shared"), "{e}");
    // A host naming a group of another VPC.
    let e = refused(&TWINS.replace(
        "ip = \"10.0.2.20\"\nsecurity_groups = [\"closed\"]",
        "ip = \"10.0.2.20\"\nsecurity_groups = [\"server\"]",
    ));
    assert!(e.message.contains("no security group named `server` in the host's VPC b"), "{e}");
}

#[test]
fn more_than_64_vpcs_are_refused_with_the_line() {
    let mut src = String::from("[vpc]\ncidr = \"10.0.0.0/16\"\n");
    for v in 1..=64 {
        src.push_str(&format!("\n[[vpcs]]\nname = \"v{v}\"\ncidr = \"10.{v}.0.0/16\"\n"));
    }
    let e = refused(&src);
    assert!(e.message.contains("more than 64 VPCs"), "{e}");
    assert_eq!(e.line, src.lines().position(|l| l == "name = \"v64\"").unwrap() + 1);
    // 64 load.
    let cut = src.find("\n[[vpcs]]\nname = \"v64\"").unwrap();
    config::parse("vpcs.toml", &src[..cut]).unwrap();
}

#[test]
fn the_routes_beyond_a_peer_load_with_a_warning() {
    let vpc = config::parse("vpcs.toml", PEERING).unwrap();
    let w: Vec<&String> = vpc.warnings.iter().filter(|w| w.contains("peering_transit")).collect();
    assert_eq!(w.len(), 2, "{:?}", vpc.warnings);
    assert_eq!(vpc.parts.vpcs.len(), 4);
    assert_eq!(vpc.parts.peerings.len(), 2);
}

#[test]
fn run_time_routes_are_resolved_in_the_tables_vpc() {
    let mut vpc = config::parse("vpcs.toml", PEERING).unwrap();
    let e = vpc.add_route("app-rt", "10.9.0.0/16", "nat-shared").unwrap_err();
    assert!(e.to_string().contains("NAT gateway of VPC shared"), "{e}");
    let e = vpc.add_route("logs-rt", "10.0.0.0/16", "pcx-app-shared").unwrap_err();
    assert!(e.to_string().contains("does not connect"), "{e}");
    vpc.add_route("shared-rt", "10.9.0.0/16", "blackhole").unwrap();
    vpc.delete_route("app-rt", "10.2.0.0/16").unwrap();
    let mut lab = Lab { gw: vpc.build(), pipe: vpc.build().pipeline(), now: natgw::clock::Timestamp::from_secs(1000) };
    lab.pipe = lab.gw.pipeline();
    // app -> logs now meets app-rt's default route (still the peering).
    let (a, _) = lab.send("app", &echo(APP, LOGS, 3, 1));
    assert_eq!(a, Action::Drop(DropReason::PeeringTransit));
}
