//! NAT behaviour to the standards (RFC 4787, 5382, 5508, 6888, 7857), in
//! simulated time. docs/COMPLIANCE.md points at these tests by name.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod common;
use common::*;
use etherparse::{Icmpv4Type, SlicedPacket, TransportSlice};
use natgw::pipeline::{Action, DropReason, Pending};

const APP2: [u8; 4] = [10, 0, 1, 11];

fn with_app2(extra: &[(&str, &str)]) -> Lab {
    let mut edits = vec![(
        "[[nat_gateways]]",
        "[[hosts]]\nname = \"app2\"\nsubnet = \"private\"\nip = \"10.0.1.11\"\n\n[[nat_gateways]]",
    )];
    edits.extend_from_slice(extra);
    Lab::with(&edits)
}

/// Adds NAT options (each `key = value` on its own line) to the lab's nat-1;
/// a `port_range` replaces the lab's own.
fn nat_option(opt: &'static str) -> (&'static str, &'static str) {
    ("port_range = \"1024-65535\"", opt)
}

fn icmp_of(b: &[u8]) -> (u8, u8, Vec<u8>) {
    let s = SlicedPacket::from_ip(b).unwrap();
    let Some(TransportSlice::Icmpv4(i)) = s.transport else { panic!("not ICMP") };
    let (t, c) = (i.type_u8(), i.code_u8());
    (t, c, i.payload().to_vec())
}

fn set_df(v: &mut [u8], df: bool) {
    if df {
        v[6] |= 0x40;
    } else {
        v[6] &= !0x40;
    }
    v[10] = 0;
    v[11] = 0;
    let c = natgw::wire::checksum::checksum(&v[..20]);
    v[10..12].copy_from_slice(&c.to_be_bytes());
}

// ---------------------------------------------------------------- mapping and filtering

#[test]
fn u1_t1_i1_mapping_is_endpoint_independent_for_tcp_udp_icmp() {
    let mut lab = Lab::new();
    let u1 = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB, 53, b"a"))).sport;
    let u2 = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB2, 9, b"b"))).sport;
    let t1 = seen(&lab.pass("app", "internet", &tcp(APP, 4001, WEB, 80, "S", 1, 0))).sport;
    let t2 = seen(&lab.pass("app", "internet", &tcp(APP, 4001, WEB2, 443, "S", 1, 0))).sport;
    let i1 = seen(&lab.pass("app", "internet", &echo(APP, WEB, 99, 1))).sport;
    let i2 = seen(&lab.pass("app", "internet", &echo(APP, WEB2, 99, 1))).sport;
    assert_eq!((u1, t1, i1), (u2, t2, i2));
}

#[test]
fn address_and_port_dependent_mapping_uses_a_port_per_destination() {
    let mut lab = Lab::with(&[("mapping = \"endpoint-independent\"", "mapping = \"address-and-port-dependent\"")]);
    let a = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB, 53, b"a"))).sport;
    let b = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB, 54, b"b"))).sport;
    let c = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB, 53, b"c"))).sport;
    assert_ne!(a, b);
    assert_eq!(a, c);
}

#[test]
fn address_dependent_mapping_follows_the_address_only() {
    let mut lab = Lab::with(&[
        ("mapping = \"endpoint-independent\"", "mapping = \"address-dependent\""),
        ("filtering = \"address-and-port-dependent\"", "filtering = \"address-dependent\""),
    ]);
    let a = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB, 53, b"a"))).sport;
    let b = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB, 54, b"b"))).sport;
    let c = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB2, 53, b"c"))).sport;
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn u8_endpoint_independent_filtering_lets_anyone_reach_a_mapping() {
    let mut lab = Lab::with(&[("filtering = \"address-and-port-dependent\"", "filtering = \"endpoint-independent\"")]);
    let ext = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB, 53, b"q"))).sport;
    let r = seen(&lab.pass("internet", "app", &udp(WEB2, 7777, NAT_IP, ext, b"hello")));
    assert_eq!((r.dst, r.dport, r.src), (addr(APP), 4000, addr(WEB2)));
    // The new remote now has a session of its own: app's answer goes out the same mapping.
    let back = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB2, 7777, b"hi")));
    assert_eq!(back.sport, ext);
    // TCP: an inbound SYN to the mapping is let in too.
    let t = seen(&lab.pass("app", "internet", &tcp(APP, 4001, WEB, 80, "S", 1, 0))).sport;
    lab.pass("internet", "app", &tcp(WEB2, 5555, NAT_IP, t, "S", 1, 0));
}

#[test]
fn address_dependent_filtering_checks_the_address() {
    let mut lab = Lab::with(&[("filtering = \"address-and-port-dependent\"", "filtering = \"address-dependent\"")]);
    let ext = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB, 53, b"q"))).sport;
    lab.pass("internet", "app", &udp(WEB, 9999, NAT_IP, ext, b"other port, same host"));
    let (a, _) = lab.send("internet", &udp(WEB2, 53, NAT_IP, ext, b"other host"));
    assert_eq!(a, Action::Drop(DropReason::NatFiltered));
}

