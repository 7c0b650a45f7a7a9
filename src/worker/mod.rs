//! Worker threads: one per TUN queue index. Worker `i` owns queue `i` of every
//! device, reads a packet, runs it through its own [`Pipeline`], and writes
//! it to its own queue of the egress device: no hand-off between threads.
//!
//! Per wake-up a worker reads the clock once, picks up a new topology if one
//! was swapped in, and takes at most [`BATCH`] packets from each ready device
//! (epoll is level-triggered, so what is left wakes it again at once).

use crate::clock::Clock;
use crate::io::{Read, TunQueue, steer};
use crate::pipeline::{Action, Counters, DropReason, Gateway, PacketBuf, Pending, Pipeline, coalesce};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Packets taken from one device per wake-up.
pub const BATCH: usize = 64;
/// Buffer size: the largest IPv4 packet (a 64 KiB GSO frame).
const BUF: usize = 65536;
const STOP: u64 = u64::MAX;
/// Longest sleep without traffic (timers: delayed ICMP answers, fragment timeouts).
const TICK_MS: u16 = 500;

/// The running workers.
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
    counters: Vec<Arc<Counters>>,
    tids: Vec<i32>,
    stop: Arc<EventFd>,
}

impl Workers {
    /// Starts one worker per queue index. `queues[d][i]` is queue `i` of device
    /// `d`. After traffic, a worker keeps polling (yielding the CPU between
    /// polls) for `busy_poll` before it sleeps: no wake-up latency while
    /// packets keep coming, at the price of a busy core meanwhile.
    pub fn start(
        gw: &Arc<Gateway>,
        queues: Vec<Vec<TunQueue>>,
        clock: Clock,
        busy_poll: std::time::Duration,
    ) -> io::Result<Workers> {
        let n = queues.iter().map(Vec::len).min().unwrap_or(0);
        let stop = Arc::new(EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?);
        // Transpose: worker i gets queue i of every device, in device order.
        let mut per_worker: Vec<Vec<TunQueue>> = (0..n).map(|_| Vec::new()).collect();
        for dev in queues {
            for (i, q) in dev.into_iter().enumerate().take(n) {
                per_worker[i].push(q);
            }
        }
        let mut handles = Vec::new();
        let mut counters = Vec::new();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        for (i, qs) in per_worker.into_iter().enumerate() {
            let pipe = gw.pipeline();
            counters.push(pipe.counters().clone());
            let stop = stop.clone();
            let tid_tx = tid_tx.clone();
            let h = std::thread::Builder::new().name(format!("natgw-worker-{i}")).spawn(move || {
                let _ = tid_tx.send((i, steer::thread_id()));
                drop(tid_tx);
                if let Err(e) = run(pipe, &qs, &stop, clock, busy_poll) {
                    tracing::error!(worker = i, error = %e, "worker stopped");
                }
            })?;
            handles.push(h);
        }
        drop(tid_tx);
        // Each worker reports its thread id first thing (for pinning it).
        let mut tids = vec![0; handles.len()];
        for (i, tid) in tid_rx.iter() {
            tids[i] = tid;
        }
        Ok(Workers { handles, counters, tids, stop })
    }

    /// The workers' thread ids, in worker order.
    pub fn thread_ids(&self) -> &[i32] {
        &self.tids
    }

