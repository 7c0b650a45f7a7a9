//! Connection tracking events, in the manner of `conntrack -E`: NEW when a
//! flow is tracked, UPDATE when its TCP state changes, DESTROY with the
//! reason when it ends. Nothing is kept unless someone listens
//! (`natgw conntrack --events` arms the hub and keeps it armed by asking):
//! unarmed, an event costs one relaxed load, and only where one would be
//! made (a new flow, a TCP state change, a flow's end), never per packet.

use super::key::FlowKey;
use super::session::Session;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Events kept for the listener.
const KEPT: usize = 10_000;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    New,
    Update,
    Destroy,
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds of the gateway's clock.
    pub at: u32,
    pub kind: Kind,
    /// `nat-1`, or `security-groups` (the tracker).
    pub zone: String,
    pub orig: FlowKey,
    pub reply: FlowKey,
    /// The TCP state after the event.
    pub state: Option<String>,
    /// DESTROY: `timeout`, `rst`, `fin`, `early-drop`.
    pub reason: Option<String>,
}

/// Where events wait for the listener.
#[derive(Debug, Default)]
pub struct Hub {
    armed: AtomicBool,
    seq: AtomicU64,
    events: Mutex<VecDeque<(u64, Event)>>,
    /// Events lost because the listener fell behind by `KEPT`.
    pub lost: AtomicU64,
}

impl Hub {
    pub fn arm(&self, on: bool) {
        self.armed.store(on, Relaxed);
        if !on {
            self.events.lock().clear();
        }
    }

    #[inline]
    pub fn armed(&self) -> bool {
        self.armed.load(Relaxed)
    }

    /// Records an event about `s` (in zone `zone`), if armed.
    pub fn emit(&self, at: u32, kind: Kind, zone: &str, s: &Session, reason: Option<&str>) {
        if !self.armed() {
            return;
        }
        let state =
            (s.orig.proto == crate::wire::ipv4::protocol::TCP).then(|| s.tcp_track().state().name().to_string());
        let e = Event {
            at,
            kind,
            zone: zone.to_string(),
            orig: s.orig,
            reply: s.reply(),
            state,
            reason: reason.map(str::to_string),
        };
        let seq = self.seq.fetch_add(1, Relaxed) + 1;
        let mut q = self.events.lock();
        if q.len() >= KEPT {
            q.pop_front();
            self.lost.fetch_add(1, Relaxed);
        }
        q.push_back((seq, e));
    }

    /// Events after sequence number `after`.
    pub fn after(&self, after: u64) -> Vec<(u64, Event)> {
        self.events.lock().iter().filter(|(s, _)| *s > after).cloned().collect()
    }
}

/// Why a session ended, from its last TCP state.
pub fn end_reason(s: &Session) -> &'static str {
    use super::tcp::TcpState::*;
    if s.orig.proto != crate::wire::ipv4::protocol::TCP {
        return "timeout";
    }
    match s.tcp_track().state() {
        Close => "rst",
        FinWait | CloseWait | LastAck | TimeWait => "fin",
        _ => "timeout",
    }
}