#[test]
fn address_dependent_filtering_forgets_a_host_whose_sessions_ended() {
    let mut lab = Lab::with(&[("filtering = \"address-and-port-dependent\"", "filtering = \"address-dependent\"")]);
    let ext = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB, 53, b"q"))).sport;
    assert_eq!(seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB2, 53, b"q"))).sport, ext, "one mapping");
    // The session with WEB2 is kept alive, the one with WEB runs out.
    lab.advance(200);
    lab.pass("app", "internet", &udp(APP, 4000, WEB2, 53, b"keepalive"));
    lab.advance(200);
    lab.expire();
    let (a, _) = lab.send("internet", &udp(WEB, 9999, NAT_IP, ext, b"no session left with this host"));
    assert_eq!(a, Action::Drop(DropReason::NatFiltered));
    lab.pass("internet", "app", &udp(WEB2, 9999, NAT_IP, ext, b"still a session with this one"));
}

// ---------------------------------------------------------------- ports

#[test]
fn u2_c2_c3_paired_pooling_over_several_addresses() {
    let mut lab = with_app2(&[(
        "elastic_ips = [\"203.0.113.5\"]",
        "elastic_ips = [\"203.0.113.5\", \"203.0.113.6\", \"203.0.113.7\"]",
    )]);
    for host in [("app", APP), ("app2", APP2)] {
        let first = seen(&lab.pass(host.0, "internet", &udp(host.1, 1000, WEB, 1, b"x"))).src;
        for p in 1001..1020 {
            let s = seen(&lab.pass(host.0, "internet", &udp(host.1, p, [198, 51, 100, (p % 200) as u8 + 2], 1, b"x")));
            assert_eq!(s.src, first, "{} must always use one public address", host.0);
        }
    }
}

#[test]
fn u3a_u4_port_class_and_parity_are_kept() {
    let mut lab = Lab::new();
    for (int, low) in [(53u16, true), (123, true), (40001, false), (40002, false)] {
        let e = seen(&lab.pass("app", "internet", &udp(APP, int, WEB, 9, b"x"))).sport;
        assert_eq!(e < 1024, low, "class of {int} -> {e}");
        assert_eq!(e % 2, int % 2, "parity of {int} -> {e}");
    }
}

#[test]
fn port_preservation_in_the_rfc_profile_and_randomisation_otherwise() {
    let mut rfc = Lab::with(&[("profile = \"aws\"", "profile = \"rfc\"")]);
    assert_eq!(seen(&rfc.pass("app", "internet", &udp(APP, 40000, WEB, 9, b"x"))).sport, 40000);
    // The aws profile rewrites ports, from a random place (RFC 6056, RFC 6888 REQ-15).
    let mut aws = Lab::new();
    let ports: Vec<u16> =
        (0..50).map(|i| seen(&aws.pass("app", "internet", &udp(APP, 40000 + 2 * i, WEB, 9, b"x"))).sport).collect();
    assert!(ports.iter().filter(|&&p| (40000..40100).contains(&p)).count() < 5, "{ports:?}");
    let sequential = ports.windows(2).filter(|w| w[1] == w[0].wrapping_add(2)).count();
    assert!(sequential < 5, "ports look sequential: {ports:?}");
}

#[test]
fn c4_per_subscriber_port_limit() {
    let mut lab = Lab::with(&[nat_option("max_ports_per_host = 2")]);
    lab.pass("app", "internet", &udp(APP, 1001, WEB, 9, b"x"));
    lab.pass("app", "internet", &udp(APP, 1002, WEB, 9, b"x"));
    let (a, out) = lab.send("app", &udp(APP, 1003, WEB, 9, b"x"));
    assert!(matches!(a, Action::Reply { cause: DropReason::NatSubscriberLimit, .. }), "{a:?}");
    assert_eq!((icmp_of(&out).0, icmp_of(&out).1), (3, 13));
    // Existing mappings still work, and take new destinations (no new port).
    lab.pass("app", "internet", &udp(APP, 1001, WEB, 9, b"still"));
    lab.pass("app", "internet", &udp(APP, 1002, WEB2, 9, b"elsewhere"));
    // Once the mappings expire, the host's ports count again from zero.
    lab.advance(351);
    lab.expire();
    lab.pass("app", "internet", &udp(APP, 1003, WEB, 9, b"x"));
    lab.pass("app", "internet", &udp(APP, 1004, WEB, 9, b"x"));
    let (a, _) = lab.send("app", &udp(APP, 1005, WEB, 9, b"x"));
    assert!(matches!(a, Action::Reply { cause: DropReason::NatSubscriberLimit, .. }), "{a:?}");
}

#[test]
fn c5_per_subscriber_session_limit() {
    let mut lab = Lab::with(&[nat_option("max_sessions_per_host = 3")]);
    // One mapping (same internal port), three destinations: three sessions.
    for d in [WEB, WEB2, [198, 51, 100, 12]] {
        lab.pass("app", "internet", &udp(APP, 41000, d, 53, b"x"));
    }
    let (a, _) = lab.send("app", &udp(APP, 41000, [198, 51, 100, 13], 53, b"x"));
    assert!(matches!(a, Action::Reply { cause: DropReason::NatSubscriberLimit, .. }), "{a:?}");
    lab.advance(351);
    lab.expire();
    // The count went back to zero: three sessions again, not a fourth.
    for d in [[198, 51, 100, 13], [198, 51, 100, 14], [198, 51, 100, 15]] {
        lab.pass("app", "internet", &udp(APP, 41000, d, 53, b"x"));
    }
    let (a, _) = lab.send("app", &udp(APP, 41000, [198, 51, 100, 16], 53, b"x"));
    assert!(matches!(a, Action::Reply { cause: DropReason::NatSubscriberLimit, .. }), "{a:?}");
}

