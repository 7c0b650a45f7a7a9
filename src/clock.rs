//! Time as the pipeline sees it: a number passed in, never read from a clock.
//!
//! Workers read the monotonic clock once per batch and hand the same
//! [`Timestamp`] to every packet of the batch; tests construct timestamps and
//! advance them, so timeouts are tested without sleeping.

use std::time::{Duration, Instant};

/// Nanoseconds since the gateway's own epoch (its start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    pub fn from_nanos(n: u64) -> Timestamp {
        Timestamp(n)
    }

    pub fn from_secs(s: u64) -> Timestamp {
        Timestamp(s.saturating_mul(1_000_000_000))
    }

    pub fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms.saturating_mul(1_000_000))
    }

    pub fn nanos(self) -> u64 {
        self.0
    }

    /// Whole seconds, the granularity of session timers.
    pub fn secs(self) -> u32 {
        (self.0 / 1_000_000_000).min(u64::from(u32::MAX)) as u32
    }

    #[must_use]
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_nanos().min(u128::from(u64::MAX)) as u64))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// The real clock, for the I/O layer and the control plane only.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock { epoch: Instant::now() }
    }

    pub fn now(&self) -> Timestamp {
        Timestamp(self.epoch.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64)
    }
}
