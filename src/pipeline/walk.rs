//! Steps 3 to 6 of the pipeline: where a packet came from, its TTL, and the
//! routing loop through subnets, NAT gateways and the internet gateway.

use super::topology::{IfKind, PublicOwner, SubnetId, Topology, VpcId};
use super::{Action, DropReason, IfId, Meta, PacketBuf, Pipeline};
use crate::acl::{AclDirection, RuleAction};
use crate::clock::Timestamp;
use crate::nat::rewrite::Side;
use crate::route::Target;
use crate::wire::Ipv4Packet;
use crate::wire::icmpv4;

/// Routing steps one packet may take (host -> NAT -> internet gateway ->
/// hairpin back -> NAT -> host is six).
const MAX_STEPS: usize = 8;

/// Where a packet is being routed from.
#[derive(Clone, Copy, Debug)]
pub(super) enum At {
    /// The VPC router of a subnet.
    Subnet(SubnetId),
    /// The internet gateway, from the internet side.
    Internet,
}

impl Pipeline {
    /// Steps 3 and 4: where the packet came from, and its TTL.
    pub(super) fn walk(&self, now: Timestamp, ingress: IfId, pkt: &mut PacketBuf, m: &mut Meta) -> Action {
        let topo = &*self.topo;
        let Some(ifc) = topo.interfaces.get(usize::from(ingress)) else {
            return self.drop(DropReason::NoRoute);
        };
        match ifc.kind {
            IfKind::Host(h) => {
                let host = &topo.hosts[usize::from(h)];
                m.zone = host.zone;
                self.note("interface", || {
                    let s = &topo.subnets[usize::from(host.subnet)];
                    format!("from host {} ({}) in subnet {} ({})", host.name, host.ip, s.name, s.cidr)
                });
                if host.source_dest_check && m.src != u32::from(host.ip) {
                    self.note("source/destination check", || {
                        format!("source {} is not {}'s own address", std::net::Ipv4Addr::from(m.src), host.name)
                    });
                    return self.drop(DropReason::SourceCheck);
                }
                // The resolver is the first VPC's (docs/VPCS.md); another
                // VPC's query to its link-local address goes nowhere.
                if let Some(dns) = &topo.dns
                    && dns.is_resolver(m.dst)
                {
                    if host.vpc == VpcId::FIRST {
                        return self.resolver_query(now, dns, ingress, pkt, m);
                    }
                    if m.dst == u32::from(crate::dns::LINK_LOCAL) {
                        self.note("DNS resolver", || {
                            format!("{}'s VPC has no resolver: natgw's is the first VPC's", host.name)
                        });
                        return self.drop(DropReason::DnsOtherVpc);
                    }
                }
                if let Err(a) = self.sg_leave(now, h, ingress, pkt, m) {
                    return a;
                }
                let subnet = &topo.subnets[usize::from(host.subnet)];
                if topo.is_own(host.vpc, m.dst) {
                    return self.to_gateway(ingress, pkt, m);
                }
                // Inside one subnet the VPC is a switch: no hop, no ACL.
                if subnet.cidr.contains_u32(m.dst) {
                    self.note("subnet", || {
                        format!("same subnet {}: delivered directly, no route table, no network ACL", subnet.name)
                    });
                    return match topo.host_by_ip(host.vpc, m.dst) {
                        Some(peer) => self.forward(now, topo.hosts[usize::from(peer)].interface, ingress, pkt, m),
                        None => self.unreachable(
                            now,
                            ingress,
                            pkt,
                            m,
                            DropReason::HostUnreachable,
                            icmpv4::unreachable::HOST,
                        ),
                    };
                }
                if m.ttl <= 1 {
                    return self.time_exceeded(now, ingress, pkt, m);
                }
                Ipv4Packet::new_unchecked(pkt.bytes_mut()).decrement_ttl();
                self.route(now, topo, At::Subnet(host.subnet), ingress, pkt, m)
            }
            IfKind::Dns => self.resolver_answer(now, ingress, pkt, m),
            IfKind::Endpoint(e) => self.endpoint_reply(now, topo, e, ingress, pkt, m),
            IfKind::Internet => {
                self.note("interface", || "from the internet (through the internet gateway)".to_string());
                if topo.is_own(VpcId::FIRST, m.dst) {
                    return self.to_gateway(ingress, pkt, m);
                }
                if m.ttl <= 1 {
                    return self.time_exceeded(now, ingress, pkt, m);
                }
                Ipv4Packet::new_unchecked(pkt.bytes_mut()).decrement_ttl();
                self.route(now, topo, At::Internet, ingress, pkt, m)
            }
        }
    }

