//! Transit gateways: the hub and spokes of examples/scenarios/transit-hub.toml
//! (spokes reach the shared VPC and the internet through its NAT gateway,
//! not each other), associations and propagations, AWS's network ACL rules
//! for attachment subnets, and the file's refusals with their lines.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure
mod common;
use common::*;
use natgw::control::config;
use natgw::pipeline::{Action, DropReason};

const HUB: &str = include_str!("../examples/scenarios/transit-hub.toml");
const AUTH: [u8; 4] = [10, 10, 1, 10];
const PROD: [u8; 4] = [10, 20, 1, 10];
const DEV: [u8; 4] = [10, 30, 1, 10];

#[test]
fn every_spoke_reaches_the_shared_vpc_both_ways() {
    let mut lab = Lab::from_toml(HUB);
    for (name, ip) in [("prod", PROD), ("dev", DEV)] {
        let out = lab.pass(name, "auth", &tcp(ip, 40000, AUTH, 443, "S", 1, 0));
        let s = seen(&out);
        assert_eq!((s.src, s.dst, s.sport), (addr(ip), addr(AUTH), 40000), "no translation through the hub");
        lab.pass("auth", name, &tcp(AUTH, 443, ip, 40000, "SA", 9, 2));
    }
}

#[test]
fn the_spokes_are_kept_apart_by_the_route_tables_alone() {
    let mut lab = Lab::from_toml(HUB);
    // The positive control on the same lab: each reaches the hub.
    lab.pass("prod", "auth", &echo(PROD, AUTH, 1, 1));
    lab.pass("dev", "auth", &echo(DEV, AUTH, 1, 1));
    let (a, _) = lab.send("prod", &echo(PROD, DEV, 2, 1));
    assert_eq!(a, Action::Drop(DropReason::Blackhole), "prod -> dev: the spokes' blackhole 10.0.0.0/8");
    let (a, _) = lab.send("dev", &echo(DEV, PROD, 3, 1));
    assert_eq!(a, Action::Drop(DropReason::Blackhole));
    // Without the blackhole, the default route carries prod to dev through
    // the shared VPC, whose attachment subnet sends it back to the hub.
    let open = HUB.replace("  { destination = \"10.0.0.0/8\", target = \"blackhole\" },\n", "");
    let mut lab = Lab::from_toml(&open);
    let out = lab.pass("prod", "dev", &echo(PROD, DEV, 4, 1));
    assert_eq!(seen(&out).src, addr(PROD));
    lab.pass("dev", "prod", &echo_reply(DEV, PROD, 4, 1));
}

#[test]
fn the_spokes_leave_through_the_hubs_nat_gateway() {
    let mut lab = Lab::from_toml(HUB);
    let out = lab.pass("prod", "internet", &tcp(PROD, 40000, WEB, 80, "S", 1, 0));
    let s = seen(&out);
    assert_eq!(s.src, addr(NAT_IP), "centralized egress: the shared VPC's NAT gateway");
    let back = lab.pass("internet", "prod", &tcp(WEB, 80, NAT_IP, s.sport, "SA", 9, 2));
    let b = seen(&back);
    assert_eq!((b.dst, b.dport), (addr(PROD), 40000));
    // The NAT gateway's reply comes back to prod through tgw-rtb-shared.
    lab.pass("dev", "internet", &echo(DEV, WEB, 5, 1));
}

#[test]
fn an_attachment_without_an_association_has_no_routes() {
    let src = HUB.replace("associations = [\"prod\", \"dev\"]", "associations = [\"prod\"]");
    let vpc = config::parse("hub.toml", &src).unwrap();
    assert!(
        vpc.warnings.iter().any(|w| w.contains("tgw-attach-dev") && w.contains("transit_no_route")),
        "{:?}",
        vpc.warnings
    );
    let mut lab = Lab::from_toml(&src);
    lab.pass("prod", "auth", &echo(PROD, AUTH, 1, 1));
    let (a, _) = lab.send("dev", &echo(DEV, AUTH, 1, 1));
    assert_eq!(a, Action::Drop(DropReason::TransitNoRoute));
    // The shared VPC still routes to dev (its table propagates dev), the
    // reply cannot come back: a routing mistake natgw trace shows.
    lab.pass("auth", "dev", &echo(AUTH, DEV, 2, 1));
    assert_eq!(lab.totals().drop_count("transit_no_route"), 1);
}

