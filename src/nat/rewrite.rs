//! Applying a translation to packet bytes, with incremental checksums only.

use crate::wire::checksum::Delta;
use crate::wire::{Icmpv4Packet, Ipv4Packet, TcpPacket, UdpPacket};

/// Which end of the packet a rewrite changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Source NAT (outbound through a NAT, or out of the internet gateway).
    Source,
    /// Destination NAT (inbound).
    Destination,
}

/// The transport header the packet carries, as far as a rewrite cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Kind {
    Tcp,
    Udp,
    /// An ICMP query: the identifier stands for both ports.
    IcmpQuery,
    /// No transport header to touch (a non-first fragment, an ICMP error's
    /// outer header, another protocol).
    None,
}

/// The checksum state of the transport header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Checksum {
    /// A complete checksum: adjust it for every changed word.
    Full,
    /// Left to offload: the field holds only the pseudo-header sum, so an
    /// address change adjusts it and a port change must not.
    Partial,
}

/// Rewrites one end of an IPv4 packet: the address, and the port (or ICMP
/// identifier) when `port` is given with its checksum delta. `ip` must have
/// been validated with a transport header of `l4`'s kind present.
pub fn apply(
    ip: &mut [u8],
    l4: L4Kind,
    side: Side,
    addr: [u8; 4],
    addr_delta: Delta,
    port: Option<(u16, Delta)>,
    csum: L4Checksum,
) {
    let mut pkt = Ipv4Packet::new_unchecked(&mut *ip);
    match side {
        Side::Source => pkt.set_src(addr),
        Side::Destination => pkt.set_dst(addr),
    }
    let c = addr_delta.apply(pkt.checksum());
    pkt.set_checksum(c);
    let port_delta = port.map_or(Delta::ZERO, |(_, d)| d);
    let payload = pkt.payload_mut();
    match l4 {
        L4Kind::Tcp => {
            let mut t = TcpPacket::new_unchecked(payload);
            if let Some((p, _)) = port {
                match side {
                    Side::Source => t.set_src_port(p),
                    Side::Destination => t.set_dst_port(p),
                }
            }
            let c = match csum {
                L4Checksum::Full => (addr_delta + port_delta).apply(t.checksum()),
                L4Checksum::Partial => addr_delta.apply_partial(t.checksum()),
            };
            t.set_checksum(c);
        }
        L4Kind::Udp => {
            let mut u = UdpPacket::new_unchecked(payload);
            if let Some((p, _)) = port {
                match side {
                    Side::Source => u.set_src_port(p),
                    Side::Destination => u.set_dst_port(p),
                }
            }
            let c = match csum {
                L4Checksum::Full => (addr_delta + port_delta).apply_udp(u.checksum()),
                L4Checksum::Partial => addr_delta.apply_partial(u.checksum()),
            };
            u.set_checksum(c);
        }
        L4Kind::IcmpQuery => {
            // ICMP has no pseudo-header: only the identifier counts.
            if let Some((p, d)) = port {
                let mut i = Icmpv4Packet::new_unchecked(payload);
                i.set_ident(p);
                let c = d.apply(i.checksum());
                i.set_checksum(c);
            }
        }
        L4Kind::None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn udp_packet(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 1, 10], [198, 51, 100, 10], 64).udp(40000, 53);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn tcp_packet(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 1, 10], [198, 51, 100, 10], 64).tcp(40000, 80, 1000, 64000).ack(5).psh();
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn snat(v: &mut [u8], l4: L4Kind, csum: L4Checksum) {
        let ext = [203, 0, 113, 5];
        let ad = Delta::ZERO.addr([10, 0, 1, 10], ext);
        let pd = Delta::ZERO.word(40000, 61001);
        apply(v, l4, Side::Source, ext, ad, Some((61001, pd)), csum);
    }

    /// The oracle: etherparse recomputes every checksum from scratch.
    fn assert_checksums_valid(v: &[u8]) {
        let s = SlicedPacket::from_ip(v).unwrap();
        let ip = match s.net.unwrap() {
            etherparse::NetSlice::Ipv4(ip) => ip,
            _ => panic!(),
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        match s.transport.unwrap() {
            TransportSlice::Udp(u) => {
                let want = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
                assert_eq!(u.checksum(), want);
            }
            TransportSlice::Tcp(t) => {
                let want = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
                assert_eq!(t.checksum(), want);
            }
            _ => panic!(),
        }
    }

    #[test]
    fn udp_snat_checksums_match_oracle() {
        for payload in [&b""[..], b"x", b"hello world, odd length!"] {
            let mut v = udp_packet(payload);
            snat(&mut v, L4Kind::Udp, L4Checksum::Full);
            assert_eq!(&v[12..16], &[203, 0, 113, 5]);
            assert_eq!(u16::from_be_bytes([v[20], v[21]]), 61001);
            assert_checksums_valid(&v);
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut v = udp_packet(b"abc");
        v[26] = 0;
        v[27] = 0;
        snat(&mut v, L4Kind::Udp, L4Checksum::Full);
        assert_eq!(&v[26..28], &[0, 0]);
    }

    #[test]
    fn tcp_snat_and_back() {
        let orig = tcp_packet(b"GET / HTTP/1.1\r\n\r\n");
        let mut v = orig.clone();
        snat(&mut v, L4Kind::Tcp, L4Checksum::Full);
        assert_checksums_valid(&v);
        // The reverse rewrite restores the packet exactly.
        let ad = Delta::ZERO.addr([203, 0, 113, 5], [10, 0, 1, 10]);
        let pd = Delta::ZERO.word(61001, 40000);
        apply(&mut v, L4Kind::Tcp, Side::Source, [10, 0, 1, 10], ad, Some((40000, pd)), L4Checksum::Full);
        assert_eq!(v, orig);
    }

    /// With offload, the field holds the pseudo-header sum: after SNAT it must
    /// equal the pseudo-header sum of the new addresses, whatever the port.
    #[test]
    fn partial_checksum_follows_addresses_only() {
        let mut v = tcp_packet(b"0123456789");
        let tcp_len = (v.len() - 20) as u16;
        let partial = checksum::fold(checksum::pseudo_header_sum([10, 0, 1, 10], [198, 51, 100, 10], 6, tcp_len));
        v[36..38].copy_from_slice(&partial.to_be_bytes());
        snat(&mut v, L4Kind::Tcp, L4Checksum::Partial);
        let want = checksum::fold(checksum::pseudo_header_sum([203, 0, 113, 5], [198, 51, 100, 10], 6, tcp_len));
        assert_eq!(u16::from_be_bytes([v[36], v[37]]), want);
        // Completing the checksum as the offload would gives a valid segment.
        v[36..38].copy_from_slice(&[0, 0]);
        let full = !checksum::fold(u64::from(want) + checksum::sum(&v[20..]));
        v[36..38].copy_from_slice(&full.to_be_bytes());
        assert_checksums_valid(&v);
    }

    #[test]
    fn icmp_identifier_is_mapped() {
        let b = PacketBuilder::ipv4([10, 0, 1, 10], [198, 51, 100, 10], 64).icmpv4_echo_request(0x1234, 1);
        let mut v = Vec::new();
        b.write(&mut v, b"ping").unwrap();
        let ext = [203, 0, 113, 5];
        let ad = Delta::ZERO.addr([10, 0, 1, 10], ext);
        let pd = Delta::ZERO.word(0x1234, 0x4321);
        apply(&mut v, L4Kind::IcmpQuery, Side::Source, ext, ad, Some((0x4321, pd)), L4Checksum::Full);
        assert!(Ipv4Packet::new_checked(&v[..]).unwrap().verify_checksum());
        let icmp = Icmpv4Packet::new_checked(&v[20..]).unwrap();
        assert_eq!(icmp.ident(), 0x4321);
        assert!(icmp.verify_checksum());
    }
}
