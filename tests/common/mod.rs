//! A harness for pipeline tests: the default lab in memory, packets built
//! with etherparse (an independent implementation), time passed in.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use etherparse::{IcmpEchoHeader, Icmpv4Type, PacketBuilder, SlicedPacket, TransportSlice};
use natgw::Timestamp;
use natgw::control::config;
use natgw::pipeline::{Action, Gateway, PacketBuf, Pending, Pipeline, Totals};
use std::net::Ipv4Addr;
use std::sync::Arc;

pub const APP: [u8; 4] = [10, 0, 1, 10];
pub const BASTION: [u8; 4] = [10, 0, 0, 10];
pub const WEB: [u8; 4] = [198, 51, 100, 10];
pub const WEB2: [u8; 4] = [198, 51, 100, 11];
pub const NAT_IP: [u8; 4] = [203, 0, 113, 5];
pub const BASTION_EIP: [u8; 4] = [203, 0, 113, 10];

pub struct Lab {
    pub gw: Arc<Gateway>,
    pub pipe: Pipeline,
    pub now: Timestamp,
}

impl Lab {
    /// The default lab, with a fixed port seed so runs are repeatable.
    pub fn new() -> Lab {
        Lab::from_toml(&config::DEFAULT_LAB.replace("profile = \"aws\"", "profile = \"aws\"\nseed = 42"))
    }

    pub fn from_toml(src: &str) -> Lab {
        let vpc = config::parse("test.toml", src).expect("config");
        let gw = vpc.build();
        let pipe = gw.pipeline();
        Lab { gw, pipe, now: Timestamp::from_secs(1000) }
    }

    /// The default lab with edits to its TOML.
    pub fn with(edits: &[(&str, &str)]) -> Lab {
        let mut s = config::DEFAULT_LAB.replace("profile = \"aws\"", "profile = \"aws\"\nseed = 42");
        for (a, b) in edits {
            assert!(s.contains(a), "fixture text `{a}` not in the lab");
            s = s.replacen(a, b, 1);
        }
        Lab::from_toml(&s)
    }

    pub fn ifc(&self, name: &str) -> u16 {
        self.gw.topology().interfaces.iter().position(|i| i.name == name).expect("interface") as u16
    }

    /// Sends `bytes` in on interface `from`; returns the action and the bytes after.
    pub fn send(&mut self, from: &str, bytes: &[u8]) -> (Action, Vec<u8>) {
        let ifc = self.ifc(from);
        let mut buf = PacketBuf::from_slice(bytes);
        let a = self.pipe.process(self.now, ifc, &mut buf);
        (a, buf.bytes().to_vec())
    }

    /// Sends and expects a forward out of `to`; returns the packet.
    pub fn pass(&mut self, from: &str, to: &str, bytes: &[u8]) -> Vec<u8> {
        let want = self.ifc(to);
        let (a, out) = self.send(from, bytes);
        assert_eq!(a, Action::Forward(want), "expected forward {from} -> {to}");
        assert_checksums(&out);
        out
    }

    /// Everything the pipeline queued besides its verdicts (fragments,
    /// released fragments, timer answers); re-runs `Reprocess` items and
    /// returns what they became, like a worker would.
    pub fn pending(&mut self) -> Vec<(Pending, Action, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = PacketBuf::with_capacity(65536);
        while let Some(p) = self.pipe.next_pending(&mut buf) {
            match p {
                Pending::Send(e) => out.push((p, Action::Forward(e), buf.bytes().to_vec())),
                Pending::Reprocess(i) => {
                    let a = self.pipe.process(self.now, i, &mut buf);
                    out.push((p, a, buf.bytes().to_vec()));
                }
            }
        }
        out
    }

    /// Runs the pipeline's timers at the current time.
    pub fn poll(&mut self) {
        self.pipe.poll(self.now);
    }

    pub fn advance(&mut self, secs: u64) {
        self.now = Timestamp::from_nanos(self.now.nanos() + secs * 1_000_000_000);
    }

    /// Runs the reaper at the current time.
    pub fn expire(&self) {
        for n in self.gw.nats() {
            while n.expire(self.now.secs(), 1_000_000).more {}
        }
        while self.gw.tracker().expire(self.now.secs(), 1_000_000) {}
    }

    pub fn totals(&self) -> Totals {
        Totals::sum(&self.gw.topology().interface_names(), [&**self.pipe.counters()])
    }
}

pub fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64).udp(sport, dport).write(&mut v, payload).unwrap();
    v
}

pub fn udp_ttl(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, ttl: u8) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, ttl).udp(sport, dport).write(&mut v, b"probe").unwrap();
    v
}

pub fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str, seq: u32, ack: u32) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, seq, 64240);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(ack),
            'F' => b.fin(),
            'R' => b.rst(),
            'P' => b.psh(),
            _ => panic!("flag {f}"),
        };
    }
    let mut v = Vec::new();
    b.write(&mut v, if flags.contains('P') { b"data" } else { b"" }).unwrap();
    v
}

pub fn echo(src: [u8; 4], dst: [u8; 4], id: u16, seq: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64).icmpv4_echo_request(id, seq).write(&mut v, b"abcdefgh").unwrap();
    v
}

