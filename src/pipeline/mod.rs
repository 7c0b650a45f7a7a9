//! The packet pipeline: `process(now, ingress, &mut packet) -> Action`.
//!
//! No I/O, no clock, no allocation: the caller owns the buffer and the time.
//! The walk (see the crate documentation for the picture):
//!
//! 1. validate the IPv4 header once ([`parse`]); count and drop what is malformed;
//! 2. fragments: remember the first fragment's ports, give them to the later
//!    ones, keep early arrivals until their first fragment comes ([`frag`]);
//! 3. from a host: source/destination check, same-subnet delivery, or route;
//!    from the internet: the internet gateway's public addresses ([`walk`]);
//! 4. TTL: expire with ICMP Time Exceeded, else decrement once;
//! 5. route in the subnet's table; a target may be a host, the internet
//!    gateway (1:1 NAT of Elastic IPs), a NAT gateway (translate, then route on
//!    in the NAT gateway's own subnet), or a blackhole ([`nat_step`]);
//! 6. network ACLs wherever the packet crosses a subnet boundary;
//! 7. egress: MSS clamping, the egress MTU (ICMP 3/4, or fragmentation)
//!    ([`egress`]); forward, reply or drop with a reason.
//!
//! Besides the verdict, a packet may produce others (fragments, fragments
//! released from waiting) and timers may (delayed ICMP answers): they wait in
//! the [`outbox`] that the worker drains with [`Pipeline::next_pending`].

pub mod action;
pub mod buf;
pub mod capture;
pub mod coalesce;
pub mod counters;
pub mod egress;
pub mod flow_cache;
pub mod flow_logs;
pub mod frag;
pub mod groups;
pub mod live;
pub mod nat_step;
pub mod outbox;
pub mod record;
pub mod reply;
pub mod resolver;
pub mod topology;
pub mod transit;
pub mod walk;

pub use action::{Action, DropReason};
pub use buf::{Offload, PacketBuf};
pub use counters::{Counters, Totals};
pub use outbox::Pending;
pub use topology::{IfId, IfKind, Topology};

use crate::acl::AclPacket;
use crate::clock::Timestamp;
use crate::conntrack::{Dir, FlowKey, Session, Timeouts, Tracker};
use crate::nat::NatGateway;
use crate::nat::rewrite::{L4Kind, Side};
use crate::route::NatId;
use crate::wire::icmpv4::{self, Icmpv4Packet};
use crate::wire::ipv4::protocol;
use crate::wire::{Ipv4Packet, TcpPacket, UdpPacket, WireError};
use arc_swap::ArcSwap;
use flow_cache::{CacheKey, Decision, FlowCache, Through};
use frag::{FirstFields, FragKey, FragLimits, FragTable, Later};
use outbox::Outbox;
use parking_lot::Mutex;
use reply::RateLimiter;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// Bytes of a packet's head kept when it may be too big for its egress: the
/// quote of an ICMP "fragmentation needed" (IP header and TCP header at least).
const HEAD: usize = 128;
/// Packets one worker may have waiting in its outbox.
const OUTBOX: usize = 64;

/// Knobs of the pipeline that are not part of the VPC.
#[derive(Clone, Debug)]
pub struct Settings {
    /// ICMP errors per second each worker may send, and the burst.
    pub icmp_rate: u32,
    pub icmp_burst: u32,
    /// Lower the MSS of TCP SYNs to what the path's MTUs allow.
    pub mss_clamp: bool,
    pub frag: FragLimits,
    /// The benchmark's ceiling: move packets between devices by destination
    /// address only (a host's address, else the internet side). No NAT, no
    /// ACL, no TTL: what any TUN forwarder must at least do.
    pub route_only: bool,
    /// Remember each flow's forwarding decision in the worker's
    /// [`flow_cache`], so that its next packets skip the walk.
    pub flow_cache: bool,
    /// Flows the security groups' tracker holds at most.
    pub max_tracked_flows: usize,
    /// VPC Flow Logs' aggregation interval in seconds; None: no flow logs.
    pub flow_log_interval: Option<u32>,
    /// Interfaces' own connection tracking timeouts, the tracker's profiles
    /// 1, 2, ... (a host's `ct_profile`).
    pub conntrack_timeouts: Vec<Timeouts>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            icmp_rate: 1000,
            icmp_burst: 100,
            mss_clamp: true,
            frag: FragLimits::default(),
            route_only: false,
            flow_cache: true,
            max_tracked_flows: 1_000_000,
            flow_log_interval: None,
            conntrack_timeouts: Vec::new(),
        }
    }
}