#[test]
fn u6_outbound_packets_refresh_the_mapping() {
    let mut lab = Lab::new();
    let ext = seen(&lab.pass("app", "internet", &udp(APP, 41000, WEB, 53, b"x"))).sport;
    for _ in 0..5 {
        lab.advance(300);
        lab.pass("app", "internet", &udp(APP, 41000, WEB, 53, b"keepalive"));
    }
    // 1500 s later, still the same mapping, and replies still come in.
    lab.advance(300);
    lab.pass("internet", "app", &udp(WEB, 53, NAT_IP, ext, b"late reply"));
}

#[test]
fn t7_no_port_overloading_for_tcp() {
    let mut lab = with_app2(&[]);
    let a = seen(&lab.pass("app", "internet", &tcp(APP, 40000, WEB, 80, "S", 1, 0))).sport;
    let b = seen(&lab.pass("app2", "internet", &tcp(APP2, 40000, WEB, 80, "S", 1, 0))).sport;
    assert_ne!(a, b);
}

#[test]
fn c8_freed_ports_are_held_down_for_120_seconds() {
    let mut lab = Lab::with(&[nat_option("port_range = \"20000-20001\"\nport_parity = false")]);
    let a = seen(&lab.pass("app", "internet", &udp(APP, 41000, WEB, 9, b"x"))).sport;
    let b = seen(&lab.pass("app", "internet", &udp(APP, 41001, WEB, 9, b"x"))).sport;
    assert_ne!(a, b);
    assert!((20000..=20001).contains(&a) && (20000..=20001).contains(&b));
    lab.advance(351);
    lab.expire();
    // Both expired, but their ports are held: a new flow finds none.
    let (act, _) = lab.send("app", &udp(APP, 41002, WEB, 9, b"x"));
    assert!(matches!(act, Action::Reply { cause: DropReason::NatPortsExhausted, .. }), "{act:?}");
    lab.advance(120);
    lab.expire();
    lab.pass("app", "internet", &udp(APP, 41002, WEB, 9, b"x"));
}

#[test]
fn port_blocks_are_allocated_and_logged_once() {
    let mut lab = Lab::with(&[nat_option("port_block = 8\nport_parity = false")]);
    let mut ports = Vec::new();
    for p in 0..8 {
        ports.push(seen(&lab.pass("app", "internet", &udp(APP, 3000 + p, WEB, 9, b"x"))).sport);
    }
    let first = *ports.iter().min().unwrap();
    assert_eq!(first % 8, 0, "blocks are aligned");
    assert!(ports.iter().all(|p| (first..first + 8).contains(p)), "all eight in one block: {ports:?}");
    // The ninth flow takes a second block.
    let ninth = seen(&lab.pass("app", "internet", &udp(APP, 3008, WEB, 9, b"x"))).sport;
    assert!(!(first..first + 8).contains(&ninth));
    let ev = lab.gw.nats()[0].events();
    let blocks: Vec<_> = ev.iter().filter(|e| e.kind == natgw::nat::gateway::NatEventKind::BlockAllocated).collect();
    assert_eq!(blocks.len(), 2, "{ev:?}");
    assert_eq!(blocks[0].internal, "10.0.1.10");
    assert!(blocks[0].external.starts_with("203.0.113.5:"));
    assert!(ev.iter().all(|e| !e.external.contains("198.51.100")), "no destinations in the log (RFC 6888 REQ-12)");
    // When every port of a block is free again, the block goes back.
    lab.advance(351);
    lab.expire();
    let released =
        lab.gw.nats()[0].events().iter().filter(|e| e.kind == natgw::nat::gateway::NatEventKind::BlockReleased).count();
    assert_eq!(released, 2);
}

#[test]
fn port_overlapping_reuses_a_port_for_other_destinations() {
    let mut lab = with_app2(&[
        ("mapping = \"endpoint-independent\"", "mapping = \"address-and-port-dependent\""),
        nat_option("port_overlapping = true\nport_range = \"30000-30001\"\nport_parity = false"),
    ]);
    // Two ports, but four hosts-by-destination pairs fit: the 5-tuple tells them apart.
    let mut seen_ports = Vec::new();
    for (h, ip) in [("app", APP), ("app2", APP2)] {
        for dst in [WEB, WEB2] {
            seen_ports.push(seen(&lab.pass(h, "internet", &udp(ip, 5000, dst, 53, b"q"))).sport);
        }
    }
    assert!(seen_ports.iter().all(|p| (30000..=30001).contains(p)), "{seen_ports:?}");
    // A fifth session to WEB from a new port has no port left for that destination.
    let (a, _) = lab.send("app", &udp(APP, 5001, WEB, 53, b"q"));
    assert!(matches!(a, Action::Reply { cause: DropReason::NatPortsExhausted, .. }), "{a:?}");
    // Replies still find their own host.
    let ext_app_web = seen_ports[0];
    let r = seen(&lab.pass("internet", "app", &udp(WEB, 53, NAT_IP, ext_app_web, b"r")));
    assert_eq!(r.dst, addr(APP));
}

#[test]
fn port_overlapping_is_refused_with_endpoint_independent_mapping() {
    let src =
        natgw::control::config::DEFAULT_LAB.replace("profile = \"aws\"", "profile = \"aws\"\nport_overlapping = true");
    let e = natgw::control::config::parse("x.toml", &src).unwrap_err();
    assert!(e.message.contains("address-and-port-dependent"), "{e}");
}

// ---------------------------------------------------------------- exhaustion

fn exhaustion_lab(reply: &str) -> Lab {
    Lab::with(&[nat_option(Box::leak(
        format!("port_range = \"20000-20003\"\nport_parity = false\non_exhaustion = \"{reply}\"").into_boxed_str(),
    ))])
}

