//! A worker's flow cache: the whole forwarding decision of a flow, so that
//! its next packets skip the walk.
//!
//! The walk (source check, TTL, route tables, network ACLs, the internet
//! gateway, the NAT gateway, egress) depends on the topology and on the
//! packet's ingress and 5-tuple only, apart from the NAT session's state and
//! the packet's size. So when a TCP or UDP packet (not a fragment, not a SYN)
//! is forwarded, its ingress and 5-tuple and the outcome are remembered: the
//! egress, its MTU, whether the TTL is decremented, the addresses and ports
//! the packet left with, the checksum deltas from the ones it came with, and
//! the NAT session it went through (if any). A later packet of the flow with
//! a TTL to spare and a size that fits is rewritten from the entry; the
//! session is carried exactly as a table hit would carry it
//! ([`crate::nat::NatGateway::carry`]), and a session that expired or was
//! replaced sends the packet down the walk again.
//!
//! Each worker has its own cache (no sharing, no locks), direct-mapped and of
//! fixed size, allocated with the pipeline. It is emptied when the topology
//! changes (routes, ACLs, NAT gateways). The slot index hashes the key with a
//! per-cache random seed: outsiders choose part of the key, and the worst
//! they can do is make packets miss, which is the walk every first packet
//! takes anyway. This is the idea of VPP's and Open vSwitch's flow caches.

use super::IfId;
use crate::conntrack::{Dir, Session};
use crate::route::NatId;
use crate::wire::checksum::Delta;
use crate::wire::ipv4::protocol;
use crate::wire::{Ipv4Packet, TcpPacket, UdpPacket};
use rand::RngExt;
use rand::rngs::StdRng;
use std::sync::Arc;

/// Slots per worker (a power of two): key, decision and session pointer fit
/// one 64-byte cache line, 256 KiB in all.
pub const SLOTS: usize = 4096;
/// Sessions whose last reference an evicted slot held, freed at the next
/// wake-up rather than on the packet path.
const RETIRED: usize = 256;

/// What identifies a flow to the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheKey {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub ingress: IfId,
    pub proto: u8,
}

/// The outcome of the walk for a flow.
#[derive(Clone, Copy, Debug, Default)]
pub struct Decision {
    pub egress: IfId,
    /// The egress MTU: a larger packet takes the walk (fragmentation, ICMP 3/4).
    pub mtu: u16,
    /// How many hops the walk decrements the TTL by: 0 (switched inside a
    /// subnet), 1 (the VPC router) or 2 (the router and a NAT gateway).
    pub ttl: u8,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    /// IPv4 header checksum: addresses and TTL.
    pub ip_delta: Delta,
    /// Transport checksum, complete: addresses (pseudo-header) and ports.
    pub l4_delta: Delta,
    /// Transport checksum left to offload: the pseudo-header's addresses only.
    pub l4_partial_delta: Delta,
}

/// A cached flow's NAT session, as a hit finds it.
#[derive(Clone, Copy, Debug)]
pub struct ThroughRef<'a> {
    pub nat: NatId,
    pub dir: Dir,
    pub session: &'a Session,
}

/// A NAT session a cached flow goes through.
#[derive(Clone, Debug)]
pub struct Through {
    pub nat: NatId,
    pub dir: Dir,
    pub session: Arc<Session>,
}

impl Decision {
    /// The decision the walk made for a flow whose packet `key` arrived with
    /// TTL `ttl_in` and left as `out` through `egress`. `None` if `out` is not
    /// a TCP or UDP packet with its transport header (which the walk ensures).
    pub fn learn(key: &CacheKey, ttl_in: u8, egress: IfId, mtu: u16, out: &[u8]) -> Option<Decision> {
        let ip = Ipv4Packet::new_checked(out).ok()?;
        let p = ip.payload();
        let (sport, dport) = match key.proto {
            protocol::TCP => TcpPacket::new_checked(p).map(|t| (t.src_port(), t.dst_port())).ok()?,
            protocol::UDP => UdpPacket::new_checked(p).map(|u| (u.src_port(), u.dst_port())).ok()?,
            _ => return None,
        };
        let (src, dst) = (ip.src_addr().octets(), ip.dst_addr().octets());
        let ttl = match ttl_in.checked_sub(ip.ttl()) {
            Some(n @ 0..=2) => n,
            _ => return None,
        };
        let addrs = Delta::ZERO.addr(key.src.to_be_bytes(), src).addr(key.dst.to_be_bytes(), dst);
        // The TTL shares a word with the protocol; n less is the same change
        // whatever the TTL was (above n, which the fast path checks).
        let ttl_delta =
            Delta::ZERO.word(u16::from_be_bytes([ttl_in, key.proto]), u16::from_be_bytes([ttl_in - ttl, key.proto]));
        Some(Decision {
            egress,
            mtu,
            ttl,
            src,
            dst,
            sport,
            dport,
            ip_delta: addrs + ttl_delta,
            l4_delta: addrs.word(key.sport, sport).word(key.dport, dport),
            l4_partial_delta: addrs,
        })
    }

