//! The tracker: connection tracking for the flows that security groups
//! decide, whether or not a NAT translates them (flows between hosts of the
//! VPC, through an Elastic IP, through a NAT gateway).
//!
//! A flow is tracked under the 5-tuple of its first packet at the first
//! host interface it meets (leaving its sender, or, from the internet,
//! arriving at its host after the internet gateway's or the NAT gateway's
//! translation), and under that tuple's reply. The decision on the first
//! packet is the whole path's (the sender's outbound groups and the
//! receiver's inbound groups); every later packet of the flow, either way,
//! passes because the flow is tracked, whatever the rules say now (AWS:
//! removing a rule does not cut a tracked connection).
//!
//! The entries are [`Session`]s with no rewrite (the external endpoint is the
//! internal one), in a [`FlowTable`] of their own, with the same TCP state
//! machine and AWS's security group timeouts
//! ([`Timeouts::security_groups`]). A NATed flow also has its NAT gateway's
//! session, which carries the rewrite; `natgw conntrack` shows the two
//! together.
//!
//! Like the NAT gateway: lookups are lock-free reads of the shared table,
//! creation and expiry happen under one slow-path lock, an expiry wheel by
//! second bounds the reaper's work, and the table has a ceiling
//! (`max_flows`) past which a new flow is refused (AWS's
//! `conntrack_allowance_exceeded`).

use super::key::FlowKey;
use super::session::{Session, SessionView};
use super::table::{FlowTable, Page};
use super::tcp::{Dir, Verdict};
use super::timeouts::Timeouts;
use crate::counter::Counter;
use crate::wire::ipv4::protocol;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Entries the table has room for before it first grows.
const INITIAL: usize = 4096;

/// The tracker's own counts, written under its lock.
#[derive(Debug, Default)]
pub struct TrackerStats {
    pub created: Counter,
    pub expired: Counter,
    /// New flows refused at `max_flows`.
    pub refused: Counter,
}

#[derive(Debug, Default)]
struct Slow {
    wheel: super::wheel::Wheel,
}

/// Why a flow could not be tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackError {
    /// `max_flows` entries are live.
    Full,
}

/// Tracked flows.
#[derive(Debug)]
pub struct Tracker {
    /// The timeout sets: 0 is AWS's defaults, the others interfaces' own
    /// (an ENI's connection tracking configuration), by a session's profile.
    timeouts: Vec<Timeouts>,
    max_flows: usize,
    table: FlowTable,
    slow: Mutex<Slow>,
    live: AtomicUsize,
    pub stats: TrackerStats,
    hub: Option<Arc<super::events::Hub>>,
}

impl Tracker {
    pub fn new(timeouts: Timeouts, max_flows: usize) -> Tracker {
        Tracker {
            timeouts: vec![timeouts],
            max_flows,
            table: FlowTable::with_capacity(max_flows.min(INITIAL) * 2),
            slow: Mutex::new(Slow::default()),
            live: AtomicUsize::new(0),
            stats: TrackerStats::default(),
            hub: None,
        }
    }

    /// Sends the tracker's events to `hub`.
    pub fn attach_events(&mut self, hub: Arc<super::events::Hub>) {
        self.hub = Some(hub);
    }

    #[inline]
    fn event_about(&self, at: u32, kind: super::events::Kind, s: &Session, reason: Option<&str>) {
        if let Some(h) = &self.hub
            && h.armed()
        {
            h.emit(at, kind, "security-groups", s, reason);
        }
    }

    /// Adds the interfaces' own timeout sets, profiles 1, 2, ... in order.
    pub fn with_profiles(mut self, extra: &[Timeouts]) -> Tracker {
        self.timeouts.extend_from_slice(extra);
        self
    }