/// State shared by all workers: the topology snapshot, the NAT gateways,
/// the fragment table.
#[derive(Debug)]
pub struct Gateway {
    topology: ArcSwap<Topology>,
    /// Topologies replaced but maybe still held by a worker: freed by the
    /// control plane ([`Gateway::collect_garbage`]), never on the packet path.
    graveyard: Mutex<Vec<Arc<Topology>>>,
    nats: Vec<Arc<NatGateway>>,
    /// Flows the security groups decided (see [`groups`]).
    tracker: Tracker,
    /// Flow log records the workers flushed, for the control plane's writer.
    flow_sink: crate::flowlog::Sink,
    /// `natgw trace --live`.
    live: live::Live,
    /// `natgw capture`.
    capture: capture::Capture,
    /// `natgw conntrack --events`.
    events: Arc<crate::conntrack::events::Hub>,
    frags: Mutex<FragTable>,
    pub settings: Settings,
}

impl Gateway {
    /// A gateway for `topology` whose NAT gateways are `nats`, in the
    /// topology's NAT gateway order.
    pub fn new(topology: Topology, nats: Vec<Arc<NatGateway>>, settings: Settings) -> Arc<Gateway> {
        let events = Arc::new(crate::conntrack::events::Hub::default());
        for n in &nats {
            n.attach_events(events.clone());
        }
        let mut tracker = Tracker::new(Timeouts::security_groups(), settings.max_tracked_flows)
            .with_profiles(&settings.conntrack_timeouts);
        tracker.attach_events(events.clone());
        Arc::new(Gateway {
            events,
            topology: ArcSwap::from_pointee(topology),
            graveyard: Mutex::new(Vec::new()),
            nats,
            tracker,
            flow_sink: crate::flowlog::Sink::default(),
            live: live::Live::default(),
            capture: capture::Capture::default(),
            frags: Mutex::new(FragTable::new(settings.frag)),
            settings,
        })
    }

    /// The current topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.topology.load_full()
    }

    /// Swaps in a new topology; workers pick it up at their next wake-up.
    /// The old one is kept until no worker holds it (see `collect_garbage`),
    /// so a worker never frees a large table on the packet path.
    pub fn set_topology(&self, t: Topology) {
        let old = self.topology.swap(Arc::new(t));
        self.graveyard.lock().push(old);
    }

    /// Frees replaced topologies that no worker holds any more. The control
    /// plane calls this now and then; returns how many are still held.
    pub fn collect_garbage(&self) -> usize {
        let mut g = self.graveyard.lock();
        g.retain(|t| Arc::strong_count(t) > 1);
        g.len()
    }

    pub fn nats(&self) -> &[Arc<NatGateway>] {
        &self.nats
    }

    /// The flows security groups track.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Connection tracking events (`natgw conntrack --events`).
    pub fn events(&self) -> &crate::conntrack::events::Hub {
        &self.events
    }

    /// The live trace (`natgw trace --live`).
    pub fn live(&self) -> &live::Live {
        &self.live
    }

    /// The packet capture (`natgw capture`).
    pub fn capture(&self) -> &capture::Capture {
        &self.capture
    }

    /// Flow log records flushed by the workers.
    pub fn flow_sink(&self) -> &crate::flowlog::Sink {
        &self.flow_sink
    }

    /// Fragments waiting for their first fragment, and datagrams remembered.
    pub fn fragments(&self) -> (usize, usize) {
        let t = self.frags.lock();
        (t.held(), t.datagrams())
    }

    /// A pipeline for one worker, with its own counters.
    pub fn pipeline(self: &Arc<Gateway>) -> Pipeline {
        let topo = self.topology();
        let enis = topo.interfaces.len() + topo.nat_gateways.len();
        let counters = Arc::new(Counters::new(topo.interfaces.len()));
        let max_mtu = topo.interfaces.iter().map(|i| usize::from(i.mtu)).max().unwrap_or(1500);
        let slot = max_mtu.max(self.settings.frag.buffer_size);
        Pipeline {
            limiter: Cell::new(RateLimiter::new(self.settings.icmp_rate, self.settings.icmp_burst)),
            gw: self.clone(),
            min_mtu: min_mtu(&topo),
            topo,
            counters,
            ident: Cell::new(0),
            outbox: RefCell::new(Outbox::new(OUTBOX, slot)),
            head: [0; HEAD],
            head_len: 0,
            cache: FlowCache::new(),
            trace: Cell::new(Trace::default()),
            recording: false,
            record: RefCell::new(Vec::new()),
            flow_log: self.settings.flow_log_interval.map(|i| crate::flowlog::Table::new(enis, i)),
            captured: Vec::with_capacity(capture::SNAPLEN),
        }
    }
}