    /// Steps 5 and 6, the routing loop: each step is a route lookup in a
    /// subnet's table, or the internet gateway's view of a public address.
    fn route(
        &self,
        now: Timestamp,
        topo: &Topology,
        mut at: At,
        ingress: IfId,
        pkt: &mut PacketBuf,
        m: &mut Meta,
    ) -> Action {
        // Each NAT direction applies at most once per packet; a hairpinned
        // packet gets both (out through one mapping, in through another).
        // The VPC whose NAT gateway translated the packet, if one did (only
        // that VPC's internet gateway lets its public address out).
        let (mut snat_vpc, mut dnat_done): (Option<VpcId>, bool) = (None, false);
        let mut translated = false;
        for _ in 0..MAX_STEPS {
            match at {
                At::Subnet(s) => {
                    let subnet = &topo.subnets[usize::from(s)];
                    let vpc = subnet.vpc;
                    let table = &topo.route_tables[subnet.route_table];
                    let Some(route) = table.lookup(m.dst) else {
                        self.note("route table", || {
                            format!(
                                "{} (subnet {}): no route to {}",
                                table.name,
                                subnet.name,
                                std::net::Ipv4Addr::from(m.dst)
                            )
                        });
                        if translated {
                            return self.drop(DropReason::NoRoute);
                        }
                        return self.unreachable(now, ingress, pkt, m, DropReason::NoRoute, icmpv4::unreachable::NET);
                    };
                    self.note("route table", || {
                        let state = if route.effective() == Target::Blackhole { " (blackhole)" } else { "" };
                        // A gateway endpoint's route is its prefix list, as the console shows it.
                        let destination = match route.target {
                            Target::Endpoint(e) => topo.endpoints.get(usize::from(e)).map_or_else(
                                || route.destination.to_string(),
                                |ep| format!("{} ({})", ep.prefix_list, route.destination),
                            ),
                            _ => route.destination.to_string(),
                        };
                        format!(
                            "{} (subnet {}): {destination} -> {}{state}",
                            table.name, subnet.name, route.target_name
                        )
                    });
                    match route.effective() {
                        Target::Local => {
                            let Some(h) = topo.host_by_ip(vpc, m.dst) else {
                                if translated {
                                    return self.drop(DropReason::HostUnreachable);
                                }
                                return self.unreachable(
                                    now,
                                    ingress,
                                    pkt,
                                    m,
                                    DropReason::HostUnreachable,
                                    icmpv4::unreachable::HOST,
                                );
                            };
                            let host = &topo.hosts[usize::from(h)];
                            if host.subnet != s && !self.cross(topo, s, host.subnet, m) {
                                return self.refused_at(host.interface);
                            }
                            return self.forward(now, host.interface, ingress, pkt, m);
                        }
                        Target::Host(h) => {
                            let Some(host) = topo.hosts.get(usize::from(h)) else {
                                return self.drop(DropReason::Blackhole);
                            };
                            // AWS's check works both ways: an instance with it on
                            // receives only what is addressed to it.
                            if host.source_dest_check && m.dst != u32::from(host.ip) {
                                self.note("source/destination check", || {
                                    format!(
                                        "{} has its check on: {} is not its own address (set source_dest_check = false for a NAT instance)",
                                        host.name,
                                        std::net::Ipv4Addr::from(m.dst)
                                    )
                                });
                                return self.drop(DropReason::SourceCheck);
                            }
                            if host.subnet != s && !self.cross(topo, s, host.subnet, m) {
                                return self.refused_at(host.interface);
                            }
                            return self.forward(now, host.interface, ingress, pkt, m);
                        }
                        Target::Blackhole => return self.drop(DropReason::Blackhole),
                        Target::Endpoint(e) => {
                            let Some(ep) = topo.endpoints.get(usize::from(e)) else {
                                return self.drop(DropReason::Blackhole);
                            };
                            if !topo.inside(vpc, m.src) {
                                self.note("gateway endpoint", || {
                                    format!(
                                        "{}: source {} is outside the VPC: a gateway endpoint serves its own VPC only (not through a peering, transit gateway or VPN)",
                                        ep.name,
                                        std::net::Ipv4Addr::from(m.src)
                                    )
                                });
                                return self.drop(DropReason::EndpointTransit);
                            }
                            if !self.acl(topo, s, AclDirection::Outbound, m) {
                                return self.drop(DropReason::AclDeny);
                            }
                            self.note("gateway endpoint", || {
                                format!(
                                    "{}: to the service privately, source {} unchanged (no NAT, no internet gateway)",
                                    ep.name,
                                    std::net::Ipv4Addr::from(m.src)
                                )
                            });
                            // No group filters the door (it is a route target, not an interface of the VPC).
                            return self.deliver(now, ep.interface, ingress, pkt, m);
                        }
                        Target::Peering(p) => return self.peering(now, topo, s, p, ingress, pkt, m),
                        Target::TransitGateway(t) => match self.transit(topo, s, t, m) {
                            Ok(next) => at = At::Subnet(next),
                            Err(a) => return a,
                        },
                        Target::InternetGateway => {
                            let Some(internet) = topo.internet.as_ref() else {
                                return self.drop(DropReason::NoRoute);
                            };
                            if !self.acl(topo, s, AclDirection::Outbound, m) {
                                return self.drop(DropReason::AclDeny);
                            }
                            // The internet gateway's 1:1 NAT: a host with an Elastic IP
                            // leaves as that address; a NAT gateway's traffic already
                            // carries its public address; anything else cannot leave.
                            if let Some(h) = topo.host_by_ip(vpc, m.src) {
                                let host = &topo.hosts[usize::from(h)];
                                let Some(eip) = host.elastic_ip else {
                                    return self.drop(DropReason::NoPublicIp);
                                };
                                self.note("internet gateway", || {
                                    format!("source {} -> Elastic IP {eip} ({}'s, 1:1)", host.ip, host.name)
                                });
                                self.static_nat(pkt, m, Side::Source, eip.octets(), host.eip_delta);
                                translated = true;
                            } else if snat_vpc != Some(vpc) {
                                // A public source it did not translate in this
                                // walk (a host with its check off sending as
                                // another's Elastic IP) is a spoof: AWS drops it.
                                return self.drop(DropReason::NoPublicIp);
                            }
                            // To one of our own public addresses: back in through the
                            // internet gateway (hairpinning, RFC 4787 REQ-9).
                            if topo.public_owner(m.dst).is_some() {
                                at = At::Internet;
                                continue;
                            }
                            self.note("internet gateway", || "out to the internet".to_string());
                            return self.forward(now, internet.interface, ingress, pkt, m);
                        }
                        Target::NatGateway(n) => {
                            if snat_vpc.is_some() {
                                return self.drop(DropReason::RoutingLoop);
                            }
                            let Some(info) = topo.nat_gateways.get(usize::from(n)) else {
                                return self.drop(DropReason::Blackhole);
                            };
                            // The NAT gateway is a host of its own subnet: the packet
                            // crosses into that subnet first.
                            if info.subnet != s && !self.cross(topo, s, info.subnet, m) {
                                return self.drop(DropReason::AclDeny);
                            }
                            // Its subnet's table may send the service to a gateway
                            // endpoint: decided before a port is taken (SNAT keeps the
                            // destination, so the lookup is the one after the NAT).
                            if !topo.endpoints.is_empty()
                                && let Some(Target::Endpoint(e)) =
                                    topo.subnets.get(usize::from(info.subnet)).and_then(|ns| {
                                        topo.route_tables[ns.route_table].lookup(m.dst).map(|r| r.effective())
                                    })
                            {
                                self.note("gateway endpoint", || {
                                    format!(
                                        "{}: {}'s subnet routes the service here, but natgw's NAT gateway would leave as its public address, which the endpoint's reply could not reach; route the host's own table to the endpoint instead",
                                        topo.endpoints.get(usize::from(e)).map_or("?", |ep| ep.name.as_str()),
                                        info.name
                                    )
                                });
                                return self.drop(DropReason::NatToEndpoint);
                            }
                            // And a hop of its own: its private address answers a
                            // traceroute (AWS).
                            let mut ip = Ipv4Packet::new_unchecked(pkt.bytes_mut());
                            if ip.ttl() <= 1 {
                                self.note("NAT gateway", || format!("{}: TTL expires here", info.name));
                                return self.time_exceeded_from(now, ingress, pkt, m, info.private_ip.octets());
                            }
                            ip.decrement_ttl();
                            if let Err(a) = self.nat_out(now, topo, n, ingress, pkt, m) {
                                return a;
                            }
                            snat_vpc = Some(vpc);
                            translated = true;
                            at = At::Subnet(info.subnet);
                        }
                    }
                }
                At::Internet => match topo.public_owner(m.dst) {
                    Some(PublicOwner::Host(h)) => {
                        let host = &topo.hosts[usize::from(h)];
                        m.zone = host.zone;
                        self.note("internet gateway", || {
                            format!(
                                "Elastic IP {} is {}'s: destination -> {}",
                                std::net::Ipv4Addr::from(m.dst),
                                host.name,
                                host.ip
                            )
                        });
                        if !self.acl(topo, host.subnet, AclDirection::Inbound, m) {
                            return self.refused_at(host.interface);
                        }
                        self.static_nat(pkt, m, Side::Destination, host.ip.octets(), host.eip_delta.reversed());
                        return self.forward(now, host.interface, ingress, pkt, m);
                    }
                    Some(PublicOwner::Nat(n)) => {
                        if dnat_done {
                            return self.drop(DropReason::RoutingLoop);
                        }
                        let Some(info) = topo.nat_gateways.get(usize::from(n)) else {
                            return self.drop(DropReason::NoRoute);
                        };
                        m.zone = topo.zone_of(topo.vpc_of(info.subnet));
                        if !self.acl(topo, info.subnet, AclDirection::Inbound, m) {
                            return self.drop(DropReason::AclDeny);
                        }
                        if let Err(a) = self.nat_in(n, ingress, pkt, m, now) {
                            return a;
                        }
                        dnat_done = true;
                        translated = true;
                        at = At::Subnet(info.subnet);
                    }
                    None => return self.drop(DropReason::NoRoute),
                },
            }
        }
        self.drop(DropReason::RoutingLoop)
    }

