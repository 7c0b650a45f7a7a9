//! The flow log writer: a control-plane thread that takes the records the
//! workers flushed, formats them and appends them to the file the config
//! names, and keeps the latest lines for `natgw flow-logs --follow`. A write
//! that fails (a full disk) is counted and reported, and the records are
//! lost; the packet path never waits for the file.

use super::config::{FlowLogSettings, Vpc};
use crate::flowlog::{self, EniInfo};
use crate::pipeline::Gateway;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;

/// Lines kept for `--follow`.
const RING: usize = 10_000;

/// What `natgw stats` and `natgw flow-logs` say about the flow logs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlowLogStatus {
    pub path: String,
    pub interval: u32,
    pub records_written: u64,
    /// Writes that failed (a full disk, a removed directory), and the records they lost.
    pub write_errors: u64,
    pub records_lost: u64,
    /// Records the workers' full tables skipped (SKIPDATA).
    pub records_skipped: u64,
    pub last_error: String,
}

/// The writer's state.
#[derive(Debug)]
pub struct FlowLogWriter {
    settings: FlowLogSettings,
    enis: Vec<EniInfo>,
    vpc_id: String,
    /// Unix time of the gateway clock's second 0.
    unix_base: u64,
    status: Mutex<FlowLogStatus>,
    ring: Mutex<(u64, VecDeque<(u64, String)>)>,
    /// Records of intervals that may still get records from a slower worker.
    pending: Mutex<Vec<flowlog::Record>>,
}

impl FlowLogWriter {
    /// The writer for `vpc`'s flow logs, if it has any.
    pub fn new(vpc: &Vpc, unix_base: u64) -> Option<FlowLogWriter> {
        let settings = vpc.flow_logs.clone()?;
        let p = &vpc.parts;
        // One per interface, in the topology's order; only hosts' are ENIs
        // of AWS's (the internet side and the resolver are never recorded).
        let topo = crate::pipeline::Topology::new(p.clone());
        let mut enis: Vec<EniInfo> = topo
            .interfaces
            .iter()
            .map(|i| match i.kind {
                crate::pipeline::topology::IfKind::Host(h) => {
                    let h = &p.hosts[usize::from(h)];
                    EniInfo {
                        id: flowlog::stable_id("eni", &h.name),
                        subnet_id: flowlog::stable_id("subnet", &p.subnets[usize::from(h.subnet)].name),
                        instance_id: flowlog::stable_id("i", &h.name),
                        kind: "IPv4",
                    }
                }
                _ => EniInfo { id: "-".into(), subnet_id: "-".into(), instance_id: "-".into(), kind: "IPv4" },
            })
            .collect();
        for n in &p.nat_gateways {
            enis.push(EniInfo {
                id: flowlog::stable_id("eni", &n.name),
                subnet_id: flowlog::stable_id("subnet", &p.subnets[usize::from(n.subnet)].name),
                instance_id: "-".into(),
                kind: "IPv4",
            });
        }
        let status = FlowLogStatus {
            path: settings.path.display().to_string(),
            interval: settings.interval,
            ..FlowLogStatus::default()
        };
        Some(FlowLogWriter {
            vpc_id: flowlog::stable_id("vpc", &vpc.name),
            settings,
            enis,
            unix_base,
            status: Mutex::new(status),
            ring: Mutex::new((0, VecDeque::new())),
            pending: Mutex::new(Vec::new()),
        })
    }

    /// Writes the records of the intervals that ended a second or more
    /// before `now_secs` (every worker has flushed them by then: an idle
    /// worker wakes every half second), one record per flow,
    /// interface and interval however many workers counted it.
    pub fn pass(&self, gw: &Gateway, now_secs: u32) {
        let sink = gw.flow_sink();
        let mut pending = self.pending.lock();
        pending.append(&mut sink.records.lock());
        let ripe = |r: &flowlog::Record| r.interval.saturating_add(self.settings.interval) < now_secs;
        let (ready, wait): (Vec<flowlog::Record>, Vec<flowlog::Record>) = pending.drain(..).partition(ripe);
        *pending = wait;
        drop(pending);
        let mut records = flowlog::merge(ready);
        let skipped = std::mem::take(&mut *sink.skipped.lock());
        if records.is_empty() && skipped.is_empty() {
            return;
        }
        records.sort_by_key(|r| (r.start, r.key.eni));
        let unix = |s: u32| self.unix_base + u64::from(s);
        let f = &self.settings.format;
        let account = &self.settings.account_id;
        let unknown = EniInfo { id: "-".into(), subnet_id: "-".into(), instance_id: "-".into(), kind: "IPv4" };
        let mut lines: Vec<String> = records
            .iter()
            .map(|r| {
                let eni = self.enis.get(usize::from(r.key.eni)).unwrap_or(&unknown);
                flowlog::format(r, f, account, &self.vpc_id, eni, unix)
            })
            .collect();
        for (eni, start, _) in &skipped {
            let info = self.enis.get(usize::from(*eni)).unwrap_or(&unknown);
            let s = unix(*start);
            lines.push(flowlog::format_skipped(f, account, info, s, s + u64::from(self.settings.interval)));
        }
        let mut text = lines.join("\n");
        text.push('\n');
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.settings.path)
            .and_then(|mut file| file.write_all(text.as_bytes()));
        {
            let mut st = self.status.lock();
            st.records_skipped = sink.skipped_records.load(std::sync::atomic::Ordering::Relaxed);
            st.records_lost += sink.lost.swap(0, std::sync::atomic::Ordering::Relaxed);
            match written {
                Ok(()) => st.records_written += lines.len() as u64,
                Err(e) => {
                    st.write_errors += 1;
                    st.records_lost += lines.len() as u64;
                    st.last_error = format!("{}: {e}", self.settings.path.display());
                    tracing::warn!(error = %st.last_error, lost = lines.len(), "flow log write failed");
                }
            }
        }
        let mut ring = self.ring.lock();
        for l in lines {
            ring.0 += 1;
            let seq = ring.0;
            ring.1.push_back((seq, l));
            if ring.1.len() > RING {
                ring.1.pop_front();
            }
        }
    }

    /// Lines after sequence number `after` (the latest `RING` are kept).
    pub fn lines_after(&self, after: u64) -> Vec<(u64, String)> {
        self.ring.lock().1.iter().filter(|(s, _)| *s > after).cloned().collect()
    }

    pub fn status(&self) -> FlowLogStatus {
        self.status.lock().clone()
    }
}