fn min_mtu(t: &Topology) -> usize {
    t.interfaces.iter().map(|i| usize::from(i.mtu)).min().unwrap_or(1500)
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
    outbox: RefCell<Outbox>,
    /// Smallest MTU of any interface: a packet no longer than this fits anywhere.
    min_mtu: usize,
    /// The head of the current packet as it arrived, when it might not fit its egress.
    head: [u8; HEAD],
    head_len: usize,
    cache: FlowCache,
    /// What the walk of the current packet did that its cache entry needs.
    trace: Cell<Trace>,
    /// Record each step of the walk ([`record`], `natgw trace`).
    recording: bool,
    record: RefCell<Vec<record::Hop>>,
    /// This worker's flow log records of the current interval ([`crate::flowlog`]).
    flow_log: Option<crate::flowlog::Table>,
    /// The head of the current packet as read, while a capture runs.
    captured: Vec<u8>,
}

/// Noted during the walk, for the flow cache.
#[derive(Clone, Copy, Debug, Default)]
struct Trace {
    /// The packet went through a NAT session: its gateway, direction and key.
    nat: Option<(NatId, Dir, FlowKey)>,
    /// The decision may not be cached: two NAT sessions (hairpinning), or a
    /// packet too big for its egress.
    uncacheable: bool,
    /// That NAT session was created by this packet.
    nat_created: bool,
    /// A security group or ACL refused the packet on its way into this host's interface.
    reject_at: Option<IfId>,
    /// What the security groups' steps found.
    sg: groups::SgNote,
}

/// What the flow cache's probe learnt about a packet it did not forward.
#[derive(Clone, Copy, Debug, Default)]
struct Probe {
    /// The cache key, for a packet whose decision may be cached (TCP or
    /// UDP, not a fragment, not a SYN): the walk remembers its decision.
    key: Option<CacheKey>,
    /// The IPv4 header checksum was verified: the parse need not sum it again.
    header_ok: bool,
}

/// What the validation step learnt about a packet.
#[derive(Clone, Copy, Debug)]
struct Meta {
    total: usize,
    proto: u8,
    src: u32,
    dst: u32,
    ttl: u8,
    dont_frag: bool,
    ident: u16,
    /// Not the first fragment: no transport header in this packet.
    later_fragment: bool,
    is_fragment: bool,
    l4: L4,
    /// The connection tracking zone of the VPC the packet is in (set by the
    /// walk once it knows: the sending host's, or the receiving one's for a
    /// packet from outside the VPCs).
    zone: u16,
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
    /// Another protocol, or a later fragment not placed yet.
    Opaque,
}

impl Meta {
    fn acl_packet(&self) -> AclPacket {
        let (dport, icmp) = match self.l4 {
            L4::Tcp { dport, .. } | L4::Udp { dport, .. } => (Some(dport), None),
            L4::Icmp { kind, code, .. } => (None, Some((kind, code))),
            L4::Opaque => (None, None),
        };
        AclPacket { proto: self.proto, src: self.src, dst: self.dst, dport, icmp }
    }