pub fn echo_reply(src: [u8; 4], dst: [u8; 4], id: u16, seq: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64).icmpv4_echo_reply(id, seq).write(&mut v, b"abcdefgh").unwrap();
    v
}

/// An ICMP error from `from` to `to` quoting `quoted` (cut to header + 8 bytes).
pub fn icmp_error(from: [u8; 4], to: [u8; 4], t: Icmpv4Type, quoted: &[u8]) -> Vec<u8> {
    let ihl = usize::from(quoted[0] & 0x0f) * 4;
    let mut v = Vec::new();
    PacketBuilder::ipv4(from, to, 64).icmpv4(t).write(&mut v, &quoted[..(ihl + 8).min(quoted.len())]).unwrap();
    v
}

pub fn port_unreachable() -> Icmpv4Type {
    Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port)
}

/// What a test wants to know about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub ttl: u8,
}

pub fn seen(b: &[u8]) -> Seen {
    let s = SlicedPacket::from_ip(b).expect("parse");
    let etherparse::NetSlice::Ipv4(ip) = s.net.expect("net") else { panic!("not ipv4") };
    let h = ip.header();
    let (sport, dport) = match s.transport {
        Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        Some(TransportSlice::Icmpv4(i)) => match i.icmp_type() {
            Icmpv4Type::EchoRequest(IcmpEchoHeader { id, .. }) | Icmpv4Type::EchoReply(IcmpEchoHeader { id, .. }) => {
                (id, id)
            }
            _ => (0, 0),
        },
        _ => (0, 0),
    };
    Seen { src: h.source_addr(), dst: h.destination_addr(), sport, dport, ttl: h.ttl() }
}

/// Every checksum in the packet is right, recomputed by etherparse.
pub fn assert_checksums(b: &[u8]) {
    let s = SlicedPacket::from_ip(b).expect("parse");
    let etherparse::NetSlice::Ipv4(ip) = s.net.expect("net") else { panic!("not ipv4") };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 header checksum");
    match s.transport {
        Some(TransportSlice::Udp(u)) if u.checksum() != 0 => {
            let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
            assert_eq!(u.checksum(), want, "UDP checksum");
        }
        Some(TransportSlice::Tcp(t)) => {
            assert_eq!(t.checksum(), t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap(), "TCP checksum");
        }
        Some(TransportSlice::Icmpv4(i)) => {
            assert_eq!(i.checksum(), i.icmp_type().calc_checksum(i.payload()), "ICMP checksum");
        }
        _ => {}
    }
}

/// Splits an IPv4 packet into fragments carrying at most `chunk` payload bytes each.
pub fn fragments(packet: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let payload = &packet[ihl..];
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let n = chunk.min(payload.len() - off);
        let mut f = packet[..ihl].to_vec();
        f.extend_from_slice(&payload[off..off + n]);
        let total = (ihl + n) as u16;
        f[2..4].copy_from_slice(&total.to_be_bytes());
        let mf = if off + n < payload.len() { 0x2000 } else { 0 };
        f[6..8].copy_from_slice(&(mf | (off / 8) as u16).to_be_bytes());
        f[10] = 0;
        f[11] = 0;
        let c = natgw::wire::checksum::checksum(&f[..ihl]);
        f[10..12].copy_from_slice(&c.to_be_bytes());
        out.push(f);
        off += n;
    }
    out
}

/// Reassembles fragments (any order) into one packet, for checking.
pub fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
    let mut parts: Vec<(usize, &[u8], bool)> = frags
        .iter()
        .map(|f| {
            let ihl = usize::from(f[0] & 0x0f) * 4;
            let w = u16::from_be_bytes([f[6], f[7]]);
            (usize::from(w & 0x1fff) * 8, &f[ihl..], w & 0x2000 != 0)
        })
        .collect();
    parts.sort_by_key(|p| p.0);
    let first = frags.iter().find(|f| u16::from_be_bytes([f[6], f[7]]) & 0x1fff == 0).expect("first fragment");
    let ihl = usize::from(first[0] & 0x0f) * 4;
    let mut v = first[..ihl].to_vec();
    for (off, data, _) in &parts {
        assert_eq!(v.len() - ihl, *off, "a gap in the fragments");
        v.extend_from_slice(data);
    }
    assert!(!parts.last().unwrap().2, "the last fragment has MF set");
    let total = v.len() as u16;
    v[2..4].copy_from_slice(&total.to_be_bytes());
    v[6] &= 0x40; // keep DF only
    v[7] = 0;
    v[10] = 0;
    v[11] = 0;
    let c = natgw::wire::checksum::checksum(&v[..ihl]);
    v[10..12].copy_from_slice(&c.to_be_bytes());
    v
}

pub fn udp_no_df(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = udp(src, sport, dst, dport, payload);
    v[6] &= !0x40;
    v[10] = 0;
    v[11] = 0;
    let c = natgw::wire::checksum::checksum(&v[..20]);
    v[10..12].copy_from_slice(&c.to_be_bytes());
    v
}

pub fn addr(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}
