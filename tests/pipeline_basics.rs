//! The pipeline on the default lab, in simulated time: routing, NAT, the
//! internet gateway, ICMP, expiry, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod common;
use common::*;
use etherparse::Icmpv4Type;
use natgw::Timestamp;
use natgw::pipeline::{Action, DropReason, PacketBuf};

#[test]
fn udp_from_app_is_translated_and_the_reply_comes_back() {
    let mut lab = Lab::new();
    let out = lab.pass("app", "internet", &udp(APP, 40000, WEB, 53, b"query"));
    let s = seen(&out);
    assert_eq!(s.src, addr(NAT_IP), "web must see the NAT gateway's address");
    assert!(s.sport >= 1024, "port {} not in 1024-65535", s.sport);
    assert_eq!(s.dst, addr(WEB));
    assert_eq!(s.ttl, 62, "two hops: the VPC router and the NAT gateway");
    let back = lab.pass("internet", "app", &udp(WEB, 53, NAT_IP, s.sport, b"answer"));
    let b = seen(&back);
    assert_eq!((b.src, b.dst, b.sport, b.dport), (addr(WEB), addr(APP), 53, 40000));
    let t = lab.totals();
    assert_eq!(t.nat_count("connection_attempts"), 1);
    assert_eq!(t.nat_count("packets_out_to_destination"), 1);
    assert_eq!(t.nat_count("packets_out_to_source"), 1);
}

#[test]
fn the_mapping_is_endpoint_independent() {
    let mut lab = Lab::new();
    let a = seen(&lab.pass("app", "internet", &udp(APP, 40000, WEB, 53, b"1")));
    let b = seen(&lab.pass("app", "internet", &udp(APP, 40000, WEB2, 53, b"2")));
    let c = seen(&lab.pass("app", "internet", &udp(APP, 40000, WEB, 5353, b"3")));
    assert_eq!(a.sport, b.sport);
    assert_eq!(a.sport, c.sport);
}

#[test]
fn two_hosts_with_the_same_port_get_different_external_ports() {
    let mut lab = Lab::with(&[(
        "[[nat_gateways]]",
        "[[hosts]]\nname = \"app2\"\nsubnet = \"private\"\nip = \"10.0.1.11\"\n\n[[nat_gateways]]",
    )]);
    let a = seen(&lab.pass("app", "internet", &udp(APP, 40000, WEB, 53, b"1")));
    let b = seen(&lab.pass("app2", "internet", &udp([10, 0, 1, 11], 40000, WEB, 53, b"2")));
    assert_eq!(a.src, b.src);
    assert_ne!(a.sport, b.sport, "no port overloading (RFC 4787 REQ-3)");
    // Each reply reaches its own host.
    let ra = seen(&lab.pass("internet", "app", &udp(WEB, 53, NAT_IP, a.sport, b"r")));
    let rb = seen(&lab.pass("internet", "app2", &udp(WEB, 53, NAT_IP, b.sport, b"r")));
    assert_eq!(ra.dst, addr(APP));
    assert_eq!(rb.dst, addr([10, 0, 1, 11]));
}

#[test]
fn tcp_handshake_tracks_states() {
    let mut lab = Lab::new();
    let syn = seen(&lab.pass("app", "internet", &tcp(APP, 41000, WEB, 80, "S", 100, 0)));
    let ext = syn.sport;
    lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, ext, "SA", 500, 101));
    lab.pass("app", "internet", &tcp(APP, 41000, WEB, 80, "A", 101, 501));
    lab.pass("app", "internet", &tcp(APP, 41000, WEB, 80, "PA", 101, 501));
    let gw = lab.gw.clone();
    let nat = &gw.nats()[0];
    let v = nat.sessions(lab.now.secs());
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].state.as_deref(), Some("ESTABLISHED"));
    assert_eq!(v[0].reply_dst, "203.0.113.5");
    assert_eq!(v[0].reply_dport, ext);
    assert_eq!(v[0].orig_src, "10.0.1.10");
    assert_eq!(lab.totals().nat_count("connections_established"), 1);
    // Close: FIN both ways, then the last ACK.
    lab.pass("app", "internet", &tcp(APP, 41000, WEB, 80, "FA", 105, 501));
    lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, ext, "FA", 501, 106));
    lab.pass("app", "internet", &tcp(APP, 41000, WEB, 80, "A", 106, 502));
    assert_eq!(nat.sessions(lab.now.secs())[0].state.as_deref(), Some("TIME_WAIT"));
}