#[test]
fn i8_c11_exhaustion_answers_3_13_and_keeps_old_flows() {
    let mut lab = exhaustion_lab("admin-prohibited");
    let mut ext = Vec::new();
    for p in 0..4 {
        ext.push(seen(&lab.pass("app", "internet", &udp(APP, 6000 + p, WEB, 53, b"q"))).sport);
    }
    let (a, out) = lab.send("app", &udp(APP, 6004, WEB, 53, b"no room"));
    assert_eq!(a, Action::Reply { egress: lab.ifc("app"), cause: DropReason::NatPortsExhausted });
    assert_checksums(&out);
    let s = seen(&out);
    assert_eq!((s.src, s.dst), (addr([10, 0, 0, 5]), addr(APP)), "from the NAT gateway to the host");
    assert_eq!((icmp_of(&out).0, icmp_of(&out).1), (3, 13));
    assert_eq!(lab.totals().nat_count("error_port_allocation"), 1);
    // No live mapping was evicted: all four still work both ways.
    for (i, e) in ext.iter().enumerate() {
        lab.pass("app", "internet", &udp(APP, 6000 + i as u16, WEB, 53, b"again"));
        lab.pass("internet", "app", &udp(WEB, 53, NAT_IP, *e, b"reply"));
    }
}

#[test]
fn exhaustion_reply_is_configurable() {
    let mut lab = exhaustion_lab("host-unreachable");
    for p in 0..4 {
        lab.pass("app", "internet", &udp(APP, 6000 + p, WEB, 53, b"q"));
    }
    let (_, out) = lab.send("app", &udp(APP, 6004, WEB, 53, b"q"));
    assert_eq!((icmp_of(&out).0, icmp_of(&out).1), (3, 1));
    let mut silent = exhaustion_lab("silent");
    for p in 0..4 {
        silent.pass("app", "internet", &udp(APP, 6000 + p, WEB, 53, b"q"));
    }
    let (a, _) = silent.send("app", &udp(APP, 6004, WEB, 53, b"q"));
    assert_eq!(a, Action::Drop(DropReason::NatPortsExhausted));
}

// ---------------------------------------------------------------- TCP

#[test]
fn t2_simultaneous_open_through_the_nat() {
    let mut lab = Lab::new();
    let ext = seen(&lab.pass("app", "internet", &tcp(APP, 7000, WEB, 7001, "S", 100, 0))).sport;
    // The peer's SYN crosses ours (it knows our public endpoint, as in NAT traversal).
    lab.pass("internet", "app", &tcp(WEB, 7001, NAT_IP, ext, "S", 500, 0));
    lab.pass("app", "internet", &tcp(APP, 7000, WEB, 7001, "SA", 100, 501));
    lab.pass("internet", "app", &tcp(WEB, 7001, NAT_IP, ext, "SA", 500, 101));
    lab.pass("app", "internet", &tcp(APP, 7000, WEB, 7001, "A", 101, 501));
    let v = lab.gw.nats()[0].sessions(lab.now.secs());
    assert_eq!(v[0].state.as_deref(), Some("ESTABLISHED"));
}

fn established(lab: &mut Lab, port: u16) -> u16 {
    let ext = seen(&lab.pass("app", "internet", &tcp(APP, port, WEB, 80, "S", 1, 0))).sport;
    lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, ext, "SA", 9, 2));
    lab.pass("app", "internet", &tcp(APP, port, WEB, 80, "A", 2, 10));
    ext
}

#[test]
fn x3_a_rst_is_translated_and_the_session_kept_four_minutes() {
    let mut lab = Lab::with(&[("profile = \"aws\"", "profile = \"rfc\"")]);
    let ext = established(&mut lab, 7100);
    let r = seen(&lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, ext, "R", 10, 0)));
    assert_eq!((r.dst, r.dport), (addr(APP), 7100));
    let v = lab.gw.nats()[0].sessions(lab.now.secs());
    assert_eq!(v[0].state.as_deref(), Some("CLOSE"));
    lab.advance(240);
    lab.pass("app", "internet", &tcp(APP, 7100, WEB, 80, "A", 2, 10));
    lab.advance(241);
    assert!(lab.gw.nats()[0].sessions(lab.now.secs()).is_empty(), "gone 4 min after the last packet");
}

#[test]
fn x2_t5_separate_opening_established_and_closing_timers() {
    let mut lab = Lab::with(&[("profile = \"aws\"", "profile = \"rfc\"")]);
    // Opening: a SYN nobody answers lasts the transitory timeout.
    let ext = seen(&lab.pass("app", "internet", &tcp(APP, 7200, WEB, 80, "S", 1, 0))).sport;
    lab.advance(241);
    let (a, _) = lab.send("internet", &tcp(WEB, 80, NAT_IP, ext, "SA", 9, 2));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession));
    // Established: 7440 s.
    let ext = established(&mut lab, 7201);
    lab.advance(7440);
    lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, ext, "A", 10, 2));
    // Closing: 240 s after the FINs.
    lab.pass("app", "internet", &tcp(APP, 7201, WEB, 80, "FA", 2, 10));
    lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, ext, "FA", 10, 3));
    lab.advance(241);
    let (a, _) = lab.send("internet", &tcp(WEB, 80, NAT_IP, ext, "A", 11, 3));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession));
}

