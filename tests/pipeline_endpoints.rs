//! VPC endpoints in the pipeline: a gateway endpoint's prefix-list route
//! sends the service's traffic out of the endpoint's door with the host's
//! private address (no NAT gateway, no internet gateway), under the subnet's
//! network ACL; the door's replies come back only to hosts whose route table
//! has that endpoint; an interface endpoint's network interface is a host of
//! its subnet with its own security groups; the NAT gateway is a hop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure
mod common;
use common::*;
use natgw::pipeline::{Action, DropReason};

const S3: [u8; 4] = [192, 0, 2, 10];
const S3_ENI: [u8; 4] = [10, 0, 1, 254];

const SERVICES: &str = r#"
[[services]]
service = "s3"
address = "192.0.2.10"
buckets = [ { name = "lab-bucket" } ]

[[endpoints]]
id = "vpce-1a2b3c4d"
service = "s3"
type = "gateway"
route_tables = ["private"]
"#;

fn lab_with_gateway_endpoint(extra: &[(&str, &str)]) -> Lab {
    let mut edits = vec![("[[route_tables]]", &*Box::leak(format!("{SERVICES}\n[[route_tables]]").into_boxed_str()))];
    edits.extend_from_slice(extra);
    Lab::with(&edits)
}

#[test]
fn a_gateway_endpoint_carries_the_private_address_past_nat_and_internet_gateway() {
    let mut lab = lab_with_gateway_endpoint(&[]);
    let syn = tcp(APP, 40000, S3, 80, "S", 1, 0);
    let out = seen(&lab.pass("app", "vpce-1a2b3c4d", &syn));
    assert_eq!((out.src, out.dst, out.sport), (addr(APP), addr(S3), 40000), "no translation");
    assert_eq!(out.ttl, 63, "one hop: the VPC router (no NAT gateway hop)");
    let back = seen(&lab.pass("vpce-1a2b3c4d", "app", &tcp(S3, 80, APP, 40000, "SA", 9, 2)));
    assert_eq!((back.src, back.dst), (addr(S3), addr(APP)));
    // Later packets of the flow take the same way (the flow cache's path).
    for i in 0..3 {
        let out = seen(&lab.pass("app", "vpce-1a2b3c4d", &tcp(APP, 40000, S3, 80, "A", 2 + i, 10)));
        assert_eq!((out.src, out.ttl), (addr(APP), 63));
    }
    // The NAT gateway saw none of it.
    assert_eq!(lab.totals().nat_count("connection_attempts"), 0);
    assert_eq!(lab.totals().nat_count("packets_out_to_destination"), 0);
    // Without an endpoint in its table, bastion reaches the service's public
    // address through the internet gateway, as its Elastic IP.
    let out = seen(&lab.pass("bastion", "internet", &tcp(BASTION, 40001, S3, 80, "S", 1, 0)));
    assert_eq!(out.src, addr(BASTION_EIP));
    lab.pass("app", "internet", &tcp(APP, 40002, WEB, 80, "S", 1, 0));
    assert_eq!(lab.totals().nat_count("connection_attempts"), 1, "the counter counts");
}

#[test]
fn a_nat_gateways_translated_packet_is_not_sent_to_an_endpoint() {
    // Only the NAT gateway's (public) subnet routes the service to the endpoint.
    let mut lab = lab_with_gateway_endpoint(&[("route_tables = [\"private\"]\n", "route_tables = [\"public\"]\n")]);
    // app goes by its table's default route to the NAT gateway, whose subnet's
    // table then names the endpoint: stopped, named, before the service acts.
    let (a, _) = lab.send("app", &tcp(APP, 40000, S3, 80, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::NatToEndpoint));
    assert_eq!(lab.totals().drop_count("nat_to_endpoint"), 1);
    // Decided before the NAT gateway acts: no port taken, no session, no attempt counted.
    assert_eq!(lab.gw.nats()[0].session_count(), 0);
    assert_eq!(lab.totals().nat_count("connection_attempts"), 0);
    // bastion (Elastic IP, public subnet) goes to the endpoint with its own address.
    let out = seen(&lab.pass("bastion", "vpce-1a2b3c4d", &tcp(BASTION, 40001, S3, 80, "S", 1, 0)));
    assert_eq!(out.src, addr(BASTION));
}

