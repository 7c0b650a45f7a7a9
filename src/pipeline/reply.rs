//! Messages the gateway builds in answer to a packet, in the packet's own
//! buffer: ICMP errors (RFC 792, RFC 1812 §4.3), echo replies, TCP resets
//! (RFC 9293 §3.10.7.1). These are the only places that sum whole messages,
//! and a message is at most 576 bytes.

use super::buf::{Offload, PacketBuf};
use crate::clock::Timestamp;
use crate::wire::checksum::{self, Delta};
use crate::wire::icmpv4::{self, Icmpv4Packet};
use crate::wire::ipv4::{self, Ipv4Packet, protocol};
use crate::wire::tcp::{self, TcpPacket, flags};

/// An ICMP error is at most this long (RFC 1812 §4.3.2.3).
const MAX_ICMP_ERROR: usize = 576;
const ICMP_AT: usize = ipv4::HEADER_LEN;
const QUOTE_AT: usize = ipv4::HEADER_LEN + icmpv4::HEADER_LEN;

/// Writes a fresh 20-byte IPv4 header at the start of `b`.
fn ip_header(b: &mut [u8], total: usize, ident: u16, proto: u8, tos: u8, src: [u8; 4], dst: [u8; 4]) {
    let mut ip = Ipv4Packet::new_unchecked(&mut b[..ipv4::HEADER_LEN]);
    ip.set_version_and_header_len(ipv4::HEADER_LEN);
    ip.set_tos(tos);
    ip.set_total_len(total as u16);
    ip.set_ident(ident);
    ip.set_flags_frag(0);
    ip.set_ttl(64);
    ip.set_protocol(proto);
    ip.set_src(src);
    ip.set_dst(dst);
    ip.fill_checksum();
}

/// Replaces the packet in `pkt` with an ICMP error about it, sent from `src`
/// to the packet's source. The quote holds as much of the packet as fits in
/// 576 bytes. `rest` is the 32-bit word after the checksum (the next-hop MTU
/// for "fragmentation needed").
pub fn icmp_error(pkt: &mut PacketBuf, src: [u8; 4], kind: u8, code: u8, rest: u32, ident: u16) {
    let dst = Ipv4Packet::new_unchecked(pkt.bytes()).src_bytes();
    let quote = pkt.len().min(MAX_ICMP_ERROR - QUOTE_AT);
    let total = QUOTE_AT + quote;
    let old_len = pkt.len();
    pkt.set_len(total.max(old_len));
    let b = pkt.bytes_mut();
    b.copy_within(0..quote, QUOTE_AT);
    // Precedence "internetwork control" (0xc0), as Linux sends its ICMP errors.
    ip_header(b, total, ident, protocol::ICMP, 0xc0, src, dst);
    let mut msg = Icmpv4Packet::new_unchecked(&mut b[ICMP_AT..total]);
    msg.set_msg_type(kind);
    msg.set_code(code);
    msg.set_rest_of_header(rest);
    msg.fill_checksum();
    pkt.set_len(total);
    pkt.offload = Offload::default();
}

/// Turns an echo request addressed to the gateway into its reply.
pub fn echo_reply(pkt: &mut PacketBuf, ident: u16) {
    let b = pkt.bytes_mut();
    let ip = Ipv4Packet::new_unchecked(&mut *b);
    let (src, dst) = (ip.src_bytes(), ip.dst_bytes());
    let hl = ip.header_len();
    let total = usize::from(ip.total_len());
    // Options of the request are not echoed: a plain 20-byte header.
    if hl > ipv4::HEADER_LEN {
        b.copy_within(hl..total, ipv4::HEADER_LEN);
    }
    let total = total - (hl - ipv4::HEADER_LEN);
    ip_header(b, total, ident, protocol::ICMP, 0, dst, src);
    let mut msg = Icmpv4Packet::new_unchecked(&mut b[ICMP_AT..total]);
    let code = msg.code();
    let old = u16::from_be_bytes([icmpv4::kind::ECHO_REQUEST, code]);
    let new = u16::from_be_bytes([icmpv4::kind::ECHO_REPLY, code]);
    msg.set_msg_type(icmpv4::kind::ECHO_REPLY);
    let c = Delta::ZERO.word(old, new).apply(msg.checksum());
    msg.set_checksum(c);
    pkt.set_len(total);
    pkt.offload = Offload::default();
}