#[test]
fn x8_an_outbound_rst_does_not_refresh_the_mapping() {
    let mut lab = Lab::new();
    let ext = established(&mut lab, 7300);
    lab.advance(300);
    // The host answers a stray inbound segment with a RST: no refresh.
    lab.pass("app", "internet", &tcp(APP, 7300, WEB, 80, "R", 2, 0));
    lab.advance(51);
    let (a, _) = lab.send("internet", &tcp(WEB, 80, NAT_IP, ext, "A", 10, 2));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession), "350 s after the last real packet");
}

#[test]
fn t4_unsolicited_syn_answered_3_3_after_six_seconds_by_policy() {
    let mut lab = Lab::with(&[nat_option("unsolicited_syn = \"icmp-after-6s\"")]);
    let (a, _) = lab.send("internet", &tcp(WEB, 5555, NAT_IP, 22, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession));
    lab.advance(5);
    lab.poll();
    assert!(lab.pending().is_empty(), "silent for at least 6 s");
    lab.advance(2);
    lab.poll();
    let out = lab.pending();
    assert_eq!(out.len(), 1);
    let (p, _, bytes) = &out[0];
    assert_eq!(*p, Pending::Send(lab.ifc("internet")));
    assert_checksums(bytes);
    let s = seen(bytes);
    assert_eq!((s.src, s.dst), (addr(NAT_IP), addr(WEB)));
    assert_eq!((icmp_of(bytes).0, icmp_of(bytes).1), (3, 3));
    // The default policy stays silent.
    let mut quiet = Lab::new();
    quiet.send("internet", &tcp(WEB, 5555, NAT_IP, 22, "S", 1, 0));
    quiet.advance(10);
    quiet.poll();
    assert!(quiet.pending().is_empty());
}

#[test]
fn t4_an_outbound_syn_within_six_seconds_cancels_the_answer() {
    let mut lab = Lab::with(&[nat_option("unsolicited_syn = \"icmp-after-6s\"")]);
    let ext = seen(&lab.pass("app", "internet", &tcp(APP, 7400, WEB, 80, "S", 1, 0))).sport;
    // The peer tries our endpoint from another port (a NAT traversal attempt).
    let (a, _) = lab.send("internet", &tcp(WEB, 6000, NAT_IP, ext, "S", 1, 0));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession));
    lab.advance(2);
    // We open towards it: the same connection, from inside.
    lab.pass("app", "internet", &tcp(APP, 7400, WEB, 6000, "S", 1, 0));
    lab.advance(6);
    lab.poll();
    assert!(lab.pending().is_empty(), "the original SYN is dropped silently");
}

// ---------------------------------------------------------------- ICMP

#[test]
fn i5_an_icmp_error_from_inside_is_translated_outward_without_refresh() {
    let mut lab = Lab::new();
    let ext = seen(&lab.pass("app", "internet", &udp(APP, 4000, WEB, 53, b"q"))).sport;
    let reply_in = lab.pass("internet", "app", &udp(WEB, 53, NAT_IP, ext, b"answer"));
    lab.advance(300);
    // app's socket is gone: its kernel answers port unreachable, quoting what it got.
    let err = icmp_error(APP, WEB, port_unreachable(), &reply_in);
    let out = lab.pass("app", "internet", &err);
    let s = seen(&out);
    assert_eq!((s.src, s.dst), (addr(NAT_IP), addr(WEB)));
    let (_, _, quote) = icmp_of(&out);
    let (qh, rest) = etherparse::Ipv4Header::from_slice(&quote).unwrap();
    assert_eq!(qh.destination, NAT_IP, "the quote shows the public endpoint");
    assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), ext);
    assert_eq!(qh.header_checksum, qh.calc_header_checksum());
    lab.advance(51);
    let (a, _) = lab.send("internet", &udp(WEB, 53, NAT_IP, ext, b"late"));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession), "the error did not refresh the mapping");
}

#[test]
fn i3_bad_icmp_checksums_are_dropped() {
    let mut lab = Lab::new();
    let sent = lab.pass("app", "internet", &udp(APP, 4000, WEB, 53, b"q"));
    let mut err = icmp_error(WEB, NAT_IP, port_unreachable(), &sent);
    err[22] ^= 0xff;
    let (a, _) = lab.send("internet", &err);
    assert_eq!(a, Action::Drop(DropReason::IcmpBadChecksum));
}

#[test]
fn u12_t10_icmp_never_ends_a_mapping() {
    let mut lab = Lab::new();
    let ext = established(&mut lab, 7500);
    let probe = lab.pass("app", "internet", &tcp(APP, 7500, WEB, 80, "PA", 2, 10));
    for t in [
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Host),
        Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit),
    ] {
        lab.pass("internet", "app", &icmp_error(WEB, NAT_IP, t, &probe));
    }
    lab.pass("internet", "app", &tcp(WEB, 80, NAT_IP, ext, "A", 10, 6));
    assert_eq!(lab.gw.nats()[0].sessions(lab.now.secs())[0].state.as_deref(), Some("ESTABLISHED"));
}

// ---------------------------------------------------------------- hairpinning

