//! The packet pipeline: `process(now, ingress, &mut packet) -> Action`.
//!
//! No I/O, no clock, no allocation: the caller owns the buffer and the time.
//! The walk (see the crate documentation for the picture):
//!
//! 1. validate the IPv4 header once ([`parse`]); count and drop what is malformed;
//! 2. from a host: source/destination check, same-subnet delivery, or route;
//!    from the internet: the internet gateway's public addresses;
//! 3. TTL: expire with ICMP Time Exceeded, else decrement once;
//! 4. route in the subnet's table; a target may be a host, the internet
//!    gateway (1:1 NAT of Elastic IPs), a NAT gateway (translate, then route on
//!    in the NAT gateway's own subnet), or a blackhole;
//! 5. network ACLs wherever the packet crosses a subnet boundary;
//! 6. forward, reply (an ICMP error, an echo reply, a RST) or drop with a reason.

pub mod action;
pub mod buf;
pub mod counters;
pub mod reply;
pub mod topology;

pub use action::{Action, DropReason};
pub use buf::{Offload, PacketBuf};
pub use counters::{Counters, Totals};
pub use topology::{IfId, IfKind, Topology};

use crate::acl::{AclDirection, AclPacket, RuleAction};
use crate::clock::Timestamp;
use crate::conntrack::{Dir, FlowKey};
use crate::nat::icmp_error::{self, ErrorFault};
use crate::nat::rewrite::{self, L4Checksum, L4Kind, Side};
use crate::nat::{ExhaustionReply, NatError, NatGateway};
use crate::route::{NatId, Target};
use crate::wire::checksum::Delta;
use crate::wire::icmpv4::{self, Icmpv4Packet};
use crate::wire::ipv4::protocol;
use crate::wire::{Ipv4Packet, TcpPacket, UdpPacket, WireError};
use arc_swap::ArcSwap;
use reply::RateLimiter;
use std::cell::Cell;
use std::sync::Arc;
use topology::{PublicOwner, SubnetId};

/// Routing steps one packet may take (host -> NAT -> internet gateway ->
/// hairpin back -> NAT -> host is six).
const MAX_STEPS: usize = 8;

/// Knobs of the pipeline that are not part of the VPC.
#[derive(Clone, Debug)]
pub struct Settings {
    /// ICMP errors per second each worker may send, and the burst.
    pub icmp_rate: u32,
    pub icmp_burst: u32,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            icmp_rate: 1000,
            icmp_burst: 100,
        }
    }
}

/// State shared by all workers: the topology snapshot and the NAT gateways.
#[derive(Debug)]
pub struct Gateway {
    topology: ArcSwap<Topology>,
    nats: Vec<Arc<NatGateway>>,
    pub settings: Settings,
}

impl Gateway {
    /// A gateway for `topology` whose NAT gateways are `nats`, in the
    /// topology's NAT gateway order.
    pub fn new(topology: Topology, nats: Vec<Arc<NatGateway>>, settings: Settings) -> Arc<Gateway> {
        Arc::new(Gateway {
            topology: ArcSwap::from_pointee(topology),
            nats,
            settings,
        })
    }

    /// The current topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.load_full()
    }

    /// Swaps in a new topology; workers pick it up at their next batch.
    pub fn set_topology(&self, t: Topology) {
        self.topology.store(Arc::new(t));
    }

    pub fn nats(&self) -> &[Arc<NatGateway>] {
        &self.nats
    }

    /// A pipeline for one worker, with its own counters.
    pub fn pipeline(self: &Arc<Gateway>) -> Pipeline {
        let topo = self.topology();
        let counters = Arc::new(Counters::new(topo.interfaces.len()));
        Pipeline {
            limiter: Cell::new(RateLimiter::new(
                self.settings.icmp_rate,
                self.settings.icmp_burst,
            )),
            gw: self.clone(),
            topo,
            counters,
            ident: Cell::new(0),
        }
    }
}