/// Replaces a TCP segment with the RST its receiver would send back
/// (RFC 9293 §3.10.7.1): from the segment's destination to its source.
pub fn tcp_reset(pkt: &mut PacketBuf, ident: u16) {
    let b = pkt.bytes_mut();
    let ip = Ipv4Packet::new_unchecked(&*b);
    let (src, dst) = (ip.src_bytes(), ip.dst_bytes());
    let seg = TcpPacket::new_unchecked(ip.payload());
    let (sport, dport) = (seg.src_port(), seg.dst_port());
    let f = seg.flags();
    let seg_len = ip.payload().len().saturating_sub(seg.header_len()) as u32
        + u32::from(f & flags::SYN != 0)
        + u32::from(f & flags::FIN != 0);
    let (seq, ack, out_flags) = if f & flags::ACK != 0 {
        (seg.ack_number(), 0, flags::RST)
    } else {
        (0, seg.seq_number().wrapping_add(seg_len), flags::RST | flags::ACK)
    };
    let total = ipv4::HEADER_LEN + tcp::HEADER_LEN;
    ip_header(b, total, ident, protocol::TCP, 0, dst, src);
    {
        let mut t = TcpPacket::new_unchecked(&mut b[ipv4::HEADER_LEN..total]);
        t.set_src_port(dport);
        t.set_dst_port(sport);
        t.set_seq_number(seq);
        t.set_ack_number(ack);
        t.set_header_len(tcp::HEADER_LEN);
        t.set_flags(out_flags);
        t.set_window(0);
        t.set_checksum(0);
        t.set_u16_raw(18, 0); // urgent pointer
    }
    let sum = checksum::pseudo_header_sum(dst, src, protocol::TCP, tcp::HEADER_LEN as u16)
        + checksum::sum(&b[ipv4::HEADER_LEN..total]);
    TcpPacket::new_unchecked(&mut b[ipv4::HEADER_LEN..total]).set_checksum(!checksum::fold(sum));
    pkt.set_len(total);
    pkt.offload = Offload::default();
}

/// A token bucket for ICMP errors the gateway sends (RFC 1812 §4.3.2.8: a
/// router must be able to limit them), refilled from the `now` passed in.
#[derive(Clone, Copy, Debug)]
pub struct RateLimiter {
    per_sec: u64,
    burst: u64,
    /// Tokens in millionths, so slow rates refill smoothly.
    micro_tokens: u64,
    last: Timestamp,
}

