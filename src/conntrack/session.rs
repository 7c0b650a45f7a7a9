//! A session: one connection through the NAT, with its two keys.
//!
//! Everything a packet needs on a table hit is here: the translated endpoint and
//! the checksum deltas, computed once at creation (the VPP NAT44-ED idea), and
//! the mutable state in atomics so that workers on different queues can carry the
//! two directions at once without a lock.

use super::key::FlowKey;
use super::tcp::{Dir, Segment, TcpPhase, TcpState, TcpTrack, Verdict};
use super::timeouts::Timeouts;
use crate::wire::checksum::Delta;
use crate::wire::ipv4::protocol;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};

/// `last_seen` value of a session the reaper has taken: no packet may revive it.
const DEAD: u32 = u32::MAX;

/// Flag: a packet was seen in the reply direction (conntrack's `[ASSURED]` for
/// UDP and ICMP; for TCP, the handshake completed).
const ASSURED: u8 = 0x01;

/// The rewrite a session applies to one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// New address (source for outbound, destination for inbound).
    pub addr: [u8; 4],
    /// New port or ICMP identifier.
    pub port: u16,
    /// Checksum delta of the address change (IP header, and the L4 pseudo-header).
    pub addr_delta: Delta,
    /// Checksum delta of the port change (L4 header only).
    pub port_delta: Delta,
}

/// One connection through a NAT gateway.
#[derive(Debug)]
pub struct Session {
    /// The inside view: internal endpoint -> remote endpoint (outbound packets, before translation).
    pub orig: FlowKey,
    /// The external endpoint (address, port) the inside one is translated
    /// to; with `orig` it makes the outside view, [`Session::reply`]. Kept
    /// as such, not as a second key, so that a session fits in 96 bytes.
    ext_addr: u32,
    ext_port: u16,
    /// Which side sent the first packet (for TCP tracking): `Original` unless
    /// an inbound packet created the session through a filter that allows it.
    pub opener: Dir,
    /// Which of its tracker's timeout sets applies (the tracker's; a NAT
    /// gateway's sessions have one, 0).
    profile: u8,
    pub created_secs: u32,
    last_seen: AtomicU32,
    track: AtomicU8,
    flags: AtomicU8,
    packets: [AtomicU64; 2],
    bytes: [AtomicU64; 2],
    out_addr_delta: Delta,
    out_port_delta: Delta,
}

/// A snapshot of a session for display.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SessionView {
    pub proto: u8,
    pub orig_src: String,
    pub orig_dst: String,
    pub orig_sport: u16,
    pub orig_dport: u16,
    pub reply_src: String,
    pub reply_dst: String,
    pub reply_sport: u16,
    pub reply_dport: u16,
    pub state: Option<String>,
    pub expires_in: u32,
    pub assured: bool,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub age: u32,
}

impl Session {
    /// A session for an outbound flow `orig` translated to `external` (address, port).
    pub fn new(orig: FlowKey, external: ([u8; 4], u16), opener: Dir, now_secs: u32) -> Session {
        let out_addr_delta = Delta::ZERO.addr(orig.src.to_be_bytes(), external.0);
        let out_port_delta = Delta::ZERO.word(orig.sport, external.1);
        Session {
            orig,
            ext_addr: u32::from_be_bytes(external.0),
            ext_port: external.1,
            opener,
            profile: 0,
            created_secs: now_secs,
            last_seen: AtomicU32::new(now_secs),
            track: AtomicU8::new(0),
            flags: AtomicU8::new(0),
            packets: Default::default(),
            bytes: Default::default(),
            out_addr_delta,
            out_port_delta,
        }
    }

    /// The outside view: remote endpoint -> external endpoint (the key of
    /// inbound packets, before translation).
    #[inline]
    pub fn reply(&self) -> FlowKey {
        self.orig.reply_via(self.ext_addr, self.ext_port)
    }

    /// The rewrite for a packet travelling in `dir`.
    #[inline]
    pub fn rewrite(&self, dir: Dir) -> Rewrite {
        match dir {
            Dir::Original => Rewrite {
                addr: self.ext_addr.to_be_bytes(),
                port: self.ext_port,
                addr_delta: self.out_addr_delta,
                port_delta: self.out_port_delta,
            },
            Dir::Reply => Rewrite {
                addr: self.orig.src.to_be_bytes(),
                port: self.orig.sport,
                addr_delta: self.out_addr_delta.reversed(),
                port_delta: self.out_port_delta.reversed(),
            },
        }
    }