#[test]
fn unsolicited_inbound_is_dropped_and_counted() {
    let mut lab = Lab::new();
    let (a, _) = lab.send("internet", &tcp(WEB, 5555, NAT_IP, 22, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession));
    let (a, _) = lab.send("internet", &udp(WEB, 53, NAT_IP, 40000, b"x"));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession));
    // The private address is not routable from the internet at all.
    let (a, _) = lab.send("internet", &tcp(WEB, 5555, APP, 22, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::NoRoute));
    assert_eq!(lab.totals().drop_count("nat_no_session"), 2);
}

#[test]
fn a_reply_from_the_wrong_endpoint_is_filtered() {
    let mut lab = Lab::new();
    let s = seen(&lab.pass("app", "internet", &udp(APP, 40000, WEB, 53, b"q")));
    // Address-and-port-dependent filtering: another port of the same host is refused.
    let (a, _) = lab.send("internet", &udp(WEB, 54, NAT_IP, s.sport, b"x"));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession));
    let (a, _) = lab.send("internet", &udp(WEB2, 53, NAT_IP, s.sport, b"x"));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession));
}

#[test]
fn icmp_echo_identifier_is_mapped_per_host() {
    let mut lab = Lab::with(&[(
        "[[nat_gateways]]",
        "[[hosts]]\nname = \"app2\"\nsubnet = \"private\"\nip = \"10.0.1.11\"\n\n[[nat_gateways]]",
    )]);
    let a = seen(&lab.pass("app", "internet", &echo(APP, WEB, 7, 1)));
    let b = seen(&lab.pass("app2", "internet", &echo([10, 0, 1, 11], WEB, 7, 1)));
    assert_ne!(a.sport, b.sport, "same ICMP id from two hosts must map apart (RFC 5508 REQ-1)");
    let ra = seen(&lab.pass("internet", "app", &echo_reply(WEB, NAT_IP, a.sport, 1)));
    assert_eq!((ra.dst, ra.sport), (addr(APP), 7));
    let rb = seen(&lab.pass("internet", "app2", &echo_reply(WEB, NAT_IP, b.sport, 1)));
    assert_eq!((rb.dst, rb.sport), (addr([10, 0, 1, 11]), 7));
    // An echo request from outside is not a reply: it does not enter.
    let (act, _) = lab.send("internet", &echo(WEB, NAT_IP, a.sport, 1));
    assert_eq!(act, Action::Drop(DropReason::NatNoSession));
}

#[test]
fn ttl_expiry_answers_time_exceeded_from_the_subnet_router() {
    let mut lab = Lab::new();
    let probe = udp_ttl(APP, 40000, WEB, 33434, 1);
    let (a, out) = lab.send("app", &probe);
    assert_eq!(a, Action::Reply { egress: lab.ifc("app"), cause: DropReason::TtlExpired });
    assert_checksums(&out);
    let s = seen(&out);
    assert_eq!((s.src, s.dst), (addr([10, 0, 1, 1]), addr(APP)));
    let parsed = etherparse::SlicedPacket::from_ip(&out).unwrap();
    let Some(etherparse::TransportSlice::Icmpv4(i)) = parsed.transport else { panic!() };
    assert!(matches!(i.icmp_type(), Icmpv4Type::TimeExceeded(_)));
    assert_eq!(&i.payload()[..20], &probe[..20], "quotes the probe as received");
    // TTL 2 expires at the NAT gateway, a hop of its own: its private
    // address answers, as on AWS.
    let probe = udp_ttl(APP, 40000, WEB, 33435, 2);
    let (a, out) = lab.send("app", &probe);
    assert_eq!(a, Action::Reply { egress: lab.ifc("app"), cause: DropReason::TtlExpired });
    assert_checksums(&out);
    assert_eq!((seen(&out).src, seen(&out).dst), (addr([10, 0, 0, 5]), addr(APP)));
    // TTL 3 passes, two hops less; to bastion (no NAT) one hop less.
    let out = lab.pass("app", "internet", &udp_ttl(APP, 40000, WEB, 33436, 3));
    assert_eq!(seen(&out).ttl, 1);
    let out = lab.pass("app", "bastion", &udp_ttl(APP, 40000, BASTION, 33436, 2));
    assert_eq!(seen(&out).ttl, 1);
}