#[test]
fn a_spoke_table_without_the_propagation_does_not_route_the_hub() {
    let src = HUB.replace("propagations = [\"shared\"]", "propagations = []");
    // With the static routes, 10.0.0.0/8's blackhole catches the shared VPC.
    let (a, _) = Lab::from_toml(&src).send("prod", &echo(PROD, AUTH, 1, 1));
    assert_eq!(a, Action::Drop(DropReason::Blackhole));
    // Without them, nothing matches.
    let i = src.find("routes = [\n  { destination = \"0.0.0.0/0\", target = \"shared\" }").unwrap();
    let j = i + src[i..].find("]\n").unwrap() + 2;
    let bare = format!("{}{}", &src[..i], &src[j..]);
    let mut lab = Lab::from_toml(&bare);
    let (a, _) = lab.send("prod", &echo(PROD, AUTH, 1, 1));
    assert_eq!(a, Action::Drop(DropReason::TransitNoRoute));
    assert_eq!(lab.totals().drop_count("transit_no_route"), 1);
}

#[test]
fn the_default_route_table_joins_every_attachment() {
    // No route tables: AWS's default table, every attachment associated and
    // propagating: every VPC reaches every other.
    let i = HUB.find("[[transit_gateways.route_tables]]").unwrap();
    let j = HUB.find("[[subnets]]").unwrap();
    let src = format!("{}{}", &HUB[..i], &HUB[j..]);
    let mut lab = Lab::from_toml(&src);
    lab.pass("prod", "dev", &echo(PROD, DEV, 1, 1));
    lab.pass("dev", "auth", &echo(DEV, AUTH, 1, 1));
    let vpc = config::parse("hub.toml", &src).unwrap();
    assert_eq!(vpc.parts.transit_gateways[0].tables[0].name, "tgw-rtb-default");
}

/// The hub file with network ACL `acl` (inbound and outbound rules) on subnet `subnet`.
fn with_acl(subnet: &str, inbound: &str, outbound: &str) -> String {
    let at = format!("name = \"{subnet}\"\n");
    assert!(HUB.contains(&at));
    format!(
        "{}\n[[network_acls]]\nname = \"x-acl\"\nvpc = \"{}\"\ninbound = [{inbound}]\noutbound = [{outbound}]\n",
        HUB.replacen(&at, &format!("{at}network_acl = \"x-acl\"\n"), 1),
        if subnet.starts_with("prod") { "prod" } else { "shared" },
    )
}

const ALLOW_ALL: &str = "{ rule = 200, action = \"allow\", protocol = \"all\", cidr = \"0.0.0.0/0\" }";

#[test]
fn the_attachment_subnets_network_acls_apply_as_aws_documents() {
    // Different subnets (auth's and the attachment's): from an instance to
    // the hub, the attachment subnet's inbound rules (by source) apply ...
    let deny_auth =
        format!("{{ rule = 100, action = \"deny\", protocol = \"all\", cidr = \"10.10.1.0/24\" }}, {ALLOW_ALL}");
    let mut lab = Lab::from_toml(&with_acl("shared-tgw", &deny_auth, ALLOW_ALL));
    lab.pass("prod", "auth", &echo(PROD, AUTH, 1, 1));
    let (a, _) = lab.send("auth", &echo_reply(AUTH, PROD, 1, 1));
    assert_eq!(a, Action::Drop(DropReason::AclDeny), "auth -> hub: the attachment subnet's inbound rules");
    // ... and from the hub to an instance, its outbound rules (by destination).
    let mut lab = Lab::from_toml(&with_acl("shared-tgw", ALLOW_ALL, &deny_auth));
    let (a, _) = lab.send("prod", &echo(PROD, AUTH, 2, 1));
    assert_eq!(a, Action::Drop(DropReason::AclDeny), "hub -> auth: the attachment subnet's outbound rules");
    lab.pass("auth", "prod", &echo(AUTH, PROD, 3, 1));

    // One subnet for the instance and the attachment (prod's): from the
    // instance to the hub both its outbound and its inbound rules apply;
    // from the hub to the instance neither.
    let deny_all = "{ rule = 100, action = \"deny\", protocol = \"all\", cidr = \"0.0.0.0/0\" }";
    let mut lab = Lab::from_toml(&with_acl("prod-a", deny_all, ALLOW_ALL));
    let (a, _) = lab.send("prod", &echo(PROD, AUTH, 4, 1));
    assert_eq!(a, Action::Drop(DropReason::AclDeny), "prod -> hub: its subnet's inbound rules too");
    lab.pass("auth", "prod", &echo(AUTH, PROD, 5, 1));
    let mut lab = Lab::from_toml(&with_acl("prod-a", ALLOW_ALL, deny_all));
    let (a, _) = lab.send("prod", &echo(PROD, AUTH, 6, 1));
    assert_eq!(a, Action::Drop(DropReason::AclDeny), "prod -> hub: its subnet's outbound rules");
    lab.pass("auth", "prod", &echo(AUTH, PROD, 7, 1));
}