    /// Which timeout set of its tracker applies.
    #[inline]
    pub fn profile(&self) -> u8 {
        self.profile
    }

    /// Chooses the timeout set (before the session is shared).
    pub fn with_profile(mut self, p: u8) -> Session {
        self.profile = p;
        self
    }

    pub fn tcp_track(&self) -> TcpTrack {
        TcpTrack(self.track.load(Relaxed))
    }

    /// A TCP session after a FIN or a RST.
    pub fn is_closing(&self) -> bool {
        self.orig.proto == protocol::TCP
            && matches!(self.tcp_track().state().phase(), super::tcp::TcpPhase::Closing | super::tcp::TcpPhase::Reset)
    }

    /// The idle timeout that applies now.
    pub fn timeout(&self, t: &Timeouts) -> u32 {
        if self.orig.proto == protocol::UDP && t.udp_stream > 0 && self.is_stream() {
            return t.udp_stream;
        }
        let phase =
            if self.orig.proto == protocol::TCP { self.tcp_track().state().phase() } else { TcpPhase::Established };
        t.for_session(self.orig.proto, phase)
    }

    /// True when the session is dead or idle for longer than its timeout at `now_secs`.
    #[inline]
    pub fn is_expired(&self, now_secs: u32, t: &Timeouts) -> bool {
        let seen = self.last_seen.load(Relaxed);
        if seen == DEAD {
            return true;
        }
        // Seen this second (a busy flow): live whatever the timeout, without
        // working out which timeout applies.
        now_secs > seen && now_secs > seen.saturating_add(self.timeout(t))
    }

    pub fn is_dead(&self) -> bool {
        self.last_seen.load(Relaxed) == DEAD
    }

    /// The second at which the session expires if no packet refreshes it.
    pub fn deadline(&self, t: &Timeouts) -> u32 {
        self.last_seen.load(Relaxed).saturating_add(self.timeout(t))
    }

    /// Refreshes the idle timer. Writes at most once a second, so two workers
    /// carrying the two directions do not bounce the cache line on every packet;
    /// never revives a session the reaper took.
    #[inline]
    pub fn touch(&self, now_secs: u32) {
        let seen = self.last_seen.load(Relaxed);
        if seen < now_secs && seen != DEAD {
            let _ = self.last_seen.compare_exchange(seen, now_secs, Relaxed, Relaxed);
        }
    }

    /// Takes the session for removal if it is expired at `now_secs`. After this
    /// returns true, every lookup treats it as gone.
    pub fn try_kill(&self, now_secs: u32, t: &Timeouts) -> bool {
        loop {
            let seen = self.last_seen.load(Relaxed);
            if seen == DEAD {
                return false;
            }
            if now_secs <= seen.saturating_add(self.timeout(t)) {
                return false;
            }
            if self.last_seen.compare_exchange(seen, DEAD, Relaxed, Relaxed).is_ok() {
                return true;
            }
        }
    }

    /// Marks the session dead unconditionally (replaced by a new one, or flushed).
    pub fn kill(&self) -> bool {
        self.last_seen.swap(DEAD, Relaxed) != DEAD
    }

    /// Counts a packet in `dir` and marks the session assured on the first reply.
    ///
    /// Each direction of a flow arrives on one TUN queue (the kernel picks the
    /// queue by flow, or with CPU steering by the sender's core, which a flow
    /// seldom leaves), so one worker counts it: a plain load and store, no
    /// locked instruction. Should a flow move queues, a count may be lost,
    /// never the session.
    #[inline]
    pub fn account(&self, dir: Dir, len: usize) {
        let p = &self.packets[dir.index()];
        p.store(p.load(Relaxed).wrapping_add(1), Relaxed);
        let b = &self.bytes[dir.index()];
        b.store(b.load(Relaxed).wrapping_add(len as u64), Relaxed);
        if dir == Dir::Reply && self.flags.load(Relaxed) & ASSURED == 0 {
            self.flags.fetch_or(ASSURED, Relaxed);
        }
    }

    /// More than one request-response: two packets or more each way.
    pub fn is_stream(&self) -> bool {
        self.packets[0].load(Relaxed) >= 2 && self.packets[1].load(Relaxed) >= 2
    }