#[test]
fn icmp_errors_about_a_mapped_flow_are_translated_back() {
    let mut lab = Lab::new();
    let sent = lab.pass("app", "internet", &udp_ttl(APP, 40000, WEB, 33434, 5));
    let ext = seen(&sent).sport;
    // web answers the traceroute probe with port unreachable, quoting what it got.
    let err = icmp_error(WEB, NAT_IP, port_unreachable(), &sent);
    let out = lab.pass("internet", "app", &err);
    assert_eq!(seen(&out).dst, addr(APP));
    let parsed = etherparse::SlicedPacket::from_ip(&out).unwrap();
    let Some(etherparse::TransportSlice::Icmpv4(i)) = parsed.transport else { panic!() };
    let quoted = i.payload();
    let (qh, rest) = etherparse::Ipv4Header::from_slice(quoted).unwrap();
    assert_eq!(qh.source, APP, "quoted source restored");
    assert_eq!(qh.header_checksum, qh.calc_header_checksum());
    assert_eq!(u16::from_be_bytes([rest[0], rest[1]]), 40000, "quoted port restored");
    assert_ne!(ext, 0);
    assert_eq!(lab.totals().nat_count("icmp_errors_translated"), 1);
    // An error about a flow nobody has is dropped.
    let stray = icmp_error(WEB, NAT_IP, port_unreachable(), &udp(NAT_IP, 1111, WEB, 53, b""));
    let (a, _) = lab.send("internet", &stray);
    assert_eq!(a, Action::Drop(DropReason::IcmpErrorOrphan));
}

#[test]
fn icmp_errors_do_not_refresh_the_session() {
    let mut lab = Lab::new();
    let sent = lab.pass("app", "internet", &udp(APP, 40000, WEB, 53, b"q"));
    lab.advance(300);
    lab.pass("internet", "app", &icmp_error(WEB, NAT_IP, port_unreachable(), &sent));
    lab.advance(51); // 351 s after the last real packet: past the aws 350 s
    let ext = seen(&sent).sport;
    let (a, _) = lab.send("internet", &udp(WEB, 53, NAT_IP, ext, b"late"));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession));
}

#[test]
fn sessions_expire_by_simulated_time() {
    let mut lab = Lab::new();
    let ext = seen(&lab.pass("app", "internet", &udp(APP, 40000, WEB, 53, b"q"))).sport;
    lab.advance(350);
    lab.pass("internet", "app", &udp(WEB, 53, NAT_IP, ext, b"still here at 350 s"));
    lab.advance(351);
    let (a, _) = lab.send("internet", &udp(WEB, 53, NAT_IP, ext, b"gone"));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession));
    let gw = lab.gw.clone();
    let nat = &gw.nats()[0];
    lab.expire();
    assert_eq!(nat.session_count(), 0);
    assert_eq!(nat.mapping_count(), 0);
    assert_eq!(nat.stats.idle_timeouts.get(), 1);
    // The port is held down for 120 s, then released.
    assert_eq!(nat.ports_in_use()[0].2, 1);
    lab.advance(121);
    lab.expire();
    assert_eq!(nat.ports_in_use()[0].2, 0);
}

#[test]
fn rfc_profile_timeouts() {
    let mut lab = Lab::with(&[("profile = \"aws\"", "profile = \"rfc\"")]);
    let ext = seen(&lab.pass("app", "internet", &udp(APP, 40000, WEB, 53, b"q"))).sport;
    lab.advance(300);
    lab.pass("internet", "app", &udp(WEB, 53, NAT_IP, ext, b"at 300 s"));
    lab.advance(301);
    let (a, _) = lab.send("internet", &udp(WEB, 53, NAT_IP, ext, b"gone"));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession));
    // TCP established lives 7440 s.
    let e = seen(&lab.pass("app", "internet", &tcp(APP, 41000, WEB, 80, "S", 1, 0))).sport;
    lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, e, "SA", 9, 2));
    lab.pass("app", "internet", &tcp(APP, 41000, WEB, 80, "A", 2, 10));
    lab.advance(7440);
    lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, e, "A", 10, 2));
}

#[test]
fn aws_profile_resets_a_tcp_packet_without_session() {
    let mut lab = Lab::new();
    let (a, out) = lab.send("app", &tcp(APP, 41000, WEB, 80, "PA", 1000, 77));
    assert_eq!(a, Action::Reply { egress: lab.ifc("app"), cause: DropReason::NatNotSyn });
    assert_checksums(&out);
    let s = seen(&out);
    assert_eq!((s.src, s.dst, s.sport, s.dport), (addr(WEB), addr(APP), 80, 41000));
    let mut rfc = Lab::with(&[("profile = \"aws\"", "profile = \"rfc\"")]);
    let (a, _) = rfc.send("app", &tcp(APP, 41000, WEB, 80, "PA", 1000, 77));
    assert_eq!(a, Action::Drop(DropReason::NatNotSyn));
}

