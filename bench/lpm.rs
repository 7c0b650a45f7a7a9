//! Longest-prefix match on a full internet table: natgw's compiled DIR-16-8-8
//! against the `prefix-trie` crate, side by side in one run.
//!
//! Data: ../shared/data/ris-ipv4-20260511.txt.gz (1,042,325 prefixes). Lookups
//! in batches of 4096: uniformly random addresses, random addresses inside
//! routed prefixes, and 16 addresses repeated (cache-hot). Before the timed
//! part, the bench prints build times and memory (resident-set growth across
//! each build) for both. `bench/lpm` runs it and writes bench/results/lpm.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is a failure

#[path = "util.rs"]
mod util;
use util::rss_bytes;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use natgw::route::{Lpm, Prefix};
use prefix_trie::PrefixMap;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::time::Instant;

const TABLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/ris-ipv4-20260511.txt.gz");
const BATCH: usize = 4096;

fn load() -> Vec<Prefix> {
    let f = std::fs::File::open(TABLE).expect("the routing table in ../shared/data");
    BufReader::new(flate2::read::GzDecoder::new(f))
        .lines()
        .map(|l| l.expect("read").trim().parse::<Prefix>().expect("prefix"))
        .collect()
}

/// A small deterministic generator (xorshift64*), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

fn bench(c: &mut Criterion) {
    let prefixes = load();
    let n = prefixes.len();

    let before = rss_bytes();
    let t = Instant::now();
    let lpm = Lpm::build(prefixes.iter().enumerate().map(|(i, p)| (*p, (i % 16) as u32)));
    let lpm_build = t.elapsed();
    let lpm_rss = rss_bytes().saturating_sub(before);

    let before = rss_bytes();
    let t = Instant::now();
    let mut trie: PrefixMap<(u32, u8), u32> = PrefixMap::new();
    for (i, p) in prefixes.iter().enumerate() {
        trie.insert((p.addr_u32(), p.prefix_len()), (i % 16) as u32);
    }
    let trie_build = t.elapsed();
    let trie_rss = rss_bytes().saturating_sub(before);

    println!(
        "LPM-SETUP prefixes={n} natgw_build_ms={:.1} natgw_bytes={} natgw_rss={} trie_build_ms={:.1} trie_rss={}",
        lpm_build.as_secs_f64() * 1e3,
        lpm.memory_bytes(),
        lpm_rss,
        trie_build.as_secs_f64() * 1e3,
        trie_rss
    );

    // The two agree on every probe before anything is timed.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let random: Vec<u32> = (0..BATCH).map(|_| rng.next()).collect();
    let routed: Vec<u32> = (0..BATCH)
        .map(|_| {
            let p = prefixes[rng.next() as usize % n];
            p.addr_u32() | (rng.next() & !p.mask())
        })
        .collect();
    let repeated: Vec<u32> = (0..BATCH).map(|i| routed[i % 16]).collect();
    for &a in random.iter().chain(&routed) {
        assert_eq!(lpm.lookup(a), trie.get_lpm(&(a, 32)).map(|(_, v)| *v), "disagree on {a:#x}");
    }

    let mut g = c.benchmark_group("lpm_lookup");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, addrs) in [("random", &random), ("routed", &routed), ("repeated", &repeated)] {
        g.bench_function(format!("natgw/{name}"), |b| {
            b.iter(|| {
                let mut s = 0u32;
                for &a in addrs.iter() {
                    s = s.wrapping_add(lpm.lookup(black_box(a)).unwrap_or(0));
                }
                s
            })
        });
        g.bench_function(format!("prefix_trie/{name}"), |b| {
            b.iter(|| {
                let mut s = 0u32;
                for &a in addrs.iter() {
                    s = s.wrapping_add(trie.get_lpm(&(black_box(a), 32)).map_or(0, |(_, v)| *v));
                }
                s
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
