//! Which worker takes a packet, while the gateway runs (the mechanism is in
//! [`crate::io::steer`]).
//!
//! - `cpu`: always the worker of the core that sent the packet, each worker
//!   pinned to its cores: a packet wakes a worker on its sender's core, so
//!   light traffic sees no cross-core wake-up (ping p50: 1.3-1.9x the
//!   kernel's in bench/run instead of 4-5x on the benchmark's VM).
//! - `auto`: that while traffic is light; while it is heavy, the kernel's
//!   choice by flow with workers free to run on any core, beside the senders
//!   instead of sharing their cores (four TCP streams lose 15-25 % with `cpu`).
//!   A control thread reads the workers' packet counts every [`TICK`] and
//!   switches with hysteresis ([`Auto`]).

use crate::io::steer::{self, Steerer};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

/// How often `auto` looks at the traffic.
pub const TICK: Duration = Duration::from_millis(100);
/// Packets read in a tick above which traffic is heavy (20,000 a second).
const BUSY: u64 = 2_000;
/// Packets read in a tick below which it is light (5,000 a second) ...
const QUIET: u64 = 500;
/// ... for this many ticks in a row before `auto` goes back to CPU steering.
const QUIET_TICKS: u32 = 5;

/// The decision of `auto`: CPU steering until a tick is busy, flow steering
/// until enough ticks in a row are quiet.
#[derive(Clone, Copy, Debug)]
pub struct Auto {
    by_cpu: bool,
    quiet: u32,
}

impl Default for Auto {
    fn default() -> Auto {
        Auto { by_cpu: true, quiet: 0 }
    }
}

impl Auto {
    /// Takes the packets read in the last tick; `Some(by_cpu)` when the
    /// steering should change.
    pub fn tick(&mut self, packets: u64) -> Option<bool> {
        if self.by_cpu {
            if packets > BUSY {
                self.by_cpu = false;
                self.quiet = 0;
                return Some(false);
            }
            return None;
        }
        self.quiet = if packets < QUIET { self.quiet + 1 } else { 0 };
        if self.quiet >= QUIET_TICKS {
            self.by_cpu = true;
            return Some(true);
        }
        None
    }
}

/// The steering program on the gateway's devices and the workers' threads.
#[derive(Debug)]
pub struct Steer {
    steerer: Steerer,
    /// The workers' thread ids, in worker (= queue) order.
    tids: Vec<i32>,
    /// The cores the process may run on.
    cores: Vec<usize>,
    by_cpu: AtomicBool,
}

/// The queue (so the worker) a core's packets go to under CPU steering: the
/// program returns the core's number and the kernel takes it modulo the
/// queues.
fn queue_of(core: usize, queues: usize) -> usize {
    core % queues
}

/// The workers (of `n`) that no core of `cores` steers packets to under CPU
/// steering: more workers than cores, or cores whose numbers miss some
/// queues.
pub fn workers_without_a_core(cores: &[usize], n: usize) -> Vec<usize> {
    (0..n).filter(|&i| !cores.iter().any(|&c| queue_of(c, n) == i)).collect()
}

impl Steer {
    pub fn new(steerer: Steerer, tids: Vec<i32>) -> io::Result<Steer> {
        let cores = steer::allowed_cores()?;
        let idle = workers_without_a_core(&cores, tids.len());
        if !idle.is_empty() {
            tracing::warn!(
                workers = tids.len(),
                ?cores,
                ?idle,
                "with CPU steering these workers get packets only from senders on other cores: \
                 run as many workers as cores (--workers)"
            );
        }
        Ok(Steer { steerer, tids, cores, by_cpu: AtomicBool::new(false) })
    }

    /// CPU steering with worker `i` pinned to the cores whose packets land
    /// on queue `i`, or flow steering with every worker free to run on any
    /// core.
    pub fn set(&self, by_cpu: bool) -> io::Result<()> {
        self.steerer.by_cpu(by_cpu)?;
        let n = self.tids.len().max(1);
        for (i, &tid) in self.tids.iter().enumerate() {
            let mine: Vec<usize> = self.cores.iter().copied().filter(|&c| !by_cpu || queue_of(c, n) == i).collect();
            // A worker without a core of its own (see `workers_without_a_core`,
            // warned about in `new`): leave it where it is.
            if !mine.is_empty() {
                steer::pin(tid, &mine)?;
            }
        }
        self.by_cpu.store(by_cpu, Relaxed);
        Ok(())
    }

    /// True while packets go to the sending core's worker.
    pub fn by_cpu(&self) -> bool {
        self.by_cpu.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_without_a_core_is_named() {
        assert!(workers_without_a_core(&[0, 1], 2).is_empty());
        assert!(workers_without_a_core(&[0, 1, 2, 3], 2).is_empty(), "a worker may take several cores");
        assert_eq!(workers_without_a_core(&[0, 1], 3), vec![2], "more workers than cores");
        assert_eq!(workers_without_a_core(&[0, 2], 2), vec![1], "cores 0 and 2 both steer to queue 0");
    }

    #[test]
    fn auto_leaves_cpu_steering_on_one_busy_tick_and_returns_after_quiet_ones() {
        let mut a = Auto::default();
        assert_eq!(a.tick(0), None, "starts with CPU steering");
        assert_eq!(a.tick(BUSY), None, "at the threshold: still light");
        assert_eq!(a.tick(BUSY + 1), Some(false));
        assert_eq!(a.tick(BUSY + 1), None);
        // Light ticks count only in a row; a middling one starts over.
        for _ in 0..QUIET_TICKS - 1 {
            assert_eq!(a.tick(QUIET - 1), None);
        }
        assert_eq!(a.tick(QUIET), None, "not quiet: the count starts over");
        for _ in 0..QUIET_TICKS - 1 {
            assert_eq!(a.tick(0), None);
        }
        assert_eq!(a.tick(0), Some(true));
        assert_eq!(a.tick(0), None);
    }
}