#[test]
fn bastion_uses_its_elastic_ip_both_ways() {
    let mut lab = Lab::new();
    let out = seen(&lab.pass("bastion", "internet", &tcp(BASTION, 50000, WEB, 80, "S", 1, 0)));
    assert_eq!((out.src, out.sport), (addr(BASTION_EIP), 50000), "1:1 NAT keeps the port");
    let back = seen(&lab.pass("internet", "bastion", &tcp(WEB, 22222, BASTION_EIP, 22, "S", 1, 0)));
    assert_eq!((back.dst, back.dport), (addr(BASTION), 22), "reachable from the internet");
    // ICMP errors about bastion's flows are translated too.
    let sent = lab.pass("bastion", "internet", &udp(BASTION, 50001, WEB, 9, b"x"));
    let err = lab.pass("internet", "bastion", &icmp_error(WEB, BASTION_EIP, port_unreachable(), &sent));
    assert_eq!(seen(&err).dst, addr(BASTION));
}

#[test]
fn private_subnet_cannot_bypass_the_nat() {
    // A private host routed straight to the internet gateway has no public IP.
    let mut lab = Lab::with(&[(
        "{ destination = \"0.0.0.0/0\", target = \"nat-1\" }",
        "{ destination = \"0.0.0.0/0\", target = \"igw\" }",
    )]);
    let (a, _) = lab.send("app", &udp(APP, 40000, WEB, 53, b"q"));
    assert_eq!(a, Action::Drop(DropReason::NoPublicIp));
}

#[test]
fn inside_the_vpc_traffic_is_routed_locally() {
    let mut lab = Lab::new();
    let out = seen(&lab.pass("app", "bastion", &tcp(APP, 40000, BASTION, 22, "S", 1, 0)));
    assert_eq!((out.src, out.dst), (addr(APP), addr(BASTION)), "no NAT inside the VPC");
    assert_eq!(out.ttl, 63);
    let (a, _) = lab.send("app", &udp(APP, 1, [10, 0, 2, 99], 2, b""));
    assert!(matches!(a, Action::Reply { cause: DropReason::HostUnreachable, .. }), "{a:?}");
}

#[test]
fn the_gateway_answers_pings_to_its_own_addresses() {
    let mut lab = Lab::new();
    for (from, src, router) in
        [("app", APP, [10, 0, 1, 1]), ("bastion", BASTION, [10, 0, 0, 1]), ("internet", WEB, [198, 51, 100, 1])]
    {
        let (a, out) = lab.send(from, &echo(src, router, 3, 4));
        assert!(matches!(a, Action::Reply { .. }), "{from}: {a:?}");
        assert_checksums(&out);
        let s = seen(&out);
        assert_eq!((s.src, s.dst), (addr(router), addr(src)));
    }
}

#[test]
fn spoofed_sources_are_dropped() {
    let mut lab = Lab::new();
    let (a, _) = lab.send("app", &udp([10, 0, 1, 99], 1, WEB, 2, b""));
    assert_eq!(a, Action::Drop(DropReason::SourceCheck));
}

#[test]
fn malformed_packets_are_counted_drops() {
    let mut lab = Lab::new();
    let good = udp(APP, 40000, WEB, 53, b"q");
    let mut bad_sum = good.clone();
    bad_sum[10] ^= 1;
    let mut v6 = good.clone();
    v6[0] = 0x65;
    let mut short_total = good.clone();
    short_total[3] = 10;
    let mut cut_udp = good.clone();
    cut_udp[2..4].copy_from_slice(&24u16.to_be_bytes()); // 20 + 4 bytes of UDP
    cut_udp.truncate(24);
    let fix = |v: &mut Vec<u8>| {
        v[10] = 0;
        v[11] = 0;
        let c = natgw::wire::checksum::checksum(&v[..20]);
        v[10..12].copy_from_slice(&c.to_be_bytes());
    };
    fix(&mut cut_udp);
    let cases: Vec<(&[u8], DropReason)> = vec![
        (&good[..10], DropReason::Truncated),
        (&bad_sum, DropReason::BadIpChecksum),
        (&v6, DropReason::NotIpv4),
        (&short_total, DropReason::BadTotalLen),
        (&cut_udp, DropReason::BadTransportHeader),
        (&[], DropReason::Truncated),
    ];
    for (bytes, want) in cases {
        let (a, _) = lab.send("app", bytes);
        assert_eq!(a, Action::Drop(want));
    }
    let t = lab.totals();
    assert_eq!(t.drop_count("bad_ip_checksum"), 1);
    assert_eq!(t.drop_count("truncated"), 2);
}

