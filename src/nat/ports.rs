//! External port pools: one bitmap per (public address, protocol).
//!
//! Allocation follows RFC 6056 §3.3.1 (random start, then a bounded search)
//! with the constraints of RFC 4787: the port class is kept (REQ-3a), parity is
//! kept when asked (REQ-4), and the internal port is preserved when free and
//! asked for. A freed port is held down before reuse (RFC 6888 REQ-8).

use rand::RngExt;
use std::collections::VecDeque;
use std::ops::RangeInclusive;

const WORDS: usize = 65536 / 64;

/// Ports in use on one public address for one protocol.
#[derive(Clone)]
pub struct PortPool {
    used: Box<[u64; WORDS]>,
    in_use: u32,
    /// Of `in_use`, the odd ports (parity is kept: RFC 4787 REQ-3).
    odd_in_use: u32,
}

impl std::fmt::Debug for PortPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PortPool({} in use)", self.in_use)
    }
}

impl Default for PortPool {
    fn default() -> PortPool {
        PortPool { used: Box::new([0; WORDS]), in_use: 0, odd_in_use: 0 }
    }
}

/// How to choose a port.
#[derive(Clone, Debug)]
pub struct PortPolicy {
    /// Ports for internal ports >= 1024 (the AWS range is 1024-65535).
    pub range: RangeInclusive<u16>,
    /// Ports for internal ports below 1024, when the class is kept.
    pub low_range: RangeInclusive<u16>,
    pub keep_class: bool,
    pub keep_parity: bool,
    pub preserve: bool,
}

impl PortPool {
    pub fn is_used(&self, port: u16) -> bool {
        self.used[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }

    /// Marks `port` used; false if it already was.
    pub fn take(&mut self, port: u16) -> bool {
        if self.is_used(port) {
            return false;
        }
        self.used[usize::from(port) / 64] |= 1 << (port % 64);
        self.in_use += 1;
        self.odd_in_use += u32::from(port % 2);
        true
    }

    /// Marks `port` free (after its hold-down).
    pub fn release(&mut self, port: u16) {
        if self.is_used(port) {
            self.used[usize::from(port) / 64] &= !(1 << (port % 64));
            self.in_use -= 1;
            self.odd_in_use -= u32::from(port % 2);
        }
    }

    pub fn in_use(&self) -> u32 {
        self.in_use
    }

    /// The ports of `policy`'s main range that a mapping for internal port
    /// `internal` may get, and how many of the pool's are taken: with parity
    /// kept, each parity is a pool of its own (the fair share's view).
    pub fn main_range_use(&self, policy: &PortPolicy, internal: u16) -> (u32, u32) {
        let (lo, hi) = (u32::from(*policy.range.start()), u32::from(*policy.range.end()));
        let all = (hi + 1).saturating_sub(lo);
        if !policy.keep_parity {
            return (all, self.in_use);
        }
        let odd = u32::from(internal % 2);
        let span = (all + u32::from(lo % 2 == odd)) / 2;
        (span, if odd == 1 { self.odd_in_use } else { self.in_use - self.odd_in_use })
    }

    /// Chooses and takes a port for internal port `internal`, or None if every
    /// candidate is taken. The search is bounded: one pass over the range,
    /// a word of 64 ports at a time.
    pub fn allocate(&mut self, internal: u16, policy: &PortPolicy, rng: &mut impl rand::Rng) -> Option<u16> {
        let range = if policy.keep_class && internal < 1024 { policy.low_range.clone() } else { policy.range.clone() };
        let (lo, hi) = (*range.start(), *range.end());
        if lo > hi {
            return None;
        }
        let parity = policy.keep_parity.then_some(internal & 1);
        if policy.preserve && range.contains(&internal) && self.take(internal) {
            return Some(internal);
        }
        let span = u32::from(hi) - u32::from(lo) + 1;
        let start = u32::from(lo) + rng.random_range(0..span);
        // Scan [start, hi] then [lo, start): the first free port with the right parity.
        let found = self
            .find_free(start, u32::from(hi), parity)
            .or_else(|| if start > u32::from(lo) { self.find_free(u32::from(lo), start - 1, parity) } else { None });
        let port = found?;
        self.take(port);
        Some(port)
    }

    /// First free port in [from, to] (inclusive) with the given parity.
    fn find_free(&self, from: u32, to: u32, parity: Option<u16>) -> Option<u16> {
        let mut p = from;
        while p <= to {
            let w = (p / 64) as usize;
            let mut free = !self.used[w];
            // Drop bits below p in this word.
            free &= u64::MAX << (p % 64);
            if let Some(par) = parity {
                // Keep only ports of the wanted parity: bit i is port w*64+i.
                free &= if par == 0 { 0x5555_5555_5555_5555 } else { 0xaaaa_aaaa_aaaa_aaaa };
            }
            if free != 0 {
                let port = (w as u32) * 64 + free.trailing_zeros();
                return (port <= to).then_some(port as u16);
            }
            p = (w as u32 + 1) * 64;
        }
        None
    }
}

impl PortPool {
    /// Takes a free block of `size` ports aligned to `size` inside `range`,
    /// searching from a random block. Returns the first port.
    pub fn take_block(&mut self, size: u16, range: RangeInclusive<u16>, rng: &mut impl rand::Rng) -> Option<u16> {
        let size = u32::from(size.max(1));
        let lo = u32::from(*range.start()).div_ceil(size) * size;
        let hi = u32::from(*range.end());
        if lo + size - 1 > hi {
            return None;
        }
        let blocks = (hi + 1 - lo) / size;
        let start = rng.random_range(0..blocks);
        for i in 0..blocks {
            let b = lo + ((start + i) % blocks) * size;
            if (b..b + size).all(|p| !self.is_used(p as u16)) {
                for p in b..b + size {
                    self.take(p as u16);
                }
                return Some(b as u16);
            }
        }
        None
    }
}

/// A block of ports given to one internal address (RFC 6888 REQ-14: one log
/// record per block instead of one per mapping).
#[derive(Clone, Debug)]
pub struct PortBlock {
    pub first: u16,
    pub size: u16,
    used: Vec<u64>,
    pub in_use: u16,
}

impl PortBlock {
    pub fn new(first: u16, size: u16) -> PortBlock {
        PortBlock { first, size, used: vec![0; usize::from(size).div_ceil(64)], in_use: 0 }
    }