    /// What a rewrite may touch: a later fragment has no transport header.
    fn rewrite_kind(&self) -> L4Kind {
        if self.later_fragment {
            return L4Kind::None;
        }
        match self.l4 {
            L4::Tcp { .. } => L4Kind::Tcp,
            L4::Udp { .. } => L4Kind::Udp,
            L4::Icmp { kind, .. } if icmpv4::is_query(kind) => L4Kind::IcmpQuery,
            _ => L4Kind::None,
        }
    }

    /// Follows a port (or ICMP identifier) rewrite at one end.
    fn set_port(&mut self, side: crate::nat::Side, port: u16) {
        use crate::nat::Side;
        match (&mut self.l4, side) {
            (L4::Tcp { sport, .. } | L4::Udp { sport, .. }, Side::Source) => *sport = port,
            (L4::Tcp { dport, .. } | L4::Udp { dport, .. }, Side::Destination) => *dport = port,
            (L4::Icmp { ident, .. }, _) => *ident = port,
            _ => {}
        }
    }

    /// TCP flags, 0 for other protocols.
    fn tcp_flags(&self) -> u8 {
        if let L4::Tcp { flags, .. } = self.l4 { flags } else { 0 }
    }

    fn frag_key(&self, ingress: IfId) -> FragKey {
        FragKey { src: self.src, dst: self.dst, proto: self.proto, ident: self.ident, ifc: ingress }
    }

    fn first_fields(&self) -> Option<FirstFields> {
        match self.l4 {
            L4::Tcp { sport, dport, flags } => Some(FirstFields { sport, dport, extra: flags }),
            L4::Udp { sport, dport } => Some(FirstFields { sport, dport, extra: 0 }),
            L4::Icmp { kind, ident, .. } => Some(FirstFields { sport: ident, dport: ident, extra: kind }),
            L4::Opaque => None,
        }
    }

    fn place(&mut self, f: FirstFields) {
        self.l4 = match self.proto {
            protocol::TCP => L4::Tcp { sport: f.sport, dport: f.dport, flags: f.extra },
            protocol::UDP => L4::Udp { sport: f.sport, dport: f.dport },
            protocol::ICMP => L4::Icmp { kind: f.extra, code: 0, ident: f.sport },
            _ => L4::Opaque,
        };
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

/// Validates the IPv4 header and the transport header once. `header_ok`:
/// the flow cache's probe already verified the header checksum.
fn parse(b: &[u8], header_ok: bool) -> Result<Meta, DropReason> {
    let ip = Ipv4Packet::new_checked(b).map_err(wire_drop)?;
    if !header_ok && !ip.verify_checksum() {
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
                L4::Tcp { sport: t.src_port(), dport: t.dst_port(), flags: t.flags() }
            }
            protocol::UDP => {
                let u = UdpPacket::new_checked(p).map_err(bad)?;
                L4::Udp { sport: u.src_port(), dport: u.dst_port() }
            }
            protocol::ICMP => {
                let i = Icmpv4Packet::new_checked(p).map_err(bad)?;
                L4::Icmp { kind: i.msg_type(), code: i.code(), ident: i.ident() }
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
        dont_frag: ip.dont_frag(),
        ident: ip.ident(),
        later_fragment,
        is_fragment: ip.is_fragment(),
        l4,
        zone: 0,
    })
}

/// 0/8, 127/8, multicast and class E (with the limited broadcast): never a
/// valid unicast source or forwarding destination (RFC 1812 §4.2.2.11, §5.3.7).
fn is_martian(a: u32) -> bool {
    let first = (a >> 24) as u8;
    first == 0 || first == 127 || first >= 224
}

impl Pipeline {
    /// Picks up the latest topology (workers call this once per batch).
    pub fn refresh(&mut self) {
        // Sessions the flow cache let go of are freed here, between batches.
        self.cache.collect();
        let cur = self.gw.topology.load();
        if !Arc::ptr_eq(&cur, &self.topo) {
            self.topo = arc_swap::Guard::into_inner(cur);
            self.min_mtu = min_mtu(&self.topo);
            // Routes, ACLs or NAT gateways changed: every decision may have.
            self.cache.clear();
        }
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }

    /// Runs one packet that arrived on `ingress` through the pipeline, in place.
    /// Afterwards, [`Pipeline::next_pending`] may have more packets to send.
    pub fn process(&mut self, now: Timestamp, ingress: IfId, pkt: &mut PacketBuf) -> Action {
        if !self.gw.live.armed() && !self.gw.capture.armed() {
            return self.process_packet(now, ingress, pkt);
        }
        self.process_tapped(now, ingress, pkt)
    }

    /// `process` while a live trace or a capture runs.
    #[cold]
    #[inline(never)]
    fn process_tapped(&mut self, now: Timestamp, ingress: IfId, pkt: &mut PacketBuf) -> Action {
        if !self.gw.capture.armed() {
            return self.process_traced(now, ingress, pkt);
        }
        let before_len = pkt.len();
        let pre = self.gw.capture.before(ingress, pkt.bytes());
        capture::keep_head(&mut self.captured, pkt.bytes());
        let action = self.process_traced(now, ingress, pkt);
        self.gw.capture.offer(now.nanos(), ingress, &self.captured, before_len, pre, action, pkt.bytes());
        action
    }

    fn process_traced(&mut self, now: Timestamp, ingress: IfId, pkt: &mut PacketBuf) -> Action {
        if !self.gw.live.armed() {
            return self.process_packet(now, ingress, pkt);
        }
        // `natgw trace --live`: a matching packet takes the walk, recorded.
        if self.recording || !self.gw.live.wants(pkt.bytes()) {
            return self.process_packet(now, ingress, pkt);
        }
        let packet = crate::wire::build::describe(pkt.bytes());
        self.set_recording(true);
        let action = self.process_packet(now, ingress, pkt);
        let hops = self.take_record();
        self.recording = false;
        let ingress = self.if_name(ingress).to_string();
        self.gw.live.push(live::Traced { packet, ingress, hops });
        action
    }

