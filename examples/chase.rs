//! How long one access to a cache line not touched lately takes, by working
//! set size: a pointer chase through a random cycle of 64-byte lines (each
//! load needs the one before, so nothing overlaps). Shows where this
//! machine's caches end, e.g. for the new-flow figures of
//! bench/results/profile.md: `cargo run --release --example chase`.

fn main() {
    const LINE: usize = 64 / std::mem::size_of::<u64>();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64: enough to scatter the cycle over the lines.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut mb = 1usize;
    while mb <= 128 {
        let lines = mb * 1024 * 1024 / 64;
        let mut order: Vec<usize> = (0..lines).collect();
        for i in (1..lines).rev() {
            order.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        let mut mem = vec![0u64; lines * LINE];
        for w in 0..lines {
            mem[order[w] * LINE] = (order[(w + 1) % lines] * LINE) as u64;
        }
        let mut p = 0usize;
        for _ in 0..lines {
            p = mem[p] as usize; // one lap: the lines are in the caches they fit
        }
        let n = 4_000_000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            p = mem[p] as usize;
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
        println!("{mb:>4} MiB: {ns:>6.1} ns an access{}", if p == usize::MAX { "!" } else { "" });
        mb *= 2;
    }
}
