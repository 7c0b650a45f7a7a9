//! Whole packets built from fields, for the control plane (`natgw trace`'s
//! probes and their replies): never on the packet path.

use super::checksum;
use super::icmpv4::{self, Icmpv4Packet};
use super::ipv4::{Ipv4Packet, protocol};
use super::tcp::{self, TcpPacket};
use super::udp::{self, UdpPacket};

/// A packet of `proto` from `src:sport` to `dst:dport` with valid
/// checksums: a TCP segment with `tcp_flags`, a UDP datagram with 4 bytes of
/// payload, an ICMP echo request (or reply when `tcp_flags` is 1) whose
/// identifier is `sport`, or an empty packet of another protocol.
pub fn probe(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, tcp_flags: u8) -> Vec<u8> {
    let l4 = match proto {
        protocol::TCP => tcp::HEADER_LEN,
        protocol::UDP => udp::HEADER_LEN + 4,
        protocol::ICMP => icmpv4::HEADER_LEN + 8,
        _ => 0,
    };
    let mut b = vec![0u8; 20 + l4];
    let total = b.len() as u16;
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
        ip.set_version_and_header_len(20);
        ip.set_total_len(total);
        ip.set_flags_frag(0x4000);
        ip.set_ttl(64);
        ip.set_protocol(proto);
        ip.set_src(src);
        ip.set_dst(dst);
        ip.fill_checksum();
    }
    let pseudo = checksum::pseudo_header_sum(src, dst, proto, l4 as u16);
    let body = &mut b[20..];
    match proto {
        protocol::TCP => {
            let mut t = TcpPacket::new_unchecked(&mut *body);
            t.set_src_port(sport);
            t.set_dst_port(dport);
            t.set_seq_number(1);
            t.set_ack_number(if tcp_flags & tcp::flags::ACK != 0 { 1 } else { 0 });
            t.set_header_len(tcp::HEADER_LEN);
            t.set_flags(tcp_flags);
            t.set_window(64240);
            let c = checksum::fold(pseudo + checksum::sum(body));
            TcpPacket::new_unchecked(&mut *body).set_checksum(!c);
        }
        protocol::UDP => {
            let mut u = UdpPacket::new_unchecked(&mut *body);
            u.set_src_port(sport);
            u.set_dst_port(dport);
            u.set_len(l4 as u16);
            body[udp::HEADER_LEN..].copy_from_slice(b"ping");
            let c = !checksum::fold(pseudo + checksum::sum(body));
            UdpPacket::new_unchecked(&mut *body).set_checksum(if c == 0 { 0xffff } else { c });
        }
        protocol::ICMP => {
            let mut i = Icmpv4Packet::new_unchecked(&mut *body);
            i.set_msg_type(if tcp_flags == 1 { icmpv4::kind::ECHO_REPLY } else { icmpv4::kind::ECHO_REQUEST });
            i.set_ident(sport);
            i.set_seq_number(1);
            let c = checksum::checksum(body);
            Icmpv4Packet::new_unchecked(&mut *body).set_checksum(c);
        }
        _ => {}
    }
    b
}

/// A packet in words: `tcp 10.0.1.10:40000 -> 198.51.100.10:80`.
pub fn describe(b: &[u8]) -> String {
    match fields(b) {
        Some((p, s, d, sp, dp)) => {
            let name = match p {
                protocol::TCP => "tcp".to_string(),
                protocol::UDP => "udp".to_string(),
                protocol::ICMP => "icmp".to_string(),
                n => format!("protocol {n}"),
            };
            let (s, d) = (std::net::Ipv4Addr::from(s), std::net::Ipv4Addr::from(d));
            match p {
                protocol::TCP | protocol::UDP => format!("{name} {s}:{sp} -> {d}:{dp}"),
                protocol::ICMP => format!("{name} {s} -> {d} id {sp}"),
                _ => format!("{name} {s} -> {d}"),
            }
        }
        None => "(not an IPv4 packet)".into(),
    }
}

/// A packet's protocol, addresses and ports (ICMP: the identifier twice).
pub type Fields = (u8, [u8; 4], [u8; 4], u16, u16);

/// The fields of a packet, for display.
pub fn fields(b: &[u8]) -> Option<Fields> {
    let ip = Ipv4Packet::new_checked(b).ok()?;
    let (proto, p) = (ip.protocol(), ip.payload());
    let (sport, dport) = match proto {
        protocol::TCP => TcpPacket::new_checked(p).map(|t| (t.src_port(), t.dst_port())).ok()?,
        protocol::UDP => UdpPacket::new_checked(p).map(|u| (u.src_port(), u.dst_port())).ok()?,
        protocol::ICMP => Icmpv4Packet::new_checked(p).map(|i| (i.ident(), i.ident())).ok()?,
        _ => (0, 0),
    };
    Some((proto, ip.src_bytes(), ip.dst_bytes(), sport, dport))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_carry_valid_checksums() {
        for proto in [protocol::TCP, protocol::UDP, protocol::ICMP] {
            let b = probe(proto, [10, 0, 1, 10], [198, 51, 100, 10], 40000, 80, tcp::flags::SYN);
            let ip = Ipv4Packet::new_checked(&b[..]).unwrap();
            assert!(ip.verify_checksum());
            let sum = checksum::fold(
                checksum::pseudo_header_sum(ip.src_bytes(), ip.dst_bytes(), proto, (b.len() - 20) as u16)
                    + checksum::sum(&b[20..]),
            );
            let want = if proto == protocol::ICMP { checksum::checksum(&b[20..]) } else { !sum };
            assert_eq!(want, 0, "proto {proto}");
            assert_eq!(fields(&b).map(|f| f.0), Some(proto));
        }
    }
}
