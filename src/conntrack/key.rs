//! Flow keys: the 5-tuple a packet is looked up by.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

/// A directional 5-tuple. For ICMP queries both "ports" hold the query identifier
/// (RFC 5508 §3.1: the identifier is mapped like a port), so [`FlowKey::reply`]
/// works the same for every protocol.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct FlowKey {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// The connection tracking zone (netfilter's term): VPCs that are not
    /// connected have their own, so one 5-tuple in two of them is two flows.
    /// 0 for the first VPC and for NAT gateways' tables (each its VPC's).
    #[serde(default)]
    pub zone: u16,
}

impl FlowKey {
    pub fn new(proto: u8, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> FlowKey {
        FlowKey { src: u32::from(src), dst: u32::from(dst), sport, dport, proto, zone: 0 }
    }

    /// The same flow in zone `zone`.
    pub fn in_zone(self, zone: u16) -> FlowKey {
        FlowKey { zone, ..self }
    }

    /// The key of a packet travelling the other way.
    pub fn reply(&self) -> FlowKey {
        FlowKey { src: self.dst, dst: self.src, sport: self.dport, dport: self.sport, ..*self }
    }

    /// The key of replies once this flow's source is translated to
    /// `ext_addr:ext_port`. For ICMP queries the identifier stands for both
    /// ports, so both carry the external identifier.
    pub fn reply_via(&self, ext_addr: u32, ext_port: u16) -> FlowKey {
        let sport = if self.proto == crate::wire::ipv4::protocol::ICMP { ext_port } else { self.dport };
        FlowKey { src: self.dst, dst: ext_addr, sport, dport: ext_port, ..*self }
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src)
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst)
    }

    /// The source endpoint.
    pub fn src_endpoint(&self) -> Endpoint {
        Endpoint { proto: self.proto, addr: self.src, port: self.sport }
    }

    /// The destination endpoint.
    pub fn dst_endpoint(&self) -> Endpoint {
        Endpoint { proto: self.proto, addr: self.dst, port: self.dport }
    }
}

impl Hash for FlowKey {
    /// Two word writes instead of five field writes: the hasher is the cost here.
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64((u64::from(self.src) << 32) | u64::from(self.dst));
        h.write_u64(
            (u64::from(self.zone) << 48)
                | (u64::from(self.sport) << 32)
                | (u64::from(self.dport) << 16)
                | u64::from(self.proto),
        );
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}:{} -> {}:{}", proto_name(self.proto), self.src_addr(), self.sport, self.dst_addr(), self.dport)
    }
}

/// A transport endpoint: protocol, address, port (or ICMP identifier).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub proto: u8,
    pub addr: u32,
    pub port: u16,
}

impl Endpoint {
    pub fn new(proto: u8, addr: Ipv4Addr, port: u16) -> Endpoint {
        Endpoint { proto, addr: u32::from(addr), port }
    }

    pub fn ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip(), self.port)
    }
}

/// The lower-case protocol name conntrack(8) prints.
pub fn proto_name(p: u8) -> &'static str {
    match p {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_swaps_both_ends() {
        let k = FlowKey::new(6, Ipv4Addr::new(10, 0, 1, 10), 40000, Ipv4Addr::new(198, 51, 100, 10), 80);
        let r = k.reply();
        assert_eq!(r.src_addr(), Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!((r.sport, r.dport), (80, 40000));
        assert_eq!(r.reply(), k);
        assert_eq!(format!("{k:?}"), "tcp 10.0.1.10:40000 -> 198.51.100.10:80");
    }
}
