//! The VPC model in the pipeline: route tables (main, association, blackhole,
//! middlebox), network ACLs, and topology swaps under traffic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure
mod common;
use common::*;
use natgw::pipeline::{Action, DropReason, PacketBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const ACL_NO_PING: &str = r#"
[[network_acls]]
name = "no-ping"
outbound = [
  { rule = 100, action = "deny", protocol = "icmp", cidr = "0.0.0.0/0", icmp_type = 8 },
  { rule = 200, action = "allow", protocol = "all", cidr = "0.0.0.0/0" },
]
inbound = [
  { rule = 100, action = "allow", protocol = "all", cidr = "0.0.0.0/0" },
]
"#;

const ACL_NO_EPHEMERAL: &str = r#"
[[network_acls]]
name = "ssh-only"
outbound = [ { rule = 100, action = "allow", protocol = "all", cidr = "0.0.0.0/0" } ]
inbound = [ { rule = 100, action = "allow", protocol = "tcp", cidr = "0.0.0.0/0", ports = "22" } ]
"#;

fn lab_with_acl(acl: &str, name: &str) -> Lab {
    let src = natgw::control::config::DEFAULT_LAB
        .replace("profile = \"aws\"", "profile = \"aws\"\nseed = 42")
        .replace("route_table = \"private\"", &format!("route_table = \"private\"\nnetwork_acl = \"{name}\""));
    Lab::from_toml(&format!("{src}{acl}"))
}

#[test]
fn an_acl_can_deny_ping_and_allow_http() {
    let mut lab = lab_with_acl(ACL_NO_PING, "no-ping");
    let (a, _) = lab.send("app", &echo(APP, WEB, 1, 1));
    assert_eq!(a, Action::Drop(DropReason::AclDeny));
    let ext = seen(&lab.pass("app", "internet", &tcp(APP, 40000, WEB, 80, "S", 1, 0))).sport;
    lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, ext, "SA", 9, 2));
    assert_eq!(lab.totals().drop_count("acl_deny"), 1);
}

#[test]
fn a_stateless_acl_without_the_ephemeral_range_loses_replies() {
    let src = natgw::control::config::DEFAULT_LAB
        .replace("route_table = \"private\"", "route_table = \"private\"\nnetwork_acl = \"ssh-only\"");
    let vpc = natgw::control::config::parse("acl.toml", &format!("{src}{ACL_NO_EPHEMERAL}")).unwrap();
    assert!(
        vpc.warnings.iter().any(|w| w.contains("ephemeral")),
        "natgw warns when it loads such a file: {:?}",
        vpc.warnings
    );
    let mut lab = lab_with_acl(ACL_NO_EPHEMERAL, "ssh-only");
    // The SYN leaves (outbound allows all) ...
    let ext = seen(&lab.pass("app", "internet", &tcp(APP, 40000, WEB, 80, "S", 1, 0))).sport;
    // ... but the SYN-ACK to app's ephemeral port is denied entering the subnet.
    let (a, _) = lab.send("internet", &tcp(WEB, 80, NAT_IP, ext, "SA", 9, 2));
    assert_eq!(a, Action::Drop(DropReason::AclDeny));
    // SSH to app's port 22 from inside the VPC is allowed in.
    lab.pass("bastion", "app", &tcp(BASTION, 50000, APP, 22, "S", 1, 0));
}

#[test]
fn acls_act_at_subnet_boundaries_only() {
    // Two hosts of the private subnet talk although its ACL denies everything.
    let deny_all = "\n[[network_acls]]\nname = \"closed\"\n";
    let src = natgw::control::config::DEFAULT_LAB
        .replace("route_table = \"private\"", "route_table = \"private\"\nnetwork_acl = \"closed\"")
        .replace(
            "[[nat_gateways]]",
            "[[hosts]]\nname = \"app2\"\nsubnet = \"private\"\nip = \"10.0.1.11\"\n\n[[nat_gateways]]",
        );
    let mut lab = Lab::from_toml(&format!("{src}{deny_all}"));
    lab.pass("app", "app2", &tcp(APP, 1, [10, 0, 1, 11], 2, "S", 1, 0));
    let (a, _) = lab.send("app", &tcp(APP, 1, BASTION, 2, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::AclDeny), "a new custom ACL denies everything across the boundary");
}

#[test]
fn a_blackhole_route_drops() {
    let mut lab = Lab::with(&[(
        "{ destination = \"0.0.0.0/0\", target = \"nat-1\" },",
        "{ destination = \"0.0.0.0/0\", target = \"nat-1\" },\n  { destination = \"198.51.100.11/32\", target = \"blackhole\" },",
    )]);
    let (a, _) = lab.send("app", &udp(APP, 1, WEB2, 2, b"x"));
    assert_eq!(a, Action::Drop(DropReason::Blackhole));
    lab.pass("app", "internet", &udp(APP, 1, WEB, 2, b"x"));
}

