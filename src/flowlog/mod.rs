//! VPC Flow Logs: one record per flow (5-tuple as an interface sees it),
//! interface, action and aggregation interval, in AWS's default format
//! (version 2) or a custom format that names its fields.
//!
//! The packet path only counts: each worker has a fixed-size table
//! ([`Table`], allocated with the worker's pipeline) that a packet's record
//! is added to, and a full table skips the record and marks its interface
//! `SKIPDATA` for the interval, as AWS does. Between batches, once an
//! interval has ended, the worker moves its records into the gateway's
//! [`Sink`] (one lock a worker an interval); the control plane formats them
//! and writes the file. No I/O, no allocation, no lock per packet.

use crate::conntrack::FlowKey;
use parking_lot::Mutex;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Records one worker keeps per interval (a power of two).
pub const TABLE_SLOTS: usize = 8192;
/// Records the sink holds for the writer; past that, records are lost (counted).
const SINK_MAX: usize = 1 << 20;

/// ACCEPT or REJECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Reject,
}

/// The interface a record is about: a host's (its interface index) or a
/// NAT gateway's (interfaces + its index).
pub type Eni = u16;

/// What one record aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RecordKey {
    pub eni: Eni,
    /// As the interface sees the flow.
    pub flow: FlowKey,
    /// The packet's own addresses (`pkt-srcaddr`, `pkt-dstaddr`).
    pub pkt_src: u32,
    pub pkt_dst: u32,
    pub reject: bool,
    /// The packet arrived at the interface (ingress) or left it (egress).
    pub ingress: bool,
}

/// One record, flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: RecordKey,
    pub packets: u64,
    pub bytes: u64,
    /// Seconds of the gateway's clock: first and last packet in the interval.
    pub start: u32,
    pub end: u32,
    /// TCP flags seen, ORed (AWS's `tcp-flags`).
    pub tcp_flags: u8,
    /// The first second of its aggregation interval.
    pub interval: u32,
}

impl Record {
    /// Adds another worker's record of the same flow and interval.
    pub fn merge(&mut self, o: &Record) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.start = self.start.min(o.start);
        self.end = self.end.max(o.end);
        self.tcp_flags |= o.tcp_flags;
    }
}

/// Merges the records of one flow, interface and interval that several
/// workers kept (a flow's two directions, or a flow that moved queue).
pub fn merge(records: Vec<Record>) -> Vec<Record> {
    let mut by: std::collections::HashMap<(RecordKey, u32), Record> = std::collections::HashMap::new();
    for r in records {
        by.entry((r.key, r.interval)).and_modify(|m| m.merge(&r)).or_insert(r);
    }
    by.into_values().collect()
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// The key packed in three words (see [`pack`]); all zero: free (no
    /// record has a zero first word: its addresses are never both 0.0.0.0).
    words: [u64; 3],
    bytes: u64,
    packets: u32,
    start: u32,
    end: u32,
    tcp_flags: u8,
}

impl Slot {
    fn used(&self) -> bool {
        self.words[0] != 0
    }
}

/// A key as three words: one compare each, and the hash's input.
#[inline]
fn pack(k: &RecordKey) -> [u64; 3] {
    [
        u64::from(k.flow.src) << 32 | u64::from(k.flow.dst),
        u64::from(k.flow.sport) << 48
            | u64::from(k.flow.dport) << 32
            | u64::from(k.flow.proto) << 24
            | u64::from(k.eni) << 8
            | u64::from(k.reject) << 1
            | u64::from(k.ingress),
        u64::from(k.pkt_src) << 32 | u64::from(k.pkt_dst),
    ]
}