    pub fn contains(&self, port: u16) -> bool {
        port >= self.first && u32::from(port) < u32::from(self.first) + u32::from(self.size)
    }

    fn bit(&self, port: u16) -> (usize, u64) {
        let i = usize::from(port - self.first);
        (i / 64, 1u64 << (i % 64))
    }

    /// A free port of the block: the internal port if it is in the block and
    /// preservation is asked for, else from a random offset; parity kept if asked.
    pub fn allocate(&mut self, internal: u16, policy: &PortPolicy, rng: &mut impl rand::Rng) -> Option<u16> {
        if policy.preserve && self.contains(internal) {
            let (w, b) = self.bit(internal);
            if self.used[w] & b == 0 {
                self.used[w] |= b;
                self.in_use += 1;
                return Some(internal);
            }
        }
        let start = rng.random_range(0..self.size);
        for i in 0..self.size {
            let p = self.first + (start + i) % self.size;
            if policy.keep_parity && p % 2 != internal % 2 {
                continue;
            }
            let (w, b) = self.bit(p);
            if self.used[w] & b == 0 {
                self.used[w] |= b;
                self.in_use += 1;
                return Some(p);
            }
        }
        None
    }

    /// Gives a port back to the block (it stays reserved to the same address).
    pub fn release(&mut self, port: u16) {
        if self.contains(port) {
            let (w, b) = self.bit(port);
            if self.used[w] & b != 0 {
                self.used[w] &= !b;
                self.in_use -= 1;
            }
        }
    }
}

/// Freed ports waiting out their hold-down, oldest first.
#[derive(Debug, Default)]
pub struct HoldDown {
    queue: VecDeque<(u32, u32, u8, u16)>,
}

impl HoldDown {
    /// Holds `port` of (`addr`, `proto`) until `release_at` (seconds).
    pub fn hold(&mut self, release_at: u32, addr: u32, proto: u8, port: u16) {
        self.queue.push_back((release_at, addr, proto, port));
    }

    /// Pops up to `budget` ports whose hold-down ended by `now_secs`.
    pub fn due(&mut self, now_secs: u32, budget: usize) -> Vec<(u32, u8, u16)> {
        let mut out = Vec::new();
        while out.len() < budget {
            match self.queue.front() {
                Some(&(t, a, p, port)) if t <= now_secs => {
                    self.queue.pop_front();
                    out.push((a, p, port));
                }
                _ => break,
            }
        }
        out
    }

    /// True when some port's hold-down has ended by `now_secs`.
    /// Ports held down, per (address, protocol).
    pub fn counts(&self) -> std::collections::HashMap<(u32, u8), u32> {
        let mut m = std::collections::HashMap::new();
        for &(_, addr, proto, _) in &self.queue {
            *m.entry((addr, proto)).or_insert(0) += 1;
        }
        m
    }

