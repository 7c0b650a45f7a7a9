//! ICMP errors about translated flows (RFC 5508 §4, RFC 5382 REQ-9).
//!
//! An error from outside quotes the packet as the NAT sent it (external source);
//! the inside host must see it as it sent it. So the outer destination and the
//! quoted source are translated back, with every checksum adjusted: the quoted
//! IP header's, the quoted transport header's where it is present, and the
//! ICMP checksum, which covers all of them. Errors from inside are the mirror
//! image (outer source, quoted destination).

use super::rewrite::Side;
use crate::conntrack::FlowKey;
use crate::wire::checksum::{self, Delta};
use crate::wire::icmpv4::{self, Icmpv4Packet};
use crate::wire::ipv4::{self, Ipv4Packet, protocol};

/// Why an ICMP error is not usable (RFC 5508 REQ-3 says: drop it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorFault {
    /// The ICMP checksum is wrong.
    BadChecksum,
    /// The quoted IP header is malformed or too short to hold 8 transport bytes.
    Malformed,
    /// The quoted IP header checksum is wrong.
    BadQuotedChecksum,
    /// The quoted packet is of a kind no session can match (a non-first
    /// fragment, another protocol, an ICMP error about an ICMP error).
    Unmatchable,
}

/// What an ICMP error quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted {
    /// The key of the quoted packet, in the direction it travelled.
    pub key: FlowKey,
    /// Offset of the quoted IP header within the ICMP message.
    pub at: usize,
    /// Bytes of the quoted packet present after its IP header.
    pub l4_len: usize,
}

/// Parses and checks the ICMP error message `icmp` (an IPv4 payload).
pub fn parse(icmp: &[u8]) -> Result<Quoted, ErrorFault> {
    let msg = Icmpv4Packet::new_checked(icmp).map_err(|_| ErrorFault::Malformed)?;
    if !msg.verify_checksum() {
        return Err(ErrorFault::BadChecksum);
    }
    let at = icmpv4::HEADER_LEN;
    let q = msg.data();
    if q.len() < ipv4::HEADER_LEN {
        return Err(ErrorFault::Malformed);
    }
    let qip = Ipv4Packet::new_unchecked(q);
    let hl = qip.header_len();
    if qip.version() != 4 || hl < ipv4::HEADER_LEN || q.len() < hl + 8 {
        return Err(ErrorFault::Malformed);
    }
    if !qip.verify_checksum() {
        return Err(ErrorFault::BadQuotedChecksum);
    }
    if qip.frag_offset() != 0 {
        return Err(ErrorFault::Unmatchable);
    }
    let l4 = qip.rest();
    let (sport, dport) = match qip.protocol() {
        protocol::TCP | protocol::UDP => (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]])),
        protocol::ICMP => {
            let inner = Icmpv4Packet::new_unchecked(l4);
            if !icmpv4::is_query(inner.msg_type()) {
                return Err(ErrorFault::Unmatchable);
            }
            (inner.ident(), inner.ident())
        }
        _ => return Err(ErrorFault::Unmatchable),
    };
    let key = FlowKey {
        src: u32::from(qip.src_addr()),
        dst: u32::from(qip.dst_addr()),
        sport,
        dport,
        proto: qip.protocol(),
        zone: 0,
    };
    Ok(Quoted { key, at, l4_len: l4.len() })
}

/// Translates an ICMP error in place. `outer_side` is the end of the outer
/// packet that changes (destination for errors coming in, source for errors
/// going out); the quoted packet changes at the other end. `addr` and `port`
/// are the new values with their checksum deltas.
pub fn translate(
    ip: &mut [u8],
    q: &Quoted,
    outer_side: Side,
    addr: [u8; 4],
    addr_delta: Delta,
    port: Option<(u16, Delta)>,
) {
    let mut outer = Ipv4Packet::new_unchecked(&mut *ip);
    match outer_side {
        Side::Source => outer.set_src(addr),
        Side::Destination => outer.set_dst(addr),
    }
    let c = addr_delta.apply(outer.checksum());
    outer.set_checksum(c);

    let mut msg = Icmpv4Packet::new_unchecked(outer.payload_mut());
    let old_icmp_csum = msg.checksum();
    let mut icmp_delta = Delta::ZERO;
    {
        let quoted = &mut msg.data_mut()[q.at - icmpv4::HEADER_LEN..];
        let mut qip = Ipv4Packet::new_unchecked(&mut *quoted);
        match outer_side {
            Side::Destination => qip.set_src(addr),
            Side::Source => qip.set_dst(addr),
        }
        let old = qip.checksum();
        let new = addr_delta.apply(old);
        qip.set_checksum(new);
        icmp_delta = (icmp_delta + addr_delta).word(old, new);
        let proto = qip.protocol();
        let (_, l4) = qip.split_at_header_mut();
        if let Some((p, pd)) = port {
            // The quoted packet's port at the end that changes.
            let port_at = match (proto, outer_side) {
                (protocol::ICMP, _) => 4,
                (_, Side::Destination) => 0,
                (_, Side::Source) => 2,
            };
            l4[port_at..port_at + 2].copy_from_slice(&p.to_be_bytes());
            icmp_delta = icmp_delta + pd;
        }
        let pd = port.map_or(Delta::ZERO, |(_, d)| d);
        // The quoted transport checksum, where the quote is long enough to hold it.
        let csum_at = match proto {
            protocol::TCP => crate::wire::tcp::CHECKSUM_OFFSET,
            protocol::UDP => crate::wire::udp::CHECKSUM_OFFSET,
            _ => 2,
        };
        if l4.len() >= csum_at + 2 {
            let old = u16::from_be_bytes([l4[csum_at], l4[csum_at + 1]]);
            let new = match proto {
                protocol::UDP => (addr_delta + pd).apply_udp(old),
                protocol::TCP => (addr_delta + pd).apply(old),
                _ => pd.apply(old), // ICMP: no pseudo-header
            };
            l4[csum_at..csum_at + 2].copy_from_slice(&new.to_be_bytes());
            icmp_delta = icmp_delta.word(old, new);
        }
    }
    msg.set_checksum(icmp_delta.apply(old_icmp_csum));
}

