//! A server's last data and its FIN, delivered as one segment.
//!
//! A server that answers and closes (HTTP with `Connection: close`) sends its
//! last data and then a bare FIN a few microseconds later. Through the
//! kernel's forwarding both reach the client in one softirq. Through natgw
//! they are two TUN writes, and the first one wakes the client: on a small
//! machine the client often runs on the worker's core, preempts the worker at
//! the end of that write, reads the answer and closes before the FIN is
//! written. The client then closes first and keeps a TIME_WAIT socket for 60 s
//! on its own port; under steady connection churn those fill the client's
//! ephemeral range and its `connect()` stalls (measured with wrk through the
//! default lab: 5-30 % of connections closed first by the client, against
//! 0.1-0.4 % through the kernel, and the rate collapsing from ~10,000 to ~250
//! a second once the range was full; see `bench/results/profile.md`).
//!
//! So when a worker has forwarded a TCP segment with data and the next
//! packet it reads from the same queue is that flow's bare FIN, continuing
//! the data exactly (its sequence number is the end of the data, its
//! acknowledgment the same), the FIN flag is set on the data segment and the
//! bare FIN is not written: the sender could have sent just that segment
//! (Linux does, when the FIN is queued before the data leaves), and the
//! receiver's TCP cannot tell the difference.

use super::buf::PacketBuf;
use crate::wire::ipv4::protocol;
use crate::wire::tcp::flags;
use crate::wire::{Ipv4Packet, TcpPacket};

/// What a segment says about the stream, for matching a FIN to its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seg {
    addrs: ([u8; 4], [u8; 4]),
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload: u32,
}

fn segment(b: &PacketBuf) -> Option<Seg> {
    let ip = Ipv4Packet::new_checked(b.bytes()).ok()?;
    if ip.protocol() != protocol::TCP || ip.is_fragment() {
        return None;
    }
    let rest = ip.payload();
    let tcp = TcpPacket::new_checked(rest).ok()?;
    Some(Seg {
        addrs: (ip.src_bytes(), ip.dst_bytes()),
        ports: (tcp.src_port(), tcp.dst_port()),
        seq: tcp.seq_number(),
        ack: tcp.ack_number(),
        flags: tcp.flags(),
        payload: u32::try_from(rest.len() - tcp.header_len()).ok()?,
    })
}

/// Flags that end a segment's chance of taking a FIN: it already has one, or
/// it opens or resets the connection, or carries urgent data.
const NOT_DATA: u8 = flags::FIN | flags::SYN | flags::RST | flags::URG;

impl Seg {
    /// A segment with data and an acknowledgment that a FIN could join.
    fn takes_fin(&self) -> bool {
        self.payload > 0 && self.flags & flags::ACK != 0 && self.flags & NOT_DATA == 0
    }
}

/// Whether a forwarded packet is worth holding until the next read.
pub fn may_take_fin(b: &PacketBuf) -> bool {
    segment(b).is_some_and(|s| s.takes_fin())
}