#[test]
fn subnets_without_an_association_use_the_main_table() {
    let mut lab = Lab::with(&[("cidr = \"10.0.1.0/24\"\nroute_table = \"private\"", "cidr = \"10.0.1.0/24\"")]);
    // The private table is the main one: app still goes out through nat-1.
    assert_eq!(seen(&lab.pass("app", "internet", &udp(APP, 40000, WEB, 53, b"x"))).src, addr(NAT_IP));
}

#[test]
fn a_more_specific_route_steers_traffic_through_a_middlebox() {
    let fw = [10, 0, 2, 10];
    let mut lab = Lab::with(&[
        (
            "[[hosts]]\nname = \"bastion\"",
            "[[subnets]]\nname = \"inspection\"\ncidr = \"10.0.2.0/24\"\nroute_table = \"inspection\"\n\n[[hosts]]\nname = \"fw\"\nsubnet = \"inspection\"\nip = \"10.0.2.10\"\nsource_dest_check = false\n\n[[hosts]]\nname = \"bastion\"",
        ),
        (
            "{ destination = \"0.0.0.0/0\", target = \"igw\" },\n]",
            "{ destination = \"0.0.0.0/0\", target = \"igw\" },\n  { destination = \"10.0.1.0/24\", target = \"fw\" },\n]\n\n[[route_tables]]\nname = \"inspection\"\nroutes = []",
        ),
    ]);
    // bastion -> app is sent to the firewall first ...
    let at_fw = lab.pass("bastion", "fw", &tcp(BASTION, 50000, APP, 22, "S", 1, 0));
    assert_eq!(seen(&at_fw).dst, addr(APP), "unchanged: the middlebox sees the real endpoints");
    // ... which sends it on (with bastion's source address: source/dest check off).
    let delivered = lab.pass("fw", "app", &at_fw);
    assert_eq!(seen(&delivered).src, addr(BASTION));
    // A host with the check on may not do that.
    let (a, _) = lab.send("bastion", &tcp(fw, 1, APP, 22, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::SourceCheck));
}

#[test]
fn route_changes_are_swapped_in_while_traffic_flows() {
    let lab = Lab::new();
    let gw = lab.gw.clone();
    drop(lab); // its pipeline would hold the first topology
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    // Two workers carry traffic the whole time.
    for w in 0..2u16 {
        let gw = gw.clone();
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut pipe = gw.pipeline();
            let app = gw.topology().interfaces.iter().position(|i| i.name == "app").unwrap() as u16;
            let (mut forwarded, mut other) = (0u64, 0u64);
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                pipe.refresh();
                let mut b = PacketBuf::from_slice(&udp(APP, 20000 + (i % 1000) as u16 + w * 1000, WEB, 53, b"q"));
                match pipe.process(natgw::Timestamp::from_secs(1000), app, &mut b) {
                    Action::Forward(_) => forwarded += 1,
                    _ => other += 1,
                }
                i += 1;
            }
            (forwarded, other)
        }));
    }
    let mut vpc = natgw::control::config::parse("lab.toml", natgw::control::config::DEFAULT_LAB).unwrap();
    for k in 0..200u32 {
        let d = format!("192.0.{}.0/24", k % 250);
        vpc.add_route("private", &d, "blackhole").unwrap();
        gw.set_topology(natgw::pipeline::Topology::new(vpc.parts.clone()));
        vpc.delete_route("private", &d).unwrap();
        gw.set_topology(natgw::pipeline::Topology::new(vpc.parts.clone()));
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let (forwarded, other) = h.join().unwrap();
        assert!(forwarded > 100, "{forwarded}");
        assert_eq!(other, 0, "a packet was lost during a swap");
    }
    // Old topologies are freed by the control plane once no worker holds them.
    assert_eq!(gw.collect_garbage(), 0);
    // A new route takes effect at the next refresh.
    vpc.add_route("private", "198.51.100.10/32", "blackhole").unwrap();
    gw.set_topology(natgw::pipeline::Topology::new(vpc.parts.clone()));
    let mut pipe = gw.pipeline();
    let mut b = PacketBuf::from_slice(&udp(APP, 1, WEB, 2, b"x"));
    let app = gw.topology().interfaces.iter().position(|i| i.name == "app").unwrap() as u16;
    assert_eq!(pipe.process(natgw::Timestamp::from_secs(1000), app, &mut b), Action::Drop(DropReason::Blackhole));
}

