//! What the pipeline decides for a packet, and why it drops one.

use crate::pipeline::topology::IfId;

/// The verdict of [`crate::pipeline::Pipeline::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the (possibly rewritten) packet out of this interface.
    Forward(IfId),
    /// The buffer now holds a message the gateway built in answer (an ICMP
    /// error, an echo reply, a TCP RST): send it out of this interface. The
    /// original packet was dropped and counted under `cause`.
    Reply { egress: IfId, cause: DropReason },
    /// Drop the packet; it was counted under this reason.
    Drop(DropReason),
    /// The pipeline kept a copy (a fragment waiting for its first fragment):
    /// it comes back through the pipeline's pending queue, or is counted as
    /// `fragment_timeout`. Nothing to send now.
    Held,
}

macro_rules! drop_reasons {
    ($( $(#[doc = $doc:literal])* $name:ident => $label:literal, )*) => {
        /// Every reason the gateway drops a packet. Each has a counter
        /// (`natgw stats`), named by its label.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum DropReason { $( $(#[doc = $doc])* $name, )* }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Number of reasons.
            pub const COUNT: usize = DropReason::ALL.len();

            /// The counter's name.
            pub fn label(self) -> &'static str {
                match self { $(DropReason::$name => $label,)* }
            }
        }
    };
}

drop_reasons! {
    /// Shorter than an IPv4 header, or a length field past the end.
    Truncated => "truncated",
    /// Not IP version 4.
    NotIpv4 => "not_ipv4",
    /// IHL below 5 or past the end.
    BadHeaderLen => "bad_header_len",
    /// Total length below the header or past the end.
    BadTotalLen => "bad_total_len",
    /// The IPv4 header checksum is wrong.
    BadIpChecksum => "bad_ip_checksum",
    /// The TCP, UDP or ICMP header is truncated or malformed.
    BadTransportHeader => "bad_transport_header",
    /// A source address no host may use (0/8, 127/8, multicast, broadcast; RFC 1812 §5.3.7).
    MartianSource => "martian_source",
    /// A destination the gateway does not forward to (0/8, 127/8, multicast, broadcast).
    MartianDestination => "martian_destination",
    /// A host sent with a source address that is not its own, or a route
    /// sent it a packet not addressed to it (AWS source/destination check).
    SourceCheck => "source_check",
    /// TTL ran out here (an ICMP Time Exceeded was sent unless suppressed).
    TtlExpired => "ttl_expired",
    /// No route matches the destination.
    NoRoute => "no_route",
    /// The matching route is a blackhole.
    Blackhole => "blackhole",
    /// A local route, but no host has the destination address.
    HostUnreachable => "host_unreachable",
    /// To the internet gateway from an address with no public IP.
    NoPublicIp => "no_public_ip",
    /// Addressed to the gateway itself, and not something it answers.
    ToGateway => "to_gateway",
    /// A query to the VPC's resolver while `enable_dns_support` is off.
    DnsDisabled => "dns_disabled",
    /// A query to the resolver's link-local address (169.254.169.253) from a
    /// VPC other than the first, which has no resolver in natgw (docs/VPCS.md).
    DnsOtherVpc => "dns_other_vpc",
    /// More routing steps than any sane table needs.
    RoutingLoop => "routing_loop",
    /// A NAT gateway's translated packet whose next route is a gateway
    /// endpoint (the NAT gateway's subnet routes the service to it): natgw's
    /// NAT leaves as its Elastic IP, which no endpoint reply could reach, so
    /// the request is stopped before the service acts on it (docs/ENDPOINTS.md).
    NatToEndpoint => "nat_to_endpoint",
    /// Routed to a VPC peering connection, but not to an address of the peer
    /// VPC: a peering is not transitive and lends no edge (AWS).
    PeeringTransit => "peering_transit",
    /// Routed to a transit gateway whose route table for the sender's
    /// attachment has no route to the destination (or the attachment is
    /// associated with no table): how spokes are kept apart.
    TransitNoRoute => "transit_no_route",
    /// To a secondary interface that is detached from every instance.
    EniDetached => "eni_detached",
    /// Routed to a gateway endpoint from an address outside the VPC (through
    /// a peering or a transit gateway): a gateway endpoint serves its own
    /// VPC only (AWS).
    EndpointTransit => "endpoint_transit",
    /// Denied by a network ACL.
    AclDeny => "acl_deny",
    /// No rule of the interface's security groups allows it (and it belongs
    /// to no tracked flow).
    SgDeny => "sg_deny",
    /// A new flow a security group allowed, but the tracker is full (AWS
    /// `conntrack_allowance_exceeded`).
    ConntrackFull => "conntrack_full",
    /// Inbound to a NAT address without a session (unsolicited).
    NatNoSession => "nat_no_session",
    /// Inbound to a mapping whose filter refuses the sender.
    NatFiltered => "nat_filtered",
    /// Outbound TCP without a session that is not a SYN.
    NatNotSyn => "nat_not_syn",
    /// Outbound ICMP that is neither a query request nor an error about a session.
    NatIcmpNotQuery => "nat_icmp_not_query",
    /// No external port could be allocated (AWS `ErrorPortAllocation`).
    NatPortsExhausted => "nat_ports_exhausted",
    /// The internal host holds its quota of ports.
    NatSubscriberLimit => "nat_subscriber_limit",
    /// The pool runs short and the host holds more than the share left for
    /// hosts holding few ports (AWS `ErrorPortAllocation` too).
    NatHostShare => "nat_host_share",
    /// The session table is full.
    NatTableFull => "nat_table_full",
    /// A protocol the NAT does not translate (it carries TCP, UDP and ICMP, as AWS does).
    NatUnsupportedProtocol => "nat_unsupported_protocol",
    /// An ICMP error about no known session.
    IcmpErrorOrphan => "icmp_error_orphan",
    /// An ICMP error whose checksum is wrong.
    IcmpBadChecksum => "icmp_bad_checksum",
    /// An ICMP error whose quoted packet is malformed or has a wrong checksum.
    IcmpErrorMalformed => "icmp_error_malformed",
    /// A fragment the gateway cannot handle (an offloaded frame to fragment, a fragmented ICMP error).
    Fragment => "fragment",
    /// A fragment that arrived before its first fragment, with no room to wait.
    FragmentRefused => "fragment_refused",
    /// A fragment whose first fragment never came.
    FragmentTimeout => "fragment_timeout",
    /// A packet the gateway produced (a fragment, a delayed answer) found its queue full.
    OutputOverflow => "output_overflow",
    /// Too big for the egress MTU with DF set (ICMP 3/4 sent).
    FragNeeded => "frag_needed",
    /// The egress device refused the packet (I/O layer).
    TxError => "tx_error",
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::ALL {
            assert!(seen.insert(r.label()), "duplicate {}", r.label());
            assert!(r.label().chars().all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()));
        }
        assert_eq!(DropReason::COUNT, seen.len());
    }
}