#[test]
fn u9_t8_hairpinning_shows_the_senders_public_endpoint() {
    let mut lab = with_app2(&[("filtering = \"address-and-port-dependent\"", "filtering = \"endpoint-independent\"")]);
    // app2 has a UDP mapping (it talked to web); app reaches app2 through it.
    let p2 = seen(&lab.pass("app2", "internet", &udp(APP2, 8000, WEB, 53, b"q"))).sport;
    let out = lab.pass("app", "app2", &udp(APP, 8100, NAT_IP, p2, b"hairpin"));
    let s = seen(&out);
    assert_eq!((s.dst, s.dport), (addr(APP2), 8000));
    assert_eq!(s.src, addr(NAT_IP), "app2 sees app's public address, not 10.0.1.10");
    let p1 = s.sport;
    // app2 answers to what it saw; it comes back to app from app2's public endpoint.
    let back = seen(&lab.pass("app2", "app", &udp(APP2, 8000, NAT_IP, p1, b"answer")));
    assert_eq!((back.src, back.sport, back.dst, back.dport), (addr(NAT_IP), p2, addr(APP), 8100));
    // TCP the same way.
    let t2 = seen(&lab.pass("app2", "internet", &tcp(APP2, 8001, WEB, 80, "S", 1, 0))).sport;
    let syn = seen(&lab.pass("app", "app2", &tcp(APP, 8101, NAT_IP, t2, "S", 1, 0)));
    assert_eq!((syn.src, syn.dst, syn.dport), (addr(NAT_IP), addr(APP2), 8001));
}

#[test]
fn hairpinning_with_port_dependent_filtering_needs_both_sides_to_send() {
    let mut lab = with_app2(&[]);
    let p2 = seen(&lab.pass("app2", "internet", &udp(APP2, 8000, WEB, 53, b"q"))).sport;
    let p1 = seen(&lab.pass("app", "internet", &udp(APP, 8100, WEB, 53, b"q"))).sport;
    // app2 first "punches" towards app's public endpoint: refused at app's side.
    let (a, _) = lab.send("app2", &udp(APP2, 8000, NAT_IP, p1, b"punch"));
    assert_eq!(a, Action::Drop(DropReason::NatNoSession));
    // Now app's packet to app2's endpoint matches app2's session: it passes.
    let s = seen(&lab.pass("app", "app2", &udp(APP, 8100, NAT_IP, p2, b"hello")));
    assert_eq!((s.src, s.sport), (addr(NAT_IP), p1));
}

#[test]
fn icmp_hairpin_through_an_elastic_ip() {
    let mut lab = Lab::new();
    // app pings bastion's public address: out through nat-1, in through the internet gateway.
    let req = seen(&lab.pass("app", "bastion", &echo(APP, BASTION_EIP, 42, 1)));
    assert_eq!((req.src, req.dst), (addr(NAT_IP), addr(BASTION)));
    let reply = seen(&lab.pass("bastion", "app", &echo_reply(BASTION, NAT_IP, req.sport, 1)));
    assert_eq!((reply.src, reply.dst, reply.sport), (addr(BASTION_EIP), addr(APP), 42));
}

// ---------------------------------------------------------------- fragments and MTU

fn big_udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    udp_no_df(src, sport, dst, dport, &(0..3000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>())
}

#[test]
fn u14_fragments_in_order_are_translated() {
    let mut lab = Lab::new();
    let whole = big_udp(APP, 9000, WEB, 53);
    let frags = fragments(&whole, 1480);
    let mut out = Vec::new();
    for f in &frags {
        out.push(lab.pass("app", "internet", f));
    }
    let r = reassemble(&out);
    assert_checksums(&r);
    let s = seen(&r);
    assert_eq!(s.src, addr(NAT_IP));
    assert_eq!(&r[28..], &whole[28..], "payload intact");
}

#[test]
fn u14_out_of_order_fragments_wait_for_the_first() {
    let mut lab = Lab::new();
    let whole = big_udp(APP, 9001, WEB, 53);
    let mut frags = fragments(&whole, 1000);
    frags.reverse();
    let mut out = Vec::new();
    for f in &frags[..frags.len() - 1] {
        let (a, _) = lab.send("app", f);
        assert_eq!(a, Action::Held);
    }
    assert!(lab.pending().is_empty());
    out.push(lab.pass("app", "internet", frags.last().unwrap()));
    for (p, a, b) in lab.pending() {
        assert_eq!(p, Pending::Reprocess(lab.ifc("app")));
        assert_eq!(a, Action::Forward(lab.ifc("internet")));
        out.push(b);
    }
    assert_eq!(out.len(), frags.len());
    let r = reassemble(&out);
    assert_checksums(&r);
    assert_eq!(seen(&r).src, addr(NAT_IP));
    // The reply, fragmented too, finds its way back.
    let back = big_udp(WEB, 53, NAT_IP, seen(&r).sport);
    let mut got = Vec::new();
    for f in fragments(&back, 1000) {
        got.push(lab.pass("internet", "app", &f));
    }
    assert_eq!(seen(&reassemble(&got)).dst, addr(APP));
}

#[test]
fn u14_tcp_and_icmp_fragments_too() {
    let mut lab = Lab::new();
    let big: Vec<u8> = vec![7; 2500];
    let mut t = Vec::new();
    etherparse::PacketBuilder::ipv4(APP, WEB, 64).tcp(9100, 80, 1, 1000).syn().write(&mut t, &big).unwrap();
    set_df(&mut t, false);
    let out: Vec<Vec<u8>> = fragments(&t, 1480).iter().map(|f| lab.pass("app", "internet", f)).collect();
    assert_checksums(&reassemble(&out));
    let mut e = echo(APP, WEB, 77, 1);
    e.truncate(20);
    let mut pl = Vec::new();
    etherparse::PacketBuilder::ipv4(APP, WEB, 64).icmpv4_echo_request(77, 1).write(&mut pl, &big).unwrap();
    set_df(&mut pl, false);
    let out: Vec<Vec<u8>> = fragments(&pl, 1480).iter().map(|f| lab.pass("app", "internet", f)).collect();
    let r = reassemble(&out);
    assert_checksums(&r);
    assert_eq!(seen(&r).src, addr(NAT_IP));
}

