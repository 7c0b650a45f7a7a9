//! `natgw capture`: copies of the packets the gateway read and wrote on one
//! interface, or of the packets one NAT gateway translated, each as it was
//! read (before the walk rewrote it) and as it was written (after).
//!
//! Off (the usual case), it costs each packet one relaxed load beside the
//! live trace's. Armed, a worker copies the packet's head (at most
//! [`SNAPLEN`] bytes) before the walk into its own scratch buffer, and
//! offers both copies after; a packet the capture selects and its filter
//! matches (before or after) goes into a ring of [`RING`] preallocated
//! records, or is counted in `dropped` when the ring is full (the reader is
//! slow). Nothing allocates on the packet path: the ring's buffers are made
//! when the capture is armed, and the reader copies them out.

use super::action::{Action, DropReason};
use super::live::Filter;
use super::topology::IfId;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Bytes kept of each packet (a larger one, a TSO super-packet say, is
/// truncated; its length is kept).
pub const SNAPLEN: usize = 2048;
/// Records the ring holds until the reader takes them.
pub const RING: usize = 4096;

/// Which packets a capture takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Select {
    /// Those read or written on this interface.
    Interface(IfId),
    /// Those a NAT gateway translated: read on the internet interface for
    /// one of its Elastic IPs, or written there from one of them.
    Nat { internet: IfId, elastic_ips: Vec<u32> },
}

/// What happened to a captured packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Forwarded(IfId),
    /// Dropped, and answered (an ICMP error, an echo reply, a RST) out of the interface.
    Answered {
        egress: IfId,
        cause: DropReason,
    },
    Dropped(DropReason),
    /// Held (a fragment waiting for its first).
    Held,
}

impl Outcome {
    fn of(a: Action) -> Outcome {
        match a {
            Action::Forward(e) => Outcome::Forwarded(e),
            Action::Reply { egress, cause } => Outcome::Answered { egress, cause },
            Action::Drop(r) => Outcome::Dropped(r),
            Action::Held => Outcome::Held,
        }
    }

    /// Where the packet (or the gateway's answer) was written.
    pub fn egress(self) -> Option<IfId> {
        match self {
            Outcome::Forwarded(e) | Outcome::Answered { egress: e, .. } => Some(e),
            Outcome::Dropped(_) | Outcome::Held => None,
        }
    }
}

/// One captured packet.
#[derive(Clone, Debug)]
pub struct Record {
    /// The worker's clock when it read the packet.
    pub t_ns: u64,
    pub ingress: IfId,
    pub outcome: Outcome,
    /// Its head as read, and its length.
    pub before: Vec<u8>,
    pub before_len: usize,
    /// Its head as written (or the answer), and its length; empty when
    /// nothing was written.
    pub after: Vec<u8>,
    pub after_len: usize,
}