/// One worker's pipeline.
#[derive(Debug)]
pub struct Pipeline {
    gw: Arc<Gateway>,
    topo: Arc<Topology>,
    counters: Arc<Counters>,
    limiter: Cell<RateLimiter>,
    /// IPv4 identification for messages this worker builds.
    ident: Cell<u16>,
}

/// What the validation step learnt about a packet.
#[derive(Clone, Copy, Debug)]
struct Meta {
    total: usize,
    proto: u8,
    src: u32,
    dst: u32,
    ttl: u8,
    /// Not the first fragment: no transport header.
    later_fragment: bool,
    is_fragment: bool,
    l4: L4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp {
        kind: u8,
        code: u8,
        ident: u16,
    },
    /// Another protocol, or a later fragment.
    Opaque,
}

impl Meta {
    fn acl_packet(&self) -> AclPacket {
        let (dport, icmp) = match self.l4 {
            L4::Tcp { dport, .. } | L4::Udp { dport, .. } => (Some(dport), None),
            L4::Icmp { kind, code, .. } => (None, Some((kind, code))),
            L4::Opaque => (None, None),
        };
        AclPacket {
            proto: self.proto,
            src: self.src,
            dst: self.dst,
            dport,
            icmp,
        }
    }

    fn rewrite_kind(&self) -> L4Kind {
        match self.l4 {
            L4::Tcp { .. } => L4Kind::Tcp,
            L4::Udp { .. } => L4Kind::Udp,
            L4::Icmp { kind, .. } if icmpv4::is_query(kind) => L4Kind::IcmpQuery,
            _ => L4Kind::None,
        }
    }
}

fn wire_drop(e: WireError) -> DropReason {
    match e {
        WireError::Truncated => DropReason::Truncated,
        WireError::BadVersion => DropReason::NotIpv4,
        WireError::BadHeaderLen => DropReason::BadHeaderLen,
        WireError::BadTotalLen => DropReason::BadTotalLen,
    }
}

/// Validates the IPv4 header and the transport header once.
fn parse(b: &[u8]) -> Result<Meta, DropReason> {
    let ip = Ipv4Packet::new_checked(b).map_err(wire_drop)?;
    if !ip.verify_checksum() {
        return Err(DropReason::BadIpChecksum);
    }
    let later_fragment = ip.frag_offset() != 0;
    let proto = ip.protocol();
    let l4 = if later_fragment {
        L4::Opaque
    } else {
        let p = ip.payload();
        let bad = |_| DropReason::BadTransportHeader;
        match proto {
            protocol::TCP => {
                let t = TcpPacket::new_checked(p).map_err(bad)?;
                L4::Tcp {
                    sport: t.src_port(),
                    dport: t.dst_port(),
                    flags: t.flags(),
                }
            }
            protocol::UDP => {
                let u = UdpPacket::new_checked(p).map_err(bad)?;
                L4::Udp {
                    sport: u.src_port(),
                    dport: u.dst_port(),
                }
            }
            protocol::ICMP => {
                let i = Icmpv4Packet::new_checked(p).map_err(bad)?;
                L4::Icmp {
                    kind: i.msg_type(),
                    code: i.code(),
                    ident: i.ident(),
                }
            }
            _ => L4::Opaque,
        }
    };
    Ok(Meta {
        total: usize::from(ip.total_len()),
        proto,
        src: u32::from(ip.src_addr()),
        dst: u32::from(ip.dst_addr()),
        ttl: ip.ttl(),
        later_fragment,
        is_fragment: ip.is_fragment(),
        l4,
    })
}

/// 0/8, 127/8, multicast and class E (with the limited broadcast): never a
/// valid unicast source or forwarding destination (RFC 1812 §4.2.2.11, §5.3.7).
fn is_martian(a: u32) -> bool {
    let first = (a >> 24) as u8;
    first == 0 || first == 127 || first >= 224
}

