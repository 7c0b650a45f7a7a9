//! IP fragments through the NAT, by virtual reassembly (RFC 4787 REQ-14).
//!
//! Only the first fragment carries the ports. The gateway remembers them per
//! datagram (source, destination, protocol, identification), so the later
//! fragments are translated with the same session as the first, without
//! reassembling the payload. Fragments that arrive before their first one
//! wait in a fixed pool of buffers until it comes, or until they time out.
//!
//! Everything is bounded: the number of datagrams remembered, the buffers for
//! waiting fragments (preallocated once), the share of them one source may
//! hold (so a flood of bogus fragments from one place cannot starve others),
//! and the time anything is kept.

use crate::clock::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

/// A datagram, as its fragments name it, and the interface they arrive on
/// (two overlapping VPCs may each hold the same source address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    pub ident: u16,
    pub ifc: u16,
}

impl FragKey {
    /// The sender, for its share of the waiting buffers: its address on its interface.
    fn source(&self) -> u64 {
        u64::from(self.ifc) << 32 | u64::from(self.src)
    }
}

/// The transport fields of a datagram's first fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstFields {
    pub sport: u16,
    pub dport: u16,
    /// TCP flags, or the ICMP type.
    pub extra: u8,
}

/// Limits.
#[derive(Clone, Copy, Debug)]
pub struct FragLimits {
    /// Datagrams remembered at once.
    pub datagrams: usize,
    /// Buffers for fragments waiting for their first fragment.
    pub buffers: usize,
    /// Largest fragment that can wait.
    pub buffer_size: usize,
    /// Waiting buffers one source address may hold.
    pub per_source: usize,
    /// How long a datagram is remembered, and a fragment may wait.
    pub timeout: Duration,
}

impl Default for FragLimits {
    fn default() -> FragLimits {
        FragLimits { datagrams: 4096, buffers: 256, buffer_size: 2048, per_source: 32, timeout: Duration::from_secs(5) }
    }
}

#[derive(Debug)]
struct Entry {
    first: Option<FirstFields>,
    expires: Timestamp,
    /// The first of the fragments waiting for `first`: an index into the
    /// buffer pool, the rest chained through `FragTable::next` (no allocation).
    waiting: Option<usize>,
}

/// What to do with a later fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Later {
    /// The first fragment was seen: translate with these fields.
    Known(FirstFields),
    /// Kept until the first fragment arrives.
    Held,
    /// Could not be kept (no room, this source holds its share, too big).
    Refused,
}

/// The fragment table.
#[derive(Debug)]
pub struct FragTable {
    limits: FragLimits,
    entries: HashMap<FragKey, Entry, ahash::RandomState>,
    pool: Vec<Box<[u8]>>,
    pool_len: Vec<usize>,
    pool_ingress: Vec<u16>,
    pool_owner: Vec<u64>,
    /// The next waiting fragment of the same datagram, per pool buffer.
    next: Vec<Option<usize>>,
    free: Vec<usize>,
    held_by_source: HashMap<u64, usize, ahash::RandomState>,
    /// Fragments dropped because they waited too long, not yet collected by
    /// [`FragTable::take_timed_out`].
    timed_out: u64,
}

impl FragTable {
    pub fn new(limits: FragLimits) -> FragTable {
        FragTable {
            // Full size up front: the table never allocates while packets flow.
            entries: HashMap::with_capacity_and_hasher(limits.datagrams, ahash::RandomState::new()),
            pool: (0..limits.buffers).map(|_| vec![0u8; limits.buffer_size].into_boxed_slice()).collect(),
            pool_len: vec![0; limits.buffers],
            pool_ingress: vec![0; limits.buffers],
            pool_owner: vec![0; limits.buffers],
            next: vec![None; limits.buffers],
            free: (0..limits.buffers).rev().collect(),
            held_by_source: HashMap::with_capacity_and_hasher(limits.buffers, ahash::RandomState::new()),
            timed_out: 0,
            limits,
        }
    }

    /// Records the first fragment's fields; hands every fragment that was
    /// waiting for it to `release(ingress, bytes)`, to run through the
    /// pipeline again, and frees its buffer.
    pub fn first(&mut self, key: FragKey, fields: FirstFields, now: Timestamp, mut release: impl FnMut(u16, &[u8])) {
        let expires = now.plus(self.limits.timeout);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.limits.datagrams {
            // Full of datagrams: later fragments of this one will be refused.
            return;
        }
        let e = self.entries.entry(key).or_insert(Entry { first: None, expires, waiting: None });
        e.first = Some(fields);
        e.expires = expires;
        let mut at = e.waiting.take();
        while let Some(i) = at {
            release(self.pool_ingress[i], &self.pool[i][..self.pool_len[i]]);
            at = self.next[i].take();
            self.release_buffer(i);
        }
    }

