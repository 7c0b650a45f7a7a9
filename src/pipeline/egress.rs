//! Step 7: the way out. MSS clamping of TCP SYNs, the egress MTU (ICMP
//! "fragmentation needed" with the next-hop MTU for DF packets, RFC 1191; or
//! fragmentation, RFC 791), and every message the gateway generates.

use super::outbox::Pending;
use super::topology::IfKind;
use super::{Action, DropReason, IfId, L4, Meta, Offload, PacketBuf, Pipeline, reply};
use crate::clock::Timestamp;
use crate::nat::DeferredSyn;
use crate::wire::checksum::{self, Delta};
use crate::wire::icmpv4;
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::tcp::{TcpPacket, flags};

impl Pipeline {
    pub(super) fn next_ident(&self) -> u16 {
        let i = self.ident.get().wrapping_add(1);
        self.ident.set(i);
        i
    }

    #[inline]
    pub(super) fn drop(&self, r: DropReason) -> Action {
        self.counters.count_drop(r);
        self.note("verdict", || format!("dropped ({r})"));
        Action::Drop(r)
    }

    /// The gateway's own address facing `ingress`: the subnet router of a
    /// host's subnet, or the internet-side address. Source of its ICMP errors.
    fn router_for(&self, ingress: IfId) -> [u8; 4] {
        let t = &self.topo;
        match t.interfaces.get(usize::from(ingress)).map(|i| i.kind) {
            Some(IfKind::Host(h)) => t
                .hosts
                .get(usize::from(h))
                .and_then(|h| t.subnets.get(usize::from(h.subnet)))
                .map_or([0; 4], |s| s.router().octets()),
            Some(IfKind::Internet) => t.internet.as_ref().map_or([0; 4], |i| i.gateway_ip.octets()),
            // The VPC router's own address (base + 1).
            Some(IfKind::Dns | IfKind::Endpoint(_)) => t.vpc_cidrs.first().map_or([0; 4], |c| c.nth(1).octets()),
            None => [0; 4],
        }
    }

    /// This packet's decision is not for the flow cache.
    pub(super) fn uncacheable(&self) {
        let mut trace = self.trace.get();
        trace.uncacheable = true;
        self.trace.set(trace);
    }

    /// Sends the packet out of `egress`, after MSS clamping and the MTU check.
    #[inline]
    pub(super) fn forward(&self, now: Timestamp, egress: IfId, ingress: IfId, pkt: &mut PacketBuf, m: &Meta) -> Action {
        if self.topo.interfaces.get(usize::from(egress)).is_some_and(|i| i.detached) {
            self.note("interface", || format!("{} is detached from every instance", self.if_name(egress)));
            return self.drop(DropReason::EniDetached);
        }
        if let Err(a) = self.sg_arrive(now, egress, pkt, m) {
            return a;
        }
        self.deliver(now, egress, ingress, pkt, m)
    }

    /// [`Pipeline::forward`] without the receiver's security groups (traffic
    /// they do not filter, such as the VPC resolver's).
    #[inline]
    pub(super) fn deliver(&self, now: Timestamp, egress: IfId, ingress: IfId, pkt: &mut PacketBuf, m: &Meta) -> Action {
        let topo = &self.topo;
        let mtu = topo.interfaces.get(usize::from(egress)).map_or(1500, |i| usize::from(i.mtu));
        if let L4::Tcp { flags: f, .. } = m.l4
            && f & flags::SYN != 0
            && !m.later_fragment
            && self.gw.settings.mss_clamp
        {
            let in_mtu = topo.interfaces.get(usize::from(ingress)).map_or(mtu, |i| usize::from(i.mtu));
            if let Some(before) = clamp_mss(pkt, mtu.min(in_mtu)) {
                self.note("MSS", || format!("SYN's MSS {before} lowered to {}", mtu.min(in_mtu) - 40));
            }
        }
        if !too_big(pkt, mtu) {
            self.note("verdict", || format!("forwarded out of interface {}", self.if_name(egress)));
            return Action::Forward(egress);
        }
        self.note("MTU", || format!("{} bytes do not fit the MTU {mtu} of {}", pkt.len(), self.if_name(egress)));
        // Fragmented or refused: sizes vary within a flow, so this is no
        // decision to remember for it.
        self.uncacheable();
        if m.dont_frag || pkt.offload.gso.is_some() {
            return self.frag_needed(now, ingress, pkt, m, mtu);
        }
        self.fragment_out(egress, pkt, mtu)
    }