/// Where a packet is being routed from.
#[derive(Clone, Copy, Debug)]
enum At {
    /// The VPC router of a subnet.
    Subnet(SubnetId),
    /// The internet gateway, from the internet side.
    Internet,
}

impl Pipeline {
    /// Picks up the latest topology (workers call this once per batch).
    pub fn refresh(&mut self) {
        let cur = self.gw.topology.load();
        if !Arc::ptr_eq(&cur, &self.topo) {
            self.topo = arc_swap::Guard::into_inner(cur);
        }
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }

    /// Runs one packet that arrived on `ingress` through the pipeline, in place.
    pub fn process(&mut self, now: Timestamp, ingress: IfId, pkt: &mut PacketBuf) -> Action {
        self.counters.rx(usize::from(ingress), pkt.len());
        let mut m = match parse(pkt.bytes()) {
            Ok(m) => m,
            Err(r) => return self.drop(r),
        };
        // Anything past the total length is link padding.
        pkt.set_len(m.total);
        if is_martian(m.src) {
            return self.drop(DropReason::MartianSource);
        }
        if is_martian(m.dst) {
            return self.drop(DropReason::MartianDestination);
        }
        let this: &Pipeline = self;
        this.walk(now, ingress, pkt, &mut m)
    }

    /// Steps 2 and 3 of the walk: where the packet came from, and its TTL.
    fn walk(&self, now: Timestamp, ingress: IfId, pkt: &mut PacketBuf, m: &mut Meta) -> Action {
        let topo = &*self.topo;
        let Some(ifc) = topo.interfaces.get(usize::from(ingress)) else {
            return self.drop(DropReason::NoRoute);
        };
        match ifc.kind {
            IfKind::Host(h) => {
                let host = &topo.hosts[usize::from(h)];
                if host.source_dest_check && m.src != u32::from(host.ip) {
                    return self.drop(DropReason::SourceCheck);
                }
                let subnet = &topo.subnets[usize::from(host.subnet)];
                if topo.is_own(m.dst) {
                    return self.to_gateway(now, ingress, pkt, m);
                }
                // Inside one subnet the VPC is a switch: no hop, no ACL.
                if subnet.cidr.contains_u32(m.dst) {
                    return match topo.host_by_ip(m.dst) {
                        Some(peer) => self.forward(topo.hosts[usize::from(peer)].interface),
                        None => self.unreachable(
                            now,
                            ingress,
                            pkt,
                            m,
                            subnet.router().octets(),
                            DropReason::HostUnreachable,
                        ),
                    };
                }
                if m.ttl <= 1 {
                    return self.time_exceeded(now, ingress, pkt, m, subnet.router().octets());
                }
                Ipv4Packet::new_unchecked(pkt.bytes_mut()).decrement_ttl();
                self.route(now, topo, At::Subnet(host.subnet), ingress, pkt, m)
            }
            IfKind::Internet => {
                if topo.is_own(m.dst) {
                    return self.to_gateway(now, ingress, pkt, m);
                }
                if m.ttl <= 1 {
                    let from = topo
                        .internet
                        .as_ref()
                        .map_or([0; 4], |i| i.gateway_ip.octets());
                    return self.time_exceeded(now, ingress, pkt, m, from);
                }
                Ipv4Packet::new_unchecked(pkt.bytes_mut()).decrement_ttl();
                self.route(now, topo, At::Internet, ingress, pkt, m)
            }
        }
    }