/// Sets FIN on `data` when `fin` is the bare FIN that continues it (same
/// addresses and ports, sequence number at the end of the data, the same
/// acknowledgment, no data, no SYN, RST or URG). Both are packets as the
/// pipeline forwarded them (rewritten). True when merged: `fin` need not be
/// sent.
pub fn merge_fin(data: &mut PacketBuf, fin: &PacketBuf) -> bool {
    let (Some(d), Some(f)) = (segment(data), segment(fin)) else { return false };
    let continues = f.addrs == d.addrs
        && f.ports == d.ports
        && f.payload == 0
        && f.flags & (flags::FIN | flags::ACK) == flags::FIN | flags::ACK
        && f.flags & (flags::SYN | flags::RST | flags::URG) == 0
        && f.seq == d.seq.wrapping_add(d.payload)
        && f.ack == d.ack;
    if !continues || !d.takes_fin() {
        return false;
    }
    let partial = data.offload.csum.is_some();
    let mut ip = Ipv4Packet::new_unchecked(data.bytes_mut());
    let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
    tcp.set_flags_adjusting_checksum(d.flags | flags::FIN, partial);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::buf::CsumOffload;
    use crate::wire::checksum;
    use etherparse::PacketBuilder;

    const SERVER: [u8; 4] = [198, 51, 100, 10];
    const CLIENT: [u8; 4] = [10, 0, 1, 10];

    fn seg(seq: u32, ack: u32, fin: bool, psh: bool, payload: &[u8]) -> PacketBuf {
        let mut b = PacketBuilder::ipv4(SERVER, CLIENT, 64).tcp(80, 40000, seq, 502).ack(ack);
        if fin {
            b = b.fin();
        }
        if psh {
            b = b.psh();
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).expect("build");
        PacketBuf::from_slice(&out)
    }

    fn tcp_checksum_ok(b: &PacketBuf) -> bool {
        let ip = Ipv4Packet::new_checked(b.bytes()).expect("ip");
        let l4 = ip.payload();
        let ps = checksum::pseudo_header_sum(ip.src_bytes(), ip.dst_bytes(), protocol::TCP, l4.len() as u16);
        checksum::fold(ps + checksum::sum(l4)) == 0xffff
    }

    fn flags_of(b: &PacketBuf) -> u8 {
        segment(b).expect("tcp").flags
    }

    #[test]
    fn the_fin_that_continues_the_data_joins_it_with_a_valid_checksum() {
        let answer = b"HTTP/1.1 200 OK\r\n\r\nok\n";
        let mut data = seg(1000, 7, false, true, answer);
        let fin = seg(1000 + answer.len() as u32, 7, true, false, b"");
        assert!(may_take_fin(&data));
        assert!(merge_fin(&mut data, &fin));
        assert_eq!(flags_of(&data), flags::ACK | flags::PSH | flags::FIN);
        assert!(tcp_checksum_ok(&data), "the checksum follows the flags");
        assert!(!may_take_fin(&data), "a segment with a FIN takes no second one");
    }

    #[test]
    fn a_fin_that_does_not_continue_the_data_stays_apart() {
        let payload = b"0123456789";
        let cases = [
            ("a gap", seg(1011, 7, true, false, b"")),
            ("another acknowledgment", seg(1010, 8, true, false, b"")),
            ("data of its own", seg(1010, 7, true, false, b"x")),
            ("no FIN", seg(1010, 7, false, false, b"")),
        ];
        for (what, fin) in cases {
            let mut data = seg(1000, 7, false, false, payload);
            let before = data.bytes().to_vec();
            assert!(!merge_fin(&mut data, &fin), "{what}");
            assert_eq!(data.bytes(), &before[..], "{what}: unchanged");
        }
        // Another flow: the client's FIN on the reverse path.
        let mut data = seg(1000, 7, false, false, payload);
        let mut out = Vec::new();
        PacketBuilder::ipv4(CLIENT, SERVER, 64)
            .tcp(40000, 80, 1010, 502)
            .ack(7)
            .fin()
            .write(&mut out, b"")
            .expect("build");
        assert!(!merge_fin(&mut data, &PacketBuf::from_slice(&out)));
    }

    #[test]
    fn only_data_segments_wait_for_a_fin() {
        assert!(!may_take_fin(&seg(1000, 7, false, false, b"")), "a bare ACK");
        assert!(!may_take_fin(&seg(1000, 7, true, false, b"x")), "data with its FIN already");
        let mut out = Vec::new();
        PacketBuilder::ipv4(SERVER, CLIENT, 64).udp(53, 40000).write(&mut out, b"x").expect("build");
        assert!(!may_take_fin(&PacketBuf::from_slice(&out)), "UDP");
        assert!(!may_take_fin(&PacketBuf::from_slice(&[0x45, 0, 0])), "garbage");
    }

    #[test]
    fn a_partial_checksum_is_left_to_offload() {
        let mut data = seg(1000, 7, false, false, b"abc");
        data.offload.csum = Some(CsumOffload { start: 20, offset: 16 });
        let before = TcpPacket::new_checked(Ipv4Packet::new_checked(data.bytes()).expect("ip").payload())
            .expect("tcp")
            .checksum();
        assert!(merge_fin(&mut data, &seg(1003, 7, true, false, b"")));
        let tcp_sum = TcpPacket::new_checked(Ipv4Packet::new_checked(data.bytes()).expect("ip").payload())
            .expect("tcp")
            .checksum();
        assert_eq!(tcp_sum, before, "the pseudo-header sum covers no flags");
    }
}