    /// A packet from a gateway endpoint's door (the service's reply): back into
    /// the VPC to the host, if the host's route table routes the service to
    /// this endpoint (else the door has no path to it), through its subnet's
    /// inbound network ACL.
    fn endpoint_reply(
        &self,
        now: Timestamp,
        topo: &Topology,
        e: crate::route::EndpointId,
        ingress: IfId,
        pkt: &mut PacketBuf,
        m: &mut Meta,
    ) -> Action {
        let name = topo.endpoints.get(usize::from(e)).map_or("?", |ep| ep.name.as_str());
        self.note("interface", || format!("from gateway endpoint {name} (the service's side)"));
        // Endpoints are the first VPC's (docs/VPCS.md).
        if topo.is_own(VpcId::FIRST, m.dst) {
            return self.to_gateway(ingress, pkt, m);
        }
        let Some(h) = topo.host_by_ip(VpcId::FIRST, m.dst) else {
            self.note("gateway endpoint", || format!("{} is no host of the VPC", std::net::Ipv4Addr::from(m.dst)));
            return self.drop(DropReason::NoRoute);
        };
        let host = &topo.hosts[usize::from(h)];
        m.zone = host.zone;
        let subnet = &topo.subnets[usize::from(host.subnet)];
        let table = &topo.route_tables[subnet.route_table];
        if table.lookup(m.src).map(|r| r.effective()) != Some(crate::route::Target::Endpoint(e)) {
            self.note("gateway endpoint", || {
                format!("route table {} of subnet {} does not route the service to {name}", table.name, subnet.name)
            });
            return self.drop(DropReason::NoRoute);
        }
        if m.ttl <= 1 {
            return self.time_exceeded(now, ingress, pkt, m);
        }
        Ipv4Packet::new_unchecked(pkt.bytes_mut()).decrement_ttl();
        if !self.acl(topo, host.subnet, AclDirection::Inbound, m) {
            return self.refused_at(host.interface);
        }
        self.forward(now, host.interface, ingress, pkt, m)
    }