fn unpack(w: &[u64; 3]) -> RecordKey {
    RecordKey {
        eni: (w[1] >> 8) as u16,
        flow: FlowKey {
            src: (w[0] >> 32) as u32,
            dst: w[0] as u32,
            sport: (w[1] >> 48) as u16,
            dport: (w[1] >> 32) as u16,
            proto: (w[1] >> 24) as u8,
            zone: 0,
        },
        pkt_src: (w[2] >> 32) as u32,
        pkt_dst: w[2] as u32,
        reject: w[1] & 2 != 0,
        ingress: w[1] & 1 != 0,
    }
}

/// A worker's records for the current interval.
#[derive(Debug)]
pub struct Table {
    slots: Box<[Slot]>,
    /// Per interface: records skipped this interval (a full table).
    skipped: Box<[u32]>,
    used: usize,
    /// The interval the records belong to: its first second.
    interval_start: u32,
    interval: u32,
    /// Counts the flushes: a slot index handed out by [`Table::add`] holds
    /// its record until the epoch changes.
    epoch: u32,
}

/// Where a flow's records are in a worker's table, for its next packets
/// (the flow cache keeps one per slot): valid while the table's epoch is
/// `epoch`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Refs {
    pub epoch: u32,
    pub slots: [u16; 4],
    pub n: u8,
}

#[inline]
fn hash(w: &[u64; 3]) -> usize {
    let mut h = w[0].wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ w[1] ^ w[2].rotate_left(17);
    // A final avalanche: every key bit reaches the low bits the table uses.
    h ^= h >> 31;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h as usize
}

impl Table {
    /// A table for `enis` interfaces and an aggregation interval of `interval` seconds.
    pub fn new(enis: usize, interval: u32) -> Table {
        Table {
            slots: vec![Slot::default(); TABLE_SLOTS].into_boxed_slice(),
            skipped: vec![0; enis].into_boxed_slice(),
            used: 0,
            interval_start: 0,
            interval: interval.max(1),
            epoch: 1,
        }
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Adds one packet to the records `refs` points to, if they still hold
    /// (true), else nothing (false: add the packet by its keys).
    #[inline]
    pub fn bump(&mut self, refs: &Refs, now_secs: u32, len: usize, tcp_flags: u8) -> bool {
        if refs.epoch != self.epoch {
            return false;
        }
        for &i in &refs.slots[..usize::from(refs.n)] {
            let s = &mut self.slots[usize::from(i)];
            s.packets = s.packets.wrapping_add(1);
            s.bytes += len as u64;
            s.end = now_secs;
            s.tcp_flags |= tcp_flags;
        }
        true
    }

    /// Adds one packet to its record; the record's slot, unless skipped.
    #[inline]
    pub fn add(&mut self, now_secs: u32, key: &RecordKey, len: usize, tcp_flags: u8) -> Option<u16> {
        let mask = TABLE_SLOTS - 1;
        let words = pack(key);
        let mut i = hash(&words) & mask;
        // Probe at most 8 slots; three quarters full counts as full.
        for _ in 0..8 {
            let s = &mut self.slots[i];
            if s.words == words {
                s.packets = s.packets.wrapping_add(1);
                s.bytes += len as u64;
                s.end = now_secs;
                s.tcp_flags |= tcp_flags;
                return Some(i as u16);
            }
            if !s.used() {
                if self.used >= TABLE_SLOTS / 4 * 3 {
                    break;
                }
                *s = Slot { words, packets: 1, bytes: len as u64, start: now_secs, end: now_secs, tcp_flags };
                self.used += 1;
                return Some(i as u16);
            }
            i = (i + 1) & mask;
        }
        if let Some(n) = self.skipped.get_mut(usize::from(key.eni)) {
            *n = n.saturating_add(1);
        }
        None
    }

    /// Whether the interval the records belong to has ended at `now_secs`.
    #[inline]
    pub fn due(&self, now_secs: u32) -> bool {
        now_secs >= self.interval_start.saturating_add(self.interval)
    }

    /// Moves the records into `sink` and starts the interval of `now_secs`.
    pub fn flush(&mut self, now_secs: u32, sink: &Sink) {
        if self.used > 0 || self.skipped.iter().any(|n| *n > 0) {
            let mut out = sink.records.lock();
            for s in self.slots.iter_mut().filter(|s| s.used()) {
                if out.len() < SINK_MAX {
                    out.push(Record {
                        key: unpack(&s.words),
                        packets: u64::from(s.packets),
                        bytes: s.bytes,
                        start: s.start,
                        end: s.end,
                        tcp_flags: s.tcp_flags,
                        interval: self.interval_start,
                    });
                } else {
                    sink.lost.fetch_add(1, Relaxed);
                }
                s.words = [0; 3];
            }
            let mut skipped = sink.skipped.lock();
            for (eni, n) in self.skipped.iter_mut().enumerate() {
                if *n > 0 {
                    skipped.push((eni as Eni, self.interval_start, *n));
                    sink.skipped_records.fetch_add(u64::from(*n), Relaxed);
                    *n = 0;
                }
            }
        }
        self.used = 0;
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.interval_start = now_secs - now_secs % self.interval;
    }
}

/// Records the workers flushed, for the writer.
#[derive(Debug, Default)]
pub struct Sink {
    pub records: Mutex<Vec<Record>>,
    /// (interface, interval start, records skipped): SKIPDATA records.
    pub skipped: Mutex<Vec<(Eni, u32, u32)>>,
    /// Records skipped by full worker tables.
    pub skipped_records: AtomicU64,
    /// Records lost because the writer fell behind by `SINK_MAX`.
    pub lost: AtomicU64,
}

/// The fields a format may name (AWS's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Version,
    AccountId,
    InterfaceId,
    SrcAddr,
    DstAddr,
    SrcPort,
    DstPort,
    Protocol,
    Packets,
    Bytes,
    Start,
    End,
    Action,
    LogStatus,
    VpcId,
    SubnetId,
    InstanceId,
    TcpFlags,
    Type,
    PktSrcAddr,
    PktDstAddr,
    FlowDirection,
}