    /// ICMP 3/4 with the next-hop MTU (RFC 1191 §4), quoting the packet as it
    /// arrived (before any translation), so the sender's stack recognises it.
    fn frag_needed(&self, now: Timestamp, ingress: IfId, pkt: &mut PacketBuf, m: &Meta, mtu: usize) -> Action {
        if self.head_len == 0 || !self.may_send_error(now, m) {
            return self.drop(DropReason::FragNeeded);
        }
        let n = self.head_len;
        pkt.buffer_mut()[..n].copy_from_slice(&self.head[..n]);
        pkt.set_len(n);
        pkt.offload = Offload::default();
        reply::icmp_error(
            pkt,
            self.router_for(ingress),
            icmpv4::kind::DEST_UNREACHABLE,
            icmpv4::unreachable::FRAG_NEEDED,
            mtu as u32,
            self.next_ident(),
        );
        self.counters.generated.icmp_frag_needed.inc();
        self.counters.count_drop(DropReason::FragNeeded);
        Action::Reply { egress: ingress, cause: DropReason::FragNeeded }
    }

    /// Splits a packet without DF into fragments that fit `mtu` (RFC 791):
    /// the first stays in `pkt`, the others go to the outbox. Later
    /// fragments carry a plain 20-byte header (options are not copied).
    fn fragment_out(&self, egress: IfId, pkt: &mut PacketBuf, mtu: usize) -> Action {
        // An offloaded checksum must be finished before the payload is split.
        if let Some(c) = pkt.offload.csum {
            let ihl = Ipv4Packet::new_unchecked(pkt.bytes()).header_len();
            if !checksum::complete_partial(pkt.bytes_mut(), usize::from(c.start).max(ihl), usize::from(c.offset)) {
                return self.drop(DropReason::Fragment);
            }
            pkt.offload.csum = None;
        }
        let ip = Ipv4Packet::new_unchecked(pkt.bytes());
        let ihl = ip.header_len();
        let total = usize::from(ip.total_len());
        let base_off = usize::from(ip.frag_offset());
        let more = ip.more_frags();
        let first_chunk = (mtu.saturating_sub(ihl)) / 8 * 8;
        let chunk = (mtu - ipv4::HEADER_LEN) / 8 * 8;
        if first_chunk == 0 || chunk == 0 {
            return self.drop(DropReason::Fragment);
        }
        let payload = total - ihl;
        let mut off = first_chunk;
        let mut overflow = false;
        {
            let mut outbox = self.outbox.borrow_mut();
            let src = pkt.bytes();
            while off < payload {
                let n = chunk.min(payload - off);
                let last = off + n == payload;
                let ok = outbox.push_with(Pending::Send(egress), |slot| {
                    if ipv4::HEADER_LEN + n > slot.capacity() {
                        return false;
                    }
                    let b = slot.buffer_mut();
                    b[..ipv4::HEADER_LEN].copy_from_slice(&src[..ipv4::HEADER_LEN]);
                    b[ipv4::HEADER_LEN..ipv4::HEADER_LEN + n].copy_from_slice(&src[ihl + off..ihl + off + n]);
                    slot.set_len(ipv4::HEADER_LEN + n);
                    let mut f = Ipv4Packet::new_unchecked(slot.bytes_mut());
                    f.set_version_and_header_len(ipv4::HEADER_LEN);
                    f.set_total_len((ipv4::HEADER_LEN + n) as u16);
                    let mf = if !last || more { 0x2000 } else { 0 };
                    f.set_flags_frag(mf | ((base_off + off) / 8) as u16);
                    f.fill_checksum();
                    true
                });
                overflow |= !ok;
                off += n;
            }
        }
        if overflow {
            // The datagram cannot be delivered whole: drop the rest too.
            return self.drop(DropReason::OutputOverflow);
        }
        pkt.set_len(ihl + first_chunk);
        let mut f = Ipv4Packet::new_unchecked(pkt.bytes_mut());
        f.set_total_len((ihl + first_chunk) as u16);
        f.set_flags_frag(0x2000 | (base_off / 8) as u16);
        f.fill_checksum();
        Action::Forward(egress)
    }