    pub fn is_assured(&self) -> bool {
        self.flags.load(Relaxed) & ASSURED != 0
    }

    /// Runs the TCP tracker for a segment with `tcp_flags` seen in `dir`
    /// (relative to the NAT: `Original` is outbound): the verdict, and the
    /// state before. Lock-free: retries if another worker moved the state
    /// meanwhile.
    #[inline]
    pub fn track_tcp(&self, dir: Dir, tcp_flags: u8) -> (Verdict, TcpState) {
        let mut cur = self.track.load(Relaxed);
        // The common case, an ACK on an established connection (no FIN seen),
        // changes nothing whichever side sends it.
        if cur == TcpState::Established as u8 && Segment::classify(tcp_flags) == Segment::Ack {
            return (Verdict::Move(TcpState::Established), TcpState::Established);
        }
        // The tracker's direction is relative to whoever opened the connection.
        let tdir = if self.opener == Dir::Original { dir } else { dir.reverse() };
        loop {
            let (verdict, next) = TcpTrack(cur).step(tdir, tcp_flags);
            if next.0 == cur {
                return (verdict, TcpTrack(cur).state());
            }
            match self.track.compare_exchange_weak(cur, next.0, Relaxed, Relaxed) {
                Ok(_) => return (verdict, TcpTrack(cur).state()),
                Err(now) => cur = now,
            }
        }
    }

    /// A snapshot for `natgw conntrack`.
    pub fn view(&self, now_secs: u32, t: &Timeouts) -> SessionView {
        let state =
            if self.orig.proto == protocol::TCP { Some(self.tcp_track().state().name().to_string()) } else { None };
        let reply = self.reply();
        SessionView {
            proto: self.orig.proto,
            orig_src: self.orig.src_addr().to_string(),
            orig_dst: self.orig.dst_addr().to_string(),
            orig_sport: self.orig.sport,
            orig_dport: self.orig.dport,
            reply_src: reply.src_addr().to_string(),
            reply_dst: reply.dst_addr().to_string(),
            reply_sport: reply.sport,
            reply_dport: reply.dport,
            state,
            expires_in: self.deadline(t).saturating_sub(now_secs),
            assured: self.is_assured(),
            packets: [self.packets[0].load(Relaxed), self.packets[1].load(Relaxed)],
            bytes: [self.bytes[0].load(Relaxed), self.bytes[1].load(Relaxed)],
            age: now_secs.saturating_sub(self.created_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::timeouts::Profile;
    use std::net::Ipv4Addr;

    fn session() -> Session {
        let k = FlowKey::new(17, Ipv4Addr::new(10, 0, 1, 10), 5000, Ipv4Addr::new(198, 51, 100, 10), 53);
        Session::new(k, ([203, 0, 113, 5], 61000), Dir::Original, 100)
    }

    #[test]
    fn a_session_stays_small() {
        // With the Arc's two counts and malloc's 8 bytes, 72 bytes fill a
        // 96-byte chunk: 1M sessions within the 256 MB budget of issue 5
        // (bench/micro measures it). A field more costs 16 bytes a session.
        assert!(std::mem::size_of::<Session>() <= 72, "{}", std::mem::size_of::<Session>());
    }

    #[test]
    fn keys_and_rewrites() {
        let s = session();
        assert_eq!(
            s.reply(),
            FlowKey::new(17, Ipv4Addr::new(198, 51, 100, 10), 53, Ipv4Addr::new(203, 0, 113, 5), 61000)
        );
        let out = s.rewrite(Dir::Original);
        assert_eq!((out.addr, out.port), ([203, 0, 113, 5], 61000));
        let back = s.rewrite(Dir::Reply);
        assert_eq!((back.addr, back.port), ([10, 0, 1, 10], 5000));
        assert_eq!(back.addr_delta, out.addr_delta.reversed());
    }

    #[test]
    fn expiry_and_kill() {
        let t = Timeouts::profile(Profile::Rfc);
        let s = session();
        assert!(!s.is_expired(400, &t));
        assert!(s.is_expired(401, &t));
        s.touch(300);
        assert!(!s.is_expired(600, &t));
        assert!(!s.try_kill(600, &t));
        assert!(s.try_kill(601, &t));
        s.touch(700);
        assert!(s.is_dead(), "a packet must not revive a reaped session");
    }
}
