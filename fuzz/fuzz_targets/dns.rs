//! The VPC resolver's answer on arbitrary bytes, over UDP and TCP: a
//! response that decodes again and carries the query's id, or a counted
//! silence; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use natgw::dns::{Outcome, Transport, Zone, answer};
use std::net::Ipv4Addr;
use std::sync::OnceLock;

fn zone() -> &'static Zone {
    static Z: OnceLock<Zone> = OnceLock::new();
    Z.get_or_init(|| {
        let mut z = Zone::default();
        z.add("ip-10-0-1-10.ec2.internal", Ipv4Addr::new(10, 0, 1, 10));
        z.add("app", Ipv4Addr::new(10, 0, 1, 10));
        for i in 0..64u8 {
            z.add_forward("many.example.internal", Ipv4Addr::new(10, 0, 9, i));
        }
        z
    })
}

fuzz_target!(|data: &[u8]| {
    for t in [Transport::Udp, Transport::Tcp] {
        if let Outcome::Reply { bytes, .. } = answer(data, zone(), t) {
            assert!(bytes.len() >= 12 && bytes[..2] == data[..2], "a response must carry the query's id");
            assert!(bytes[2] & 0x80 != 0, "a response must have QR set");
            if t == Transport::Udp {
                let edns = bytes.len() > 512;
                assert!(!edns || bytes.len() <= 65535);
            }
        }
    }
});