#[test]
fn martians_are_dropped() {
    let mut lab = Lab::new();
    let (a, _) = lab.send("internet", &udp([127, 0, 0, 1], 1, NAT_IP, 2, b""));
    assert_eq!(a, Action::Drop(DropReason::MartianSource));
    let (a, _) = lab.send("app", &udp(APP, 1, [224, 0, 0, 1], 2, b""));
    assert_eq!(a, Action::Drop(DropReason::MartianDestination));
}

#[test]
fn time_only_moves_through_now() {
    // The same packet at the same simulated time gives the same result twice:
    // nothing in the pipeline reads a clock.
    let mut a = Lab::new();
    let mut b = Lab::new();
    let pa = a.pass("app", "internet", &udp(APP, 40000, WEB, 53, b"q"));
    let pb = b.pass("app", "internet", &udp(APP, 40000, WEB, 53, b"q"));
    assert_eq!(pa, pb);
    let mut buf = PacketBuf::from_slice(&udp(WEB, 53, NAT_IP, seen(&pa).sport, b"r"));
    let far = Timestamp::from_secs(1_000_000);
    let ifc = a.ifc("internet");
    assert_eq!(a.pipe.process(far, ifc, &mut buf), Action::Drop(DropReason::NatNoSession));
}

#[test]
fn the_port_report_shows_pools_hosts_and_the_latest_mappings() {
    let mut lab = Lab::new();
    let out = seen(&lab.pass("app", "internet", &udp(APP, 5000, WEB, 53, b"q")));
    lab.pass("app", "internet", &udp(APP, 5001, WEB, 53, b"q"));
    let r = lab.gw.nats()[0].port_report();
    assert_eq!(r.pools.len(), 1, "{r:?}");
    let p = &r.pools[0];
    assert_eq!((p.addr.as_str(), p.proto, p.in_use, p.held, p.free), ("203.0.113.5", 17, 2, 0, 64510));
    assert_eq!(r.hosts, vec![("10.0.1.10".to_string(), 2, 2)]);
    assert_eq!(r.latest.len(), 2);
    assert_eq!(r.latest[1].3, format!("203.0.113.5:{}", out.sport), "the latest first");
    // The sessions expire: their ports wait out the hold-down, then are free.
    lab.advance(351);
    lab.expire();
    let p = lab.gw.nats()[0].port_report().pools[0].clone();
    assert_eq!((p.in_use, p.held, p.free), (0, 2, 64510), "{p:?}");
}

#[test]
fn conntrack_events_say_new_update_and_destroy_with_the_reason() {
    use natgw::conntrack::events::Kind;
    let mut lab = Lab::new();
    lab.pass("app", "internet", &udp(APP, 4000, WEB, 53, b"before")); // no listener: no event
    lab.gw.events().arm(true);
    let out = seen(&lab.pass("app", "internet", &tcp(APP, 40000, WEB, 80, "S", 1, 0)));
    lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, out.sport, "SA", 100, 2));
    lab.pass("app", "internet", &tcp(APP, 40000, WEB, 80, "A", 2, 101));
    lab.pass("app", "internet", &tcp(APP, 40000, WEB, 80, "R", 2, 101));
    lab.advance(351);
    lab.expire();
    let ev: Vec<(Kind, Option<String>, Option<String>)> =
        lab.gw.events().after(0).into_iter().map(|(_, e)| (e.kind, e.state, e.reason)).collect();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        ev,
        vec![
            (Kind::New, s("SYN_SENT"), None),
            (Kind::Update, s("SYN_RECV"), None),
            (Kind::Update, s("ESTABLISHED"), None),
            (Kind::Update, s("CLOSE"), None),
            (Kind::Destroy, None, s("timeout")),
            (Kind::Destroy, s("CLOSE"), s("rst")),
        ],
        "the UDP flow started before the listener: only its end is there"
    );
    assert_eq!(lab.gw.events().after(0)[0].1.zone, "nat-1");
}