const FIELDS: &[(&str, Field, u8)] = &[
    ("version", Field::Version, 2),
    ("account-id", Field::AccountId, 2),
    ("interface-id", Field::InterfaceId, 2),
    ("srcaddr", Field::SrcAddr, 2),
    ("dstaddr", Field::DstAddr, 2),
    ("srcport", Field::SrcPort, 2),
    ("dstport", Field::DstPort, 2),
    ("protocol", Field::Protocol, 2),
    ("packets", Field::Packets, 2),
    ("bytes", Field::Bytes, 2),
    ("start", Field::Start, 2),
    ("end", Field::End, 2),
    ("action", Field::Action, 2),
    ("log-status", Field::LogStatus, 2),
    ("vpc-id", Field::VpcId, 3),
    ("subnet-id", Field::SubnetId, 3),
    ("instance-id", Field::InstanceId, 3),
    ("tcp-flags", Field::TcpFlags, 3),
    ("type", Field::Type, 3),
    ("pkt-srcaddr", Field::PktSrcAddr, 3),
    ("pkt-dstaddr", Field::PktDstAddr, 3),
    ("flow-direction", Field::FlowDirection, 5),
];

/// AWS's default format.
pub const DEFAULT_FORMAT: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}";

/// A parsed format: its fields and the version it implies (the highest
/// version of its fields, as AWS writes in `version`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    pub fields: Vec<Field>,
    pub version: u8,
}

impl Format {
    /// Parses `${field} ${field} ...`.
    pub fn parse(s: &str) -> Result<Format, String> {
        let mut fields = Vec::new();
        let mut version = 2;
        for word in s.split_whitespace() {
            let name = word
                .strip_prefix("${")
                .and_then(|w| w.strip_suffix('}'))
                .ok_or_else(|| format!("`{word}` is not a field: write fields as ${{srcaddr}}, space separated"))?;
            let (_, f, v) = FIELDS.iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
                let names: Vec<&str> = FIELDS.iter().map(|(n, _, _)| *n).collect();
                format!("no flow log field `{name}`: fields are {}", names.join(", "))
            })?;
            fields.push(*f);
            version = version.max(*v);
        }
        if fields.is_empty() {
            return Err("a format names at least one field".into());
        }
        Ok(Format { fields, version })
    }
}