#[test]
fn a_deleted_nat_gateway_leaves_blackhole_routes() {
    let lab = Lab::new();
    let mut vpc = natgw::control::config::parse("lab.toml", natgw::control::config::DEFAULT_LAB).unwrap();
    vpc.delete_nat_gateway("nat-1").unwrap();
    lab.gw.set_topology(natgw::pipeline::Topology::new(vpc.parts.clone()));
    let views = natgw::control::daemon::route_views(&vpc);
    let private = views.iter().find(|t| t.name == "private").unwrap();
    assert!(private.routes.iter().any(|(d, t, s)| d == "0.0.0.0/0" && t == "nat-1" && s == "blackhole"), "{private:?}");
    let mut lab = lab;
    lab.pipe.refresh();
    let (a, _) = lab.send("app", &udp(APP, 1, WEB, 2, b"x"));
    assert_eq!(a, Action::Drop(DropReason::Blackhole));
    // Its public address no longer answers from the internet side either.
    let (a, _) = lab.send("internet", &udp(WEB, 2, NAT_IP, 1, b"x"));
    assert_eq!(a, Action::Drop(DropReason::NoRoute));
}

const NAT_INSTANCE: &str = include_str!("../examples/scenarios/nat-instance.toml");

#[test]
fn a_route_to_an_instance_whose_check_is_on_is_accepted_and_its_traffic_dropped() {
    let vpc = natgw::control::config::parse("ni.toml", NAT_INSTANCE).unwrap();
    assert!(
        vpc.warnings.iter().any(|w| w.contains("source/destination check is on") && w.contains("line 66")),
        "{:?}",
        vpc.warnings
    );
    let mut lab = Lab::from_toml(NAT_INSTANCE);
    let (a, _) = lab.send("app", &echo(APP, WEB, 1, 1));
    assert_eq!(a, Action::Drop(DropReason::SourceCheck), "the instance receives only what is addressed to it");
    assert_eq!(lab.totals().drop_count("source_check"), 1);
}

#[test]
fn a_nat_instance_with_its_check_off_gets_the_subnets_traffic_and_returns_it() {
    let src = NAT_INSTANCE.replace("source_dest_check = true", "source_dest_check = false");
    let mut old = natgw::control::config::parse("ni.toml", NAT_INSTANCE).unwrap();
    let new = natgw::control::config::parse("ni.toml", &src).unwrap();
    old.reload(new).expect("a reload may change a host's source/destination check");
    let mut lab = Lab::from_toml(&src);
    const INSTANCE: [u8; 4] = [10, 0, 0, 20];
    // Untranslated to the instance: its own kernel translates.
    let out = lab.pass("app", "natinst", &echo(APP, WEB, 1, 1));
    assert_eq!((seen(&out).src, seen(&out).dst), (addr(APP), addr(WEB)));
    // Its masqueraded packet leaves as its Elastic IP; the reply comes back to it.
    let out = lab.pass("natinst", "internet", &echo(INSTANCE, WEB, 7, 1));
    assert_eq!(seen(&out).src, addr([203, 0, 113, 20]));
    lab.pass("internet", "natinst", &echo_reply(WEB, [203, 0, 113, 20], 7, 1));
    // And the reply it forwards to app carries web's address as its source.
    lab.pass("natinst", "app", &echo_reply(WEB, APP, 1, 1));
    // With its check off it may still not send as a public address it does
    // not own: the NAT gateway's Elastic IP, to the internet or hairpinned
    // to its own Elastic IP (AWS's internet gateway drops such a spoof).
    for dst in [WEB, [203, 0, 113, 20]] {
        let (a, _) = lab.send("natinst", &echo(NAT_IP, dst, 8, 1));
        assert_eq!(a, Action::Drop(DropReason::NoPublicIp), "to {dst:?}");
    }
}

const EIP_MOVE: &str = include_str!("../examples/scenarios/eip-move.toml");

