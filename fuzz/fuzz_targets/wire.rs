//! Every packet view on arbitrary bytes: `new_checked` either refuses or
//! gives a view whose accessors do not panic; the FIN merge of two halves.
#![no_main]
use libfuzzer_sys::fuzz_target;
use natgw::PacketBuf;
use natgw::pipeline::coalesce;
use natgw::wire::{Icmpv4Packet, Ipv4Packet, TcpPacket, UdpPacket};

fuzz_target!(|data: &[u8]| {
    if let Ok(ip) = Ipv4Packet::new_checked(data) {
        let _ = (ip.version(), ip.header_len(), ip.total_len(), ip.ttl(), ip.protocol(), ip.frag_offset());
        let _ = (ip.src_addr(), ip.dst_addr(), ip.verify_checksum(), ip.is_fragment());
        let rest = ip.payload();
        if let Ok(t) = TcpPacket::new_checked(rest) {
            let _ = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number(), t.flags(), t.window(), t.mss_option());
        }
        if let Ok(u) = UdpPacket::new_checked(rest) {
            let _ = (u.src_port(), u.dst_port(), u.len(), u.checksum());
        }
        if let Ok(i) = Icmpv4Packet::new_checked(rest) {
            let _ = (i.msg_type(), i.code(), i.ident(), i.seq_number());
        }
    }
    let (a, b) = data.split_at(data.len() / 2);
    let mut first = PacketBuf::from_slice(a);
    let _ = coalesce::may_take_fin(&first);
    let _ = coalesce::merge_fin(&mut first, &PacketBuf::from_slice(b));
});
