//! Packets the pipeline produces besides the verdict on the packet it was
//! given: fragments of a packet too big for its egress, fragments released
//! from waiting, messages due on a timer. Preallocated and bounded; the
//! worker drains it after every packet and every timer poll.

use super::buf::{Offload, PacketBuf};
use super::topology::IfId;
use std::collections::VecDeque;

/// What to do with a packet from the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// Write it out of this interface.
    Send(IfId),
    /// Run it through the pipeline again, as if it arrived on this interface.
    Reprocess(IfId),
}

/// A fixed pool of packet buffers and a queue over them.
#[derive(Debug)]
pub struct Outbox {
    slots: Vec<PacketBuf>,
    queue: VecDeque<(usize, Pending)>,
    free: Vec<usize>,
}

impl Outbox {
    /// `n` buffers of `size` bytes each.
    pub fn new(n: usize, size: usize) -> Outbox {
        Outbox {
            slots: (0..n).map(|_| PacketBuf::with_capacity(size)).collect(),
            queue: VecDeque::with_capacity(n),
            free: (0..n).rev().collect(),
        }
    }

    /// Queues a copy of `bytes`; false when full or too big (the caller counts a drop).
    pub fn push(&mut self, what: Pending, bytes: &[u8], offload: Offload) -> bool {
        let Some(i) = self.free.pop() else { return false };
        let slot = &mut self.slots[i];
        if bytes.len() > slot.capacity() {
            self.free.push(i);
            return false;
        }
        slot.buffer_mut()[..bytes.len()].copy_from_slice(bytes);
        slot.set_len(bytes.len());
        slot.offload = offload;
        self.queue.push_back((i, what));
        true
    }

    /// Queues a packet that `fill` writes into a free buffer (returning false
    /// to give the buffer back); false when full.
    pub fn push_with(&mut self, what: Pending, fill: impl FnOnce(&mut PacketBuf) -> bool) -> bool {
        let Some(i) = self.free.pop() else { return false };
        let slot = &mut self.slots[i];
        slot.offload = Offload::default();
        if !fill(slot) {
            self.free.push(i);
            return false;
        }
        self.queue.push_back((i, what));
        true
    }

    /// Moves the oldest queued packet into `out`.
    pub fn pop_into(&mut self, out: &mut PacketBuf) -> Option<Pending> {
        let (i, what) = self.queue.pop_front()?;
        let slot = &self.slots[i];
        out.buffer_mut()[..slot.len()].copy_from_slice(slot.bytes());
        out.set_len(slot.len());
        out.offload = slot.offload;
        self.free.push(i);
        Some(what)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_bounded() {
        let mut o = Outbox::new(2, 16);
        assert!(o.push(Pending::Send(1), b"a", Offload::default()));
        assert!(o.push(Pending::Reprocess(2), b"bb", Offload::default()));
        assert!(!o.push(Pending::Send(1), b"c", Offload::default()), "full");
        let mut out = PacketBuf::with_capacity(64);
        assert_eq!(o.pop_into(&mut out), Some(Pending::Send(1)));
        assert_eq!(out.bytes(), b"a");
        assert!(!o.push(Pending::Send(1), &[0; 17], Offload::default()), "too big");
        assert_eq!(o.pop_into(&mut out), Some(Pending::Reprocess(2)));
        assert_eq!(out.bytes(), b"bb");
        assert_eq!(o.pop_into(&mut out), None);
    }
}