impl Record {
    fn empty() -> Record {
        Record {
            t_ns: 0,
            ingress: 0,
            outcome: Outcome::Held,
            before: Vec::with_capacity(SNAPLEN),
            before_len: 0,
            after: Vec::with_capacity(SNAPLEN),
            after_len: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Ring {
    select: Option<Select>,
    filter: Filter,
    slots: Vec<Record>,
    len: usize,
}

/// The gateway's capture.
#[derive(Debug, Default)]
pub struct Capture {
    armed: AtomicBool,
    ring: Mutex<Ring>,
    /// Packets selected while the ring was full.
    pub dropped: AtomicU64,
    /// Packets taken.
    pub taken: AtomicU64,
}

/// Copies `b`'s head into `into` (its capacity is [`SNAPLEN`]: no allocation).
pub fn keep_head(into: &mut Vec<u8>, b: &[u8]) {
    into.clear();
    into.extend_from_slice(&b[..b.len().min(SNAPLEN)]);
}

impl Capture {
    /// Starts capturing what `select` and `filter` pick (the ring is made here).
    pub fn arm(&self, select: Select, filter: Filter) {
        let mut r = self.ring.lock();
        if r.slots.len() != RING {
            r.slots = (0..RING).map(|_| Record::empty()).collect();
        }
        r.len = 0;
        r.select = Some(select);
        r.filter = filter;
        self.dropped.store(0, Relaxed);
        self.taken.store(0, Relaxed);
        self.armed.store(true, Relaxed);
    }

    /// Stops capturing and frees the ring.
    pub fn disarm(&self) {
        self.armed.store(false, Relaxed);
        let mut r = self.ring.lock();
        r.select = None;
        r.slots = Vec::new();
        r.len = 0;
    }

    #[inline]
    pub fn armed(&self) -> bool {
        self.armed.load(Relaxed)
    }

    /// Offers a packet read on `ingress` as `before` (its head; `before_len`
    /// its length) that became `action`, the buffer now holding `after`.
    pub fn offer(&self, t_ns: u64, ingress: IfId, before: &[u8], before_len: usize, action: Action, after: &[u8]) {
        let outcome = Outcome::of(action);
        let written = outcome.egress().is_some();
        let mut r = self.ring.lock();
        let Some(select) = &r.select else { return };
        let picked = match select {
            Select::Interface(i) => ingress == *i || outcome.egress() == Some(*i),
            Select::Nat { internet, elastic_ips } => {
                let field = |b: &[u8], src: bool| {
                    crate::wire::build::fields(b).map(|(_, s, d, _, _)| u32::from_be_bytes(if src { s } else { d }))
                };
                (ingress == *internet && field(before, false).is_some_and(|a| elastic_ips.contains(&a)))
                    || (outcome.egress() == Some(*internet)
                        && written
                        && field(after, true).is_some_and(|a| elastic_ips.contains(&a)))
            }
        };
        if !picked || !(r.filter.matches(before) || (written && r.filter.matches(after))) {
            return;
        }
        if r.len == r.slots.len() {
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        let i = r.len;
        r.len += 1;
        let rec = &mut r.slots[i];
        rec.t_ns = t_ns;
        rec.ingress = ingress;
        rec.outcome = outcome;
        keep_head(&mut rec.before, before);
        rec.before_len = before_len;
        if written {
            keep_head(&mut rec.after, after);
            rec.after_len = after.len();
        } else {
            rec.after.clear();
            rec.after_len = 0;
        }
        self.taken.fetch_add(1, Relaxed);
    }

    /// The records taken since the last call, oldest first (copied out: the
    /// ring's buffers stay for the workers).
    pub fn take(&self) -> Vec<Record> {
        let mut r = self.ring.lock();
        let n = r.len;
        r.len = 0;
        r.slots[..n].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build;

    #[test]
    fn a_capture_takes_what_it_selects_counts_what_the_full_ring_refuses_and_stops() {
        let c = Capture::default();
        let out = build::probe(17, [10, 0, 1, 10], [198, 51, 100, 10], 5000, 7, 0);
        let translated = build::probe(17, [203, 0, 113, 5], [198, 51, 100, 10], 40000, 7, 0);
        let other = build::probe(17, [10, 0, 0, 10], [198, 51, 100, 10], 5000, 7, 0);
        let nat = u32::from_be_bytes([203, 0, 113, 5]);
        c.arm(Select::Nat { internet: 3, elastic_ips: vec![nat] }, Filter::default());
        c.offer(1, 0, &out, out.len(), Action::Forward(3), &translated);
        // Through the internet gateway, not the NAT: not nat-1's.
        c.offer(2, 1, &other, other.len(), Action::Forward(3), &other);
        // Dropped on the way out: nothing was written from the Elastic IP.
        c.offer(3, 0, &out, out.len(), Action::Drop(DropReason::SgDeny), &out);
        let got = c.take();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].t_ns, got[0].ingress, got[0].outcome), (1, 0, Outcome::Forwarded(3)));
        assert_eq!((got[0].before.as_slice(), got[0].after.as_slice()), (&out[..], &translated[..]));

        c.arm(Select::Interface(0), Filter::parse(&["port".into(), "7".into()]).unwrap());
        for t in 0..RING as u64 + 5 {
            c.offer(t, 0, &out, out.len(), Action::Drop(DropReason::SgDeny), &out);
        }
        assert_eq!((c.take().len(), c.dropped.load(Relaxed)), (RING, 5), "the full ring counts what it refuses");
        assert_eq!(c.take().len(), 0, "taken once");
        c.disarm();
        c.offer(9, 0, &out, out.len(), Action::Forward(3), &translated);
        assert!(!c.armed() && c.take().is_empty());
    }
}
