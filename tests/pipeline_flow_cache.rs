//! The flow cache changes nothing but speed: random traffic through two
//! gateways, one with the cache and one without, gives the same verdicts, the
//! same bytes, the same counters and the same sessions.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod common;
use common::*;
use natgw::pipeline::{Action, DropReason, Offload, PacketBuf};
use proptest::prelude::*;

/// The seeded default lab, with the flow cache on or off.
fn lab(cache: bool) -> Lab {
    let mut src = natgw::control::config::DEFAULT_LAB.replace("profile = \"aws\"", "profile = \"aws\"\nseed = 42");
    src.push_str(&format!("\n[gateway]\nflow_cache = {cache}\n"));
    Lab::from_toml(&src)
}

fn cache_count(lab: &Lab, name: &str) -> u64 {
    lab.totals().cache.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
}

/// Sends with the transport checksum left to offload (the field holds the
/// pseudo-header sum), as a TUN device with IFF_VNET_HDR delivers it.
fn send_partial(lab: &mut Lab, from: &str, bytes: &[u8]) -> (Action, Vec<u8>) {
    let mut v = bytes.to_vec();
    let ihl = usize::from(v[0] & 0x0f) * 4;
    let proto = v[9];
    let at = ihl + if proto == 6 { 16 } else { 6 };
    let l4_len = (v.len() - ihl) as u32;
    let mut sum: u32 = u32::from(proto) + l4_len;
    for w in v[12..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    v[at..at + 2].copy_from_slice(&(sum as u16).to_be_bytes());
    let ifc = lab.ifc(from);
    let mut buf = PacketBuf::from_slice(&v);
    buf.offload = Offload {
        csum: Some(natgw::pipeline::buf::CsumOffload { start: ihl as u16, offset: (at - ihl) as u16 }),
        gso: None,
    };
    let a = lab.pipe.process(lab.now, ifc, &mut buf);
    (a, buf.bytes().to_vec())
}

#[derive(Clone, Copy, Debug)]
enum Flow {
    /// app -> web through the NAT gateway, and web's answers.
    AppWebTcp,
    AppWebUdp,
    /// bastion -> web through the internet gateway's 1:1 NAT.
    BastionWebTcp,
    /// app -> bastion inside the VPC (routed between subnets).
    AppBastionUdp,
    /// app -> bastion's Elastic IP: out through the NAT gateway, back in
    /// through the internet gateway (hairpinning), and bastion's answers.
    AppBastionEipUdp,
}

impl Flow {
    /// Which of the NAT's external ports a flow's replies go to.
    fn ext_slot(self) -> Option<usize> {
        match self {
            Flow::AppWebTcp => Some(0),
            Flow::AppWebUdp => Some(1),
            Flow::AppBastionEipUdp => Some(2),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Step {
    flow: Flow,
    inbound: bool,
    flags: &'static str,
    ttl: u8,
    payload: usize,
    partial: bool,
    advance: u64,
}

fn step() -> impl Strategy<Value = Step> {
    let flow = prop_oneof![
        Just(Flow::AppWebTcp),
        Just(Flow::AppWebUdp),
        Just(Flow::BastionWebTcp),
        Just(Flow::AppBastionUdp),
        Just(Flow::AppBastionEipUdp)
    ];
    let flags = prop_oneof![
        4 => Just("A"),
        2 => Just("PA"),
        1 => Just("S"),
        1 => Just("SA"),
        1 => Just("FA"),
        1 => Just("R"),
        1 => Just("RA"),
    ];
    let ttl = prop_oneof![6 => Just(64u8), 1 => Just(1u8), 1 => Just(2u8)];
    let payload = prop_oneof![6 => Just(10usize), 1 => Just(0usize), 1 => Just(1600usize)];
    let advance = prop_oneof![8 => Just(0u64), 2 => Just(1u64), 1 => Just(200u64), 1 => Just(400u64)];
    (flow, any::<bool>(), flags, ttl, payload, any::<bool>(), advance).prop_map(
        |(flow, inbound, flags, ttl, payload, partial, advance)| Step {
            flow,
            inbound,
            flags,
            ttl,
            payload,
            partial,
            advance,
        },
    )
}

/// The packet of a step, and the interface it enters on. `ext` is the NAT's
/// external port for app's flows as last seen (replies go to it).
fn packet(s: &Step, ext: u16) -> (&'static str, Vec<u8>) {
    let body = vec![0x5a; s.payload];
    let tcp_p = |src, sport, dst, dport| {
        let mut v = tcp(src, sport, dst, dport, s.flags, 1000, 1);
        // tcp() builds without payload: add it and fix the lengths and checksums.
        let mut b = Vec::new();
        let h = etherparse::Ipv4HeaderSlice::from_slice(&v).unwrap().to_header();
        let t = etherparse::TcpHeaderSlice::from_slice(&v[20..]).unwrap().to_header();
        etherparse::PacketBuilder::ip(etherparse::IpHeaders::Ipv4(h, Default::default()))
            .tcp_header(t)
            .write(&mut b, &body)
            .unwrap();
        v = b;
        v
    };
    let udp_p = |src, sport, dst, dport| udp(src, sport, dst, dport, &body);
    let (from, mut v) = match (s.flow, s.inbound) {
        (Flow::AppWebTcp, false) => ("app", tcp_p(APP, 40000, WEB, 443)),
        (Flow::AppWebTcp, true) => ("internet", tcp_p(WEB, 443, NAT_IP, ext)),
        (Flow::AppWebUdp, false) => ("app", udp_p(APP, 40001, WEB2, 53)),
        (Flow::AppWebUdp, true) => ("internet", udp_p(WEB2, 53, NAT_IP, ext)),
        (Flow::BastionWebTcp, false) => ("bastion", tcp_p(BASTION, 22000, WEB, 80)),
        (Flow::BastionWebTcp, true) => ("internet", tcp_p(WEB, 80, BASTION_EIP, 22000)),
        (Flow::AppBastionUdp, false) => ("app", udp_p(APP, 5000, BASTION, 6000)),
        (Flow::AppBastionUdp, true) => ("bastion", udp_p(BASTION, 6000, APP, 5000)),
        (Flow::AppBastionEipUdp, false) => ("app", udp_p(APP, 5001, BASTION_EIP, 7000)),
        (Flow::AppBastionEipUdp, true) => ("bastion", udp_p(BASTION, 7000, NAT_IP, ext)),
    };
    // Set the TTL, keeping the header checksum right.
    v[8] = s.ttl;
    v[10..12].copy_from_slice(&[0, 0]);
    let c = etherparse::Ipv4HeaderSlice::from_slice(&v).unwrap().to_header().calc_header_checksum();
    v[10..12].copy_from_slice(&c.to_be_bytes());
    (from, v)
}

/// A verdict and the bytes it applies to.
type Out = (Action, Vec<u8>);

/// Runs a step: its verdict, and what the pipeline queued besides.
fn run(lab: &mut Lab, s: &Step, ext: u16) -> (Out, Vec<Out>) {
    if s.advance > 0 {
        lab.advance(s.advance);
        lab.expire();
        lab.poll();
    }
    let (from, v) = packet(s, ext);
    let out = if s.partial { send_partial(lab, from, &v) } else { lab.send(from, &v) };
    let more = lab.pending().into_iter().map(|(_, a, b)| (a, b)).collect();
    (out, more)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_cache_changes_nothing_but_speed(steps in proptest::collection::vec(step(), 1..80)) {
        let (mut with, mut without) = (lab(true), lab(false));
        let mut ext = [1024u16; 3];
        for s in &steps {
            let e = s.flow.ext_slot().map_or(0, |i| ext[i]);
            let ((a1, b1), p1) = run(&mut with, s, e);
            let ((a2, b2), p2) = run(&mut without, s, e);
            prop_assert_eq!(a1, a2, "verdict of {:?}", s);
            prop_assert_eq!(&b1, &b2, "bytes of {:?}", s);
            prop_assert_eq!(p1, p2, "packets queued after {:?}", s);
            // Replies go to the port the NAT chose.
            if let (false, Some(i), Action::Forward(_)) = (s.inbound, s.flow.ext_slot(), a1) {
                ext[i] = seen(&b1).sport;
            }
        }
        let (t1, t2) = (with.totals(), without.totals());
        prop_assert_eq!(&t1.interfaces, &t2.interfaces);
        prop_assert_eq!(&t1.drops, &t2.drops);
        prop_assert_eq!(&t1.nat, &t2.nat);
        prop_assert_eq!(&t1.generated, &t2.generated);
        let sessions = |l: &Lab| l.gw.nats()[0].sessions(l.now.secs());
        let (mut s1, mut s2) = (sessions(&with), sessions(&without));
        s1.sort_by_key(|v| (v.proto, v.orig_sport));
        s2.sort_by_key(|v| (v.proto, v.orig_sport));
        prop_assert_eq!(format!("{s1:?}"), format!("{s2:?}"));
        prop_assert_eq!(cache_count(&without, "hits"), 0);
    }
}

/// An established flow's packets after the first are forwarded from the cache.
#[test]
fn established_packets_hit_the_cache() {
    let mut lab = lab(true);
    lab.pass("app", "internet", &tcp(APP, 40000, WEB, 443, "S", 1, 0));
    let ext = seen(&lab.pass("app", "internet", &tcp(APP, 40000, WEB, 443, "A", 2, 1))).sport;
    assert_eq!(cache_count(&lab, "hits"), 0);
    for i in 0..10 {
        let out = lab.pass("app", "internet", &tcp(APP, 40000, WEB, 443, "PA", 3 + i, 1));
        assert_eq!(seen(&out).sport, ext);
        lab.pass("internet", "app", &tcp(WEB, 443, NAT_IP, ext, "A", 1, 4 + i));
    }
    // The first packet of each direction walked; the rest hit.
    assert_eq!(cache_count(&lab, "hits"), 19);
    let t = lab.totals();
    assert_eq!(t.nat_count("packets_out_to_destination"), 12);
    assert_eq!(t.nat_count("packets_out_to_source"), 10);
    let s = &lab.gw.nats()[0].sessions(lab.now.secs())[0];
    assert_eq!(s.packets, [12, 10]);
}

/// A route change reaches flows already cached.
#[test]
fn a_route_change_reaches_cached_flows() {
    let mut lab = lab(true);
    for _ in 0..3 {
        lab.pass("app", "internet", &udp(APP, 40000, WEB, 53, b"q"));
    }
    assert_eq!(cache_count(&lab, "hits"), 2);
    let mut vpc = natgw::control::config::parse("lab.toml", natgw::control::config::DEFAULT_LAB).unwrap();
    vpc.add_route("private", "198.51.100.10/32", "blackhole").unwrap();
    lab.gw.set_topology(natgw::pipeline::Topology::new(vpc.parts.clone()));
    lab.pipe.refresh();
    let (a, _) = lab.send("app", &udp(APP, 40000, WEB, 53, b"q"));
    assert_eq!(a, Action::Drop(DropReason::Blackhole));
}

/// A session that expired is not carried on by the cache.
#[test]
fn an_expired_session_is_not_carried_on() {
    let mut lab = lab(true);
    lab.pass("app", "internet", &tcp(APP, 40000, WEB, 443, "S", 1, 0));
    lab.pass("app", "internet", &tcp(APP, 40000, WEB, 443, "A", 2, 1));
    lab.pass("app", "internet", &tcp(APP, 40000, WEB, 443, "A", 3, 1));
    assert_eq!(cache_count(&lab, "hits"), 1);
    lab.advance(351); // the aws profile's 350 s
    let (a, _) = lab.send("app", &tcp(APP, 40000, WEB, 443, "A", 4, 1));
    // AWS answers a packet of an expired connection with a RST.
    assert_eq!(a, Action::Reply { egress: lab.ifc("app"), cause: DropReason::NatNotSyn });
    assert_eq!(cache_count(&lab, "invalidated"), 1);
}

/// A hairpinned flow (out through the NAT gateway, in through the internet
/// gateway's 1:1 NAT) is cached too, both ways, with the NAT counted as the
/// walk counts it.
#[test]
fn hairpinned_flows_are_cached() {
    let (mut with, mut without) = (lab(true), lab(false));
    for lab in [&mut with, &mut without] {
        let mut ext = 0;
        for _ in 0..5 {
            let out = lab.pass("app", "bastion", &udp(APP, 5001, BASTION_EIP, 7000, b"q"));
            ext = seen(&out).sport;
            assert_eq!(seen(&out).src, addr(NAT_IP));
        }
        for _ in 0..5 {
            let back = lab.pass("bastion", "app", &udp(BASTION, 7000, NAT_IP, ext, b"a"));
            assert_eq!(seen(&back).src, addr(BASTION_EIP));
        }
    }
    assert_eq!(cache_count(&with, "hits"), 8);
    assert_eq!(with.totals().nat, without.totals().nat);
}

#[test]
fn a_live_trace_records_the_next_matching_packets_even_of_cached_flows() {
    let mut lab = Lab::new();
    // The flow is cached first.
    for _ in 0..3 {
        lab.pass("app", "internet", &udp(APP, 5000, WEB, 53, b"q"));
    }
    let words: Vec<String> = "udp port 53".split_whitespace().map(String::from).collect();
    lab.gw.live().arm(natgw::pipeline::live::Filter::parse(&words).unwrap(), 2);
    lab.pass("app", "internet", &udp(APP, 6000, WEB, 9, b"other"));
    lab.pass("app", "internet", &udp(APP, 5000, WEB, 53, b"q"));
    lab.pass("app", "internet", &udp(APP, 5000, WEB, 53, b"q"));
    lab.pass("app", "internet", &udp(APP, 5000, WEB, 53, b"q"));
    let traced = lab.gw.live().results();
    assert_eq!(traced.len(), 2, "two packets, then the trace disarms: {traced:#?}");
    assert!(!lab.gw.live().armed());
    for t in &traced {
        assert_eq!(t.packet, "udp 10.0.1.10:5000 -> 198.51.100.10:53");
        assert!(t.hops.iter().any(|h| h.detail.contains("nat-1: existing session")), "{:#?}", t.hops);
        assert_eq!(t.hops.last().unwrap().detail, "forwarded out of interface internet");
    }
}