#[test]
fn the_door_answers_only_hosts_whose_table_routes_to_it() {
    let mut lab = lab_with_gateway_endpoint(&[]);
    // bastion's table has no route to the endpoint: the door has no path to it.
    let (a, _) = lab.send("vpce-1a2b3c4d", &tcp(S3, 80, BASTION, 40000, "SA", 9, 2));
    assert_eq!(a, Action::Drop(DropReason::NoRoute));
    // Nor to an address outside the VPC.
    let (a, _) = lab.send("vpce-1a2b3c4d", &tcp(S3, 80, WEB, 40000, "SA", 9, 2));
    assert_eq!(a, Action::Drop(DropReason::NoRoute));
}

#[test]
fn the_subnets_network_acl_applies_to_endpoint_traffic() {
    let mut lab = lab_with_gateway_endpoint(&[
        ("route_table = \"private\"", "route_table = \"private\"\nnetwork_acl = \"no-s3\""),
        (
            "[[hosts]]",
            "[[network_acls]]\nname = \"no-s3\"\noutbound = [\n  { rule = 100, action = \"deny\", cidr = \"192.0.2.10/32\" },\n  { rule = 200, action = \"allow\", cidr = \"0.0.0.0/0\" },\n]\ninbound = [ { rule = 100, action = \"allow\", cidr = \"0.0.0.0/0\" } ]\n\n[[hosts]]",
        ),
    ]);
    let (a, _) = lab.send("app", &tcp(APP, 40000, S3, 80, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::AclDeny));
}

#[test]
fn an_established_flow_through_the_nat_gateway_keeps_both_hops_in_the_cache() {
    let mut lab = Lab::new();
    let first = seen(&lab.pass("app", "internet", &tcp(APP, 40000, WEB, 80, "S", 1, 0)));
    let port = first.sport;
    lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, port, "SA", 9, 2));
    for i in 0..4 {
        let out = seen(&lab.pass("app", "internet", &tcp(APP, 40000, WEB, 80, "A", 2 + i, 10)));
        assert_eq!((out.src, out.sport, out.ttl), (addr(NAT_IP), port, 62));
    }
    // A cached flow's packet with TTL 2 still expires at the NAT gateway.
    let mut p = tcp(APP, 40000, WEB, 80, "A", 9, 10);
    p[8] = 2;
    let sum = etherparse::Ipv4Header::from_slice(&p).unwrap().0.calc_header_checksum();
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    let (a, out) = lab.send("app", &p);
    assert_eq!(a, Action::Reply { egress: lab.ifc("app"), cause: DropReason::TtlExpired });
    assert_eq!(seen(&out).src, addr([10, 0, 0, 5]));
}

#[test]
fn an_interface_endpoint_is_a_network_interface_with_its_own_groups() {
    let mut lab = Lab::with(&[(
        "[[route_tables]]",
        r#"
[[services]]
service = "s3"
address = "192.0.2.10"

[[security_groups]]
name = "endpoint-sg"
inbound = [ { protocol = "tcp", ports = "80", source = "10.0.0.0/16" } ]

[[endpoints]]
id = "vpce-11112222"
service = "s3"
type = "interface"
subnets = ["private"]
security_groups = ["endpoint-sg"]

[[route_tables]]"#,
    )]);
    let out = seen(&lab.pass("app", "vpce-11112222-private", &tcp(APP, 40000, S3_ENI, 80, "S", 1, 0)));
    assert_eq!((out.src, out.dst), (addr(APP), addr(S3_ENI)), "inside the subnet: no route, no NAT");
    lab.pass("vpce-11112222-private", "app", &tcp(S3_ENI, 80, APP, 40000, "SA", 9, 2));
    // Its group admits HTTP only.
    let (a, _) = lab.send("app", &udp(APP, 40000, S3_ENI, 53, b"q"));
    assert_eq!(a, Action::Drop(DropReason::SgDeny));
    // From the public subnet: routed (one hop), still its group's to decide.
    let out = seen(&lab.pass("bastion", "vpce-11112222-private", &tcp(BASTION, 40000, S3_ENI, 80, "S", 1, 0)));
    assert_eq!(out.ttl, 63);
}