fn refused(src: &str) -> config::ConfigError {
    config::parse("hub.toml", src).expect_err("the file must be refused")
}

fn line_of(needle: &str) -> usize {
    HUB.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn the_file_refuses_what_aws_refuses_with_the_line_and_the_fix() {
    // A route to a transit gateway the table's VPC is not attached to.
    let e = refused(
        &HUB.replace("  { vpc = \"dev\", subnet = \"dev-a\" },\n", "").replace("[\"prod\", \"dev\"]", "[\"prod\"]"),
    );
    assert!(e.message.contains("VPC dev has no attachment to transit gateway `tgw-hub`"), "{e}");
    assert!(e.fix.contains("vpc = \"dev\""), "{}", e.fix);
    // An attachment's subnet of another VPC.
    let e = refused(&HUB.replace("{ vpc = \"dev\", subnet = \"dev-a\" }", "{ vpc = \"dev\", subnet = \"prod-a\" }"));
    assert!(e.message.contains("subnet `prod-a` is VPC prod's, not VPC dev's"), "{e}");
    assert_eq!(e.line, line_of("{ vpc = \"dev\", subnet = \"dev-a\" }"));
    // Two associations of one attachment.
    let e = refused(&HUB.replace("associations = [\"shared\"]", "associations = [\"shared\", \"dev\"]"));
    assert!(e.message.contains("tgw-attach-dev is already associated on line"), "{e}");
    assert!(e.fix.contains("exactly one"), "{}", e.fix);
    // An attachment that does not exist.
    let e = refused(&HUB.replace("propagations = [\"prod\", \"dev\"]", "propagations = [\"prod\", \"qa\"]"));
    assert!(e.message.contains("tgw-hub has no attachment `qa`") && e.fix.contains("tgw-attach-dev (dev)"), "{e}");
    // Overlapping attached VPCs.
    let e = refused(
        &HUB.replace("cidr = \"10.30.0.0/16\"", "cidr = \"10.20.0.0/16\"").replace("10.30.1.0/24", "10.20.1.0/24"),
    );
    assert!(e.message.contains("overlaps VPC prod"), "{e}");
    // A route inside the table's own VPC, a name that is no tgw- id.
    let e = refused(&HUB.replace(
        "{ destination = \"10.0.0.0/8\", target = \"tgw-hub\" },\n  { destination = \"0.0.0.0/0\", target = \"nat-egress\" },",
        "{ destination = \"10.10.9.0/24\", target = \"tgw-hub\" },\n  { destination = \"0.0.0.0/0\", target = \"nat-egress\" },",
    ));
    assert!(e.message.contains("inside the table's own VPC shared"), "{e}");
    let e = refused(&HUB.replace("name = \"tgw-hub\"", "name = \"hub\""));
    assert!(e.message.contains("not a transit gateway id"), "{e}");
    // Two static routes to one destination.
    let e = refused(&HUB.replace(
        "  { destination = \"10.0.0.0/8\", target = \"blackhole\" },\n",
        "  { destination = \"10.0.0.0/8\", target = \"blackhole\" },\n  { destination = \"10.0.0.0/8\", target = \"shared\" },\n",
    ));
    assert!(e.message.contains("already has a static route to 10.0.0.0/8"), "{e}");
}

#[test]
fn a_peer_of_an_attached_vpc_may_not_overlap_another_attached_vpc() {
    let src = format!(
        "{}\n[[vpcs]]\nname = \"other\"\ncidr = \"10.20.0.0/16\"\n\n[[peerings]]\nname = \"pcx-dev-other\"\nvpcs = [\"dev\", \"other\"]\n",
        HUB.replacen("[internet]", "[[vpcs]]\nname = \"placeholder\"\ncidr = \"10.99.0.0/16\"\n\n[internet]", 1)
    );
    let e = refused(&src);
    assert!(e.message.contains("overlaps VPC prod") && e.message.contains("through a third"), "{e}");
}

#[test]
fn a_peering_beyond_the_hub_carries_the_hubs_own_traffic_only() {
    // ext is peered with shared; the spokes' default route reaches shared,
    // whose attachment subnet routes ext's block to the peering.
    let src = format!(
        "{}\n[[vpcs]]\nname = \"ext\"\ncidr = \"10.40.0.0/16\"\n\n[[peerings]]\nname = \"pcx-shared-ext\"\nvpcs = [\"shared\", \"ext\"]\n\n[[subnets]]\nname = \"ext-a\"\nvpc = \"ext\"\ncidr = \"10.40.1.0/24\"\nroute_table = \"ext-rt\"\n\n[[hosts]]\nname = \"ext\"\nsubnet = \"ext-a\"\nip = \"10.40.1.10\"\n\n[[route_tables]]\nname = \"ext-rt\"\nvpc = \"ext\"\nroutes = [ {{ destination = \"10.10.0.0/16\", target = \"pcx-shared-ext\" }} ]\n",
        HUB.replace(
            "name = \"shared-rt\"\nroutes = [\n",
            "name = \"shared-rt\"\nroutes = [\n  { destination = \"10.40.0.0/16\", target = \"pcx-shared-ext\" },\n",
        )
        .replace(
            "name = \"shared-tgw-rt\"\nroutes = [\n",
            "name = \"shared-tgw-rt\"\nroutes = [\n  { destination = \"10.40.0.0/16\", target = \"pcx-shared-ext\" },\n",
        )
        .replace("{ destination = \"10.0.0.0/8\", target = \"blackhole\" },", "")
    );
    const EXT: [u8; 4] = [10, 40, 1, 10];
    let mut lab = Lab::from_toml(&src);
    // The positive control: shared's own host reaches ext over the peering.
    lab.pass("auth", "ext", &echo(AUTH, EXT, 1, 1));
    // A spoke's packet through the hub is not shared's: AWS drops it.
    let (a, _) = lab.send("prod", &echo(PROD, EXT, 2, 1));
    assert_eq!(a, Action::Drop(DropReason::PeeringTransit), "spoke -> hub -> peering");
}

#[test]
fn only_the_vpc_whose_nat_gateway_translated_lets_its_address_out() {
    // shared's NAT subnet sends the internet to the hub, the hub to prod,
    // prod's table to its internet gateway: the packet carries shared's NAT
    // address, which prod's internet gateway does not let out.
    let src = HUB
        .replace(
            "name = \"shared-public-rt\"\nroutes = [\n  { destination = \"0.0.0.0/0\", target = \"igw\" },",
            "name = \"shared-public-rt\"\nroutes = [\n  { destination = \"192.0.2.0/24\", target = \"igw\" },\n  { destination = \"0.0.0.0/0\", target = \"tgw-hub\" },",
        )
        .replace(
            "name = \"tgw-rtb-shared\"\nassociations = [\"shared\"]\npropagations = [\"prod\", \"dev\"]",
            "name = \"tgw-rtb-shared\"\nassociations = [\"shared\"]\npropagations = [\"prod\", \"dev\"]\nroutes = [ { destination = \"0.0.0.0/0\", target = \"prod\" } ]",
        )
        .replace(
            "name = \"prod-rt\"\nvpc = \"prod\"\nroutes = [\n  { destination = \"0.0.0.0/0\", target = \"tgw-hub\" },",
            "name = \"prod-rt\"\nvpc = \"prod\"\nroutes = [\n  { destination = \"10.0.0.0/8\", target = \"tgw-hub\" },\n  { destination = \"0.0.0.0/0\", target = \"igw\" },",
        );
    let mut lab = Lab::from_toml(&src);
    let (a, _) = lab.send("auth", &echo(AUTH, WEB, 1, 1));
    assert_eq!(a, Action::Drop(DropReason::NoPublicIp), "another VPC's NAT address at prod's internet gateway");
}
