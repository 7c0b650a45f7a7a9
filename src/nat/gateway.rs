//! A NAT gateway's state: mappings, sessions, port pools, expiry.
//!
//! The fast path is a flow-table hit: the session's precomputed rewrite, a
//! refresh of its timer and the TCP tracker, in atomics (the table takes a
//! shard's read lock; a worker's flow cache skips even that). Everything that
//! creates or destroys state (a new mapping, a port, a session; expiry) takes
//! the gateway's slow-path lock, re-checks the table under it, and is bounded.

use super::ports::{HoldDown, PortBlock, PortPolicy, PortPool};
use crate::conntrack::table::Page;
use crate::conntrack::tcp::{Segment, TcpState, Verdict};
use crate::conntrack::wheel::{RECHECK_SECS, Wheel};
use crate::conntrack::{Dir, Endpoint, FlowKey, FlowTable, Rewrite, Session, SessionView, Timeouts};
use crate::counter::Counter;
use crate::wire::icmpv4;
use crate::wire::ipv4::protocol;
use crate::wire::tcp::flags;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// RFC 4787 §4.1 mapping behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Mapping {
    /// Endpoint-independent (EIM): one external endpoint per internal endpoint,
    /// whatever the destination (REQ-1 of RFC 4787, RFC 5382, RFC 5508).
    #[default]
    #[serde(rename = "endpoint-independent", alias = "eim")]
    EndpointIndependent,
    /// Address-dependent (ADM): a new external endpoint per destination address.
    #[serde(rename = "address-dependent", alias = "adm")]
    AddressDependent,
    /// Address-and-port-dependent (APDM, "symmetric NAT").
    #[serde(rename = "address-and-port-dependent", alias = "apdm")]
    AddressAndPortDependent,
}

/// RFC 4787 §5 filtering behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Filtering {
    /// Endpoint-independent (EIF, "full cone"): anyone may send to a mapping.
    #[serde(rename = "endpoint-independent", alias = "eif")]
    EndpointIndependent,
    /// Address-dependent (ADF): hosts the internal endpoint has sent to.
    #[serde(rename = "address-dependent", alias = "adf")]
    AddressDependent,
    /// Address-and-port-dependent (APDF): only the exact endpoints it sent to.
    #[default]
    #[serde(rename = "address-and-port-dependent", alias = "apdf")]
    AddressAndPortDependent,
}

/// What to send back when no mapping can be made (RFC 5508 REQ-8, RFC 6888 REQ-9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ExhaustionReply {
    /// ICMP 3/13, communication administratively prohibited (RFC 5508).
    #[default]
    AdminProhibited,
    /// ICMP 3/1, host unreachable (RFC 6888 REQ-9).
    HostUnreachable,
    /// Nothing.
    Silent,
}

/// What to do with an unsolicited inbound TCP SYN (RFC 5382 REQ-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UnsolicitedSyn {
    /// Drop silently (REQ-4a: by security policy; also the AWS behaviour).
    #[default]
    Drop,
    /// Stay silent for 6 s; then, unless an outbound SYN for the same
    /// connection was translated meanwhile, answer ICMP port unreachable (3/3).
    #[serde(rename = "icmp-after-6s")]
    IcmpAfter6s,
}

/// An unsolicited SYN waiting for its ICMP answer.
#[derive(Clone, Copy, Debug)]
pub struct DeferredSyn {
    /// Second at which the answer is due.
    pub due: u32,
    /// The SYN's key as it arrived (remote -> our public address).
    pub key: FlowKey,
    /// The interface it arrived on.
    pub ingress: u16,
    head: [u8; 64],
    len: u8,
}

impl DeferredSyn {
    /// The first bytes of the SYN (IP header and the start of TCP), to quote.
    pub fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.len)]
    }
}

/// Deferred SYNs kept at most (a flood gets no more answers, not more memory).
const MAX_DEFERRED_SYNS: usize = 1024;
/// RFC 5382 REQ-4: at least 6 s of silence (whole seconds, so 7 by the clock).
const SYN_SILENCE_SECS: u32 = 7;

/// A record of the abuse-tracing log (RFC 6888 §4 REQ-12 to 14): protocol,
/// internal and external endpoints, time. Never the destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatEvent {
    /// Seconds since the gateway started.
    pub at: u32,
    pub kind: NatEventKind,
    pub proto: u8,
    pub internal: String,
    /// The external endpoint, or for blocks `address:first-last`.
    pub external: String,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatEventKind {
    MappingCreated,
    MappingDeleted,
    BlockAllocated,
    BlockReleased,
}

/// Events kept for `natgw events` (older ones are dropped).
const MAX_EVENTS: usize = 4096;
/// Sessions `early_drop` looks at for one without a reply, at most.
const EARLY_DROP_LOOKS: usize = 64;
/// Candidate ports tried when ports overlap (each costs a table lookup).
const OVERLAP_ATTEMPTS: u32 = 4096;

