//! The expiry wheel: sessions waiting, by second, for the reaper to look at
//! them (the NAT gateways' and the tracker's), so that a pass looks only at
//! what may be due, in bounded batches.

use super::session::Session;
use super::timeouts::Timeouts;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The reaper looks at a session at least this often, so a session whose
/// timer shrank (a RST in an established connection) does not linger.
pub const RECHECK_SECS: u32 = 30;

/// Sessions by the second the reaper should look at them.
#[derive(Debug, Default)]
pub struct Wheel {
    /// Oldest first; the NAT's early drop walks them in that order.
    pub(crate) slots: BTreeMap<u32, Vec<Arc<Session>>>,
}

impl Wheel {
    pub fn schedule(&mut self, at: u32, s: Arc<Session>) {
        self.slots.entry(at).or_default().push(s);
    }

    /// Looks again at a live session at its deadline, or within `RECHECK_SECS`.
    pub fn reschedule(&mut self, s: Arc<Session>, now_secs: u32, t: &Timeouts) {
        let at = s.deadline(t).min(now_secs.saturating_add(RECHECK_SECS)) + 1;
        self.schedule(at.max(now_secs + 1), s);
    }

    /// At most `budget` sessions due at `now_secs`, taken off the wheel
    /// (what the caller puts back lands at a later second).
    pub fn take_due(&mut self, now_secs: u32, budget: usize) -> Vec<Arc<Session>> {
        let mut due = Vec::new();
        while due.len() < budget {
            let Some(mut entry) = self.slots.first_entry() else { break };
            if *entry.key() > now_secs {
                break;
            }
            let bucket = entry.get_mut();
            let take = bucket.len().min(budget - due.len());
            due.extend(bucket.drain(bucket.len() - take..));
            if bucket.is_empty() {
                entry.remove();
            }
        }
        due
    }
}
