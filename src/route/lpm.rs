//! Longest-prefix match, compiled: a DIR-16-8-8 multibit trie.
//!
//! The control plane keeps routes in a plain map; [`Lpm::build`] compiles them
//! into three levels of flat arrays indexed by 16, 8 and 8 bits of the address.
//! A lookup is one to three dependent array reads and no branches on prefix
//! lengths. Building paints prefixes shortest first, so a longer prefix always
//! overwrites the part of a shorter one it covers. The compiled form is
//! immutable: updates build a new one and swap it in (see `route::table`).
//!
//! Memory: 256 KiB for level 1, plus 1 KiB for each /16 that holds a prefix
//! longer than /16 and each /24 that holds one longer than /24.

use super::prefix::Prefix;

/// An entry: bit 0 set means "descend into chunk `e >> 1`"; otherwise `e >> 1`
/// is 0 for "no route" or a next-hop index + 1.
type Entry = u32;

const CHUNK: usize = 256;

/// A compiled longest-prefix-match table mapping addresses to next-hop indexes.
#[derive(Clone, Debug)]
pub struct Lpm {
    l1: Box<[Entry]>,
    l2: Vec<Entry>,
    l3: Vec<Entry>,
    prefixes: usize,
}

fn leaf(nh: Option<u32>) -> Entry {
    match nh {
        None => 0,
        Some(i) => (i + 1) << 1,
    }
}

fn decode(e: Entry) -> Option<u32> {
    (e >> 1).checked_sub(1)
}

impl Lpm {
    /// Compiles `(prefix, next-hop index)` pairs. Duplicate prefixes: the last wins.
    /// Next-hop indexes must be below 2^31 - 1.
    pub fn build(routes: impl IntoIterator<Item = (Prefix, u32)>) -> Lpm {
        let mut routes: Vec<(Prefix, u32)> = routes.into_iter().collect();
        // Shortest first; a stable sort keeps "last wins" among duplicates.
        routes.sort_by_key(|(p, _)| p.prefix_len());
        let mut lpm =
            Lpm { l1: vec![0; 1 << 16].into_boxed_slice(), l2: Vec::new(), l3: Vec::new(), prefixes: routes.len() };
        for (p, nh) in routes {
            lpm.paint(p, leaf(Some(nh)));
        }
        lpm
    }

    /// An empty table.
    pub fn empty() -> Lpm {
        Lpm::build(std::iter::empty())
    }

    fn paint(&mut self, p: Prefix, value: Entry) {
        let a = p.addr_u32();
        let len = p.prefix_len();
        if len <= 16 {
            let start = (a >> 16) as usize;
            let n = 1usize << (16 - len);
            for e in &mut self.l1[start..start + n] {
                // Chunks only exist for longer prefixes, painted later: none yet.
                *e = value;
            }
            return;
        }
        let i1 = (a >> 16) as usize;
        let c2 = Self::descend(&mut self.l1[i1], &mut self.l2);
        if len <= 24 {
            let start = c2 * CHUNK + ((a >> 8) & 0xff) as usize;
            let n = 1usize << (24 - len);
            for e in &mut self.l2[start..start + n] {
                *e = value;
            }
            return;
        }
        let i2 = c2 * CHUNK + ((a >> 8) & 0xff) as usize;
        let c3 = Self::descend(&mut self.l2[i2], &mut self.l3);
        let start = c3 * CHUNK + (a & 0xff) as usize;
        let n = 1usize << (32 - len);
        for e in &mut self.l3[start..start + n] {
            *e = value;
        }
    }

    /// Returns the chunk under `slot`, creating it (filled with the slot's leaf) if needed.
    fn descend(slot: &mut Entry, level: &mut Vec<Entry>) -> usize {
        if *slot & 1 == 1 {
            return (*slot >> 1) as usize;
        }
        let chunk = level.len() / CHUNK;
        level.extend(std::iter::repeat_n(*slot, CHUNK));
        *slot = ((chunk as u32) << 1) | 1;
        chunk
    }