    /// The routing loop: each step is a route lookup in a subnet's table, or the
    /// internet gateway's view of a public address.
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
        let (mut snat_done, mut dnat_done) = (false, false);
        let mut translated = false;
        for _ in 0..MAX_STEPS {
            match at {
                At::Subnet(s) => {
                    let subnet = &topo.subnets[usize::from(s)];
                    let Some(route) = topo.route_tables[subnet.route_table].lookup(m.dst) else {
                        if translated {
                            return self.drop(DropReason::NoRoute);
                        }
                        return self.unreachable_code(
                            now,
                            ingress,
                            pkt,
                            m,
                            subnet.router().octets(),
                            DropReason::NoRoute,
                            icmpv4::unreachable::NET,
                        );
                    };
                    match route.effective() {
                        Target::Local => {
                            let Some(h) = topo.host_by_ip(m.dst) else {
                                if translated {
                                    return self.drop(DropReason::HostUnreachable);
                                }
                                return self.unreachable(
                                    now,
                                    ingress,
                                    pkt,
                                    m,
                                    subnet.router().octets(),
                                    DropReason::HostUnreachable,
                                );
                            };
                            let host = &topo.hosts[usize::from(h)];
                            if host.subnet != s && !self.cross(topo, s, host.subnet, m) {
                                return self.drop(DropReason::AclDeny);
                            }
                            return self.forward(host.interface);
                        }
                        Target::Host(h) => {
                            let Some(host) = topo.hosts.get(usize::from(h)) else {
                                return self.drop(DropReason::Blackhole);
                            };
                            if host.subnet != s && !self.cross(topo, s, host.subnet, m) {
                                return self.drop(DropReason::AclDeny);
                            }
                            return self.forward(host.interface);
                        }
                        Target::Blackhole => return self.drop(DropReason::Blackhole),
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
                            if let Some(h) = topo.host_by_ip(m.src) {
                                let host = &topo.hosts[usize::from(h)];
                                let Some(eip) = host.elastic_ip else {
                                    return self.drop(DropReason::NoPublicIp);
                                };
                                self.static_nat(pkt, m, Side::Source, eip.octets(), host.eip_delta);
                                translated = true;
                            } else if topo.public_owner(m.src).is_none() {
                                return self.drop(DropReason::NoPublicIp);
                            }
                            // To one of our own public addresses: back in through the
                            // internet gateway (hairpinning, RFC 4787 REQ-9).
                            if topo.public_owner(m.dst).is_some() {
                                at = At::Internet;
                                continue;
                            }
                            return self.forward(internet.interface);
                        }
                        Target::NatGateway(n) => {
                            if snat_done {
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
                            if let Err(a) = self.nat_out(now, topo, n, ingress, pkt, m) {
                                return a;
                            }
                            snat_done = true;
                            translated = true;
                            at = At::Subnet(info.subnet);
                        }
                    }
                }
                At::Internet => match topo.public_owner(m.dst) {
                    Some(PublicOwner::Host(h)) => {
                        let host = &topo.hosts[usize::from(h)];
                        if !self.acl(topo, host.subnet, AclDirection::Inbound, m) {
                            return self.drop(DropReason::AclDeny);
                        }
                        self.static_nat(
                            pkt,
                            m,
                            Side::Destination,
                            host.ip.octets(),
                            host.eip_delta.reversed(),
                        );
                        return self.forward(host.interface);
                    }
                    Some(PublicOwner::Nat(n)) => {
                        if dnat_done {
                            return self.drop(DropReason::RoutingLoop);
                        }
                        let Some(info) = topo.nat_gateways.get(usize::from(n)) else {
                            return self.drop(DropReason::NoRoute);
                        };
                        if !self.acl(topo, info.subnet, AclDirection::Inbound, m) {
                            return self.drop(DropReason::AclDeny);
                        }
                        if let Err(a) = self.nat_in(n, pkt, m, now) {
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

    /// A packet addressed to one of the gateway's own addresses: it answers
    /// pings; everything else is dropped.
    fn to_gateway(&self, _now: Timestamp, ingress: IfId, pkt: &mut PacketBuf, m: &Meta) -> Action {
        if let L4::Icmp {
            kind: icmpv4::kind::ECHO_REQUEST,
            ..
        } = m.l4
            && !m.is_fragment
        {
            reply::echo_reply(pkt, self.next_ident());
            self.counters.generated.icmp_echo_reply.inc();
            return Action::Reply {
                egress: ingress,
                cause: DropReason::ToGateway,
            };
        }
        self.drop(DropReason::ToGateway)
    }

    fn next_ident(&self) -> u16 {
        let i = self.ident.get().wrapping_add(1);
        self.ident.set(i);
        i
    }

    #[inline]
    fn forward(&self, egress: IfId) -> Action {
        Action::Forward(egress)
    }

    #[inline]
    fn drop(&self, r: DropReason) -> Action {
        self.counters.count_drop(r);
        Action::Drop(r)
    }

    /// Evaluates subnet `s`'s network ACL for a packet crossing its boundary.
    #[inline]
    fn acl(&self, topo: &Topology, s: SubnetId, dir: AclDirection, m: &Meta) -> bool {
        let Some(acl) = topo
            .subnets
            .get(usize::from(s))
            .and_then(|sub| topo.acls.get(sub.acl))
        else {
            return true;
        };
        acl.is_allow_all() || acl.evaluate(dir, &m.acl_packet()).action == RuleAction::Allow
    }

    /// A packet leaving subnet `from` for subnet `to`: the outbound ACL of one
    /// and the inbound ACL of the other.
    #[inline]
    fn cross(&self, topo: &Topology, from: SubnetId, to: SubnetId, m: &Meta) -> bool {
        self.acl(topo, from, AclDirection::Outbound, m)
            && self.acl(topo, to, AclDirection::Inbound, m)
    }

    fn l4_checksum(pkt: &PacketBuf) -> L4Checksum {
        if pkt.offload.csum.is_some() {
            L4Checksum::Partial
        } else {
            L4Checksum::Full
        }
    }

    /// The internet gateway's stateless 1:1 NAT (addresses only; ICMP errors
    /// get their quoted packet translated too).
    fn static_nat(
        &self,
        pkt: &mut PacketBuf,
        m: &mut Meta,
        side: Side,
        addr: [u8; 4],
        delta: Delta,
    ) {
        let csum = Self::l4_checksum(pkt);
        if let L4::Icmp { kind, .. } = m.l4
            && icmpv4::is_error(kind)
            && !m.is_fragment
        {
            let b = pkt.bytes_mut();
            let ihl = Ipv4Packet::new_unchecked(&*b).header_len();
            if let Ok(q) = icmp_error::parse(&b[ihl..]) {
                let old = match side {
                    Side::Source => m.src,
                    Side::Destination => m.dst,
                };
                // Translate the quote only if it is about the address we rewrite.
                let quoted_end = match side {
                    Side::Source => q.key.dst,
                    Side::Destination => q.key.src,
                };
                if quoted_end == old {
                    icmp_error::translate(b, &q, side, addr, delta, None);
                    self.set_end(m, side, addr);
                    return;
                }
            }
        }
        let kind = if m.later_fragment {
            L4Kind::None
        } else {
            m.rewrite_kind()
        };
        // ICMP has no pseudo-header: an address change does not touch it.
        let kind = if kind == L4Kind::IcmpQuery {
            L4Kind::None
        } else {
            kind
        };
        rewrite::apply(pkt.bytes_mut(), kind, side, addr, delta, None, csum);
        self.set_end(m, side, addr);
    }

    fn set_end(&self, m: &mut Meta, side: Side, addr: [u8; 4]) {
        match side {
            Side::Source => m.src = u32::from_be_bytes(addr),
            Side::Destination => m.dst = u32::from_be_bytes(addr),
        }
    }

    /// Outbound through NAT gateway `n`: translate the source, or answer why not.
    fn nat_out(
        &self,
        now: Timestamp,
        topo: &Topology,
        n: NatId,
        ingress: IfId,
        pkt: &mut PacketBuf,
        m: &mut Meta,
    ) -> Result<(), Action> {
        let Some(nat) = self.gw.nats.get(usize::from(n)) else {
            return Err(self.drop(DropReason::Blackhole));
        };
        let c = &self.counters;
        c.nat.packets_in_from_source.inc();
        c.nat.bytes_in_from_source.add(pkt.len() as u64);
        if m.is_fragment {
            return Err(self.drop(DropReason::Fragment));
        }
        let key = match m.l4 {
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => FlowKey {
                src: m.src,
                dst: m.dst,
                sport,
                dport,
                proto: m.proto,
            },
            L4::Icmp { kind, ident, .. } if NatGateway::opens_icmp_session(kind) => FlowKey {
                src: m.src,
                dst: m.dst,
                sport: ident,
                dport: ident,
                proto: m.proto,
            },
            L4::Icmp { kind, .. } if icmpv4::is_error(kind) => {
                return self.icmp_error_through(nat, pkt, m, Dir::Original);
            }
            L4::Icmp { .. } => return Err(self.drop(DropReason::NatIcmpNotQuery)),
            L4::Opaque => return Err(self.drop(DropReason::NatUnsupportedProtocol)),
        };
        let tcp_flags = if let L4::Tcp { flags, .. } = m.l4 {
            flags
        } else {
            0
        };
        match nat.outbound(now.secs(), &key, tcp_flags, pkt.len()) {
            Ok(t) => {
                let c = &self.counters;
                if t.created {
                    c.nat.connection_attempts.inc();
                }
                if t.established {
                    c.nat.connections_established.inc();
                }
                if t.tcp_invalid {
                    c.nat.tcp_invalid.inc();
                }
                let rw = t.rewrite;
                let csum = Self::l4_checksum(pkt);
                rewrite::apply(
                    pkt.bytes_mut(),
                    m.rewrite_kind(),
                    Side::Source,
                    rw.addr,
                    rw.addr_delta,
                    Some((rw.port, rw.port_delta)),
                    csum,
                );
                m.src = u32::from_be_bytes(rw.addr);
                c.nat.packets_out_to_destination.inc();
                c.nat.bytes_out_to_destination.add(pkt.len() as u64);
                Ok(())
            }
            Err(e) => Err(self.nat_refused(now, topo, n, nat, ingress, pkt, m, e)),
        }
    }

    /// What to do with an outbound packet the NAT could not translate.
    #[allow(clippy::too_many_arguments)]
    fn nat_refused(
        &self,
        now: Timestamp,
        topo: &Topology,
        n: NatId,
        nat: &NatGateway,
        ingress: IfId,
        pkt: &mut PacketBuf,
        m: &Meta,
        e: NatError,
    ) -> Action {
        let reason = match e {
            NatError::NotSyn => {
                // AWS: a packet on a connection that timed out gets a RST.
                if nat.config().timeouts.tcp_rst_on_expired
                    && matches!(m.l4, L4::Tcp { flags, .. } if flags & crate::wire::tcp::flags::RST == 0)
                {
                    reply::tcp_reset(pkt, self.next_ident());
                    self.counters.generated.tcp_rst.inc();
                    self.counters.count_drop(DropReason::NatNotSyn);
                    return Action::Reply {
                        egress: ingress,
                        cause: DropReason::NatNotSyn,
                    };
                }
                DropReason::NatNotSyn
            }
            NatError::NoSession => DropReason::NatNoSession,
            NatError::Filtered => DropReason::NatFiltered,
            NatError::NotQuery => DropReason::NatIcmpNotQuery,
            NatError::PortsExhausted | NatError::SubscriberLimit | NatError::TableFull => {
                let reason = match e {
                    NatError::PortsExhausted => DropReason::NatPortsExhausted,
                    NatError::SubscriberLimit => DropReason::NatSubscriberLimit,
                    _ => DropReason::NatTableFull,
                };
                if e == NatError::PortsExhausted {
                    self.counters.nat.error_port_allocation.inc();
                }
                let code = match nat.config().exhaustion_reply {
                    ExhaustionReply::AdminProhibited => Some(icmpv4::unreachable::ADMIN_PROHIBITED),
                    ExhaustionReply::HostUnreachable => Some(icmpv4::unreachable::HOST),
                    ExhaustionReply::Silent => None,
                };
                let from = topo
                    .nat_gateways
                    .get(usize::from(n))
                    .map_or([0; 4], |i| i.private_ip.octets());
                return match code {
                    Some(code) => self.unreachable_code(now, ingress, pkt, m, from, reason, code),
                    None => self.drop(reason),
                };
            }
        };
        self.drop(reason)
    }

    /// Inbound through NAT gateway `n`: translate the destination back.
    fn nat_in(
        &self,
        n: NatId,
        pkt: &mut PacketBuf,
        m: &mut Meta,
        now: Timestamp,
    ) -> Result<(), Action> {
        let Some(nat) = self.gw.nats.get(usize::from(n)) else {
            return Err(self.drop(DropReason::NoRoute));
        };
        let c = &self.counters;
        c.nat.packets_in_from_destination.inc();
        c.nat.bytes_in_from_destination.add(pkt.len() as u64);
        if m.is_fragment {
            return Err(self.drop(DropReason::Fragment));
        }
        let key = match m.l4 {
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => FlowKey {
                src: m.src,
                dst: m.dst,
                sport,
                dport,
                proto: m.proto,
            },
            L4::Icmp {
                kind: icmpv4::kind::ECHO_REPLY | icmpv4::kind::TIMESTAMP_REPLY,
                ident,
                ..
            } => FlowKey {
                src: m.src,
                dst: m.dst,
                sport: ident,
                dport: ident,
                proto: m.proto,
            },
            L4::Icmp { kind, .. } if icmpv4::is_error(kind) => {
                return self.icmp_error_through(nat, pkt, m, Dir::Reply);
            }
            _ => return Err(self.drop(DropReason::NatNoSession)),
        };
        let tcp_flags = if let L4::Tcp { flags, .. } = m.l4 {
            flags
        } else {
            0
        };
        match nat.inbound(now.secs(), &key, tcp_flags, pkt.len()) {
            Ok(t) => {
                let c = &self.counters;
                if t.created {
                    c.nat.connection_attempts.inc();
                }
                if t.established {
                    c.nat.connections_established.inc();
                }
                if t.tcp_invalid {
                    c.nat.tcp_invalid.inc();
                }
                let rw = t.rewrite;
                let csum = Self::l4_checksum(pkt);
                rewrite::apply(
                    pkt.bytes_mut(),
                    m.rewrite_kind(),
                    Side::Destination,
                    rw.addr,
                    rw.addr_delta,
                    Some((rw.port, rw.port_delta)),
                    csum,
                );
                m.dst = u32::from_be_bytes(rw.addr);
                c.nat.packets_out_to_source.inc();
                c.nat.bytes_out_to_source.add(pkt.len() as u64);
                Ok(())
            }
            Err(NatError::Filtered) => Err(self.drop(DropReason::NatFiltered)),
            Err(_) => Err(self.drop(DropReason::NatNoSession)),
        }
    }

    /// An ICMP error travelling in `dir` about a NAT session (RFC 5508 REQ-3,
    /// REQ-4, REQ-5): translate it, or drop it if it is about nothing we know.
    /// It never refreshes or ends the session (REQ-6, RFC 4787 REQ-12).
    fn icmp_error_through(
        &self,
        nat: &NatGateway,
        pkt: &mut PacketBuf,
        m: &mut Meta,
        dir: Dir,
    ) -> Result<(), Action> {
        let b = pkt.bytes_mut();
        let ihl = Ipv4Packet::new_unchecked(&*b).header_len();
        let q = match icmp_error::parse(&b[ihl..]) {
            Ok(q) => q,
            Err(ErrorFault::BadChecksum) => return Err(self.drop(DropReason::IcmpBadChecksum)),
            Err(ErrorFault::Malformed | ErrorFault::BadQuotedChecksum) => {
                return Err(self.drop(DropReason::IcmpErrorMalformed));
            }
            Err(ErrorFault::Unmatchable) => return Err(self.drop(DropReason::IcmpErrorOrphan)),
        };
        // The quoted packet travelled the other way; its reply key is the key of
        // the error's own direction.
        let Some((session, found)) = nat.session_for_error(&q.key.reply()) else {
            return Err(self.drop(DropReason::IcmpErrorOrphan));
        };
        if found != dir || session.is_dead() {
            return Err(self.drop(DropReason::IcmpErrorOrphan));
        }
        let rw = session.rewrite(dir);
        let side = match dir {
            Dir::Original => Side::Source,
            Dir::Reply => Side::Destination,
        };
        icmp_error::translate(
            b,
            &q,
            side,
            rw.addr,
            rw.addr_delta,
            Some((rw.port, rw.port_delta)),
        );
        self.set_end(m, side, rw.addr);
        let c = &self.counters;
        c.nat.icmp_errors_translated.inc();
        match dir {
            Dir::Original => {
                c.nat.packets_out_to_destination.inc();
                c.nat.bytes_out_to_destination.add(pkt.len() as u64);
            }
            Dir::Reply => {
                c.nat.packets_out_to_source.inc();
                c.nat.bytes_out_to_source.add(pkt.len() as u64);
            }
        }
        Ok(())
    }

    /// True when an ICMP error may be sent about this packet (RFC 1812
    /// §4.3.2.7: never about an ICMP error or a later fragment) and the rate
    /// limit allows one.
    fn may_send_error(&self, now: Timestamp, m: &Meta) -> bool {
        if m.later_fragment {
            return false;
        }
        if let L4::Icmp { kind, .. } = m.l4
            && !icmpv4::is_query(kind)
        {
            return false;
        }
        let mut limiter = self.limiter.get();
        let allowed = limiter.allow(now);
        self.limiter.set(limiter);
        if !allowed {
            self.counters.generated.icmp_rate_limited.inc();
            return false;
        }
        true
    }

    fn time_exceeded(
        &self,
        now: Timestamp,
        ingress: IfId,
        pkt: &mut PacketBuf,
        m: &Meta,
        from: [u8; 4],
    ) -> Action {
        if !self.may_send_error(now, m) {
            return self.drop(DropReason::TtlExpired);
        }
        reply::icmp_error(
            pkt,
            from,
            icmpv4::kind::TIME_EXCEEDED,
            0,
            0,
            self.next_ident(),
        );
        self.counters.generated.icmp_time_exceeded.inc();
        self.counters.count_drop(DropReason::TtlExpired);
        Action::Reply {
            egress: ingress,
            cause: DropReason::TtlExpired,
        }
    }

    fn unreachable(
        &self,
        now: Timestamp,
        ingress: IfId,
        pkt: &mut PacketBuf,
        m: &Meta,
        from: [u8; 4],
        reason: DropReason,
    ) -> Action {
        self.unreachable_code(
            now,
            ingress,
            pkt,
            m,
            from,
            reason,
            icmpv4::unreachable::HOST,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn unreachable_code(
        &self,
        now: Timestamp,
        ingress: IfId,
        pkt: &mut PacketBuf,
        m: &Meta,
        from: [u8; 4],
        reason: DropReason,
        code: u8,
    ) -> Action {
        if !self.may_send_error(now, m) {
            return self.drop(reason);
        }
        reply::icmp_error(
            pkt,
            from,
            icmpv4::kind::DEST_UNREACHABLE,
            code,
            0,
            self.next_ident(),
        );
        self.counters.generated.icmp_unreachable.inc();
        self.counters.count_drop(reason);
        Action::Reply {
            egress: ingress,
            cause: reason,
        }
    }
}
