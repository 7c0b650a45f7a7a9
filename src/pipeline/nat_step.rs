//! Step 5's translations: the internet gateway's 1:1 NAT of Elastic IPs, the
//! NAT gateway both ways, and ICMP errors about translated flows.

use super::{Action, DropReason, IfId, L4, Meta, PacketBuf, Pipeline, Topology};
use crate::clock::Timestamp;
use crate::conntrack::{Dir, FlowKey};
use crate::nat::icmp_error::{self, ErrorFault};
use crate::nat::rewrite::{self, L4Checksum, L4Kind, Side};
use crate::nat::{ExhaustionReply, NatError, NatGateway};
use crate::route::NatId;
use crate::wire::Ipv4Packet;
use crate::wire::checksum::Delta;
use crate::wire::icmpv4;
use crate::wire::tcp::flags;

impl Pipeline {
    fn l4_checksum(pkt: &PacketBuf) -> L4Checksum {
        if pkt.offload.csum.is_some() { L4Checksum::Partial } else { L4Checksum::Full }
    }

    /// Applies a NAT gateway's translation at one end of the packet (source
    /// going out, destination coming in) and counts it.
    #[inline]
    fn translate(&self, pkt: &mut PacketBuf, m: &mut Meta, t: &crate::nat::Translated, side: Side) {
        let rw = t.rewrite;
        let csum = Self::l4_checksum(pkt);
        rewrite::apply(
            pkt.bytes_mut(),
            m.rewrite_kind(),
            side,
            rw.addr,
            rw.addr_delta,
            Some((rw.port, rw.port_delta)),
            csum,
        );
        set_end(m, side, rw.addr);
        m.set_port(side, rw.port);
        let carried = crate::nat::Carried { established: t.established, tcp_invalid: t.tcp_invalid };
        self.count_session(t.created, carried, side, pkt.len());
    }

    /// Counts what a packet did to its NAT session, and the packet sent on.
    #[inline]
    pub(super) fn count_session(&self, created: bool, t: crate::nat::Carried, side: Side, len: usize) {
        let c = &self.counters.nat;
        if created {
            c.connection_attempts.inc();
        }
        if t.established {
            c.connections_established.inc();
        }
        if t.tcp_invalid {
            c.tcp_invalid.inc();
        }
        self.count_translated(side, len);
    }

    /// Notes for the flow cache that the packet went through a NAT session.
    fn trace_nat(&self, n: NatId, dir: Dir, key: FlowKey, created: bool) {
        let mut trace = self.trace.get();
        if trace.nat.is_some() {
            trace.uncacheable = true;
        }
        trace.nat = Some((n, dir, key));
        trace.nat_created = created;
        self.trace.set(trace);
    }

    /// A packet that reached the NAT: from inside (to be translated at its
    /// source) or from outside (at its destination), in AWS's metric names.
    pub(super) fn count_arrival(&self, side: Side, len: usize) {
        let n = &self.counters.nat;
        let (packets, bytes) = match side {
            Side::Source => (&n.packets_in_from_source, &n.bytes_in_from_source),
            Side::Destination => (&n.packets_in_from_destination, &n.bytes_in_from_destination),
        };
        packets.inc();
        bytes.add(len as u64);
    }

    /// A packet the NAT sent on: towards the destination (source rewritten) or
    /// back to the source (destination rewritten), in AWS's metric names.
    fn count_translated(&self, side: Side, len: usize) {
        let n = &self.counters.nat;
        let (packets, bytes) = match side {
            Side::Source => (&n.packets_out_to_destination, &n.bytes_out_to_destination),
            Side::Destination => (&n.packets_out_to_source, &n.bytes_out_to_source),
        };
        packets.inc();
        bytes.add(len as u64);
    }

