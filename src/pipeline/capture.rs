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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::Release};

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

/// What a capture takes, read by the workers without a lock.
#[derive(Debug)]
struct Spec {
    select: Select,
    filter: Filter,
}

#[derive(Debug, Default)]
struct Ring {
    slots: Vec<Record>,
    len: usize,
    /// Which capture this is (a reader names it in every request).
    generation: u64,
}

/// The gateway's capture.
#[derive(Debug, Default)]
pub struct Capture {
    armed: AtomicBool,
    spec: arc_swap::ArcSwapOption<Spec>,
    ring: Mutex<Ring>,
    /// Packets selected while the ring was full.
    pub dropped: AtomicU64,
}

/// What the capture decided on the whole packet as read, before the walk
/// rewrote it (the kept head may be too short to parse).
#[derive(Clone, Copy, Debug, Default)]
pub struct Before {
    /// Taken whatever becomes of it (its ingress, or a NAT gateway's Elastic IP).
    picked: bool,
    /// The filter matches it.
    matches: bool,
}

/// Copies `b`'s head into `into` (its capacity is [`SNAPLEN`]: no allocation).
pub fn keep_head(into: &mut Vec<u8>, b: &[u8]) {
    into.clear();
    into.extend_from_slice(&b[..b.len().min(SNAPLEN)]);
}

/// The source (`src`) or destination address of an IPv4 packet.
fn addr(b: &[u8], src: bool) -> Option<u32> {
    crate::wire::build::fields(b).map(|(_, s, d, _, _)| u32::from_be_bytes(if src { s } else { d }))
}

impl Capture {
    /// Starts capturing what `select` and `filter` pick (the ring is made
    /// here), unless a capture runs already. Returns the new capture's
    /// generation.
    pub fn try_arm(&self, select: Select, filter: Filter) -> Option<u64> {
        let mut r = self.ring.lock();
        if self.armed() {
            return None;
        }
        if r.slots.len() != RING {
            r.slots = (0..RING).map(|_| Record::empty()).collect();
        }
        r.len = 0;
        r.generation += 1;
        self.spec.store(Some(std::sync::Arc::new(Spec { select, filter })));
        self.dropped.store(0, Relaxed);
        self.armed.store(true, Release);
        Some(r.generation)
    }

    /// Stops capture `generation` (any, if None) and frees the ring.
    pub fn disarm(&self, generation: Option<u64>) {
        let mut r = self.ring.lock();
        if generation.is_some_and(|g| g != r.generation) {
            return;
        }
        self.armed.store(false, Release);
        self.spec.store(None);
        r.slots = Vec::new();
        r.len = 0;
    }

    #[inline]
    pub fn armed(&self) -> bool {
        self.armed.load(Relaxed)
    }

    /// The decisions on packet `b`, read on `ingress`, before the walk.
    pub fn before(&self, ingress: IfId, b: &[u8]) -> Before {
        let spec = self.spec.load();
        let Some(spec) = spec.as_ref() else { return Before::default() };
        let picked = match &spec.select {
            Select::Interface(i) => ingress == *i,
            Select::Nat { internet, elastic_ips } => {
                ingress == *internet && addr(b, false).is_some_and(|a| elastic_ips.contains(&a))
            }
        };
        Before { picked, matches: spec.filter.matches(b) }
    }