/// What a record's interface is, for its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EniInfo {
    pub id: String,
    pub subnet_id: String,
    /// `-` for a NAT gateway.
    pub instance_id: String,
    /// AWS's `type` is IPv4 here; kept for completeness of the format.
    pub kind: &'static str,
}

/// Formats one record; `unix` turns the gateway's seconds into Unix time.
pub fn format(r: &Record, f: &Format, account: &str, vpc_id: &str, eni: &EniInfo, unix: impl Fn(u32) -> u64) -> String {
    let mut out = String::new();
    let k = &r.key;
    for (i, field) in f.fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = match field {
            Field::Version => write!(out, "{}", f.version),
            Field::AccountId => write!(out, "{account}"),
            Field::InterfaceId => write!(out, "{}", eni.id),
            Field::SrcAddr => write!(out, "{}", Ipv4Addr::from(k.flow.src)),
            Field::DstAddr => write!(out, "{}", Ipv4Addr::from(k.flow.dst)),
            Field::SrcPort => write!(out, "{}", if k.flow.proto == 1 { 0 } else { k.flow.sport }),
            Field::DstPort => write!(out, "{}", if k.flow.proto == 1 { 0 } else { k.flow.dport }),
            Field::Protocol => write!(out, "{}", k.flow.proto),
            Field::Packets => write!(out, "{}", r.packets),
            Field::Bytes => write!(out, "{}", r.bytes),
            Field::Start => write!(out, "{}", unix(r.start)),
            Field::End => write!(out, "{}", unix(r.end)),
            Field::Action => write!(out, "{}", if k.reject { "REJECT" } else { "ACCEPT" }),
            Field::LogStatus => write!(out, "OK"),
            Field::VpcId => write!(out, "{vpc_id}"),
            Field::SubnetId => write!(out, "{}", eni.subnet_id),
            Field::InstanceId => write!(out, "{}", eni.instance_id),
            Field::TcpFlags => write!(out, "{}", if k.flow.proto == 6 { r.tcp_flags } else { 0 }),
            Field::Type => write!(out, "{}", eni.kind),
            Field::PktSrcAddr => write!(out, "{}", Ipv4Addr::from(k.pkt_src)),
            Field::PktDstAddr => write!(out, "{}", Ipv4Addr::from(k.pkt_dst)),
            Field::FlowDirection => write!(out, "{}", if k.ingress { "ingress" } else { "egress" }),
        };
    }
    out
}

/// An interval's record without a flow: `SKIPDATA` (some records of the
/// interval were skipped) or `NODATA` (the interface had no traffic), as AWS
/// writes them: what is known of the interface, `-` for the rest.
pub fn format_status(
    f: &Format,
    account: &str,
    vpc_id: &str,
    eni: &EniInfo,
    start: u64,
    end: u64,
    status: &str,
) -> String {
    let words: Vec<String> = f
        .fields
        .iter()
        .map(|field| match field {
            Field::Version => f.version.to_string(),
            Field::AccountId => account.to_string(),
            Field::InterfaceId => eni.id.clone(),
            Field::VpcId => vpc_id.to_string(),
            Field::SubnetId => eni.subnet_id.clone(),
            Field::InstanceId => eni.instance_id.clone(),
            Field::Start => start.to_string(),
            Field::End => end.to_string(),
            Field::LogStatus => status.into(),
            _ => "-".into(),
        })
        .collect();
    words.join(" ")
}

