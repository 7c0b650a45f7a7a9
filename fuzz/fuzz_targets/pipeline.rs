//! The pipeline against a live gateway: the default lab, with a TCP
//! connection, a UDP flow and a ping already through its NAT gateway, fed
//! packets from all three sides, valid ones mutated and raw bytes. Never a
//! panic, and every packet that is not forwarded is counted under a drop
//! reason.
//!
//! Input: chunks of `[b0, b1, n, n bytes]`. `b0 % 3` picks the side (app,
//! bastion, internet); `b1 % 9` a valid packet of the lab (8: the bytes as
//! they are), whose bytes from offset `b0 / 3` are XORed with the chunk's;
//! `b1 / 32` seconds pass before it.
#![no_main]
use etherparse::PacketBuilder;
use libfuzzer_sys::fuzz_target;
use natgw::control::config;
use natgw::pipeline::Pending;
use natgw::{Action, Gateway, PacketBuf, Pipeline, Timestamp};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

const APP: [u8; 4] = [10, 0, 1, 10];
const WEB: [u8; 4] = [198, 51, 100, 10];
const NAT: [u8; 4] = [203, 0, 113, 5];
const BASTION_EIP: [u8; 4] = [203, 0, 113, 10];

struct Lab {
    gw: Arc<Gateway>,
    sides: [u16; 3],
    packets: Vec<Vec<u8>>,
}

static LAB: OnceLock<Lab> = OnceLock::new();
static SECS: AtomicU64 = AtomicU64::new(1000);

fn tcp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    data: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, seq, 64240);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut out = Vec::new();
    b.write(&mut out, data).expect("build");
    out
}

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64).udp(sport, dport).write(&mut out, b"query").expect("build");
    out
}

/// The source port a forwarded packet left with.
fn sport(b: &PacketBuf) -> u16 {
    let ip = natgw::wire::Ipv4Packet::new_checked(b.bytes()).expect("ip");
    u16::from_be_bytes([ip.payload()[0], ip.payload()[1]])
}

fn lab() -> &'static Lab {
    LAB.get_or_init(|| {
        let vpc = config::parse("fuzz.toml", config::DEFAULT_LAB).expect("the default lab");
        let gw = vpc.build();
        let topo = gw.topology();
        let side = |n: &str| topo.interfaces.iter().position(|i| i.name == n).expect("interface") as u16;
        let sides = [side("app"), side("bastion"), side("internet")];
        let mut pipe = gw.pipeline();
        let now = Timestamp::from_secs(SECS.load(Ordering::Relaxed));
        let mut out = |ingress: u16, p: &[u8]| {
            let mut b = PacketBuf::from_slice(p);
            let a = pipe.process(now, ingress, &mut b);
            assert!(matches!(a, Action::Forward(_)), "{a:?}");
            sport(&b)
        };
        // A TCP connection, a UDP flow and a ping, through nat-1.
        let syn = tcp(APP, 40000, WEB, 80, 1, None, true, b"");
        let ext = out(sides[0], &syn);
        let synack = tcp(WEB, 80, NAT, ext, 500, Some(2), true, b"");
        out(sides[2], &synack);
        let ack = tcp(APP, 40000, WEB, 80, 2, Some(501), false, b"");
        out(sides[0], &ack);
        let data_in = tcp(WEB, 80, NAT, ext, 501, Some(2), false, b"HTTP/1.1 200 OK\r\n\r\n");
        let udp_out = udp(APP, 5000, WEB, 53);
        let uext = out(sides[0], &udp_out);
        let udp_in = udp(WEB, 53, NAT, uext);
        let mut ping = Vec::new();
        PacketBuilder::ipv4(APP, WEB, 64).icmpv4_echo_request(7, 1).write(&mut ping, b"ping").expect("build");
        let to_bastion = tcp(WEB, 50000, BASTION_EIP, 22, 9, None, true, b"");
        let packets = vec![syn, synack, ack, data_in, udp_out, udp_in, ping, to_bastion];
        drop(topo);
        Lab { gw, sides, packets }
    })
}

fn drops(pipe: &Pipeline) -> u64 {
    pipe.counters().drops.iter().map(|c| c.get()).sum()
}

fuzz_target!(|data: &[u8]| {
    let lab = lab();
    let mut pipe = lab.gw.pipeline();
    let mut scratch = PacketBuf::with_capacity(natgw::pipeline::buf::MAX_PACKET);
    let mut rest = data;
    while let [b0, b1, n, tail @ ..] = rest {
        let n = usize::from(*n).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let ingress = lab.sides[usize::from(*b0 % 3)];
        let kind = usize::from(*b1 % 9);
        let packet = match lab.packets.get(kind) {
            Some(p) => {
                let mut p = p.clone();
                let at = usize::from(*b0 / 3) % p.len();
                for (i, x) in bytes.iter().enumerate() {
                    if let Some(b) = p.get_mut(at + i) {
                        *b ^= x;
                    }
                }
                p
            }
            None => bytes.to_vec(),
        };
        let secs = SECS.fetch_add(u64::from(*b1 / 32), Ordering::Relaxed);
        let now = Timestamp::from_secs(secs);
        let mut buf = PacketBuf::from_slice(&packet);
        let before = drops(&pipe);
        let a = pipe.process(now, ingress, &mut buf);
        if let Action::Drop(r) | Action::Reply { cause: r, .. } = a {
            assert!(drops(&pipe) > before, "{r:?} not counted");
        }
        pipe.poll(now);
        // The reaper's work, as the daemon's thread does it.
        for nat in lab.gw.nats() {
            nat.expire(now.secs(), 1000);
        }
        while let Some(p) = pipe.next_pending(&mut scratch) {
            if let Pending::Reprocess(i) = p {
                let _ = pipe.process(now, i, &mut scratch);
            }
        }
    }
});