    /// Offers a packet read on `ingress` (`before` its head, `before_len`
    /// its length, `pre` what [`Capture::before`] said) that became
    /// `action`, the buffer now holding `after`.
    #[allow(clippy::too_many_arguments)] // one call site, the packet path's
    pub fn offer(
        &self,
        t_ns: u64,
        ingress: IfId,
        before: &[u8],
        before_len: usize,
        pre: Before,
        action: Action,
        after: &[u8],
    ) {
        let spec = self.spec.load();
        let Some(spec) = spec.as_ref() else { return };
        let outcome = Outcome::of(action);
        let egress = outcome.egress();
        let picked = pre.picked
            || match &spec.select {
                Select::Interface(i) => egress == Some(*i),
                Select::Nat { internet, elastic_ips } => {
                    egress == Some(*internet) && addr(after, true).is_some_and(|a| elastic_ips.contains(&a))
                }
            };
        if !picked || !(pre.matches || (egress.is_some() && spec.filter.matches(after))) {
            return;
        }
        let mut r = self.ring.lock();
        if r.len == r.slots.len() {
            if !r.slots.is_empty() {
                self.dropped.fetch_add(1, Relaxed);
            }
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
        if egress.is_some() {
            keep_head(&mut rec.after, after);
            rec.after_len = after.len();
        } else {
            rec.after.clear();
            rec.after_len = 0;
        }
    }

    /// The records of capture `generation` taken since the last call, oldest
    /// first (copied out under the lock: the ring's buffers stay for the
    /// workers), or None if that capture has ended.
    pub fn take(&self, generation: u64) -> Option<Vec<Record>> {
        let mut r = self.ring.lock();
        if r.generation != generation || !self.armed() {
            return None;
        }
        let n = r.len;
        r.len = 0;
        Some(r.slots[..n].to_vec())
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
        let reply = build::probe(17, [198, 51, 100, 10], [203, 0, 113, 5], 7, 40000, 0);
        let other = build::probe(17, [10, 0, 0, 10], [198, 51, 100, 10], 5000, 7, 0);
        let nat = u32::from_be_bytes([203, 0, 113, 5]);
        let offer =
            |t, ingress, b: &[u8], a, after: &[u8]| c.offer(t, ingress, b, b.len(), c.before(ingress, b), a, after);
        let g = c.try_arm(Select::Nat { internet: 3, elastic_ips: vec![nat] }, Filter::default()).unwrap();
        assert!(c.try_arm(Select::Interface(0), Filter::default()).is_none(), "one capture at a time");
        offer(1, 0, &out, Action::Forward(3), &translated);
        // Through the internet gateway, not the NAT: not nat-1's.
        offer(2, 1, &other, Action::Forward(3), &other);
        // Dropped on the way out: nothing was written from the Elastic IP.
        offer(3, 0, &out, Action::Drop(DropReason::SgDeny), &out);
        // The reply, read for the Elastic IP, even if it is then dropped.
        offer(4, 3, &reply, Action::Drop(DropReason::AclDeny), &reply);
        let got = c.take(g).unwrap();
        assert_eq!(got.iter().map(|r| r.t_ns).collect::<Vec<_>>(), [1, 4]);
        assert_eq!((got[0].ingress, got[0].outcome), (0, Outcome::Forwarded(3)));
        assert_eq!((got[0].before.as_slice(), got[0].after.as_slice()), (&out[..], &translated[..]));
        assert!(got[1].after.is_empty());
        c.disarm(Some(g + 1));
        assert!(c.armed(), "another capture's stop leaves this one running");

        c.disarm(Some(g));
        let g = c.try_arm(Select::Interface(0), Filter::parse(&["port".into(), "7".into()]).unwrap()).unwrap();
        for t in 0..RING as u64 + 5 {
            offer(t, 0, &out, Action::Drop(DropReason::SgDeny), &out);
        }
        assert_eq!(
            (c.take(g).unwrap().len(), c.dropped.load(Relaxed)),
            (RING, 5),
            "the full ring counts what it refuses"
        );
        assert_eq!(c.take(g).unwrap().len(), 0, "taken once");
        assert!(c.take(g - 1).is_none(), "an ended capture's reader gets nothing");
        c.disarm(None);
        offer(9, 0, &out, Action::Forward(3), &translated);
        assert!(!c.armed() && c.take(g).is_none());
    }

    #[test]
    fn a_packet_longer_than_the_kept_head_is_selected_and_filtered_as_read() {
        let c = Capture::default();
        let mut big = build::probe(17, [198, 51, 100, 10], [203, 0, 113, 5], 7, 40000, 0);
        big.resize(SNAPLEN + 1000, 0);
        let mut ip = crate::wire::ipv4::Ipv4Packet::new_unchecked(&mut big[..]);
        ip.set_total_len((SNAPLEN + 1000) as u16);
        ip.fill_checksum();
        let fixed = big;
        let nat = u32::from_be_bytes([203, 0, 113, 5]);
        let g = c.try_arm(Select::Nat { internet: 3, elastic_ips: vec![nat] }, Filter::parse(&["udp".into()]).unwrap());
        let mut head = Vec::with_capacity(SNAPLEN);
        keep_head(&mut head, &fixed);
        c.offer(1, 3, &head, fixed.len(), c.before(3, &fixed), Action::Drop(DropReason::AclDeny), &fixed);
        let got = c.take(g.unwrap()).unwrap();
        assert_eq!((got.len(), got[0].before.len(), got[0].before_len), (1, SNAPLEN, SNAPLEN + 1000));
    }
}