#[test]
fn u14_a_flood_of_bogus_fragments_does_not_hurt_other_traffic() {
    let mut lab = Lab::new();
    // 5000 later fragments whose first never comes, from one source.
    for i in 0..5000u16 {
        let mut f = fragments(&big_udp(WEB, 1, NAT_IP, 2), 1000)[1].clone();
        f[4..6].copy_from_slice(&i.to_be_bytes());
        f[10] = 0;
        f[11] = 0;
        let c = natgw::wire::checksum::checksum(&f[..20]);
        f[10..12].copy_from_slice(&c.to_be_bytes());
        let (a, _) = lab.send("internet", &f);
        assert!(matches!(a, Action::Held | Action::Drop(DropReason::FragmentRefused)), "{a:?}");
    }
    let (held, _) = lab.gw.fragments();
    assert!(held <= 32, "one source holds at most its share: {held}");
    // Fragmented traffic of others still gets through, out of order even.
    let whole = big_udp(APP, 9002, WEB, 53);
    let frags = fragments(&whole, 1000);
    let (a, _) = lab.send("app", &frags[2]);
    assert_eq!(a, Action::Held);
    lab.pass("app", "internet", &frags[0]);
    assert_eq!(lab.pending().len(), 1);
    lab.pass("app", "internet", &frags[1]);
    // And the bogus ones time out, counted.
    lab.advance(6);
    lab.poll();
    assert_eq!(lab.gw.fragments().0, 0);
    assert!(lab.totals().drop_count("fragment_timeout") >= 32);
    assert!(lab.totals().drop_count("fragment_refused") > 4000);
}

fn small_internet_mtu() -> Lab {
    Lab::with(&[("namespace = \"web\"", "namespace = \"web\"\nmtu = 1400")])
}

#[test]
fn u13_df_and_too_big_answers_3_4_with_the_next_hop_mtu() {
    let mut lab = small_internet_mtu();
    let mut p = udp(APP, 9200, WEB, 53, &[1u8; 1450]);
    set_df(&mut p, true);
    let (a, out) = lab.send("app", &p);
    assert_eq!(a, Action::Reply { egress: lab.ifc("app"), cause: DropReason::FragNeeded });
    assert_checksums(&out);
    let s = seen(&out);
    assert_eq!((s.src, s.dst), (addr([10, 0, 1, 1]), addr(APP)));
    let (t, c, quote) = icmp_of(&out);
    assert_eq!((t, c), (3, 4));
    let mtu = u16::from_be_bytes([out[26], out[27]]);
    assert_eq!(mtu, 1400, "next-hop MTU");
    // The quote is the packet as app sent it (its own address and port), so its stack matches it.
    let (qh, rest) = etherparse::Ipv4Header::from_slice(&quote).unwrap();
    assert_eq!(qh.source, APP);
    assert_eq!(u16::from_be_bytes([rest[0], rest[1]]), 9200);
}

#[test]
fn packets_without_df_are_fragmented_to_the_egress_mtu() {
    let mut lab = small_internet_mtu();
    let p = udp_no_df(APP, 9300, WEB, 53, &(0..1450u32).map(|i| i as u8).collect::<Vec<_>>());
    let first = lab.pass("app", "internet", &p);
    assert!(first.len() <= 1400);
    let rest: Vec<Vec<u8>> = lab
        .pending()
        .into_iter()
        .map(|(p, _, b)| {
            assert_eq!(p, Pending::Send(lab.ifc("internet")));
            b
        })
        .collect();
    assert_eq!(rest.len(), 1);
    assert!(rest[0].len() <= 1400);
    let mut all = vec![first];
    all.extend(rest);
    let r = reassemble(&all);
    assert_checksums(&r);
    assert_eq!(seen(&r).src, addr(NAT_IP));
    assert_eq!(&r[28..], &p[28..]);
}