/// True when the ICMP message checksum of `icmp` is valid (for tests and checks).
pub fn checksum_ok(icmp: &[u8]) -> bool {
    checksum::fold(checksum::sum(icmp)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IcmpEchoHeader, Icmpv4Type, PacketBuilder};

    /// A port unreachable from 198.51.100.10 about UDP 203.0.113.5:61001 -> 198.51.100.10:33434.
    fn port_unreachable() -> Vec<u8> {
        let mut quoted = Vec::new();
        PacketBuilder::ipv4([203, 0, 113, 5], [198, 51, 100, 10], 1)
            .udp(61001, 33434)
            .write(&mut quoted, &[0u8; 32])
            .unwrap();
        let mut v = Vec::new();
        PacketBuilder::ipv4([198, 51, 100, 10], [203, 0, 113, 5], 64)
            .icmpv4(Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port))
            .write(&mut v, &quoted)
            .unwrap();
        v
    }

    #[test]
    fn parses_quoted_udp() {
        let v = port_unreachable();
        let q = parse(&v[20..]).unwrap();
        assert_eq!(q.key.sport, 61001);
        assert_eq!(q.key.dport, 33434);
        assert_eq!(q.key.src_addr(), std::net::Ipv4Addr::new(203, 0, 113, 5));
    }

    #[test]
    fn translates_inbound_error_back() {
        let mut v = port_unreachable();
        let q = parse(&v[20..]).unwrap();
        let ad = Delta::ZERO.addr([203, 0, 113, 5], [10, 0, 1, 10]);
        let pd = Delta::ZERO.word(61001, 40000);
        translate(&mut v, &q, Side::Destination, [10, 0, 1, 10], ad, Some((40000, pd)));
        // Every checksum checks out, recomputed independently.
        let outer = Ipv4Packet::new_checked(&v[..]).unwrap();
        assert!(outer.verify_checksum());
        assert_eq!(outer.dst_addr(), std::net::Ipv4Addr::new(10, 0, 1, 10));
        assert!(checksum_ok(&v[20..]));
        let q2 = parse(&v[20..]).unwrap();
        assert_eq!(q2.key.src_addr(), std::net::Ipv4Addr::new(10, 0, 1, 10));
        assert_eq!(q2.key.sport, 40000);
        // The quoted UDP checksum is right for the quoted (restored) packet.
        let quoted = &v[28..];
        let (h, rest) = etherparse::Ipv4Header::from_slice(quoted).unwrap();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let (u, payload) = etherparse::UdpHeader::from_slice(rest).unwrap();
        assert_eq!(u.checksum, u.calc_checksum_ipv4(&h, payload).unwrap());
    }

    #[test]
    fn rejects_bad_checksums() {
        let mut v = port_unreachable();
        v[30] ^= 0xff; // quoted header byte: both checksums now wrong
        assert_eq!(parse(&v[20..]).unwrap_err(), ErrorFault::BadChecksum);
        let mut v = port_unreachable();
        // Break the quoted IP checksum and fix the ICMP checksum around it.
        v[38] ^= 0x01;
        let mut m = Icmpv4Packet::new_unchecked(&mut v[20..]);
        m.fill_checksum();
        assert_eq!(parse(&v[20..]).unwrap_err(), ErrorFault::BadQuotedChecksum);
    }

    #[test]
    fn quoted_echo_uses_identifier() {
        let mut quoted = Vec::new();
        PacketBuilder::ipv4([203, 0, 113, 5], [198, 51, 100, 10], 1)
            .icmpv4(Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 777, seq: 1 }))
            .write(&mut quoted, b"abcdefgh")
            .unwrap();
        let mut v = Vec::new();
        PacketBuilder::ipv4([198, 51, 100, 1], [203, 0, 113, 5], 64)
            .icmpv4(Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit))
            .write(&mut v, &quoted)
            .unwrap();
        let q = parse(&v[20..]).unwrap();
        assert_eq!((q.key.sport, q.key.dport, q.key.proto), (777, 777, 1));
        let ad = Delta::ZERO.addr([203, 0, 113, 5], [10, 0, 1, 10]);
        let pd = Delta::ZERO.word(777, 5);
        translate(&mut v, &q, Side::Destination, [10, 0, 1, 10], ad, Some((5, pd)));
        assert!(checksum_ok(&v[20..]));
        let inner = Icmpv4Packet::new_checked(&v[48..]).unwrap();
        assert_eq!(inner.ident(), 5);
        assert!(inner.verify_checksum());
    }

    #[test]
    fn short_or_odd_quotes_are_refused() {
        let v = port_unreachable();
        assert_eq!(parse(&v[20..20 + 8 + 20 + 4]).unwrap_err(), ErrorFault::BadChecksum);
        let mut short = v[20..20 + 8 + 20 + 4].to_vec();
        Icmpv4Packet::new_unchecked(&mut short[..]).fill_checksum();
        assert_eq!(parse(&short).unwrap_err(), ErrorFault::Malformed);
    }
}