#[test]
fn an_elastic_ip_moves_at_run_time_and_other_hosts_flows_never_notice() {
    const BLUE: [u8; 4] = [10, 0, 0, 10];
    const GREEN: [u8; 4] = [10, 0, 0, 11];
    const MOVED: [u8; 4] = [203, 0, 113, 10];
    let mut vpc = natgw::control::config::parse("eip.toml", EIP_MOVE).unwrap();
    let mut lab = Lab::from_toml(EIP_MOVE);
    let swap = |lab: &mut Lab, vpc: &natgw::control::config::Vpc| {
        lab.gw.set_topology(natgw::pipeline::Topology::new(vpc.parts.clone()));
        lab.pipe.refresh();
    };
    // web talks to blue at the Elastic IP.
    lab.pass("internet", "blue", &tcp(WEB, 40000, MOVED, 80, "S", 1, 0));
    let out = lab.pass("blue", "internet", &tcp(BLUE, 80, WEB, 40000, "SA", 9, 2));
    assert_eq!(seen(&out).src, addr(MOVED));
    // green gets a new Elastic IP: blue's flow carries on untouched.
    let a = vpc.eip_allocate(None).unwrap();
    vpc.eip_associate(a, "green", false).unwrap();
    swap(&mut lab, &vpc);
    lab.pass("internet", "blue", &tcp(WEB, 40000, MOVED, 80, "A", 2, 10));
    let out = lab.pass("green", "internet", &echo(GREEN, WEB, 1, 1));
    assert_eq!(seen(&out).src, a);
    // The address moves to green (which gives its own back, idle): new
    // connections to it reach green at once, blue has no public address.
    assert_eq!(vpc.eip_associate(addr(MOVED), "green", true).unwrap(), Some(a));
    swap(&mut lab, &vpc);
    let out = lab.pass("internet", "green", &tcp(WEB, 40001, MOVED, 80, "S", 1, 0));
    assert_eq!(seen(&out).dst, addr(GREEN));
    let (verdict, _) = lab.send("blue", &echo(BLUE, WEB, 2, 1));
    assert_eq!(verdict, Action::Drop(DropReason::NoPublicIp));
    // A reload keeps the idle allocation and takes the file's associations back.
    let mut running = vpc.clone();
    running.reload(natgw::control::config::parse("eip.toml", EIP_MOVE).unwrap()).unwrap();
    let list = running.eip_list();
    assert!(list.iter().any(|e| e.address == "203.0.113.10" && e.association.as_deref() == Some("host blue")));
    assert!(list.iter().any(|e| e.address == a.to_string() && e.association.is_none()), "{list:?}");
}

const ENI_MOVE: &str = include_str!("../examples/scenarios/eni-move.toml");

#[test]
fn a_detached_interface_gets_nothing_and_an_attached_one_everything_again() {
    let mut vpc = natgw::control::config::parse("eni.toml", ENI_MOVE).unwrap();
    let mut lab = Lab::from_toml(ENI_MOVE);
    const SVC_EIP: [u8; 4] = [203, 0, 113, 50];
    lab.pass("internet", "eni-svc", &tcp(WEB, 40000, SVC_EIP, 80, "S", 1, 0));
    vpc.eni_detach("eni-svc").unwrap();
    lab.gw.set_topology(natgw::pipeline::Topology::new(vpc.parts.clone()));
    lab.pipe.refresh();
    let (a, _) = lab.send("internet", &tcp(WEB, 40001, SVC_EIP, 80, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::EniDetached));
    vpc.eni_attach("eni-svc", "web2").unwrap();
    lab.gw.set_topology(natgw::pipeline::Topology::new(vpc.parts.clone()));
    lab.pipe.refresh();
    lab.pass("internet", "eni-svc", &tcp(WEB, 40002, SVC_EIP, 80, "S", 1, 0));
    // A reload of the file (which still names web1) keeps it where it is.
    vpc.reload(natgw::control::config::parse("eni.toml", ENI_MOVE).unwrap()).unwrap();
    let view = vpc.eni_list().into_iter().find(|e| e.name == "eni-svc").unwrap();
    assert_eq!(view.instance.as_deref(), Some("web2"));
}

#[test]
fn elastic_ips_survive_a_reload_and_a_deleted_nat_gateways_stay_allocated() {
    let mut vpc = natgw::control::config::parse("eip.toml", EIP_MOVE).unwrap();
    let a = vpc.eip_allocate(None).unwrap();
    vpc.eip_associate(a, "green", false).unwrap();
    vpc.reload(natgw::control::config::parse("eip.toml", EIP_MOVE).unwrap()).unwrap();
    let e = vpc.eip_list().into_iter().find(|e| e.address == a.to_string()).expect("still allocated");
    assert_eq!(e.association, None, "the file's associations again, the address idle");
    // A pool address inside a VPC is no Elastic IP.
    let inside = EIP_MOVE.replace(
        "cidr = \"10.0.0.0/16\"",
        "cidr = \"10.0.0.0/16\"\n\n[[vpcs]]\nname = \"odd\"\ncidr = \"203.0.113.16/28\"",
    );
    let mut odd = natgw::control::config::parse("odd.toml", &inside).unwrap();
    let err = odd.eip_allocate(Some(std::net::Ipv4Addr::new(203, 0, 113, 20))).unwrap_err();
    assert!(err.to_string().contains("InvalidAddress.InUse"), "{err}");
    let mut lab = natgw::control::config::parse("lab.toml", natgw::control::config::DEFAULT_LAB).unwrap();
    lab.delete_nat_gateway("nat-1").unwrap();
    assert!(lab.eip_list().iter().any(|e| e.address == "203.0.113.5" && e.association.is_none()));
}