    pub fn has_due(&self, now_secs: u32) -> bool {
        self.queue.front().is_some_and(|&(t, ..)| t <= now_secs)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn policy() -> PortPolicy {
        PortPolicy { range: 1024..=65535, low_range: 1..=1023, keep_class: true, keep_parity: true, preserve: true }
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn preserves_when_free() {
        let mut pool = PortPool::default();
        let mut r = rng();
        assert_eq!(pool.allocate(40000, &policy(), &mut r), Some(40000));
        let second = pool.allocate(40000, &policy(), &mut r).unwrap();
        assert_ne!(second, 40000);
        assert_eq!(second % 2, 0, "parity kept");
        assert!(second >= 1024);
    }

    #[test]
    fn keeps_class() {
        let mut pool = PortPool::default();
        let mut r = rng();
        pool.take(53);
        let p = pool.allocate(53, &policy(), &mut r).unwrap();
        assert!(p < 1024 && p % 2 == 1, "{p}");
    }

    #[test]
    fn random_without_preservation_stays_in_range() {
        let mut pool = PortPool::default();
        let mut r = rng();
        let pol = PortPolicy { range: 5000..=5009, preserve: false, keep_parity: false, ..policy() };
        let mut got: Vec<u16> = (0..10).map(|_| pool.allocate(40000, &pol, &mut r).unwrap()).collect();
        got.sort();
        assert_eq!(got, (5000..=5009).collect::<Vec<_>>());
        assert_eq!(pool.allocate(40000, &pol, &mut r), None, "exhausted");
        pool.release(5004);
        assert_eq!(pool.allocate(40000, &pol, &mut r), Some(5004));
    }

    #[test]
    fn parity_can_exhaust_one_half() {
        let mut pool = PortPool::default();
        let mut r = rng();
        let pol = PortPolicy { range: 6000..=6003, preserve: false, ..policy() };
        assert!(pool.allocate(40001, &pol, &mut r).is_some());
        assert!(pool.allocate(40001, &pol, &mut r).is_some());
        assert_eq!(pool.allocate(40001, &pol, &mut r), None, "odd ports 6001 and 6003 are gone");
        assert!(pool.allocate(40002, &pol, &mut r).is_some());
    }

    #[test]
    fn ports_are_spread() {
        // Not preserved, 200 allocations: they should not be sequential (RFC 6056).
        let mut pool = PortPool::default();
        let mut r = rng();
        let pol = PortPolicy { preserve: false, ..policy() };
        let ports: Vec<u16> = (0..200).map(|_| pool.allocate(40000, &pol, &mut r).unwrap()).collect();
        let sequential = ports.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(sequential < 10, "{sequential} sequential pairs");
    }

    #[test]
    fn blocks_are_aligned_and_exclusive() {
        let mut pool = PortPool::default();
        let mut r = rng();
        let a = pool.take_block(64, 1024..=65535, &mut r).unwrap();
        assert_eq!(a % 64, 0);
        assert!(a >= 1024);
        assert!(pool.is_used(a) && pool.is_used(a + 63));
        let b = pool.take_block(64, 1024..=65535, &mut r).unwrap();
        assert_ne!(a, b);
        // A range of exactly two blocks runs out after two.
        let mut small = PortPool::default();
        assert!(small.take_block(4, 8..=15, &mut r).is_some());
        assert!(small.take_block(4, 8..=15, &mut r).is_some());
        assert!(small.take_block(4, 8..=15, &mut r).is_none());
    }

    #[test]
    fn ports_inside_a_block() {
        let mut r = rng();
        let mut blk = PortBlock::new(6400, 8);
        let pol = PortPolicy { preserve: false, keep_parity: false, ..policy() };
        let mut got: Vec<u16> = (0..8).map(|_| blk.allocate(40000, &pol, &mut r).unwrap()).collect();
        got.sort();
        assert_eq!(got, (6400..6408).collect::<Vec<_>>());
        assert_eq!(blk.allocate(40000, &pol, &mut r), None);
        blk.release(6403);
        assert_eq!(blk.allocate(40000, &pol, &mut r), Some(6403));
        assert_eq!(blk.in_use, 8);
    }

    #[test]
    fn hold_down_releases_in_order() {
        let mut h = HoldDown::default();
        h.hold(100, 1, 6, 1000);
        h.hold(120, 1, 6, 1001);
        assert!(h.due(99, 10).is_empty());
        assert_eq!(h.due(100, 10), vec![(1, 6, 1000)]);
        assert_eq!(h.due(500, 10), vec![(1, 6, 1001)]);
    }
}