#[test]
fn tcp_mss_is_clamped_to_the_egress_mtu() {
    let mut lab = small_internet_mtu();
    let mut syn = Vec::new();
    etherparse::PacketBuilder::ipv4(APP, WEB, 64)
        .tcp(9400, 80, 1, 64240)
        .syn()
        .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
        .unwrap()
        .write(&mut syn, &[])
        .unwrap();
    let out = lab.pass("app", "internet", &syn);
    let s = SlicedPacket::from_ip(&out).unwrap();
    let Some(TransportSlice::Tcp(t)) = s.transport else { panic!() };
    let mss = t.options_iterator().find_map(|o| match o {
        Ok(etherparse::TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
        _ => None,
    });
    assert_eq!(mss, Some(1360));
}

/// One host's burst stops with a quarter of the pool left, and another host
/// still gets a port at once (RFC 6888 REQ-4: a limit per subscriber).
#[test]
fn one_hosts_burst_leaves_a_quarter_of_the_pool_to_the_others() {
    // 256 ports: the burst stops at 192; hosts holding fewer than 8 ports
    // (1/32) still get one.
    let mut lab = with_app2(&[nat_option("port_range = \"1024-1279\"\nport_parity = false")]);
    let mut taken = 0;
    let refused = loop {
        let (a, out) = lab.send("app2", &udp(APP2, 30000 + taken, WEB, 9, b"x"));
        match a {
            Action::Forward(_) => taken += 1,
            other => break (other, out),
        }
        assert!(taken <= 256, "the burst took the whole pool");
    };
    assert_eq!(taken, 192, "the burst stops with a quarter of the pool free");
    assert!(matches!(refused.0, Action::Reply { cause: DropReason::NatHostShare, .. }), "{:?}", refused.0);
    assert_eq!((icmp_of(&refused.1).0, icmp_of(&refused.1).1), (3, 13), "the configured answer: admin prohibited");
    let t = lab.totals();
    assert_eq!(t.nat.iter().find(|(n, _)| n == "error_port_allocation").map(|p| p.1), Some(1));
    // Another host gets its ports from the quarter left, up to 1/32 of the pool.
    for p in 0..8 {
        lab.pass("app", "internet", &udp(APP, 40000 + p, WEB, 9, b"x"));
    }
    let (a, _) = lab.send("app", &udp(APP, 40008, WEB, 9, b"x"));
    assert!(matches!(a, Action::Reply { cause: DropReason::NatHostShare, .. }), "{a:?}");
    // The bursting host's existing mappings keep working.
    lab.pass("app2", "internet", &udp(APP2, 30000, WEB, 9, b"still"));
    // Without the share, the burst takes every port.
    let mut lab = with_app2(&[nat_option("port_range = \"1024-1279\"\nport_parity = false\nfair_share = false")]);
    for p in 0..256 {
        lab.pass("app2", "internet", &udp(APP2, 30000 + p, WEB, 9, b"x"));
    }
    let (a, _) = lab.send("app", &udp(APP, 40000, WEB, 9, b"x"));
    assert!(matches!(a, Action::Reply { cause: DropReason::NatPortsExhausted, .. }), "{a:?}");
}

/// At `max_sessions` a session that never had a reply makes room for a new
/// flow (netfilter's early drop, on with the `aws` profile); answered ones
/// are never evicted: then the new flow gets the exhaustion answer.
#[test]
fn a_full_table_drops_the_oldest_unanswered_session_first() {
    let mut lab = Lab::with(&[nat_option("max_sessions = 4")]);
    let nat = lab.gw.nats()[0].clone();
    // One answered flow, then three SYNs nobody answers.
    let out = lab.pass("app", "internet", &udp(APP, 5000, WEB, 53, b"q"));
    lab.pass("internet", "app", &udp(WEB, 53, NAT_IP, seen(&out).sport, b"a"));
    for p in 0..3 {
        lab.pass("app", "internet", &tcp(APP, 41000 + p, WEB, 80, "S", 1, 0));
    }
    assert_eq!(nat.session_count(), 4);
    // The table is full: the oldest unanswered SYN (41000) goes.
    lab.pass("app", "internet", &tcp(APP, 42000, WEB, 80, "S", 1, 0));
    assert_eq!((nat.session_count(), nat.stats.early_drops.get()), (4, 1));
    let left: Vec<u16> = nat.sessions(1000).iter().map(|s| s.orig_sport).collect();
    assert!(!left.contains(&41000) && left.contains(&41001) && left.contains(&5000), "{left:?}");
    // The answered flow still works both ways.
    let again = lab.pass("app", "internet", &udp(APP, 5000, WEB, 53, b"q2"));
    assert_eq!(seen(&again).sport, seen(&out).sport);
    // With early drop off, the full table refuses the new flow instead.
    let mut strict = Lab::with(&[nat_option("max_sessions = 2\nearly_drop = false")]);
    strict.pass("app", "internet", &tcp(APP, 41000, WEB, 80, "S", 1, 0));
    strict.pass("app", "internet", &tcp(APP, 41001, WEB, 80, "S", 1, 0));
    let (a, reply) = strict.send("app", &tcp(APP, 41002, WEB, 80, "S", 1, 0));
    assert!(matches!(a, Action::Reply { cause: DropReason::NatTableFull, .. }), "{a:?}");
    assert_eq!((icmp_of(&reply).0, icmp_of(&reply).1), (3, 13));
}

/// A full table of answered sessions evicts nothing: the new flow is
/// refused with the configured answer and counted; old flows keep working.
#[test]
fn a_full_table_of_answered_sessions_refuses_new_flows() {
    let mut lab = Lab::with(&[nat_option("max_sessions = 2")]);
    let mut ext = Vec::new();
    for p in 0..2 {
        let out = lab.pass("app", "internet", &udp(APP, 5000 + p, WEB, 53, b"q"));
        lab.pass("internet", "app", &udp(WEB, 53, NAT_IP, seen(&out).sport, b"a"));
        ext.push(seen(&out).sport);
    }
    let (a, reply) = lab.send("app", &udp(APP, 5002, WEB, 53, b"q"));
    assert!(matches!(a, Action::Reply { cause: DropReason::NatTableFull, .. }), "{a:?}");
    assert_eq!((icmp_of(&reply).0, icmp_of(&reply).1), (3, 13));
    assert_eq!(lab.totals().drops.iter().find(|(n, _)| n == "nat_table_full").map(|d| d.1), Some(1));
    for (p, e) in ext.iter().enumerate() {
        lab.pass("internet", "app", &udp(WEB, 53, NAT_IP, *e, b"still"));
        assert_eq!(seen(&lab.pass("app", "internet", &udp(APP, 5000 + p as u16, WEB, 53, b"q"))).sport, *e);
    }
    assert_eq!(lab.gw.nats()[0].stats.early_drops.get(), 0);
}