    /// Through VPC peering connection `p` from subnet `s`: AWS delivers to
    /// the peer VPC's own addresses only, so a peering is not transitive and
    /// lends nothing at the far edge (internet gateway, NAT gateway, VPN,
    /// endpoints, further peerings). The packet leaves through `s`'s outbound
    /// network ACL and enters through the receiving subnet's inbound one.
    #[allow(clippy::too_many_arguments)]
    fn peering(
        &self,
        now: Timestamp,
        topo: &Topology,
        s: SubnetId,
        p: crate::route::PeeringId,
        ingress: IfId,
        pkt: &mut PacketBuf,
        m: &mut Meta,
    ) -> Action {
        let here = topo.vpc_of(s);
        let Some((pcx, peer)) = topo.peerings.get(usize::from(p)).and_then(|pc| Some((pc, pc.other(here)?))) else {
            return self.drop(DropReason::Blackhole);
        };
        let Some(pv) = topo.vpcs.get(peer.index()) else { return self.drop(DropReason::Blackhole) };
        if !topo.inside(here, m.src) {
            self.note("VPC peering", || {
                let hv = topo.vpcs.get(here.index()).map_or_else(|| "?".to_string(), |v| format!("{} ({})", v.name, v.cidr));
                format!(
                    "{}: source {} is outside VPC {hv}: a peering carries its two VPCs' own traffic only (not transitive)",
                    pcx.name,
                    std::net::Ipv4Addr::from(m.src),
                )
            });
            return self.drop(DropReason::PeeringTransit);
        }
        if !pv.cidr.contains_u32(m.dst) {
            self.note("VPC peering", || {
                format!(
                    "{}: {} is not in the peer VPC {} ({}): a peering carries traffic between its two VPCs only (not transitive, no edge-to-edge routing)",
                    pcx.name,
                    std::net::Ipv4Addr::from(m.dst),
                    pv.name,
                    pv.cidr
                )
            });
            return self.drop(DropReason::PeeringTransit);
        }
        if !self.acl(topo, s, AclDirection::Outbound, m) {
            return self.drop(DropReason::AclDeny);
        }
        self.note("VPC peering", || format!("{}: into VPC {} ({})", pcx.name, pv.name, pv.cidr));
        if topo.is_own(peer, m.dst) {
            return self.to_gateway(ingress, pkt, m);
        }
        let Some(h) = topo.host_by_ip(peer, m.dst) else {
            return self.unreachable(now, ingress, pkt, m, DropReason::HostUnreachable, icmpv4::unreachable::HOST);
        };
        let host = &topo.hosts[usize::from(h)];
        if !self.acl(topo, host.subnet, AclDirection::Inbound, m) {
            return self.refused_at(host.interface);
        }
        self.forward(now, host.interface, ingress, pkt, m)
    }