/// A stable id of the kind AWS prints (`eni-` and 17 hex digits) for a name.
pub fn stable_id(prefix: &str, name: &str) -> String {
    // FNV-1a: the same name gives the same id on every run and machine.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prefix.bytes().chain(name.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{prefix}-0{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(eni: Eni, sport: u16) -> RecordKey {
        RecordKey {
            eni,
            flow: FlowKey { src: 0x0a00_010a, dst: 0xc633_640a, sport, dport: 53, proto: 17, zone: 0 },
            pkt_src: 0x0a00_010a,
            pkt_dst: 0xc633_640a,
            reject: false,
            ingress: false,
        }
    }

    #[test]
    fn packets_add_up_per_record_and_flush_once_per_interval() {
        let sink = Sink::default();
        let mut t = Table::new(4, 10);
        t.flush(100, &sink);
        for s in [100, 101, 103] {
            t.add(s, &key(1, 5000), 60, 0);
        }
        t.add(104, &key(2, 5000), 70, 0);
        assert!(!t.due(109) && t.due(110));
        t.flush(110, &sink);
        let mut v = sink.records.lock().clone();
        v.sort_by_key(|r| r.key.eni);
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].packets, v[0].bytes, v[0].start, v[0].end), (3, 180, 100, 103));
        assert_eq!((v[1].packets, v[1].bytes), (1, 70));
    }

    #[test]
    fn keys_pack_and_unpack() {
        let mut k = key(7, 65535);
        k.reject = true;
        k.pkt_dst = 0xffff_ffff;
        assert_eq!(unpack(&pack(&k)), k);
    }

    #[test]
    fn a_full_table_skips_and_says_so() {
        let sink = Sink::default();
        let mut t = Table::new(2, 60);
        for i in 0..(TABLE_SLOTS as u16) {
            t.add(0, &key(1, i), 60, 0);
        }
        t.flush(60, &sink);
        let kept = sink.records.lock().len();
        assert!((TABLE_SLOTS / 2..=TABLE_SLOTS / 4 * 3).contains(&kept), "{kept}");
        let skipped = sink.skipped.lock().clone();
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].0, 1);
        assert_eq!(kept as u64 + u64::from(skipped[0].2), TABLE_SLOTS as u64, "every packet is kept or counted");
    }

    #[test]
    fn formats_name_their_fields_and_their_version() {
        let f = Format::parse(DEFAULT_FORMAT).unwrap();
        assert_eq!(f.version, 2);
        let r = Record { key: key(0, 40000), packets: 3, bytes: 180, start: 5, end: 7, tcp_flags: 0, interval: 0 };
        let twice = merge(vec![r, Record { start: 4, ..r }]);
        assert_eq!((twice.len(), twice[0].packets, twice[0].start, twice[0].end), (1, 6, 4, 7));
        let eni = EniInfo { id: "eni-1".into(), subnet_id: "subnet-1".into(), instance_id: "i-1".into(), kind: "IPv4" };
        let line = format(&r, &f, "123456789012", "vpc-1", &eni, |s| 1_700_000_000 + u64::from(s));
        assert_eq!(
            line,
            "2 123456789012 eni-1 10.0.1.10 198.51.100.10 40000 53 17 3 180 1700000005 1700000007 ACCEPT OK"
        );
        let custom = Format::parse("${version} ${interface-id} ${srcaddr} ${pkt-dstaddr} ${flow-direction}").unwrap();
        assert_eq!(custom.version, 5);
        assert!(Format::parse("${srcaddr} ${nope}").unwrap_err().contains("no flow log field `nope`"));
        assert!(Format::parse("srcaddr").unwrap_err().contains("not a field"));
        assert_eq!(stable_id("eni", "app"), stable_id("eni", "app"));
        assert_ne!(stable_id("eni", "app"), stable_id("eni", "web"));
        assert_eq!(stable_id("eni", "app").len(), 4 + 17);
    }
}