    /// Looks up a later fragment; holds it (a copy of `bytes`) if its first
    /// fragment has not been seen.
    pub fn later(&mut self, key: FragKey, ingress: u16, bytes: &[u8], now: Timestamp) -> Later {
        if let Some(first) = self.entries.get(&key).and_then(|e| e.first) {
            return Later::Known(first);
        }
        if bytes.len() > self.limits.buffer_size
            || self.held_by_source.get(&key.source()).copied().unwrap_or(0) >= self.limits.per_source
        {
            return Later::Refused;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.limits.datagrams {
            return Later::Refused;
        }
        let Some(i) = self.free.pop() else { return Later::Refused };
        self.pool[i][..bytes.len()].copy_from_slice(bytes);
        self.pool_len[i] = bytes.len();
        self.pool_ingress[i] = ingress;
        self.pool_owner[i] = key.source();
        *self.held_by_source.entry(key.source()).or_default() += 1;
        let expires = now.plus(self.limits.timeout);
        let e = self.entries.entry(key).or_insert(Entry { first: None, expires, waiting: None });
        // Prepend: the waiting fragments go back in any order, like the originals.
        self.next[i] = e.waiting.replace(i);
        Later::Held
    }

    fn release_buffer(&mut self, i: usize) {
        release(&mut self.free, &self.pool_owner, &mut self.held_by_source, i);
    }

    /// Forgets datagrams past their time; their waiting fragments are dropped.
    /// Called from the pipeline's timer poll (every wake-up, at least every
    /// 500 ms), not per fragment: one pass over the table, no allocation.
    pub fn expire(&mut self, now: Timestamp) {
        if self.entries.is_empty() {
            return;
        }
        let FragTable { entries, next, free, pool_owner, held_by_source, timed_out, .. } = self;
        entries.retain(|_, e| {
            if e.expires > now {
                return true;
            }
            let mut at = e.waiting;
            while let Some(i) = at {
                at = next[i].take();
                *timed_out += 1;
                release(free, pool_owner, held_by_source, i);
            }
            false
        });
    }

    /// Fragments that timed out since the last call (for the caller's counters).
    pub fn take_timed_out(&mut self) -> u64 {
        std::mem::take(&mut self.timed_out)
    }

    /// Fragments waiting now.
    pub fn held(&self) -> usize {
        self.limits.buffers - self.free.len()
    }

    pub fn datagrams(&self) -> usize {
        self.entries.len()
    }
}

/// Gives pool buffer `i` back and lowers its source's share.
fn release(free: &mut Vec<usize>, owner: &[u64], held: &mut HashMap<u64, usize, ahash::RandomState>, i: usize) {
    if let Some(n) = held.get_mut(&owner[i]) {
        *n -= 1;
        if *n == 0 {
            held.remove(&owner[i]);
        }
    }
    free.push(i);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: u32, ident: u16) -> FragKey {
        FragKey { src, dst: 2, proto: 17, ident, ifc: 0 }
    }

    const F: FirstFields = FirstFields { sport: 1000, dport: 53, extra: 0 };

    #[test]
    fn in_order_and_out_of_order() {
        let mut t = FragTable::new(FragLimits::default());
        let now = Timestamp::from_secs(1);
        let mut got: Vec<(u16, Vec<u8>)> = Vec::new();
        t.first(key(1, 7), F, now, |i, b| got.push((i, b.to_vec())));
        assert!(got.is_empty());
        assert_eq!(t.later(key(1, 7), 0, b"x", now), Later::Known(F));
        // Out of order: the later one waits, and comes back with the first.
        assert_eq!(t.later(key(1, 8), 3, b"late", now), Later::Held);
        assert_eq!(t.held(), 1);
        t.first(key(1, 8), F, now, |i, b| got.push((i, b.to_vec())));
        assert_eq!(got, vec![(3, b"late".to_vec())]);
        assert_eq!(t.held(), 0);
    }

    #[test]
    fn waiting_fragments_time_out() {
        let mut t = FragTable::new(FragLimits::default());
        assert_eq!(t.later(key(1, 9), 0, b"x", Timestamp::from_secs(1)), Later::Held);
        t.expire(Timestamp::from_secs(7));
        assert_eq!((t.held(), t.datagrams(), t.take_timed_out()), (0, 0, 1));
    }

    #[test]
    fn one_source_cannot_take_every_buffer() {
        let limits = FragLimits { buffers: 8, per_source: 4, ..FragLimits::default() };
        let mut t = FragTable::new(limits);
        let now = Timestamp::from_secs(1);
        for i in 0..10 {
            let r = t.later(key(66, i), 0, b"bogus", now);
            assert_eq!(r, if i < 4 { Later::Held } else { Later::Refused });
        }
        // Another source still finds room.
        assert_eq!(t.later(key(5, 1), 0, b"ok", now), Later::Held);
        assert_eq!(t.later(key(6, 1), 0, &[0u8; 3000], now), Later::Refused, "too big to wait");
    }
}
