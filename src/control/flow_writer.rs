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
use std::collections::{HashSet, VecDeque};
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
    /// The first interval whose NODATA records are not yet written, and the
    /// (interface, interval) pairs from it on that had a record or a
    /// skipped record.
    nodata: Mutex<(Option<u32>, Seen)>,
}

/// (interface, interval start) pairs that had a record or a skipped record.
type Seen = HashSet<(flowlog::Eni, u32)>;

/// Intervals one pass decides NODATA for at most (the writer runs twice a
/// second, so more means it stalled or the clock jumped: the older ones then
/// get no NODATA record, as AWS writes none for an interval it did not
/// capture).
const NODATA_INTERVALS: u32 = 64;

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
            nodata: Mutex::new((None, HashSet::new())),
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
        records.sort_by_key(|r| (r.start, r.key.eni));
        let unix = |s: u32| self.unix_base + u64::from(s);
        let f = &self.settings.format;
        let account = &self.settings.account_id;
        let iv = self.settings.interval;
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
            lines.push(flowlog::format_status(f, account, &self.vpc_id, info, s, s + u64::from(iv), "SKIPDATA"));
        }
        // NODATA: an interface with no record in an interval that has ended
        // (not at the final pass, whose "now" is the end of time).
        if now_secs != u32::MAX {
            let mut guard = self.nodata.lock();
            let (from, seen) = &mut *guard;
            let first = *from.get_or_insert(now_secs - now_secs % iv);
            // Skipped records may come before their interval is decided.
            seen.extend(records.iter().map(|r| (r.key.eni, r.interval)));
            seen.extend(skipped.iter().map(|(e, start, _)| (*e, *start)));
            // A NAT gateway deleted while running has no interface any more.
            let topo = gw.topology();
            let base = topo.interfaces.len();
            let live = |e: usize| e < base || topo.nat_gateways.get(e - base).is_some_and(|n| !n.public_ips.is_empty());
            let (quiet, next) = nodata(&self.enis, live, seen, first, now_secs, iv);
            seen.retain(|(_, i)| *i >= next);
            for (e, start) in quiet {
                let s = unix(start);
                lines.push(flowlog::format_status(
                    f,
                    account,
                    &self.vpc_id,
                    &self.enis[e],
                    s,
                    s + u64::from(iv),
                    "NODATA",
                ));
            }
            *from = Some(next);
        }
        if lines.is_empty() {
            return;
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

/// The (interface, interval start) pairs of the intervals from `first` that
/// have ended by `now` in which an interface (an ENI of AWS's: hosts' and
/// NAT gateways', while `live`) is not in `seen` (no record, no skipped record); and the
/// next interval to decide. Of a backlog longer than [`NODATA_INTERVALS`]
/// only the latest are decided.
fn nodata(
    enis: &[EniInfo],
    live: impl Fn(usize) -> bool,
    seen: &Seen,
    first: u32,
    now: u32,
    iv: u32,
) -> (Vec<(usize, u32)>, u32) {
    // Intervals i = first + k * iv have ended when i + iv < now.
    let ended = now.saturating_sub(first).saturating_sub(1) / iv;
    let next = first + ended * iv;
    let mut out = Vec::new();
    for k in ended - ended.min(NODATA_INTERVALS)..ended {
        let i = first + k * iv;
        for (e, _) in enis.iter().enumerate().filter(|(e, info)| info.id != "-" && live(*e)) {
            if !flowlog::Eni::try_from(e).is_ok_and(|x| seen.contains(&(x, i))) {
                out.push((e, i));
            }
        }
    }
    (out, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eni(id: &str) -> EniInfo {
        EniInfo { id: id.into(), subnet_id: "subnet-1".into(), instance_id: "-".into(), kind: "IPv4" }
    }

    #[test]
    fn quiet_interfaces_get_nodata_for_each_ended_interval() {
        // The internet side ("-") is no ENI; app (1) sent in the first interval, nat (2) was skipped in the second.
        let enis = [eni("-"), eni("eni-app"), eni("eni-nat")];
        let all = |_| true;
        let seen: Seen = [(1, 60), (2, 70)].into();
        let (quiet, next) = nodata(&enis, all, &seen, 60, 85, 10);
        assert_eq!(quiet, vec![(2, 60), (1, 70)], "the interval 80-90 has not ended");
        assert_eq!(next, 80);
        // Nothing has ended yet: nothing decided, the same start next time.
        assert_eq!(nodata(&enis, all, &seen, 80, 85, 10), (vec![], 80));
        assert_eq!(nodata(&enis, all, &seen, 80, 90, 10), (vec![], 80), "90 is the end, not past it");
        assert_eq!(nodata(&enis, all, &seen, 80, 91, 10).1, 90);
        // After a long stall only the latest NODATA_INTERVALS intervals, all decided at once.
        let (quiet, next) = nodata(&enis, all, &HashSet::new(), 0, 100_000, 10);
        assert_eq!((quiet.len(), next), (2 * NODATA_INTERVALS as usize, 99_990));
        assert_eq!(quiet[0].1, 99_990 - 10 * NODATA_INTERVALS);
        // A deleted NAT gateway (2) gets none.
        assert_eq!(nodata(&enis, |e| e != 2, &seen, 60, 85, 10).0, vec![(1, 70)]);
        let f = flowlog::Format::parse(flowlog::DEFAULT_FORMAT).expect("format");
        let line = flowlog::format_status(&f, "123456789012", "vpc-1", &enis[1], 1_000, 1_010, "NODATA");
        assert_eq!(line, "2 123456789012 eni-app - - - - - - - 1000 1010 - NODATA");
    }
}