    /// The default timeouts (profile 0).
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts[0]
    }

    /// The timeouts that apply to `s`.
    #[inline]
    fn of(&self, s: &Session) -> &Timeouts {
        self.timeouts.get(usize::from(s.profile())).unwrap_or(&self.timeouts[0])
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.live.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The packet `key` of a tracked flow: carries it (TCP state, idle
    /// timer, counts) and says which way it travels. `None`: not tracked.
    #[inline]
    pub fn lookup(&self, now_secs: u32, key: &FlowKey, tcp_flags: u8, len: usize) -> Option<Dir> {
        self.table.with(key, |s, dir| self.carry(s, now_secs, dir, tcp_flags, len).then_some(dir)).flatten()
    }

    /// Whether `key` belongs to a live tracked flow, without touching it
    /// (ICMP errors about a flow, which must not refresh it).
    pub fn contains(&self, now_secs: u32, key: &FlowKey) -> bool {
        self.table.with(key, |s, _| !s.is_expired(now_secs, self.of(s))).unwrap_or(false)
    }

    /// The entry under `key`, for a worker's flow cache (which then calls
    /// [`Self::carry`] for each packet).
    pub fn get(&self, key: &FlowKey) -> Option<(Arc<Session>, Dir)> {
        self.table.get(key)
    }

    /// What a packet in `dir` does to a tracked flow found here or in a flow
    /// cache. False when the entry expired (look again).
    #[inline]
    pub fn carry(&self, s: &Session, now_secs: u32, dir: Dir, tcp_flags: u8, len: usize) -> bool {
        if s.is_expired(now_secs, self.of(s)) {
            return false;
        }
        if s.orig.proto == protocol::TCP {
            // Out-of-window segments are the hosts' business: a security
            // group does not drop them (nor does AWS document that it would).
            if let (Verdict::Move(next), before) = s.track_tcp(dir, tcp_flags)
                && next != before
            {
                self.event_about(now_secs, super::events::Kind::Update, s, None);
            }
        }
        s.touch(now_secs);
        s.account(dir, len);
        true
    }

    /// Starts tracking the flow whose first packet is `key`, under timeout
    /// set `profile`. If another worker tracked it meanwhile, that entry is
    /// carried instead.
    pub fn track(
        &self,
        now_secs: u32,
        key: &FlowKey,
        tcp_flags: u8,
        len: usize,
        profile: u8,
    ) -> Result<(), TrackError> {
        let mut slow = self.slow.lock();
        if let Some(found) = self.table.with(key, |s, dir| (s.clone(), dir)) {
            let (s, dir) = found;
            if self.carry(&s, now_secs, dir, tcp_flags, len) {
                return Ok(());
            }
            if s.kill() {
                self.release(&s);
            }
        }
        // A tuple's reply key may belong to another, expired entry.
        let reply = key.reply_via(key.src, key.sport);
        if let Some(s) = self.table.with(&reply, |s, _| s.clone())
            && s.is_expired(now_secs, self.of(&s))
            && s.kill()
        {
            self.release(&s);
        }
        if self.len() >= self.max_flows {
            self.stats.refused.inc();
            return Err(TrackError::Full);
        }
        // An unknown profile gets the defaults (see `of`).
        let s = Arc::new(
            Session::new(*key, (key.src.to_be_bytes(), key.sport), Dir::Original, now_secs).with_profile(profile),
        );
        if key.proto == protocol::TCP {
            s.track_tcp(Dir::Original, tcp_flags);
        }
        s.account(Dir::Original, len);
        self.table.insert(&s);
        self.event_about(now_secs, super::events::Kind::New, &s, None);
        let t = *self.of(&s);
        slow.wheel.reschedule(s, now_secs, &t);
        self.live.store(self.len() + 1, Relaxed); // under the lock
        self.stats.created.inc();
        Ok(())
    }

    fn release(&self, s: &Arc<Session>) {
        self.table.remove(s);
        self.live.store(self.len().saturating_sub(1), Relaxed); // under the lock
    }

    /// Ends flows idle past their timeout, looking at most at `budget`
    /// entries; true when work was left for another pass.
    pub fn expire(&self, now_secs: u32, budget: usize) -> bool {
        let mut slow = self.slow.lock();
        let batch = slow.wheel.take_due(now_secs, budget);
        let looked = batch.len();
        for s in batch {
            if s.is_dead() {
                continue;
            }
            let t = *self.of(&s);
            if s.try_kill(now_secs, &t) {
                self.event_about(now_secs, super::events::Kind::Destroy, &s, Some(super::events::end_reason(&s)));
                self.release(&s);
                self.stats.expired.inc();
            } else {
                slow.wheel.reschedule(s, now_secs, &t);
            }
        }
        looked >= budget
    }

    /// Ends every flow (a flush).
    pub fn flush(&self) -> usize {
        let mut slow = self.slow.lock();
        let mut n = 0;
        for (_, bucket) in std::mem::take(&mut slow.wheel.slots) {
            for s in bucket {
                if s.kill() {
                    self.release(&s);
                    n += 1;
                }
            }
        }
        n
    }

    /// Live flows for display, in a stable order.
    pub fn flows(&self, now_secs: u32) -> Vec<(FlowKey, SessionView)> {
        let mut v: Vec<(FlowKey, SessionView)> = self
            .table
            .sessions()
            .into_iter()
            .filter(|s| !s.is_expired(now_secs, self.of(s)))
            .map(|s| (s.orig, s.view(now_secs, self.of(&s))))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// The newest `limit` live flows that `keep` accepts (see [`FlowTable::newest`]).
    pub fn newest(
        &self,
        now_secs: u32,
        limit: usize,
        with_closing: bool,
        keep: impl Fn(&FlowKey) -> bool,
    ) -> Page<(FlowKey, SessionView)> {
        self.table
            .newest(limit, with_closing, |s| !s.is_expired(now_secs, self.of(s)) && keep(&s.orig))
            .map(|s| (s.orig, s.view(now_secs, self.of(&s))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::flags;
    use std::net::Ipv4Addr;

    fn key(proto: u8, sport: u16) -> FlowKey {
        FlowKey::new(proto, Ipv4Addr::new(10, 0, 1, 10), sport, Ipv4Addr::new(10, 0, 2, 20), 80)
    }

    #[test]
    fn a_tracked_flow_is_found_both_ways_until_it_is_idle_too_long() {
        let t = Tracker::new(Timeouts::security_groups(), 10);
        let k = key(protocol::UDP, 5000);
        assert_eq!(t.lookup(100, &k, 0, 60), None);
        t.track(100, &k, 0, 60, 0).unwrap();
        assert_eq!(t.lookup(101, &k.reply(), 0, 60), Some(Dir::Reply));
        assert_eq!(t.lookup(101, &k, 0, 60), Some(Dir::Original));
        // One request-response: 30 s.
        assert!(!t.expire(131, 100));
        assert_eq!(t.len(), 1);
        assert!(!t.expire(133, 100));
        assert_eq!((t.len(), t.lookup(133, &k, 0, 60)), (0, None));
        assert_eq!(t.stats.expired.get(), 1);
    }

    #[test]
    fn an_interfaces_own_timeouts_apply_to_the_flows_it_tracks() {
        let own = Timeouts { tcp_established: 60, udp: 45, ..Timeouts::security_groups() };
        let t = Tracker::new(Timeouts::security_groups(), 10).with_profiles(&[own]);
        let (short, long) = (key(protocol::TCP, 6000), key(protocol::TCP, 6001));
        for (k, profile) in [(short, 1), (long, 0)] {
            t.track(0, &k, flags::SYN, 60, profile).unwrap();
            t.lookup(0, &k.reply(), flags::SYN | flags::ACK, 60);
            t.lookup(0, &k, flags::ACK, 60);
        }
        let u = key(protocol::UDP, 6002);
        t.track(0, &u, 0, 60, 1).unwrap();
        for now in 1..=62 {
            t.expire(now, 100);
        }
        // Established 60 s on the interface's own set; AWS's 5 days otherwise.
        assert_eq!(t.lookup(62, &short, flags::ACK, 60), None);
        assert_eq!(t.lookup(62, &long, flags::ACK, 60), Some(Dir::Original));
        assert_eq!(t.lookup(62, &u, 0, 60), None, "UDP after 45 s");
        // An unknown profile falls back to the defaults.
        let k = key(protocol::UDP, 6003);
        t.track(100, &k, 0, 60, 9).unwrap();
        t.expire(125, 100);
        assert_eq!(t.lookup(125, &k, 0, 60), Some(Dir::Original));
    }

    #[test]
    fn udp_streams_and_established_tcp_get_awss_longer_timeouts() {
        let t = Tracker::new(Timeouts::security_groups(), 10);
        let u = key(protocol::UDP, 5000);
        t.track(0, &u, 0, 60, 0).unwrap();
        for _ in 0..2 {
            t.lookup(0, &u.reply(), 0, 60);
            t.lookup(0, &u, 0, 60);
        }
        let c = key(protocol::TCP, 5001);
        t.track(0, &c, flags::SYN, 60, 0).unwrap();
        t.lookup(0, &c.reply(), flags::SYN | flags::ACK, 60);
        t.lookup(0, &c, flags::ACK, 60);
        for now in (30..=3600).step_by(30) {
            t.expire(now, 100);
        }
        // The stream lived 180 s past its last packet; TCP is established.
        assert_eq!(t.lookup(3600, &u, 0, 60), None);
        assert_eq!(t.lookup(3600, &c, flags::ACK, 60), Some(Dir::Original));
        let view = &t.flows(3600)[0].1;
        assert_eq!(view.state.as_deref(), Some("ESTABLISHED"));
        assert!(view.expires_in > 400_000);
    }

    #[test]
    fn a_full_tracker_refuses_and_counts() {
        let t = Tracker::new(Timeouts::security_groups(), 2);
        t.track(0, &key(protocol::UDP, 1), 0, 1, 0).unwrap();
        t.track(0, &key(protocol::UDP, 2), 0, 1, 0).unwrap();
        assert_eq!(t.track(0, &key(protocol::UDP, 3), 0, 1, 0), Err(TrackError::Full));
        // The same flow again is carried, not refused.
        assert_eq!(t.track(0, &key(protocol::UDP, 2), 0, 1, 0), Ok(()));
        assert_eq!(t.stats.refused.get(), 1);
        assert_eq!(t.flush(), 2);
        assert!(t.is_empty());
        assert_eq!(t.track(0, &key(protocol::UDP, 3), 0, 1, 0), Ok(()));
    }

    #[test]
    fn icmp_queries_are_tracked_by_identifier() {
        let t = Tracker::new(Timeouts::security_groups(), 4);
        let k = FlowKey::new(protocol::ICMP, Ipv4Addr::new(10, 0, 1, 10), 77, Ipv4Addr::new(10, 0, 2, 20), 77);
        t.track(0, &k, 0, 84, 0).unwrap();
        let reply = FlowKey::new(protocol::ICMP, Ipv4Addr::new(10, 0, 2, 20), 77, Ipv4Addr::new(10, 0, 1, 10), 77);
        assert_eq!(t.lookup(1, &reply, 0, 84), Some(Dir::Reply));
        assert!(t.contains(1, &k));
    }
}
