//! The decision record: each step the walk takes for one packet, in words,
//! kept only while recording is on (`natgw trace`). Off, a step costs one
//! test of a flag; the flow cache's path records nothing.

use super::Pipeline;
use serde::{Deserialize, Serialize};

/// One step of the walk.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hop {
    /// What decided: `interface`, `source/destination check`, `security
    /// group`, `route table`, `network ACL`, `NAT gateway`, `internet
    /// gateway`, `subnet`, `MSS`, `MTU`, `verdict`.
    pub step: String,
    /// The decision in words.
    pub detail: String,
}

impl Pipeline {
    /// Starts (or stops) recording the steps of the packets processed next.
    pub fn set_recording(&mut self, on: bool) {
        self.recording = on;
        self.record.get_mut().clear();
    }

    /// The steps recorded since the last call.
    pub fn take_record(&mut self) -> Vec<Hop> {
        std::mem::take(self.record.get_mut())
    }

    /// Records a step, if recording: `detail` runs only then.
    #[inline]
    pub(super) fn note(&self, step: &str, detail: impl FnOnce() -> String) {
        if self.recording {
            self.record.borrow_mut().push(Hop { step: step.to_string(), detail: detail() });
        }
    }

    /// The name of interface `i`.
    pub(super) fn if_name(&self, i: super::IfId) -> &str {
        self.topo.interfaces.get(usize::from(i)).map_or("?", |i| i.name.as_str())
    }
}