    /// The next-hop index of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        let e = self.l1[(addr >> 16) as usize];
        if e & 1 == 0 {
            return decode(e);
        }
        let e = self.l2.get((e >> 1) as usize * CHUNK + ((addr >> 8) & 0xff) as usize).copied().unwrap_or(0);
        if e & 1 == 0 {
            return decode(e);
        }
        decode(self.l3.get((e >> 1) as usize * CHUNK + (addr & 0xff) as usize).copied().unwrap_or(0))
    }

    /// Number of prefixes compiled in.
    pub fn len(&self) -> usize {
        self.prefixes
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    /// Bytes used by the compiled arrays.
    pub fn memory_bytes(&self) -> usize {
        (self.l1.len() + self.l2.len() + self.l3.len()) * std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn most_specific_wins() {
        let t = Lpm::build([
            (p("0.0.0.0/0"), 0),
            (p("10.0.0.0/16"), 1),
            (p("10.0.1.0/24"), 2),
            (p("10.0.1.128/25"), 3),
            (p("10.0.1.200/32"), 4),
        ]);
        assert_eq!(t.lookup(ip("8.8.8.8")), Some(0));
        assert_eq!(t.lookup(ip("10.0.2.1")), Some(1));
        assert_eq!(t.lookup(ip("10.0.1.1")), Some(2));
        assert_eq!(t.lookup(ip("10.0.1.129")), Some(3));
        assert_eq!(t.lookup(ip("10.0.1.200")), Some(4));
        assert_eq!(t.lookup(ip("10.0.1.201")), Some(3));
    }

    #[test]
    fn empty_and_no_default() {
        assert_eq!(Lpm::empty().lookup(1), None);
        let t = Lpm::build([(p("192.0.2.0/24"), 7)]);
        assert_eq!(t.lookup(ip("192.0.2.9")), Some(7));
        assert_eq!(t.lookup(ip("192.0.3.9")), None);
        assert_eq!(t.lookup(ip("192.0.1.255")), None);
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let a = Lpm::build([(p("10.0.1.0/24"), 2), (p("10.0.0.0/8"), 1)]);
        assert_eq!(a.lookup(ip("10.0.1.5")), Some(2));
        assert_eq!(a.lookup(ip("10.9.1.5")), Some(1));
    }

    /// The oracle: scan every prefix, keep the longest that matches.
    fn linear(routes: &[(Prefix, u32)], a: u32) -> Option<u32> {
        let mut best: Option<(u8, u32)> = None;
        for (pf, nh) in routes {
            if pf.contains_u32(a) && best.is_none_or(|(l, _)| pf.prefix_len() >= l) {
                best = Some((pf.prefix_len(), *nh));
            }
        }
        best.map(|(_, nh)| nh)
    }

    fn arb_prefix() -> impl Strategy<Value = Prefix> {
        // Cluster addresses so prefixes nest and collide often.
        (0u32..4, any::<u32>(), 0u8..=32).prop_map(|(hi, lo, len)| {
            Prefix::new(std::net::Ipv4Addr::from((hi << 30) | (lo & 0x00ff_ffff) | ((lo & 3) << 24)), len)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Property: the compiled table agrees with a linear scan on every probe.
        #[test]
        fn agrees_with_linear_scan(prefixes in proptest::collection::vec(arb_prefix(), 0..60),
                                   probes in proptest::collection::vec(any::<u32>(), 50)) {
            // Dedupe so "last wins" and the oracle agree.
            let mut seen = std::collections::HashMap::new();
            for (i, pf) in prefixes.iter().enumerate() { seen.insert(*pf, i as u32); }
            let routes: Vec<(Prefix, u32)> = seen.into_iter().collect();
            let t = Lpm::build(routes.clone());
            for pr in probes.iter().copied().chain(routes.iter().flat_map(|(pf, _)| {
                let a = pf.addr_u32();
                [a, a | !pf.mask(), a.wrapping_sub(1), (a | !pf.mask()).wrapping_add(1)]
            })) {
                prop_assert_eq!(t.lookup(pr), linear(&routes, pr), "probe {}", std::net::Ipv4Addr::from(pr));
            }
        }
    }
}
