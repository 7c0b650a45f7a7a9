//! The way to and from the VPC's DNS resolver. As on AWS, its traffic is
//! filtered by no security group and no network ACL, takes no route table,
//! and is not in the flow logs; the resolver itself (`crate::dns`) answers
//! beside the workers, which only carry its packets.

use super::topology::DnsSide;
use super::{Action, DropReason, IfId, L4, Meta, PacketBuf, Pipeline};
use crate::clock::Timestamp;
use std::net::Ipv4Addr;

/// The DNS port.
const DNS: u16 = 53;

impl Pipeline {
    /// A host's packet to the resolver's address.
    pub(super) fn resolver_query(
        &self,
        now: Timestamp,
        dns: &DnsSide,
        ingress: IfId,
        pkt: &mut PacketBuf,
        m: &Meta,
    ) -> Action {
        self.uncacheable();
        let query = matches!(m.l4, L4::Udp { dport: DNS, .. } | L4::Tcp { dport: DNS, .. }) || m.later_fragment;
        let Some(egress) = dns.interface else {
            self.note("VPC DNS", || "enable_dns_support is off: the resolver does not answer".to_string());
            return self.drop(DropReason::DnsDisabled);
        };
        if !query {
            self.note("VPC DNS", || format!("{} answers DNS (port 53) only", Ipv4Addr::from(m.dst)));
            return self.drop(DropReason::ToGateway);
        }
        self.note("VPC DNS", || {
            format!(
                "to the VPC resolver {}: no security group, network ACL or route table applies",
                Ipv4Addr::from(m.dst)
            )
        });
        self.deliver(now, egress, ingress, pkt, m)
    }

    /// A packet from the resolver's interface: an answer (or its kernel's
    /// ICMP) back to a host of the VPC.
    pub(super) fn resolver_answer(&self, now: Timestamp, ingress: IfId, pkt: &mut PacketBuf, m: &Meta) -> Action {
        self.uncacheable();
        let topo = &*self.topo;
        self.note("interface", || "from the VPC's DNS resolver".to_string());
        if !topo.dns.is_some_and(|d| d.is_resolver(m.src)) {
            self.note("source/destination check", || {
                format!("source {} is not a resolver address", Ipv4Addr::from(m.src))
            });
            return self.drop(DropReason::SourceCheck);
        }
        match topo.host_by_ip(super::topology::VpcId::FIRST, m.dst) {
            Some(h) => self.deliver(now, topo.hosts[usize::from(h)].interface, ingress, pkt, m),
            None => self.drop(DropReason::HostUnreachable),
        }
    }
}