    /// Through transit gateway `t` from subnet `s`: the route table the
    /// sending VPC's attachment is associated with picks the attachment it
    /// leaves by; the packet enters that VPC at the attachment's subnet, whose
    /// route table routes it on (so a hub VPC may send it to its NAT
    /// gateway). AWS's network ACLs for transit gateways: on the way in, the
    /// sender's subnet outbound and the attachment subnet inbound (both, even
    /// when they are one subnet); on the way out, the attachment subnet
    /// outbound and the receiver's subnet inbound (neither within one
    /// subnet), which the next routing step applies as a subnet crossing.
    fn transit(&self, topo: &Topology, s: SubnetId, t: crate::route::TgwId, m: &Meta) -> Result<SubnetId, Action> {
        use super::transit::TransitTarget;
        let here = topo.vpc_of(s);
        let Some((tgw, from)) =
            topo.transit_gateways.get(usize::from(t)).and_then(|g| Some((g, g.attachment_of(here)?)))
        else {
            return Err(self.drop(DropReason::Blackhole));
        };
        if !self.cross(topo, s, from.subnet, m) {
            return Err(self.drop(DropReason::AclDeny));
        }
        let Some(table) = from.table.and_then(|i| tgw.tables.get(i)) else {
            self.note("transit gateway", || {
                format!("{}: attachment {} is associated with no route table", tgw.name, from.name)
            });
            return Err(self.drop(DropReason::TransitNoRoute));
        };
        let Some(route) = table.lookup(m.dst) else {
            self.note("transit gateway", || {
                format!(
                    "{} route table {} (associated with {}): no route to {}",
                    tgw.name,
                    table.name,
                    from.name,
                    std::net::Ipv4Addr::from(m.dst)
                )
            });
            return Err(self.drop(DropReason::TransitNoRoute));
        };
        self.note("transit gateway", || {
            format!(
                "{} route table {} (associated with {}): {} -> {} ({})",
                tgw.name,
                table.name,
                from.name,
                route.destination,
                tgw.target_name(route.target),
                route.kind.name()
            )
        });
        let TransitTarget::Attachment(a) = route.target else {
            return Err(self.drop(DropReason::Blackhole));
        };
        let Some(to) = tgw.attachments.get(usize::from(a)) else {
            return Err(self.drop(DropReason::Blackhole));
        };
        if to.vpc == here {
            // Back into the VPC it came from: a loop of routes.
            return Err(self.drop(DropReason::RoutingLoop));
        }
        self.note("transit gateway", || {
            let v = topo.vpcs.get(to.vpc.index()).map_or("?", |v| v.name.as_str());
            let sub = topo.subnets.get(usize::from(to.subnet)).map_or("?", |s| s.name.as_str());
            format!("{}: into VPC {v} at subnet {sub}", to.name)
        });
        Ok(to.subnet)
    }