    /// The internet gateway's stateless 1:1 NAT (addresses only; ICMP errors
    /// get their quoted packet translated too).
    pub(super) fn static_nat(&self, pkt: &mut PacketBuf, m: &mut Meta, side: Side, addr: [u8; 4], delta: Delta) {
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
                    set_end(m, side, addr);
                    return;
                }
            }
        }
        // ICMP has no pseudo-header: an address change does not touch it.
        let kind = match m.rewrite_kind() {
            L4Kind::IcmpQuery => L4Kind::None,
            k => k,
        };
        rewrite::apply(pkt.bytes_mut(), kind, side, addr, delta, None, csum);
        set_end(m, side, addr);
    }

    /// Outbound through NAT gateway `n`: translate the source, or answer why not.
    pub(super) fn nat_out(
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
        self.count_arrival(Side::Source, pkt.len());
        let key = match m.l4 {
            // A fragmented ICMP error cannot be checked or translated piecewise.
            L4::Icmp { kind, .. } if m.is_fragment && icmpv4::is_error(kind) => {
                return Err(self.drop(DropReason::Fragment));
            }
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => {
                FlowKey { src: m.src, dst: m.dst, sport, dport, proto: m.proto, zone: m.zone }
            }
            L4::Icmp { kind, ident, .. } if NatGateway::opens_icmp_session(kind) => {
                FlowKey { src: m.src, dst: m.dst, sport: ident, dport: ident, proto: m.proto, zone: m.zone }
            }
            L4::Icmp { kind, .. } if icmpv4::is_error(kind) => {
                return self.icmp_error_through(nat, pkt, m, Dir::Original);
            }
            L4::Icmp { .. } => return Err(self.drop(DropReason::NatIcmpNotQuery)),
            L4::Opaque => return Err(self.drop(DropReason::NatUnsupportedProtocol)),
        };
        let tcp_flags = m.tcp_flags();
        match nat.outbound(now.secs(), &key, tcp_flags, pkt.len()) {
            Ok(t) => {
                self.trace_nat(n, Dir::Original, key, t.created);
                self.note("NAT gateway", || {
                    let how = if t.created { "new mapping" } else { "existing session" };
                    let ext = std::net::Ipv4Addr::from(t.rewrite.addr);
                    format!("{}: {how}, source {}:{} -> {ext}:{}", nat.name, key.src_addr(), key.sport, t.rewrite.port)
                });
                self.translate(pkt, m, &t, Side::Source);
                Ok(())
            }
            Err(e) => {
                self.note("NAT gateway", || format!("{}: no translation ({e:?})", nat.name));
                Err(self.nat_refused(now, topo, n, nat, ingress, pkt, m, e))
            }
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
                    && !m.is_fragment
                    && matches!(m.l4, L4::Tcp { flags: f, .. } if f & flags::RST == 0)
                {
                    super::reply::tcp_reset(pkt, self.next_ident());
                    self.counters.generated.tcp_rst.inc();
                    self.counters.count_drop(DropReason::NatNotSyn);
                    return Action::Reply { egress: ingress, cause: DropReason::NatNotSyn };
                }
                DropReason::NatNotSyn
            }
            NatError::NoSession => DropReason::NatNoSession,
            NatError::Filtered => DropReason::NatFiltered,
            NatError::NotQuery => DropReason::NatIcmpNotQuery,
            NatError::PortsExhausted | NatError::SubscriberLimit | NatError::HostShare | NatError::TableFull => {
                let reason = match e {
                    NatError::PortsExhausted => DropReason::NatPortsExhausted,
                    NatError::SubscriberLimit => DropReason::NatSubscriberLimit,
                    NatError::HostShare => DropReason::NatHostShare,
                    _ => DropReason::NatTableFull,
                };
                // The host got no port: AWS's ErrorPortAllocation.
                if matches!(e, NatError::PortsExhausted | NatError::HostShare) {
                    self.counters.nat.error_port_allocation.inc();
                }
                let code = match nat.config().exhaustion_reply {
                    ExhaustionReply::AdminProhibited => Some(icmpv4::unreachable::ADMIN_PROHIBITED),
                    ExhaustionReply::HostUnreachable => Some(icmpv4::unreachable::HOST),
                    ExhaustionReply::Silent => None,
                };
                let from = topo.nat_gateways.get(usize::from(n)).map_or([0; 4], |i| i.private_ip.octets());
                return match code {
                    Some(code) => self.unreachable_from(now, ingress, pkt, m, from, reason, code),
                    None => self.drop(reason),
                };
            }
        };
        self.drop(reason)
    }

    /// Inbound through NAT gateway `n`: translate the destination back.
    pub(super) fn nat_in(
        &self,
        n: NatId,
        ingress: IfId,
        pkt: &mut PacketBuf,
        m: &mut Meta,
        now: Timestamp,
    ) -> Result<(), Action> {
        let Some(nat) = self.gw.nats.get(usize::from(n)) else {
            return Err(self.drop(DropReason::NoRoute));
        };
        self.count_arrival(Side::Destination, pkt.len());
        let key = match m.l4 {
            L4::Icmp { kind, .. } if m.is_fragment && icmpv4::is_error(kind) => {
                return Err(self.drop(DropReason::Fragment));
            }
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => {
                FlowKey { src: m.src, dst: m.dst, sport, dport, proto: m.proto, zone: m.zone }
            }
            L4::Icmp { kind: icmpv4::kind::ECHO_REPLY | icmpv4::kind::TIMESTAMP_REPLY, ident, .. } => {
                FlowKey { src: m.src, dst: m.dst, sport: ident, dport: ident, proto: m.proto, zone: m.zone }
            }
            L4::Icmp { kind, .. } if icmpv4::is_error(kind) => {
                return self.icmp_error_through(nat, pkt, m, Dir::Reply);
            }
            _ => return Err(self.drop(DropReason::NatNoSession)),
        };
        let tcp_flags = m.tcp_flags();
        match nat.inbound(now.secs(), &key, tcp_flags, pkt.len()) {
            Ok(t) => {
                self.trace_nat(n, Dir::Reply, key, t.created);
                self.note("NAT gateway", || {
                    let how = if t.created { "new session (the filter lets it in)" } else { "the session's reply" };
                    let to = std::net::Ipv4Addr::from(t.rewrite.addr);
                    format!(
                        "{}: {how}, destination {}:{} -> {to}:{}",
                        nat.name,
                        key.dst_addr(),
                        key.dport,
                        t.rewrite.port
                    )
                });
                self.translate(pkt, m, &t, Side::Destination);
                Ok(())
            }
            Err(NatError::Filtered) => {
                self.note("NAT gateway", || format!("{}: the mapping's filter refuses {}", nat.name, key.src_addr()));
                Err(self.drop(DropReason::NatFiltered))
            }
            Err(_) => {
                // RFC 5382 REQ-4: an unsolicited SYN may get a delayed answer.
                if tcp_flags & (flags::SYN | flags::ACK) == flags::SYN && !m.is_fragment {
                    nat.defer_syn(now.secs(), &key, ingress, pkt.bytes());
                }
                Err(self.drop(DropReason::NatNoSession))
            }
        }
    }

    /// An ICMP error travelling in `dir` about a NAT session (RFC 5508 REQ-3,
    /// REQ-4, REQ-5): translate it, or drop it if it is about nothing we know.
    /// It never refreshes or ends the session (REQ-6, RFC 4787 REQ-12).
    fn icmp_error_through(&self, nat: &NatGateway, pkt: &mut PacketBuf, m: &mut Meta, dir: Dir) -> Result<(), Action> {
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
        let Some((session, found)) = nat.session_for_error(&q.key.in_zone(m.zone).reply()) else {
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
        icmp_error::translate(b, &q, side, rw.addr, rw.addr_delta, Some((rw.port, rw.port_delta)));
        set_end(m, side, rw.addr);
        self.counters.nat.icmp_errors_translated.inc();
        self.count_translated(side, pkt.len());
        Ok(())
    }
}

fn set_end(m: &mut Meta, side: Side, addr: [u8; 4]) {
    match side {
        Side::Source => m.src = u32::from_be_bytes(addr),
        Side::Destination => m.dst = u32::from_be_bytes(addr),
    }
}
