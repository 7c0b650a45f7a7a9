//! A counter with one writer at a time, read by anyone.
//!
//! A single writer needs no atomic read-modify-write: `add` is a relaxed load
//! and store (no `lock` prefix, which would also wait for every store before
//! it), and readers see a value that only grows. The writer is one thread (a
//! worker's counters) or whoever holds a lock (a NAT gateway's own counts,
//! kept under its slow-path lock).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter with one writer at a time.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}