impl RateLimiter {
    pub fn new(per_sec: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_sec: u64::from(per_sec),
            burst: u64::from(burst),
            micro_tokens: u64::from(burst) * 1_000_000,
            last: Timestamp::ZERO,
        }
    }

    /// Takes a token if one is left at `now`.
    pub fn allow(&mut self, now: Timestamp) -> bool {
        let elapsed_us = now.since(self.last).as_micros().min(u128::from(u64::MAX / 4)) as u64;
        self.last = self.last.max(now);
        let cap = self.burst * 1_000_000;
        self.micro_tokens = (self.micro_tokens + elapsed_us.saturating_mul(self.per_sec)).min(cap);
        if self.micro_tokens >= 1_000_000 {
            self.micro_tokens -= 1_000_000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp() -> PacketBuf {
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 0, 1, 10], [198, 51, 100, 10], 1)
            .udp(40000, 33434)
            .write(&mut v, &[7u8; 1000])
            .unwrap();
        PacketBuf::from_slice(&v)
    }

    #[test]
    fn time_exceeded_quotes_up_to_576_bytes() {
        let mut p = udp();
        let orig = p.bytes().to_vec();
        icmp_error(&mut p, [10, 0, 1, 1], icmpv4::kind::TIME_EXCEEDED, 0, 0, 9);
        assert_eq!(p.len(), 576);
        let ip = Ipv4Packet::new_checked(p.bytes()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_bytes(), [10, 0, 1, 1]);
        assert_eq!(ip.dst_bytes(), [10, 0, 1, 10]);
        let msg = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(msg.verify_checksum());
        assert_eq!((msg.msg_type(), msg.code()), (11, 0));
        assert_eq!(msg.data(), &orig[..548]);
        // An independent parser agrees.
        let s = etherparse::SlicedPacket::from_ip(p.bytes()).unwrap();
        assert!(matches!(s.transport, Some(etherparse::TransportSlice::Icmpv4(_))));
    }

    #[test]
    fn small_packets_grow_into_their_error() {
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 0, 1, 10], [198, 51, 100, 10], 1).udp(1, 2).write(&mut v, &[]).unwrap();
        let mut p = PacketBuf::from_slice(&v);
        icmp_error(&mut p, [10, 0, 1, 1], 3, 1, 0, 1);
        assert_eq!(p.len(), 28 + 28);
        assert!(Icmpv4Packet::new_checked(&p.bytes()[20..]).unwrap().verify_checksum());
    }

    #[test]
    fn echo_reply_swaps_and_checks() {
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 0, 1, 10], [10, 0, 1, 1], 64).icmpv4_echo_request(5, 6).write(&mut v, b"abc").unwrap();
        let mut p = PacketBuf::from_slice(&v);
        echo_reply(&mut p, 1);
        let ip = Ipv4Packet::new_checked(p.bytes()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_bytes(), ip.dst_bytes()), ([10, 0, 1, 1], [10, 0, 1, 10]));
        let m = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum());
        assert_eq!((m.msg_type(), m.ident(), m.seq_number(), m.data()), (0, 5, 6, &b"abc"[..]));
    }

    #[test]
    fn reset_answers_an_ack_with_its_ack_number() {
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 0, 1, 10], [198, 51, 100, 10], 64)
            .tcp(40000, 80, 1000, 100)
            .ack(777)
            .write(&mut v, b"data")
            .unwrap();
        let mut p = PacketBuf::from_slice(&v);
        tcp_reset(&mut p, 1);
        let s = etherparse::SlicedPacket::from_ip(p.bytes()).unwrap();
        let Some(etherparse::TransportSlice::Tcp(t)) = s.transport else { panic!() };
        assert!(t.rst() && !t.ack());
        assert_eq!((t.source_port(), t.destination_port(), t.sequence_number()), (80, 40000, 777));
        let etherparse::NetSlice::Ipv4(ip) = s.net.unwrap() else { panic!() };
        let h = ip.header().to_header();
        assert_eq!(t.checksum(), t.to_header().calc_checksum_ipv4(&h, &[]).unwrap());
    }

    #[test]
    fn reset_answers_a_syn_with_ack() {
        let mut v = Vec::new();
        PacketBuilder::ipv4([10, 0, 1, 10], [198, 51, 100, 10], 64)
            .tcp(40000, 80, 1000, 100)
            .syn()
            .write(&mut v, &[])
            .unwrap();
        let mut p = PacketBuf::from_slice(&v);
        tcp_reset(&mut p, 1);
        let s = etherparse::SlicedPacket::from_ip(p.bytes()).unwrap();
        let Some(etherparse::TransportSlice::Tcp(t)) = s.transport else { panic!() };
        assert!(t.rst() && t.ack());
        assert_eq!(t.acknowledgment_number(), 1001);
    }

    #[test]
    fn rate_limiter_refills_with_time() {
        let mut r = RateLimiter::new(10, 3);
        let t0 = Timestamp::from_secs(1);
        assert!(r.allow(t0) && r.allow(t0) && r.allow(t0));
        assert!(!r.allow(t0));
        assert!(!r.allow(Timestamp::from_millis(1050)));
        assert!(r.allow(Timestamp::from_millis(1100)));
        assert!(r.allow(Timestamp::from_secs(100)));
    }
}