    /// Rewrites a packet of the flow as the walk would have. The packet was
    /// validated with its transport header, and its key is the cached one.
    #[inline]
    pub fn apply(&self, pkt: &mut super::PacketBuf) {
        let partial = pkt.offload.csum.is_some();
        let mut ip = Ipv4Packet::new_unchecked(pkt.bytes_mut());
        if self.ttl > 0 {
            ip.set_ttl(ip.ttl().wrapping_sub(self.ttl));
        }
        ip.set_src(self.src);
        ip.set_dst(self.dst);
        let c = self.ip_delta.apply(ip.checksum());
        ip.set_checksum(c);
        let proto = ip.protocol();
        let payload = ip.payload_mut();
        // The transport checksum: the pseudo-header sum only when left to
        // offload; else complete, where a UDP checksum of 0 stays 0.
        let l4_sum = |stored: u16, udp: bool| match (partial, udp) {
            (true, _) => self.l4_partial_delta.apply_partial(stored),
            (false, true) => self.l4_delta.apply_udp(stored),
            (false, false) => self.l4_delta.apply(stored),
        };
        if proto == protocol::TCP {
            let mut t = TcpPacket::new_unchecked(payload);
            t.set_src_port(self.sport);
            t.set_dst_port(self.dport);
            t.set_checksum(l4_sum(t.checksum(), false));
        } else {
            let mut u = UdpPacket::new_unchecked(payload);
            u.set_src_port(self.sport);
            u.set_dst_port(self.dport);
            u.set_checksum(l4_sum(u.checksum(), true));
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Slot {
    key: CacheKey,
    valid: bool,
    /// A [`Through`] kept as its parts, so that the slot fits a cache line:
    /// the NAT gateway and direction, and the session below.
    nat: NatId,
    nat_dir: Dir,
    /// How the flow's packets travel in its tracked entry.
    tracked_dir: Dir,
    decision: Decision,
    session: Option<Arc<Session>>,
    /// The flow's entry in the security groups' tracker.
    tracked: Option<Arc<Session>>,
}

/// One worker's flow cache.
#[derive(Debug)]
pub struct FlowCache {
    slots: Box<[Slot]>,
    /// Per slot, where its flow's flow log records are (beside the slots,
    /// which fill their cache line).
    logs: Box<[crate::flowlog::Refs]>,
    seed: [u64; 2],
    retired: Vec<Arc<Session>>,
}

/// A cache entry found for a packet.
pub struct Hit<'a> {
    pub decision: &'a Decision,
    pub through: Option<ThroughRef<'a>>,
    pub tracked: Option<(&'a Session, Dir)>,
    slot: usize,
}

impl Default for FlowCache {
    fn default() -> FlowCache {
        FlowCache::new()
    }
}

impl FlowCache {
    pub fn new() -> FlowCache {
        let mut rng: StdRng = rand::make_rng();
        FlowCache {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            logs: vec![crate::flowlog::Refs::default(); SLOTS].into_boxed_slice(),
            seed: [rng.random(), rng.random()],
            retired: Vec::with_capacity(RETIRED),
        }
    }

    #[inline]
    fn index(&self, k: &CacheKey) -> usize {
        let a = ((u64::from(k.src) << 32) | u64::from(k.dst)) ^ self.seed[0];
        let b = ((u64::from(k.sport) << 48) | (u64::from(k.dport) << 32) | (u64::from(k.proto) << 16))
            ^ u64::from(k.ingress)
            ^ self.seed[1];
        // Two multiply-xor rounds: every key bit reaches the top bits used.
        let h = (a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        (h >> 40) as usize & (SLOTS - 1)
    }

    /// The entry for `key`, if cached.
    #[inline]
    pub fn get(&self, key: &CacheKey) -> Option<Hit<'_>> {
        let i = self.index(key);
        let s = &self.slots[i];
        if s.valid && s.key == *key {
            let tracked = s.tracked.as_deref().map(|t| (t, s.tracked_dir));
            let through = s.session.as_deref().map(|session| ThroughRef { nat: s.nat, dir: s.nat_dir, session });
            Some(Hit { decision: &s.decision, through, tracked, slot: i })
        } else {
            None
        }
    }

    /// Where the flow in `slot` has its flow log records.
    #[inline]
    pub fn flow_log_refs(&self, slot: usize) -> &crate::flowlog::Refs {
        &self.logs[slot]
    }

    pub fn set_flow_log_refs(&mut self, slot: usize, refs: crate::flowlog::Refs) {
        self.logs[slot] = refs;
    }

    /// Forgets the entry a hit came from (its session is gone).
    pub fn invalidate(&mut self, slot: usize) {
        self.logs[slot] = crate::flowlog::Refs::default();
        let s = &mut self.slots[slot];
        s.valid = false;
        let (through, tracked) = (s.session.take(), s.tracked.take());
        if let Some(t) = through {
            self.retire(t);
        }
        if let Some(t) = tracked {
            self.retire(t);
        }
    }

    /// Remembers the decision for `key`, replacing whatever held its slot.
    pub fn insert(
        &mut self,
        key: CacheKey,
        decision: Decision,
        through: Option<Through>,
        tracked: Option<(Arc<Session>, Dir)>,
    ) {
        let i = self.index(&key);
        let (tracked, tracked_dir) = match tracked {
            Some((s, d)) => (Some(s), d),
            None => (None, Dir::Original),
        };
        let (session, nat, nat_dir) = match through {
            Some(t) => (Some(t.session), t.nat, t.dir),
            None => (None, 0, Dir::Original),
        };
        let slot = Slot { key, valid: true, nat, nat_dir, tracked_dir, decision, session, tracked };
        self.logs[i] = crate::flowlog::Refs::default();
        let old = std::mem::replace(&mut self.slots[i], slot);
        if let Some(t) = old.session {
            self.retire(t);
        }
        if let Some(t) = old.tracked {
            self.retire(t);
        }
    }

    /// Keeps a session whose last reference this was until [`Self::collect`].
    fn retire(&mut self, s: Arc<Session>) {
        if Arc::strong_count(&s) == 1 && self.retired.len() < self.retired.capacity() {
            self.retired.push(s);
        }
        // Otherwise only the count drops (or, with the retired list full, the
        // session is freed here: bounded, and only after RETIRED evictions
        // within one wake-up).
    }

    /// Frees retired sessions (the pipeline does at each wake-up).
    pub fn collect(&mut self) {
        self.retired.clear();
    }

    /// Forgets every entry (the topology changed).
    pub fn clear(&mut self) {
        for s in self.slots.iter_mut() {
            s.valid = false;
            s.session = None;
            s.tracked = None;
        }
        self.retired.clear();
    }

    /// True when no slot is in use.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.slots.iter().all(|s| !s.valid)
    }
}

impl Hit<'_> {
    pub fn slot(&self) -> usize {
        self.slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sport: u16) -> CacheKey {
        CacheKey { src: 0x0a00_010a, dst: 0xc633_640a, sport, dport: 443, ingress: 1, proto: 6 }
    }

    #[test]
    fn insert_get_invalidate() {
        let mut c = FlowCache::new();
        assert!(c.get(&key(1)).is_none());
        c.insert(key(1), Decision { egress: 3, ..Decision::default() }, None, None);
        let h = c.get(&key(1)).map(|h| (h.decision.egress, h.slot()));
        let Some((3, slot)) = h else { panic!("cached entry not found: {h:?}") };
        // Another flow does not see it, even if it shares the slot.
        assert!(c.get(&key(2)).is_none() || c.index(&key(2)) != slot);
        c.invalidate(slot);
        assert!(c.get(&key(1)).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn evicted_last_reference_waits_for_collect() {
        let mut c = FlowCache::new();
        let s = Arc::new(Session::new(
            crate::conntrack::FlowKey::new(6, [10, 0, 1, 10].into(), 1, [198, 51, 100, 10].into(), 443),
            ([203, 0, 113, 5], 1024),
            Dir::Original,
            0,
        ));
        let weak = Arc::downgrade(&s);
        c.insert(key(1), Decision::default(), Some(Through { nat: 0, dir: Dir::Original, session: s }), None);
        let slot = c.index(&key(1));
        c.invalidate(slot);
        assert!(weak.upgrade().is_some(), "freed on the packet path");
        c.collect();
        assert!(weak.upgrade().is_none(), "never freed");
    }

    #[test]
    fn a_slot_fits_a_cache_line() {
        assert!(std::mem::size_of::<Slot>() <= 64, "{}", std::mem::size_of::<Slot>());
    }

    #[test]
    fn seeds_differ_between_caches() {
        let (a, b) = (FlowCache::new(), FlowCache::new());
        assert_ne!(a.seed, b.seed);
    }
}