/// The behaviour of one NAT gateway.
#[derive(Clone, Debug)]
pub struct NatConfig {
    /// The Elastic IPs (paired pooling picks one per internal address).
    pub public_ips: Vec<Ipv4Addr>,
    pub ports: PortPolicy,
    pub timeouts: Timeouts,
    pub mapping: Mapping,
    pub filtering: Filtering,
    /// Seconds a freed port waits before reuse (RFC 6888 REQ-8: 120).
    pub hold_down_secs: u32,
    /// Sessions at most; beyond, new flows fail (never evict a live one: RFC 6888 REQ-11),
    /// except, with `early_drop`, a session that never had a reply.
    pub max_sessions: usize,
    /// At `max_sessions`, end the oldest session that never saw a reply (a
    /// SYN nobody answered, a datagram to nowhere) to make room, as
    /// netfilter's early drop does; off, the new flow fails. A departure
    /// from RFC 6888 REQ-11 (d), on with the `aws` profile (docs/NAT.md).
    pub early_drop: bool,
    /// External ports one internal address may hold (RFC 6888 REQ-4).
    pub max_ports_per_subscriber: u32,
    /// Sessions one internal address may have at once (RFC 6888 REQ-5).
    pub max_sessions_per_subscriber: u32,
    /// Keep the last quarter of each port pool for the hosts that hold few
    /// ports (see [`share_allows`]), so one host's burst cannot take every
    /// port from the others (RFC 6888 REQ-4 allows limits per subscriber).
    pub fair_share: bool,
    pub exhaustion_reply: ExhaustionReply,
    /// Inbound packets refresh the timer too (RFC 4787 REQ-6 makes this a MAY).
    pub inbound_refresh: bool,
    /// Seed for port randomisation; None takes one from the OS (tests pass one).
    pub seed: Option<u64>,
    pub unsolicited_syn: UnsolicitedSyn,
    /// Reuse an external port for different destinations (RFC 7857 §3); only
    /// with address-and-port-dependent mapping, where the 5-tuple tells
    /// sessions apart. This is how the AWS NAT gateway reaches 55,000
    /// connections per destination per address.
    pub port_overlapping: bool,
    /// Give each internal address blocks of this many ports, logged once per
    /// block (RFC 6888 REQ-14).
    pub port_block: Option<u16>,
    /// Log every mapping created and deleted (without destinations).
    pub log_mappings: bool,
}

impl Default for NatConfig {
    fn default() -> NatConfig {
        NatConfig {
            public_ips: Vec::new(),
            ports: PortPolicy {
                range: 1024..=65535,
                low_range: 1..=1023,
                keep_class: true,
                keep_parity: true,
                preserve: false,
            },
            timeouts: Timeouts::default(),
            mapping: Mapping::default(),
            filtering: Filtering::default(),
            hold_down_secs: 120,
            max_sessions: 1 << 20,
            early_drop: true,
            max_ports_per_subscriber: 65536,
            max_sessions_per_subscriber: u32::MAX,
            fair_share: true,
            exhaustion_reply: ExhaustionReply::default(),
            inbound_refresh: true,
            seed: None,
            unsolicited_syn: UnsolicitedSyn::default(),
            port_overlapping: false,
            port_block: None,
            log_mappings: false,
        }
    }
}

/// Why a packet was not translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatError {
    /// Inbound, and no session or mapping lets it in (unsolicited).
    NoSession,
    /// Inbound to a mapping whose filter refuses this sender.
    Filtered,
    /// Outbound TCP without a session that is not a SYN (mid-stream, or after expiry).
    NotSyn,
    /// Outbound ICMP that is neither a query request nor an error.
    NotQuery,
    /// No external port left (the AWS metric `ErrorPortAllocation`).
    PortsExhausted,
    /// The internal address holds its quota of ports.
    SubscriberLimit,
    /// The pool runs short and the internal address holds more than the
    /// share that is left to hosts holding few ports ([`share_allows`]).
    HostShare,
    /// The session table is full.
    TableFull,
}

/// The result of translating one packet.
#[derive(Clone, Copy, Debug)]
pub struct Translated {
    pub rewrite: Rewrite,
    /// A new session was created for this packet.
    pub created: bool,
    /// This packet completed a TCP handshake.
    pub established: bool,
    /// The TCP tracker found the segment out of place (forwarded anyway).
    pub tcp_invalid: bool,
}

/// What a packet did to a session it was carried by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// This packet completed a TCP handshake.
    pub established: bool,
    /// The TCP tracker found the segment out of place (forwarded anyway).
    pub tcp_invalid: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct MappingKey {
    internal: Endpoint,
    remote_addr: u32,
    remote_port: u16,
}

/// The fair share of a port pool of `span` ports, `in_use` of them taken
/// (mapped or in hold-down): while more than a quarter of the pool is free,
/// any host gets a port; after that only a host that holds fewer than 1/32
/// of the pool (2,016 ports of 1024-65535) does. One host's burst (a port
/// scan, a load test, a leak) then stops with a quarter of the pool left,
/// and every other host still gets new mappings at once; eight hosts would
/// have to burst together to empty it. A host's ports in hold-down are no
/// longer its own, so a burst that ends and starts again takes at most
/// another 1/32 from the quarter until the hold-down frees the rest.
/// An empty pool is the allocator's to report (`PortsExhausted`), and a pool
/// of fewer than 32 ports has no share to keep.
pub fn share_allows(span: u32, in_use: u32, held: u32) -> bool {
    let free = span.saturating_sub(in_use);
    span < 32 || free == 0 || free > span / 4 || held < span / 32
}

/// What one internal address holds.
#[derive(Clone, Copy, Debug, Default)]
struct Subscriber {
    /// External ports (one per mapping).
    ports: u32,
    sessions: u32,
}

#[derive(Debug)]
struct MappingEntry {
    external: Endpoint,
    sessions: u32,
}

/// Remote addresses with a session, and how many, per mapping: only
/// address-dependent filtering keeps them (in their own map, so that the
/// mappings of the other behaviours stay 28 bytes).
type Remotes = Map<MappingKey, Vec<(u32, u32)>>;

/// One more session of mapping `mk` to `remote`.
fn add_remote(remotes: &mut Remotes, mk: MappingKey, remote: u32) {
    let v = remotes.entry(mk).or_default();
    match v.iter_mut().find(|(a, _)| *a == remote) {
        Some((_, n)) => *n += 1,
        None => v.push((remote, 1)),
    }
}

/// One session fewer of mapping `mk` to `remote`.
fn drop_remote(remotes: &mut Remotes, mk: MappingKey, remote: u32) {
    let Some(v) = remotes.get_mut(&mk) else { return };
    if let Some(i) = v.iter().position(|(a, _)| *a == remote) {
        v[i].1 -= 1;
        if v[i].1 == 0 {
            v.swap_remove(i);
        }
    }
    if v.is_empty() {
        remotes.remove(&mk);
    }
}