    /// A packet addressed to one of the gateway's own addresses: it answers
    /// pings; everything else is dropped.
    fn to_gateway(&self, ingress: IfId, pkt: &mut PacketBuf, m: &Meta) -> Action {
        if let super::L4::Icmp { kind: icmpv4::kind::ECHO_REQUEST, .. } = m.l4
            && !m.is_fragment
        {
            super::reply::echo_reply(pkt, self.next_ident());
            self.counters.generated.icmp_echo_reply.inc();
            self.counters.count_drop(DropReason::ToGateway);
            return Action::Reply { egress: ingress, cause: DropReason::ToGateway };
        }
        self.drop(DropReason::ToGateway)
    }

    /// A packet a network ACL refused on its way to host interface `at`.
    fn refused_at(&self, at: IfId) -> Action {
        self.rejected_at(at);
        self.drop(DropReason::AclDeny)
    }

    /// Evaluates subnet `s`'s network ACL for a packet crossing its boundary.
    #[inline]
    fn acl(&self, topo: &Topology, s: SubnetId, dir: AclDirection, m: &Meta) -> bool {
        let Some(sub) = topo.subnets.get(usize::from(s)) else { return true };
        let Some(acl) = topo.acls.get(sub.acl) else { return true };
        if acl.is_allow_all() && !self.recording {
            return true;
        }
        let v = acl.evaluate(dir, &m.acl_packet());
        self.note("network ACL", || {
            let d = match dir {
                AclDirection::Inbound => "inbound",
                AclDirection::Outbound => "outbound",
            };
            let rule = v.rule.map_or("*".to_string(), |n| n.to_string());
            let action = if v.action == RuleAction::Allow { "allow" } else { "deny" };
            format!("{} (subnet {}) {d}: rule {rule} {action}", acl.name, sub.name)
        });
        v.action == RuleAction::Allow
    }

    /// A packet leaving subnet `from` for subnet `to`: the outbound ACL of one
    /// and the inbound ACL of the other.
    #[inline]
    fn cross(&self, topo: &Topology, from: SubnetId, to: SubnetId, m: &Meta) -> bool {
        self.acl(topo, from, AclDirection::Outbound, m) && self.acl(topo, to, AclDirection::Inbound, m)
    }
}