    /// Counters of every worker.
    pub fn counters(&self) -> &[Arc<Counters>] {
        &self.counters
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Asks every worker to stop and waits for them.
    pub fn stop(self) {
        let _ = self.stop.write(1);
        for h in self.handles {
            let _ = h.join();
        }
    }
}

fn run(
    mut pipe: Pipeline,
    queues: &[TunQueue],
    stop: &EventFd,
    clock: Clock,
    busy_poll: std::time::Duration,
) -> io::Result<()> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (i, q) in queues.iter().enumerate() {
        epoll.add(q.fd(), EpollEvent::new(EpollFlags::EPOLLIN, i as u64))?;
    }
    epoll.add(stop.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, STOP))?;
    let mut buf = PacketBuf::with_capacity(BUF);
    let mut hold = PacketBuf::with_capacity(BUF);
    let mut events = [EpollEvent::empty(); 16];
    let counters = pipe.counters().clone();
    let tick = std::time::Duration::from_millis(u64::from(TICK_MS));
    let mut last_packet = clock.now();
    let mut last_tick = last_packet;
    loop {
        let before = clock.now();
        let spinning = !busy_poll.is_zero() && before.since(last_packet) < busy_poll;
        // Sleep at most TICK_MS so timers run without traffic; while spinning, do not sleep.
        let timeout = if spinning { EpollTimeout::ZERO } else { EpollTimeout::from(TICK_MS) };
        let n = match epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let now = clock.now();
        if n == 0 && spinning {
            if now.since(last_tick) >= tick {
                last_tick = now;
                pipe.poll(now);
                drain(&mut pipe, queues, &mut buf, now);
            }
            // Let the core run anything else that is ready (on a small machine,
            // the very processes sending and receiving the traffic).
            std::thread::yield_now();
            continue;
        }
        counters.io.wakeups.inc();
        pipe.refresh();
        if n == 0 || now.since(last_tick) >= tick {
            last_tick = now;
            pipe.poll(now);
            drain(&mut pipe, queues, &mut buf, now);
        }
        for ev in &events[..n] {
            let d = ev.data();
            if d == STOP {
                return Ok(());
            }
            let Some(q) = queues.get(d as usize) else { continue };
            let mut taken = 0;
            // A forwarded TCP data segment waits in `hold` (to go out of
            // `held`) until the next read from this queue: if that is its
            // flow's bare FIN, the FIN joins it (see `pipeline::coalesce`).
            let mut held: Option<u16> = None;
            while taken < BATCH {
                match q.read(&mut buf) {
                    Ok(Read::Packet(_)) => taken += 1,
                    Ok(Read::Empty) => break,
                    Err(e) => {
                        counters.io.rx_errors.inc();
                        tracing::debug!(error = %e, "TUN read failed");
                        break;
                    }
                }
                let a = pipe.process(now, d as u16, &mut buf);
                if let Some(e) = held.take() {
                    let merged = a == Action::Forward(e) && coalesce::merge_fin(&mut hold, &buf);
                    send(&pipe, queues, &hold, e);
                    if merged {
                        counters.io.fin_merged.inc();
                        drain(&mut pipe, queues, &mut buf, now);
                        continue;
                    }
                }
                if let Action::Forward(e) = a
                    && !pipe.has_pending()
                    && coalesce::may_take_fin(&buf)
                {
                    std::mem::swap(&mut buf, &mut hold);
                    held = Some(e);
                    continue;
                }
                act(&pipe, queues, &buf, a);
                drain(&mut pipe, queues, &mut buf, now);
            }
            if let Some(e) = held {
                send(&pipe, queues, &hold, e);
            }
            if taken > 0 {
                last_packet = now;
            }
            if taken == BATCH {
                counters.io.full_batches.inc();
            }
        }
    }
}

/// Carries out a verdict.
#[inline]
fn act(pipe: &Pipeline, queues: &[TunQueue], buf: &PacketBuf, a: Action) {
    match a {
        Action::Forward(e) | Action::Reply { egress: e, .. } => send(pipe, queues, buf, e),
        Action::Drop(_) | Action::Held => {}
    }
}

#[inline]
fn send(pipe: &Pipeline, queues: &[TunQueue], buf: &PacketBuf, e: u16) {
    let e = usize::from(e);
    match queues.get(e).map(|out| out.write(buf)) {
        Some(Ok(())) => pipe.counters().tx(e, buf.len()),
        _ => pipe.counters().count_drop(DropReason::TxError),
    }
}

/// Sends or re-runs what the pipeline produced besides its verdicts.
fn drain(pipe: &mut Pipeline, queues: &[TunQueue], buf: &mut PacketBuf, now: crate::clock::Timestamp) {
    while let Some(p) = pipe.next_pending(buf) {
        match p {
            Pending::Send(e) => send(pipe, queues, buf, e),
            Pending::Reprocess(ingress) => {
                let a = pipe.process(now, ingress, buf);
                act(pipe, queues, buf, a);
            }
        }
    }
}