/// Counters kept by the gateway itself (the workers keep per-packet ones),
/// written under the slow-path lock.
#[derive(Debug, Default)]
pub struct NatStats {
    /// Sessions removed because they were idle past their timeout (`IdleTimeoutCount`).
    pub idle_timeouts: Counter,
    pub mappings_created: Counter,
    pub mappings_freed: Counter,
    /// Sessions without a reply ended at a full table to make room (`early_drop`).
    pub early_drops: Counter,
}

/// Maps of the slow path: keyed (inside hosts choose part of the keys), fast.
type Map<K, V> = HashMap<K, V, ahash::RandomState>;

fn map<K, V>(capacity: usize) -> Map<K, V> {
    HashMap::with_capacity_and_hasher(capacity, ahash::RandomState::new())
}

#[derive(Debug)]
struct Slow {
    pools: Map<(u32, u8), PortPool>,
    mappings: Map<MappingKey, MappingEntry>,
    by_external: Map<Endpoint, MappingKey>,
    /// Ports and sessions per internal address (RFC 6888 REQ-4, REQ-5).
    subscribers: Map<u32, Subscriber>,
    /// With address-dependent filtering: whom each mapping has sessions with.
    remotes: Remotes,
    hold: HoldDown,
    wheel: Wheel,
    rng: StdRng,
    /// With overlapping ports: reply keys recently freed, and when they may be reused.
    recent: Map<FlowKey, u32>,
    /// With port blocks: each internal address's blocks, per protocol.
    blocks: Map<(u32, u8), Vec<PortBlock>>,
    /// The latest mappings made: (second, internal, external), for `natgw ports`.
    latest: std::collections::VecDeque<(u32, Endpoint, Endpoint)>,
}

/// Mappings `natgw ports` lists as the latest.
const LATEST: usize = 16;

/// A NAT gateway's ports, for `natgw ports`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortReport {
    pub name: String,
    /// Per Elastic IP and protocol.
    pub pools: Vec<PoolView>,
    /// Per internal host: ports (mappings) and sessions it holds.
    pub hosts: Vec<(String, u32, u32)>,
    /// The latest mappings: (seconds since start, protocol, internal, external).
    pub latest: Vec<(u32, u8, String, String)>,
}

/// One port pool.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PoolView {
    pub addr: String,
    pub proto: u8,
    pub range: String,
    /// Ports of live mappings.
    pub in_use: u32,
    /// Ports whose mapping ended, waiting out their hold-down.
    pub held: u32,
    pub free: u32,
}

/// Sessions the tables have room for before they first grow.
const INITIAL_SESSIONS: usize = 4096;

/// A NAT gateway: its configuration, flow table and slow-path state.
#[derive(Debug)]
pub struct NatGateway {
    pub name: String,
    config: NatConfig,
    table: FlowTable,
    slow: Mutex<Slow>,
    /// Live sessions: written under the slow-path lock, read without it.
    sessions: AtomicUsize,
    pub stats: NatStats,
    deferred: Mutex<std::collections::VecDeque<DeferredSyn>>,
    events: Mutex<std::collections::VecDeque<NatEvent>>,
    /// Second of the earliest deferred answer (u32::MAX: none), read without the lock.
    next_deferred: std::sync::atomic::AtomicU32,
    /// `natgw conntrack --events`, once the gateway attaches its hub.
    hub: std::sync::OnceLock<Arc<crate::conntrack::events::Hub>>,
}

/// What one expiry pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireReport {
    pub expired: usize,
    pub ports_released: usize,
    /// Work was left for the next pass (budget reached).
    pub more: bool,
}