    fn process_packet(&mut self, now: Timestamp, ingress: IfId, pkt: &mut PacketBuf) -> Action {
        self.counters.rx(usize::from(ingress), pkt.len());
        if self.gw.settings.route_only {
            return self.route_only(pkt);
        }
        let probe = if self.gw.settings.flow_cache && !self.recording {
            match self.cached(now, ingress, pkt) {
                Ok(a) => return a,
                Err(p) => p,
            }
        } else {
            Probe::default()
        };
        let mut m = match parse(pkt.bytes(), probe.header_ok) {
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
        // A packet that might not fit its egress: keep its head as it arrived,
        // to quote in an ICMP "fragmentation needed" after any rewriting.
        self.head_len = 0;
        if pkt.len() > self.min_mtu || pkt.offload.gso.is_some() {
            self.head_len = pkt.len().min(HEAD);
            self.head[..self.head_len].copy_from_slice(&pkt.bytes()[..self.head_len]);
        }
        self.trace.set(Trace::default());
        let ttl = m.ttl;
        let this: &Pipeline = self;
        if m.is_fragment
            && let Some(a) = this.fragment(now, ingress, pkt, &mut m)
        {
            return a;
        }
        // The tuple as it came, for the flow logs (the walk rewrites `m`).
        let orig = this.flow_log.is_some().then(|| m.flow_key());
        let action = this.walk(now, ingress, pkt, &mut m);
        if let (Some(k), Action::Forward(egress)) = (probe.key, action) {
            self.remember(k, ttl, egress, pkt);
        }
        if let Some(orig) = orig {
            self.log_walk(now, ingress, &orig, action, &m, pkt.len());
        }
        action
    }

    /// A packet of a cached flow: the cached decision, if it still applies.
    /// Runs before the general parse, with the same checks for the packets
    /// it takes (a TCP or UDP packet, not a fragment, not a SYN); anything
    /// else, and any doubt, is left to the walk, with what the probe learnt.
    #[inline]
    fn cached(&mut self, now: Timestamp, ingress: IfId, pkt: &mut PacketBuf) -> Result<Action, Probe> {
        let Ok(ip) = Ipv4Packet::new_checked(pkt.bytes()) else { return Err(Probe::default()) };
        if !ip.verify_checksum() {
            return Err(Probe::default());
        }
        let not_cacheable = Probe { key: None, header_ok: true };
        if ip.is_fragment() {
            return Err(not_cacheable);
        }
        let proto = ip.protocol();
        let (sport, dport, flags) = match proto {
            protocol::TCP => match TcpPacket::new_checked(ip.payload()) {
                Ok(t) if t.flags() & crate::wire::tcp::flags::SYN == 0 => (t.src_port(), t.dst_port(), t.flags()),
                _ => return Err(not_cacheable),
            },
            protocol::UDP => match UdpPacket::new_checked(ip.payload()) {
                Ok(u) => (u.src_port(), u.dst_port(), 0),
                Err(_) => return Err(not_cacheable),
            },
            _ => return Err(not_cacheable),
        };
        let (src, dst) = (u32::from(ip.src_addr()), u32::from(ip.dst_addr()));
        let (total, ttl) = (usize::from(ip.total_len()), ip.ttl());
        let key = CacheKey { src, dst, sport, dport, ingress, proto };
        let miss = Probe { key: Some(key), header_ok: true };
        let Some(hit) = self.cache.get(&key) else { return Err(miss) };
        let d = *hit.decision;
        let nat = hit.through.map(|t| (t.nat, t.dir));
        // Anything past the total length is link padding.
        pkt.set_len(total);
        if (d.ttl > 0 && ttl <= d.ttl) || egress::too_big(pkt, usize::from(d.mtu)) {
            return Err(miss);
        }
        if let Some(t) = hit.through {
            let len = pkt.len();
            let carried = self
                .gw
                .nats
                .get(usize::from(t.nat))
                .and_then(|nat| nat.carry(t.session, now.secs(), t.dir, flags, len));
            let Some(tr) = carried else {
                // Expired or replaced: the walk finds out what now applies.
                let slot = hit.slot();
                self.cache.invalidate(slot);
                self.counters.cache.invalidated.inc();
                return Err(miss);
            };
            let side = match t.dir {
                Dir::Original => Side::Source,
                Dir::Reply => Side::Destination,
            };
            self.count_arrival(side, len);
            self.count_session(false, tr, side, len);
        }
        if let Some((s, dir)) = hit.tracked
            && !self.gw.tracker.carry(s, now.secs(), dir, flags, pkt.len())
        {
            let slot = hit.slot();
            self.cache.invalidate(slot);
            self.counters.cache.invalidated.inc();
            return Err(miss);
        }
        d.apply(pkt);
        let slot = hit.slot();
        if let Some(t) = self.flow_log.as_mut()
            && !t.bump(self.cache.flow_log_refs(slot), now.secs(), pkt.len(), flags)
        {
            let orig = FlowKey { src, dst, sport, dport, proto, zone: 0 };
            let fin = FlowKey {
                src: u32::from_be_bytes(d.src),
                dst: u32::from_be_bytes(d.dst),
                sport: d.sport,
                dport: d.dport,
                proto,
                zone: 0,
            };
            let len = pkt.len();
            let refs = self.log_forward(now, ingress, &orig, d.egress, &fin, nat, len, flags);
            self.cache.set_flow_log_refs(slot, refs);
        }
        self.counters.cache.hits.inc();
        Ok(Action::Forward(d.egress))
    }

    /// After the walk forwarded a packet of a cacheable flow: remember what it did.
    fn remember(&mut self, k: CacheKey, ttl_in: u8, egress: IfId, pkt: &PacketBuf) {
        let trace = self.trace.get();
        if trace.uncacheable {
            return;
        }
        let through = match trace.nat {
            None => None,
            Some((nat, dir, key)) => match self.gw.nats.get(usize::from(nat)).and_then(|g| g.session(&key)) {
                Some((session, d)) if d == dir => Some(Through { nat, dir, session }),
                _ => return,
            },
        };
        // A tracked flow: the cache carries its entry as the walk would.
        let tracked: Option<(Arc<Session>, Dir)> = match (trace.sg.key, trace.sg.tracked) {
            // Tracked by its NAT session, which `through` carries.
            _ if trace.sg.via_nat => None,
            (Some(key), Some(dir)) => match self.gw.tracker.get(&key) {
                Some((s, d)) if d == dir => Some((s, d)),
                _ => return,
            },
            _ => None,
        };
        let Some(mtu) = self.topo.interfaces.get(usize::from(egress)).map(|i| i.mtu) else { return };
        let Some(d) = Decision::learn(&k, ttl_in, egress, mtu, pkt.bytes()) else { return };
        self.cache.insert(k, d, through, tracked);
        self.counters.cache.inserts.inc();
    }

    /// Route-only mode: the destination picks the device, nothing else happens.
    fn route_only(&self, pkt: &PacketBuf) -> Action {
        let ip = match Ipv4Packet::new_checked(pkt.bytes()) {
            Ok(ip) => ip,
            Err(e) => return self.drop(wire_drop(e)),
        };
        let t = &self.topo;
        let dst = u32::from(ip.dst_addr());
        let egress = match t.host_anywhere(dst) {
            Some(h) => t.hosts[usize::from(h)].interface,
            None => match &t.internet {
                Some(i) => i.interface,
                None => return self.drop(DropReason::NoRoute),
            },
        };
        Action::Forward(egress)
    }

    /// Step 2: a fragment learns its ports from its datagram's first fragment.
    fn fragment(&self, now: Timestamp, ingress: IfId, pkt: &mut PacketBuf, m: &mut Meta) -> Option<Action> {
        let key = m.frag_key(ingress);
        let mut table = self.gw.frags.lock();
        if m.later_fragment {
            return match table.later(key, ingress, pkt.bytes(), now) {
                Later::Known(f) => {
                    m.place(f);
                    None
                }
                Later::Held => Some(Action::Held),
                Later::Refused => Some(self.drop(DropReason::FragmentRefused)),
            };
        }
        // The first fragment: remember its ports, and run again what waited for them.
        if let Some(f) = m.first_fields() {
            let mut outbox = self.outbox.borrow_mut();
            let mut overflow = 0;
            table.first(key, f, now, |ing, bytes| {
                if !outbox.push(Pending::Reprocess(ing), bytes, Offload::default()) {
                    overflow += 1;
                }
            });
            self.counters.count_drops(DropReason::OutputOverflow, overflow);
        }
        None
    }

    /// Timers: ends fragments that waited too long and sends the ICMP answers
    /// to unsolicited SYNs that are due. Workers call this once per wake-up.
    pub fn poll(&mut self, now: Timestamp) {
        if let Some(t) = self.flow_log.as_mut()
            && t.due(now.secs())
        {
            t.flush(now.secs(), &self.gw.flow_sink);
        }
        let timed_out = {
            let mut t = self.gw.frags.lock();
            t.expire(now);
            t.take_timed_out()
        };
        self.counters.count_drops(DropReason::FragmentTimeout, timed_out);
        let this: &Pipeline = self;
        for nat in &this.gw.nats {
            nat.take_due_syns(now.secs(), |d| this.answer_syn(now, d));
        }
    }

    /// Moves the next packet the pipeline produced into `out`, with what to do with it.
    pub fn next_pending(&mut self, out: &mut PacketBuf) -> Option<Pending> {
        self.outbox.get_mut().pop_into(out)
    }

    /// Whether the pipeline produced packets besides its verdicts that
    /// [`Pipeline::next_pending`] has not handed out yet.
    pub fn has_pending(&mut self) -> bool {
        !self.outbox.get_mut().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn martians() {
        for a in ["0.1.2.3", "127.0.0.1", "224.0.0.1", "255.255.255.255", "240.0.0.1"] {
            assert!(is_martian(u32::from(a.parse::<std::net::Ipv4Addr>().unwrap())), "{a}");
        }
        assert!(!is_martian(u32::from(std::net::Ipv4Addr::new(10, 0, 0, 1))));
    }
}