    /// True when an ICMP error may be sent about this packet (RFC 1812
    /// §4.3.2.7: never about an ICMP error or a later fragment) and the rate
    /// limit allows one.
    pub(super) fn may_send_error(&self, now: Timestamp, m: &Meta) -> bool {
        if m.later_fragment {
            return false;
        }
        if let L4::Icmp { kind, .. } = m.l4
            && !icmpv4::is_query(kind)
        {
            return false;
        }
        self.token(now)
    }

    fn token(&self, now: Timestamp) -> bool {
        let mut limiter = self.limiter.get();
        let allowed = limiter.allow(now);
        self.limiter.set(limiter);
        if !allowed {
            self.counters.generated.icmp_rate_limited.inc();
        }
        allowed
    }

    pub(super) fn time_exceeded(&self, now: Timestamp, ingress: IfId, pkt: &mut PacketBuf, m: &Meta) -> Action {
        self.time_exceeded_from(now, ingress, pkt, m, self.router_for(ingress))
    }

    /// ICMP Time Exceeded from address `from` (a NAT gateway's, as a hop).
    pub(super) fn time_exceeded_from(
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
        reply::icmp_error(pkt, from, icmpv4::kind::TIME_EXCEEDED, 0, 0, self.next_ident());
        self.counters.generated.icmp_time_exceeded.inc();
        self.counters.count_drop(DropReason::TtlExpired);
        Action::Reply { egress: ingress, cause: DropReason::TtlExpired }
    }

    /// ICMP destination unreachable from the router facing `ingress`.
    pub(super) fn unreachable(
        &self,
        now: Timestamp,
        ingress: IfId,
        pkt: &mut PacketBuf,
        m: &Meta,
        reason: DropReason,
        code: u8,
    ) -> Action {
        self.unreachable_from(now, ingress, pkt, m, self.router_for(ingress), reason, code)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn unreachable_from(
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
        reply::icmp_error(pkt, from, icmpv4::kind::DEST_UNREACHABLE, code, 0, self.next_ident());
        self.counters.generated.icmp_unreachable.inc();
        self.counters.count_drop(reason);
        Action::Reply { egress: ingress, cause: reason }
    }

    /// The delayed answer to an unsolicited SYN (RFC 5382 REQ-4): ICMP 3/3
    /// from the address it was sent to, into the outbox.
    pub(super) fn answer_syn(&self, now: Timestamp, d: &DeferredSyn) {
        if !self.token(now) {
            return;
        }
        let from = d.key.dst.to_be_bytes();
        let ident = self.next_ident();
        let queued = self.outbox.borrow_mut().push_with(Pending::Send(d.ingress), |slot| {
            let head = d.head();
            slot.buffer_mut()[..head.len()].copy_from_slice(head);
            slot.set_len(head.len());
            reply::icmp_error(slot, from, icmpv4::kind::DEST_UNREACHABLE, icmpv4::unreachable::PORT, 0, ident);
            true
        });
        if queued {
            self.counters.generated.icmp_unreachable.inc();
        } else {
            self.counters.count_drop(DropReason::OutputOverflow);
        }
    }
}

/// True when the packet (or each segment of a GSO frame) exceeds `mtu`.
#[inline]
pub(super) fn too_big(pkt: &PacketBuf, mtu: usize) -> bool {
    match pkt.offload.gso {
        Some(g) => usize::from(g.hdr_len) + usize::from(g.size) > mtu,
        None => pkt.len() > mtu,
    }
}

/// Lowers the MSS option of a SYN to what `mtu` allows (mtu - 40), with an
/// incremental checksum update (none needed for an offloaded checksum: the
/// option is not in the pseudo-header).
/// Lowers a SYN's MSS option to what `mtu` allows; the MSS before, if it did.
fn clamp_mss(pkt: &mut PacketBuf, mtu: usize) -> Option<u16> {
    let limit = mtu.saturating_sub(40).min(usize::from(u16::MAX)) as u16;
    let partial = pkt.offload.csum.is_some();
    let mut ip = Ipv4Packet::new_unchecked(pkt.bytes_mut());
    let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
    let (mss, at) = tcp.mss_option()?;
    if mss <= limit {
        return None;
    }
    tcp.set_u16_raw(at, limit);
    if !partial {
        let c = Delta::ZERO.word(mss, limit).apply(tcp.checksum());
        tcp.set_checksum(c);
    }
    Some(mss)
}