impl NatGateway {
    pub fn new(name: &str, config: NatConfig) -> NatGateway {
        let rng = match config.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => rand::make_rng(),
        };
        // Tables start small and grow (a shard or map at a time) with the
        // sessions: a sparse table spreads a few sessions over many cache
        // lines, and a new flow's inserts then miss the cache (~100 ns a new
        // flow with 1,000 sessions in tables sized for 65,536: examples/hot_loop).
        let cap = config.max_sessions.min(INITIAL_SESSIONS);
        NatGateway {
            name: name.to_string(),
            table: FlowTable::with_capacity(cap * 2),
            slow: Mutex::new(Slow {
                pools: map(8),
                mappings: map(cap),
                by_external: map(if config.filtering == Filtering::AddressAndPortDependent { 0 } else { cap }),
                subscribers: map(64),
                remotes: map(0),
                hold: HoldDown::default(),
                wheel: Wheel::default(),
                rng,
                recent: map(0),
                blocks: map(0),
                latest: std::collections::VecDeque::with_capacity(LATEST),
            }),
            events: Mutex::new(std::collections::VecDeque::new()),
            sessions: AtomicUsize::new(0),
            stats: NatStats::default(),
            deferred: Mutex::new(std::collections::VecDeque::with_capacity(MAX_DEFERRED_SYNS)),
            next_deferred: std::sync::atomic::AtomicU32::new(u32::MAX),
            hub: std::sync::OnceLock::new(),
            config,
        }
    }

    /// Sends this gateway's connection tracking events to `hub`.
    pub fn attach_events(&self, hub: Arc<crate::conntrack::events::Hub>) {
        let _ = self.hub.set(hub);
    }

    #[inline]
    fn event_about(&self, at: u32, kind: crate::conntrack::events::Kind, s: &Session, reason: Option<&str>) {
        if let Some(h) = self.hub.get()
            && h.armed()
        {
            h.emit(at, kind, &self.name, s, reason);
        }
    }

    pub fn config(&self) -> &NatConfig {
        &self.config
    }

    /// True if `addr` is one of this gateway's public addresses.
    pub fn owns(&self, addr: Ipv4Addr) -> bool {
        self.config.public_ips.contains(&addr)
    }

    pub fn session_count(&self) -> usize {
        self.sessions.load(Relaxed)
    }

    /// Translates an outbound packet (inside to outside) whose key is `key`.
    /// `tcp_flags` is 0 for UDP and ICMP; `icmp_type` is the ICMP type or 0.
    #[inline]
    pub fn outbound(&self, now_secs: u32, key: &FlowKey, tcp_flags: u8, len: usize) -> Result<Translated, NatError> {
        if let Some(hit) = self.hit(now_secs, key, Dir::Original, tcp_flags, len) {
            return Ok(hit);
        }
        self.create_outbound(now_secs, key, tcp_flags, len)
    }

    /// Translates an inbound packet (outside to inside) whose key is `key`.
    #[inline]
    pub fn inbound(&self, now_secs: u32, key: &FlowKey, tcp_flags: u8, len: usize) -> Result<Translated, NatError> {
        if let Some(hit) = self.hit(now_secs, key, Dir::Reply, tcp_flags, len) {
            return Ok(hit);
        }
        self.create_inbound(now_secs, key, tcp_flags, len)
    }

    /// The fast path: a live session under `key` in direction `dir`.
    #[inline]
    fn hit(&self, now_secs: u32, key: &FlowKey, dir: Dir, tcp_flags: u8, len: usize) -> Option<Translated> {
        self.table
            .with(key, |s, d| {
                if d != dir {
                    return None;
                }
                let c = self.carry(s, now_secs, dir, tcp_flags, len)?;
                Some(Translated {
                    rewrite: s.rewrite(dir),
                    created: false,
                    established: c.established,
                    tcp_invalid: c.tcp_invalid,
                })
            })
            .flatten()
    }

    /// What a packet in `dir` does to a session already found (here or in a
    /// worker's flow cache): the TCP tracker, the idle timer, the counts.
    /// `None` when the session is expired or dead: look it up again.
    #[inline]
    pub fn carry(&self, s: &Session, now_secs: u32, dir: Dir, tcp_flags: u8, len: usize) -> Option<Carried> {
        if s.is_expired(now_secs, &self.config.timeouts) {
            return None;
        }
        let mut out = Carried::default();
        let tcp = s.orig.proto == protocol::TCP;
        if tcp {
            match s.track_tcp(dir, tcp_flags) {
                (Verdict::Move(TcpState::Established), before) => {
                    out.established = before != TcpState::Established;
                    if out.established {
                        self.event_about(now_secs, crate::conntrack::events::Kind::Update, s, None);
                    }
                }
                (Verdict::Move(next), before) if next != before => {
                    self.event_about(now_secs, crate::conntrack::events::Kind::Update, s, None);
                }
                (Verdict::Invalid, _) => out.tcp_invalid = true,
                _ => {}
            }
        }
        // RFC 7857 §2.2 X8: an outbound RST (a host refusing inbound
        // traffic) does not keep the mapping alive.
        let outbound_rst = dir == Dir::Original && tcp && tcp_flags & flags::RST != 0;
        if !outbound_rst && (dir == Dir::Original || self.config.inbound_refresh) {
            s.touch(now_secs);
        }
        s.account(dir, len);
        Some(out)
    }

    /// The direction `key` travels in a live session, without touching it
    /// (security groups: a NATed flow is tracked by its session).
    #[inline]
    pub fn live_dir(&self, now_secs: u32, key: &FlowKey) -> Option<Dir> {
        self.table.with(key, |s, d| (!s.is_expired(now_secs, &self.config.timeouts)).then_some(d)).flatten()
    }

    /// The session under `key` and the direction `key` travels in it, without
    /// touching it: for a worker's flow cache, which then calls [`Self::carry`].
    pub fn session(&self, key: &FlowKey) -> Option<(Arc<Session>, Dir)> {
        self.table.get(key)
    }

    /// Whether mappings are kept by external endpoint too: only filtering
    /// that lets new flows in needs to find them that way (and overlapping
    /// ports make an external endpoint ambiguous).
    fn by_external(&self) -> bool {
        self.config.filtering != Filtering::AddressAndPortDependent && !self.config.port_overlapping
    }

    fn mapping_key(&self, orig: &FlowKey) -> MappingKey {
        let internal = orig.src_endpoint();
        match self.config.mapping {
            Mapping::EndpointIndependent => MappingKey { internal, remote_addr: 0, remote_port: 0 },
            Mapping::AddressDependent => MappingKey { internal, remote_addr: orig.dst, remote_port: 0 },
            Mapping::AddressAndPortDependent => MappingKey { internal, remote_addr: orig.dst, remote_port: orig.dport },
        }
    }

    /// Paired pooling (RFC 4787 REQ-2, RFC 6888 REQ-2): an internal address
    /// always uses the same public address, chosen by a keyed-free stable hash.
    fn public_ip_for(&self, internal: u32) -> Option<u32> {
        let n = self.config.public_ips.len();
        if n == 0 {
            return None;
        }
        let h = internal.wrapping_mul(0x9e37_79b9).rotate_left(7) as usize;
        Some(u32::from(self.config.public_ips[h % n]))
    }

    fn create_outbound(&self, now_secs: u32, key: &FlowKey, tcp_flags: u8, len: usize) -> Result<Translated, NatError> {
        // Only the first packet of a flow may create it.
        match key.proto {
            protocol::TCP if Segment::classify(tcp_flags) != Segment::Syn => {
                return Err(NatError::NotSyn);
            }
            protocol::ICMP => {} // the caller only passes query requests here
            _ => {}
        }
        let mut slow = self.slow.lock();
        // Another worker may have created it meanwhile; an expired session
        // holding the key goes first.
        if let Some(live) = self.clear_expired(&mut slow, key, now_secs) {
            drop(slow);
            return match live {
                Dir::Original => self.hit(now_secs, key, Dir::Original, tcp_flags, len).ok_or(NatError::NoSession),
                Dir::Reply => Err(NatError::NoSession),
            };
        }
        if self.sessions.load(Relaxed) >= self.config.max_sessions && !self.early_drop(&mut slow, now_secs) {
            return Err(NatError::TableFull);
        }
        let sub = slow.subscribers.get(&key.src).copied().unwrap_or_default();
        if sub.sessions >= self.config.max_sessions_per_subscriber {
            return Err(NatError::SubscriberLimit);
        }
        let mk = self.mapping_key(key);
        // The mapping counts the session from here: nothing below fails.
        let (external, new_port) = match slow.mappings.get_mut(&mk) {
            Some(m) => {
                m.sessions += 1;
                (m.external, false)
            }
            None => (self.new_mapping(&mut slow, sub, mk, key, now_secs)?, true),
        };
        // The reply key is free of live sessions: without overlapping ports
        // an external endpoint belongs to one mapping, which holds its port
        // until its last session is reaped, and a session of the same
        // mapping under this reply key would have had the orig key, which
        // was free. With overlapping ports an expired session of another
        // mapping may still hold it.
        let reply = key.reply_via(external.addr, external.port);
        if self.config.port_overlapping {
            let held = self.clear_expired(&mut slow, &reply, now_secs);
            debug_assert!(held.is_none(), "a live session holds the reply key of a new one");
        } else {
            debug_assert!(self.table.get(&reply).is_none(), "a session holds the reply key of a new one");
        }
        let session =
            Arc::new(Session::new(*key, (external.addr.to_be_bytes(), external.port), Dir::Original, now_secs));
        let out = self.install(&mut slow, mk, new_port, session, now_secs, Dir::Original, tcp_flags, len);
        Ok(out)
    }

    /// Allocates a port and records a new mapping for the flow `first`
    /// (whose destination matters only when ports overlap), with `first`'s
    /// session counted; `sub` is what the internal address holds. The
    /// caller counts the port to the subscriber when it installs the session.
    fn new_mapping(
        &self,
        slow: &mut Slow,
        sub: Subscriber,
        mk: MappingKey,
        first: &FlowKey,
        now_secs: u32,
    ) -> Result<Endpoint, NatError> {
        if sub.ports >= self.config.max_ports_per_subscriber {
            return Err(NatError::SubscriberLimit);
        }
        let ext_ip = self.public_ip_for(mk.internal.addr).ok_or(NatError::PortsExhausted)?;
        let proto = mk.internal.proto;
        let port = if self.config.port_overlapping {
            self.overlapping_port(slow, mk, first, ext_ip, now_secs)?
        } else if let Some(size) = self.config.port_block {
            self.block_port(slow, mk, ext_ip, size, now_secs)?
        } else {
            let Slow { pools, rng, .. } = slow;
            let pool = pools.entry((ext_ip, proto)).or_default();
            let policy = &self.config.ports;
            // The share applies to the main range (ports below 1024 kept in
            // their class come from a small range of their own).
            let main = !(policy.keep_class && mk.internal.port < 1024);
            if self.config.fair_share && main {
                let (span, in_use) = pool.main_range_use(policy, mk.internal.port);
                if !share_allows(span, in_use, sub.ports) {
                    return Err(NatError::HostShare);
                }
            }
            pool.allocate(mk.internal.port, policy, rng).ok_or(NatError::PortsExhausted)?
        };
        let external = Endpoint { proto, addr: ext_ip, port };
        slow.mappings.insert(mk, MappingEntry { external, sessions: 1 });
        if self.by_external() {
            slow.by_external.insert(external, mk);
        }
        self.stats.mappings_created.inc();
        if slow.latest.len() == LATEST {
            slow.latest.pop_front();
        }
        slow.latest.push_back((now_secs, mk.internal, external));
        if self.config.log_mappings {
            self.event(now_secs, NatEventKind::MappingCreated, proto, mk.internal.to_string(), external.to_string());
        }
        Ok(external)
    }

    /// A port for a mapping whose external port may be shared with mappings
    /// to other destinations: free for this destination's 5-tuple, and not
    /// freed for it in the last hold-down period.
    fn overlapping_port(
        &self,
        slow: &mut Slow,
        mk: MappingKey,
        first: &FlowKey,
        ext_ip: u32,
        now_secs: u32,
    ) -> Result<u16, NatError> {
        let policy = &self.config.ports;
        let internal = mk.internal.port;
        let range = if policy.keep_class && internal < 1024 { policy.low_range.clone() } else { policy.range.clone() };
        let (lo, hi) = (u32::from(*range.start()), u32::from(*range.end()));
        if lo > hi {
            return Err(NatError::PortsExhausted);
        }
        let free = |slow: &Slow, p: u16| {
            let reply = first.reply_via(ext_ip, p);
            self.table.with(&reply, |s, _| s.is_expired(now_secs, &self.config.timeouts)).unwrap_or(true)
                && slow.recent.get(&reply).is_none_or(|&t| t <= now_secs)
        };
        if policy.preserve && range.contains(&internal) && free(slow, internal) {
            return Ok(internal);
        }
        let span = hi - lo + 1;
        let start = slow.rng.random_range(0..span);
        for i in 0..span.min(OVERLAP_ATTEMPTS) {
            let p = (lo + (start + i) % span) as u16;
            if policy.keep_parity && p % 2 != internal % 2 {
                continue;
            }
            if free(slow, p) {
                return Ok(p);
            }
        }
        Err(NatError::PortsExhausted)
    }

    /// A port from the internal address's port blocks, taking a new block
    /// (logged once) when its blocks are full.
    fn block_port(
        &self,
        slow: &mut Slow,
        mk: MappingKey,
        ext_ip: u32,
        size: u16,
        now_secs: u32,
    ) -> Result<u16, NatError> {
        let key = (mk.internal.addr, mk.internal.proto);
        let Slow { blocks, rng, pools, .. } = slow;
        let mine = blocks.entry(key).or_default();
        for b in mine.iter_mut() {
            if let Some(p) = b.allocate(mk.internal.port, &self.config.ports, rng) {
                return Ok(p);
            }
        }
        if (mine.len() as u32 + 1) * u32::from(size) > self.config.max_ports_per_subscriber.max(u32::from(size)) {
            return Err(NatError::SubscriberLimit);
        }
        let policy = &self.config.ports;
        let range =
            if policy.keep_class && mk.internal.port < 1024 { policy.low_range.clone() } else { policy.range.clone() };
        let pool = pools.entry((ext_ip, mk.internal.proto)).or_default();
        let first = pool.take_block(size, range, rng).ok_or(NatError::PortsExhausted)?;
        let mut b = PortBlock::new(first, size);
        let port = b.allocate(mk.internal.port, policy, rng).ok_or(NatError::PortsExhausted)?;
        mine.push(b);
        let last = u32::from(first) + u32::from(size) - 1;
        self.event(
            now_secs,
            NatEventKind::BlockAllocated,
            mk.internal.proto,
            Ipv4Addr::from(mk.internal.addr).to_string(),
            format!("{}:{first}-{last}", Ipv4Addr::from(ext_ip)),
        );
        Ok(port)
    }

    fn event(&self, at: u32, kind: NatEventKind, proto: u8, internal: String, external: String) {
        tracing::info!(target: "natgw::nat::log", nat = %self.name, ?kind, proto, %internal, %external, at, "mapping");
        let mut e = self.events.lock();
        if e.len() >= MAX_EVENTS {
            e.pop_front();
        }
        e.push_back(NatEvent { at, kind, proto, internal, external });
    }

    /// The recent abuse-tracing records, oldest first.
    pub fn events(&self) -> Vec<NatEvent> {
        self.events.lock().iter().cloned().collect()
    }

    /// Puts a new session (already counted by its mapping `mk`) in the table,
    /// the subscriber's counts (with its new port, if the mapping is new), the
    /// mapping's remote hosts (address-dependent filtering) and the wheel, and
    /// runs the first packet through it.
    #[allow(clippy::too_many_arguments)]
    fn install(
        &self,
        slow: &mut Slow,
        mk: MappingKey,
        new_port: bool,
        session: Arc<Session>,
        now_secs: u32,
        dir: Dir,
        tcp_flags: u8,
        len: usize,
    ) -> Translated {
        let mut tcp_invalid = false;
        if session.orig.proto == protocol::TCP {
            tcp_invalid = session.track_tcp(dir, tcp_flags).0 == Verdict::Invalid;
        }
        session.account(dir, len);
        self.table.insert(&session);
        self.sessions.store(self.sessions.load(Relaxed) + 1, Relaxed); // under the slow lock
        let sub = slow.subscribers.entry(session.orig.src).or_default();
        sub.sessions += 1;
        sub.ports += u32::from(new_port);
        if self.config.filtering == Filtering::AddressDependent {
            add_remote(&mut slow.remotes, mk, session.orig.dst);
        }
        let first_look = now_secs.saturating_add(session.timeout(&self.config.timeouts).min(RECHECK_SECS) + 1);
        let rewrite = session.rewrite(dir);
        self.event_about(now_secs, crate::conntrack::events::Kind::New, &session, None);
        slow.wheel.schedule(first_look, session);
        Translated { rewrite, created: true, established: false, tcp_invalid }
    }

    /// An inbound packet without a session: let it in only if the filtering
    /// behaviour allows it (RFC 4787 §5), creating a session for it.
    fn create_inbound(&self, now_secs: u32, key: &FlowKey, tcp_flags: u8, len: usize) -> Result<Translated, NatError> {
        if self.config.filtering == Filtering::AddressAndPortDependent {
            return Err(NatError::NoSession);
        }
        // Only TCP and UDP mappings accept new inbound flows; an inbound TCP flow
        // starts with a SYN.
        match key.proto {
            protocol::UDP => {}
            protocol::TCP if Segment::classify(tcp_flags) == Segment::Syn => {}
            _ => return Err(NatError::NoSession),
        }
        let mut slow = self.slow.lock();
        if let Some(live) = self.clear_expired(&mut slow, key, now_secs) {
            drop(slow);
            return match live {
                Dir::Reply => self.hit(now_secs, key, Dir::Reply, tcp_flags, len).ok_or(NatError::NoSession),
                Dir::Original => Err(NatError::NoSession),
            };
        }
        let Some(&mk) = slow.by_external.get(&key.dst_endpoint()) else {
            return Err(NatError::NoSession);
        };
        let allowed = match self.config.filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => slow.remotes.get(&mk).is_some_and(|v| v.iter().any(|(a, _)| *a == key.src)),
            Filtering::AddressAndPortDependent => false,
        };
        if !allowed {
            return Err(NatError::Filtered);
        }
        // With ADM/APDM the mapping is tied to a destination; only EIM mappings
        // may meet new remote endpoints.
        if self.config.mapping != Mapping::EndpointIndependent {
            return Err(NatError::Filtered);
        }
        if self.sessions.load(Relaxed) >= self.config.max_sessions && !self.early_drop(&mut slow, now_secs) {
            return Err(NatError::TableFull);
        }
        let orig = FlowKey {
            src: mk.internal.addr,
            sport: mk.internal.port,
            dst: key.src,
            dport: key.sport,
            proto: key.proto,
            zone: key.zone,
        };
        if self.clear_expired(&mut slow, &orig, now_secs).is_some() {
            // The inside already has this flow under another key: leave it be.
            return Err(NatError::NoSession);
        }
        // (Reaping an expired session may have freed the mapping.)
        let Some(m) = slow.mappings.get_mut(&mk) else {
            return Err(NatError::NoSession);
        };
        m.sessions += 1;
        let external = m.external;
        let session = Arc::new(Session::new(orig, (external.addr.to_be_bytes(), external.port), Dir::Reply, now_secs));
        Ok(self.install(&mut slow, mk, false, session, now_secs, Dir::Reply, tcp_flags, len))
    }

    /// At a full table: ends a live session that never saw a reply, if
    /// `early_drop` is on and one is among the [`EARLY_DROP_LOOKS`] sessions
    /// that the expiry wheel would look at first (the oldest, with the
    /// profile's timeouts; with the `rfc` one, opening sessions time out
    /// first anyway). True when one was ended (its mapping and port are
    /// released as at expiry). Costs nothing until the table is full.
    fn early_drop(&self, slow: &mut Slow, now_secs: u32) -> bool {
        if !self.config.early_drop {
            return false;
        }
        // Dead sessions met on the way are taken off the wheel (they were
        // released already), so repeated early drops do not look at them again.
        let mut looks = 0;
        let mut victim = None;
        'slots: for bucket in slow.wheel.slots.values_mut() {
            let mut i = 0;
            while i < bucket.len() && looks < EARLY_DROP_LOOKS {
                looks += 1;
                let (dead, answered) = (bucket[i].is_dead(), bucket[i].is_assured());
                if dead {
                    bucket.swap_remove(i);
                } else if !answered {
                    victim = Some(bucket.swap_remove(i));
                    break 'slots;
                } else {
                    i += 1;
                }
            }
            if looks >= EARLY_DROP_LOOKS {
                break;
            }
        }
        while slow.wheel.slots.first_key_value().is_some_and(|(_, b)| b.is_empty()) {
            slow.wheel.slots.pop_first();
        }
        match victim {
            Some(s) if s.kill() => {
                self.release(slow, &s, now_secs, "early-drop");
                self.stats.early_drops.inc();
                true
            }
            _ => false,
        }
    }

    /// Frees `key` of an expired session (reaping it now). A live session is
    /// never evicted (RFC 6888 REQ-11): its direction under `key` is returned.
    fn clear_expired(&self, slow: &mut Slow, key: &FlowKey, now_secs: u32) -> Option<Dir> {
        // Without cloning the session for the usual answer: none, or live.
        let found = self
            .table
            .with(key, |s, dir| if s.is_expired(now_secs, &self.config.timeouts) { Err(s.clone()) } else { Ok(dir) })?;
        match found {
            Ok(live) => Some(live),
            Err(expired) => {
                if expired.kill() {
                    let reason = crate::conntrack::events::end_reason(&expired);
                    self.release(slow, &expired, now_secs, reason);
                }
                None
            }
        }
    }

    /// Removes a dead session from the table and its mapping; frees the mapping
    /// (into the port hold-down) when it was the last session.
    fn release(&self, slow: &mut Slow, s: &Arc<Session>, now_secs: u32, reason: &str) {
        self.event_about(now_secs, crate::conntrack::events::Kind::Destroy, s, Some(reason));
        self.table.remove(s);
        self.sessions.store(self.sessions.load(Relaxed).saturating_sub(1), Relaxed); // under the slow lock
        let freed = self.release_from_mapping(slow, s, now_secs);
        if let Some(sub) = slow.subscribers.get_mut(&s.orig.src) {
            sub.sessions = sub.sessions.saturating_sub(1);
            sub.ports = sub.ports.saturating_sub(u32::from(freed));
            if sub.sessions == 0 && sub.ports == 0 {
                slow.subscribers.remove(&s.orig.src);
            }
        }
    }

    /// Takes a dead session off its mapping; frees the mapping (into the port
    /// hold-down) when it was the last session, and then says so.
    fn release_from_mapping(&self, slow: &mut Slow, s: &Session, now_secs: u32) -> bool {
        let mk = self.mapping_key(&s.orig);
        let Some(m) = slow.mappings.get_mut(&mk) else {
            return false;
        };
        m.sessions = m.sessions.saturating_sub(1);
        let (last, ext) = (m.sessions == 0, m.external);
        if self.config.filtering == Filtering::AddressDependent {
            drop_remote(&mut slow.remotes, mk, s.orig.dst);
        }
        if last {
            slow.mappings.remove(&mk);
            if self.by_external() {
                slow.by_external.remove(&ext);
            }
            let until = now_secs.saturating_add(self.config.hold_down_secs);
            if self.config.port_overlapping {
                // The port stays taken for this destination only.
                slow.recent.insert(s.reply(), until);
            } else if self.config.port_block.is_some() {
                self.release_block_port(slow, mk, ext, until, now_secs);
            } else {
                slow.hold.hold(until, ext.addr, ext.proto, ext.port);
            }
            self.stats.mappings_freed.inc();
            if self.config.log_mappings {
                self.event(now_secs, NatEventKind::MappingDeleted, ext.proto, mk.internal.to_string(), ext.to_string());
            }
            return true;
        }
        false
    }

    /// A port goes back to its block; an empty block goes back to the pool,
    /// through the hold-down.
    fn release_block_port(&self, slow: &mut Slow, mk: MappingKey, ext: Endpoint, until: u32, now_secs: u32) {
        let key = (mk.internal.addr, mk.internal.proto);
        let Some(mine) = slow.blocks.get_mut(&key) else { return };
        let Some(i) = mine.iter().position(|b| b.contains(ext.port)) else { return };
        mine[i].release(ext.port);
        if mine[i].in_use > 0 {
            return;
        }
        let b = mine.swap_remove(i);
        if mine.is_empty() {
            slow.blocks.remove(&key);
        }
        for p in b.first..=b.first + (b.size - 1) {
            slow.hold.hold(until, ext.addr, ext.proto, p);
        }
        let last = u32::from(b.first) + u32::from(b.size) - 1;
        self.event(
            now_secs,
            NatEventKind::BlockReleased,
            ext.proto,
            Ipv4Addr::from(mk.internal.addr).to_string(),
            format!("{}:{}-{last}", Ipv4Addr::from(ext.addr), b.first),
        );
    }

    /// Reaps expired sessions and ends port hold-downs, at most `budget` of each.
    pub fn expire(&self, now_secs: u32, budget: usize) -> ExpireReport {
        let mut report = ExpireReport::default();
        let mut slow = self.slow.lock();
        for (addr, proto, port) in slow.hold.due(now_secs, budget) {
            if let Some(pool) = slow.pools.get_mut(&(addr, proto)) {
                pool.release(port);
                report.ports_released += 1;
            }
        }
        let batch = slow.wheel.take_due(now_secs, budget);
        let looked = batch.len();
        for s in batch {
            if s.is_dead() {
                continue; // replaced or flushed: already released
            }
            if s.try_kill(now_secs, &self.config.timeouts) {
                self.release(&mut slow, &s, now_secs, crate::conntrack::events::end_reason(&s));
                self.stats.idle_timeouts.inc();
                report.expired += 1;
            } else {
                slow.wheel.reschedule(s, now_secs, &self.config.timeouts);
            }
        }
        if slow.recent.len() > 4 * budget.max(1) || looked < budget {
            slow.recent.retain(|_, t| *t > now_secs);
        }
        report.more = looked >= budget || slow.hold.has_due(now_secs);
        report
    }

    /// Finds the session an ICMP error is about, without touching it (RFC 5508
    /// REQ-6: errors never refresh or end a session). `quoted` is the key of
    /// the quoted packet as it travelled; the error travels the other way.
    pub fn session_for_error(&self, quoted: &FlowKey) -> Option<(Arc<Session>, Dir)> {
        // The quoted packet went in direction d; its key is the session's key for d.
        self.session(quoted)
    }

    /// Live sessions for display.
    pub fn sessions(&self, now_secs: u32) -> Vec<SessionView> {
        let t = &self.config.timeouts;
        let mut v: Vec<SessionView> = self
            .table
            .sessions()
            .into_iter()
            .filter(|s| !s.is_expired(now_secs, t))
            .map(|s| s.view(now_secs, t))
            .collect();
        v.sort_by(|a, b| (a.proto, &a.orig_src, a.orig_sport).cmp(&(b.proto, &b.orig_src, b.orig_sport)));
        v
    }

    /// The newest `limit` live sessions (see [`FlowTable::newest`]).
    pub fn newest_sessions(&self, now_secs: u32, limit: usize, with_closing: bool) -> Page<SessionView> {
        let t = &self.config.timeouts;
        self.table.newest(limit, with_closing, |s| !s.is_expired(now_secs, t)).map(|s| s.view(now_secs, t))
    }

    /// Ports per Elastic IP and protocol (in use, held down, free), per
    /// internal host, and the latest mappings.
    pub fn port_report(&self) -> PortReport {
        let slow = self.slow.lock();
        let held = slow.hold.counts();
        let range = &self.config.ports.range;
        let span = u32::from(*range.end()) - u32::from(*range.start()) + 1;
        let mut pools: Vec<PoolView> = slow
            .pools
            .iter()
            .map(|(&(a, p), pool)| {
                let h = held.get(&(a, p)).copied().unwrap_or(0);
                PoolView {
                    addr: Ipv4Addr::from(a).to_string(),
                    proto: p,
                    range: format!("{}-{}", range.start(), range.end()),
                    in_use: pool.in_use().saturating_sub(h),
                    held: h,
                    free: span.saturating_sub(pool.in_use()),
                }
            })
            .collect();
        pools.sort_by(|a, b| (&a.addr, a.proto).cmp(&(&b.addr, b.proto)));
        let mut hosts: Vec<(String, u32, u32)> =
            slow.subscribers.iter().map(|(a, s)| (Ipv4Addr::from(*a).to_string(), s.ports, s.sessions)).collect();
        hosts.sort();
        let latest = slow.latest.iter().rev().map(|(at, i, e)| (*at, i.proto, i.to_string(), e.to_string())).collect();
        PortReport { name: self.name.clone(), pools, hosts, latest }
    }

    /// Ports in use (including held down) per public address and protocol.
    /// With overlapping ports, a port counts once per destination it serves.
    pub fn ports_in_use(&self) -> Vec<(Ipv4Addr, u8, u32)> {
        let slow = self.slow.lock();
        let mut v: Vec<_> = if self.config.port_overlapping {
            let mut c: HashMap<(u32, u8), u32> = HashMap::new();
            for m in slow.mappings.values() {
                *c.entry((m.external.addr, m.external.proto)).or_default() += 1;
            }
            c.into_iter().map(|((a, p), n)| (Ipv4Addr::from(a), p, n)).collect()
        } else {
            slow.pools.iter().map(|(&(a, p), pool)| (Ipv4Addr::from(a), p, pool.in_use())).collect()
        };
        v.sort();
        v
    }

    /// Number of mappings.
    pub fn mapping_count(&self) -> usize {
        self.slow.lock().mappings.len()
    }

    /// Keeps an unsolicited inbound SYN for a delayed ICMP answer, if the
    /// policy asks for one. False when not kept (policy, full, or already kept).
    pub fn defer_syn(&self, now_secs: u32, key: &FlowKey, ingress: u16, packet: &[u8]) -> bool {
        if self.config.unsolicited_syn != UnsolicitedSyn::IcmpAfter6s {
            return false;
        }
        let mut q = self.deferred.lock();
        if q.len() >= MAX_DEFERRED_SYNS || q.iter().any(|d| d.key == *key) {
            return false;
        }
        let len = packet.len().min(64);
        let mut head = [0u8; 64];
        head[..len].copy_from_slice(&packet[..len]);
        let due = now_secs.saturating_add(SYN_SILENCE_SECS);
        q.push_back(DeferredSyn { due, key: *key, ingress, head, len: len as u8 });
        self.next_deferred.fetch_min(due, Relaxed);
        true
    }

    /// Hands every deferred SYN whose silence is over to `answer`, except those
    /// whose connection was opened from inside meanwhile (REQ-4: then the
    /// original SYN is dropped silently).
    pub fn take_due_syns(&self, now_secs: u32, mut answer: impl FnMut(&DeferredSyn)) {
        if now_secs < self.next_deferred.load(Relaxed) {
            return;
        }
        let mut q = self.deferred.lock();
        while q.front().is_some_and(|d| d.due <= now_secs) {
            let Some(d) = q.pop_front() else { break };
            let opened =
                self.table.with(&d.key, |s, _| !s.is_expired(now_secs, &self.config.timeouts)).unwrap_or(false);
            if !opened {
                answer(&d);
            }
        }
        self.next_deferred.store(q.front().map_or(u32::MAX, |d| d.due), Relaxed);
    }

    /// True for an ICMP type that may open an outbound session (a query request).
    pub fn opens_icmp_session(icmp_type: u8) -> bool {
        matches!(icmp_type, icmpv4::kind::ECHO_REQUEST | icmpv4::kind::TIMESTAMP)
    }
}
