//! Counters: per worker, written by that worker only, read by the control
//! plane (single-writer [`Counter`]s, see `crate::counter`).

use super::action::DropReason;
pub use crate::counter::Counter;
use serde::{Deserialize, Serialize};

macro_rules! named_counters {
    ($(#[doc = $sdoc:literal])* $name:ident { $( $(#[doc = $doc:literal])* $field:ident, )* }) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Default)]
        pub struct $name { $( $(#[doc = $doc])* pub $field: Counter, )* }

        impl $name {
            /// (name, value) of every counter, in declaration order.
            pub fn values(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($field), self.$field.get()), )*]
            }
        }
    };
}

named_counters! {
    /// The NAT gateway metrics, named after the AWS CloudWatch ones.
    NatCounters {
        /// Packets from inside hosts that reached the NAT (`PacketsInFromSource`).
        packets_in_from_source,
        bytes_in_from_source,
        /// Translated packets sent towards the destination (`PacketsOutToDestination`).
        packets_out_to_destination,
        bytes_out_to_destination,
        /// Packets from outside that reached the NAT (`PacketsInFromDestination`).
        packets_in_from_destination,
        bytes_in_from_destination,
        /// Translated packets sent to inside hosts (`PacketsOutToSource`).
        packets_out_to_source,
        bytes_out_to_source,
        /// New sessions (`ConnectionAttemptCount`).
        connection_attempts,
        /// TCP handshakes completed (`ConnectionEstablishedCount`).
        connections_established,
        /// No port could be allocated (`ErrorPortAllocation`).
        error_port_allocation,
        /// TCP segments out of place for the tracked state, forwarded anyway.
        tcp_invalid,
        /// ICMP errors translated (both ways).
        icmp_errors_translated,
    }
}

/// The AWS CloudWatch NAT gateway metric a [`NatCounters`] field stands for.
pub fn cloudwatch_name(counter: &str) -> Option<&'static str> {
    Some(match counter {
        "packets_in_from_source" => "PacketsInFromSource",
        "bytes_in_from_source" => "BytesInFromSource",
        "packets_out_to_destination" => "PacketsOutToDestination",
        "bytes_out_to_destination" => "BytesOutToDestination",
        "packets_in_from_destination" => "PacketsInFromDestination",
        "bytes_in_from_destination" => "BytesInFromDestination",
        "packets_out_to_source" => "PacketsOutToSource",
        "bytes_out_to_source" => "BytesOutToSource",
        "connection_attempts" => "ConnectionAttemptCount",
        "connections_established" => "ConnectionEstablishedCount",
        "error_port_allocation" => "ErrorPortAllocation",
        _ => return None,
    })
}

named_counters! {
    /// Messages the gateway built itself.
    GeneratedCounters {
        icmp_time_exceeded,
        icmp_unreachable,
        icmp_frag_needed,
        icmp_echo_reply,
        tcp_rst,
        /// ICMP errors not sent because of the rate limit (RFC 1812 §4.3.2.8).
        icmp_rate_limited,
    }
}

named_counters! {
    /// The workers' flow caches (see `pipeline::flow_cache`).
    CacheCounters {
        /// Packets forwarded from a cached decision, without the walk.
        hits,
        /// Decisions remembered after a walk.
        inserts,
        /// Entries dropped because their NAT session had expired or been replaced.
        invalidated,
    }
}

named_counters! {
    /// The I/O layer's own events.
    IoCounters {
        /// Reads that failed (not packets: the device itself erred).
        rx_errors,
        /// Wake-ups of the worker.
        wakeups,
        /// Wake-ups that hit the per-device batch limit (more was waiting).
        full_batches,
        /// Bare FINs written as the FIN flag of the data segment they
        /// continue (see `pipeline::coalesce`), not as packets of their own.
        fin_merged,
    }
}

/// All counters of one worker.
#[derive(Debug)]
pub struct Counters {
    pub rx_packets: Box<[Counter]>,
    pub rx_bytes: Box<[Counter]>,
    pub tx_packets: Box<[Counter]>,
    pub tx_bytes: Box<[Counter]>,
    pub drops: Box<[Counter]>,
    /// Per interface: packets its security groups denied arriving, leaving.
    pub sg_denied_in: Box<[Counter]>,
    pub sg_denied_out: Box<[Counter]>,
    pub nat: NatCounters,
    pub generated: GeneratedCounters,
    pub cache: CacheCounters,
    pub io: IoCounters,
}

fn row(n: usize) -> Box<[Counter]> {
    (0..n).map(|_| Counter::default()).collect()
}

impl Counters {
    /// Counters for a gateway with `interfaces` interfaces.
    pub fn new(interfaces: usize) -> Counters {
        Counters {
            rx_packets: row(interfaces),
            rx_bytes: row(interfaces),
            tx_packets: row(interfaces),
            tx_bytes: row(interfaces),
            drops: row(DropReason::COUNT),
            sg_denied_in: row(interfaces),
            sg_denied_out: row(interfaces),
            nat: NatCounters::default(),
            generated: GeneratedCounters::default(),
            cache: CacheCounters::default(),
            io: IoCounters::default(),
        }
    }

    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        self.drops[r as usize].inc();
    }

    /// Counts `n` drops of one reason at once.
    #[inline]
    pub fn count_drops(&self, r: DropReason, n: u64) {
        self.drops[r as usize].add(n);
    }

    #[inline]
    pub fn rx(&self, ifc: usize, len: usize) {
        if let (Some(p), Some(b)) = (self.rx_packets.get(ifc), self.rx_bytes.get(ifc)) {
            p.inc();
            b.add(len as u64);
        }
    }

    #[inline]
    pub fn tx(&self, ifc: usize, len: usize) {
        if let (Some(p), Some(b)) = (self.tx_packets.get(ifc), self.tx_bytes.get(ifc)) {
            p.inc();
            b.add(len as u64);
        }
    }

    /// A packet the security groups of interface `ifc` denied.
    #[inline]
    pub fn sg_denied(&self, ifc: usize, dir: crate::sg::SgDirection) {
        let row = match dir {
            crate::sg::SgDirection::Inbound => &self.sg_denied_in,
            crate::sg::SgDirection::Outbound => &self.sg_denied_out,
        };
        if let Some(c) = row.get(ifc) {
            c.inc();
        }
        self.count_drop(DropReason::SgDeny);
    }

    /// Packets read from every interface.
    pub fn packets_read(&self) -> u64 {
        self.rx_packets.iter().map(Counter::get).sum()
    }
}

/// Counters of all workers added up, for `natgw stats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    /// Per interface: (name, rx packets, rx bytes, tx packets, tx bytes).
    pub interfaces: Vec<(String, u64, u64, u64, u64)>,
    /// Per drop reason with a nonzero count: (label, count).
    pub drops: Vec<(String, u64)>,
    pub nat: Vec<(String, u64)>,
    pub generated: Vec<(String, u64)>,
    #[serde(default)]
    pub cache: Vec<(String, u64)>,
    pub io: Vec<(String, u64)>,
    /// Per interface whose groups denied something: (name, inbound, outbound).
    #[serde(default)]
    pub sg_denied: Vec<(String, u64, u64)>,
}

impl Totals {
    /// Adds up the counters of `workers`; `names` are the interface names.
    pub fn sum<'a>(names: &[String], workers: impl IntoIterator<Item = &'a Counters>) -> Totals {
        let mut ifs: Vec<(String, u64, u64, u64, u64)> = names.iter().map(|n| (n.clone(), 0, 0, 0, 0)).collect();
        let mut drops = vec![0u64; DropReason::COUNT];
        let mut nat: Vec<(String, u64)> = Vec::new();
        let mut generated: Vec<(String, u64)> = Vec::new();
        let mut cache: Vec<(String, u64)> = Vec::new();
        let mut io: Vec<(String, u64)> = Vec::new();
        let mut sg: Vec<(String, u64, u64)> = names.iter().map(|n| (n.clone(), 0, 0)).collect();
        fn merge(into: &mut Vec<(String, u64)>, from: Vec<(&'static str, u64)>) {
            if into.is_empty() {
                into.extend(from.into_iter().map(|(n, v)| (n.to_string(), v)));
            } else {
                for (slot, (_, v)) in into.iter_mut().zip(from) {
                    slot.1 += v;
                }
            }
        }
        for w in workers {
            for (i, e) in ifs.iter_mut().enumerate() {
                e.1 += w.rx_packets.get(i).map_or(0, Counter::get);
                e.2 += w.rx_bytes.get(i).map_or(0, Counter::get);
                e.3 += w.tx_packets.get(i).map_or(0, Counter::get);
                e.4 += w.tx_bytes.get(i).map_or(0, Counter::get);
            }
            for (i, e) in sg.iter_mut().enumerate() {
                e.1 += w.sg_denied_in.get(i).map_or(0, Counter::get);
                e.2 += w.sg_denied_out.get(i).map_or(0, Counter::get);
            }
            for (d, c) in drops.iter_mut().zip(w.drops.iter()) {
                *d += c.get();
            }
            merge(&mut nat, w.nat.values());
            merge(&mut generated, w.generated.values());
            merge(&mut cache, w.cache.values());
            merge(&mut io, w.io.values());
        }
        Totals {
            interfaces: ifs,
            drops: DropReason::ALL
                .iter()
                .zip(drops)
                .filter(|(_, n)| *n > 0)
                .map(|(r, n)| (r.label().to_string(), n))
                .collect(),
            nat,
            generated,
            cache,
            io,
            sg_denied: sg.into_iter().filter(|e| e.1 + e.2 > 0).collect(),
        }
    }

    /// The count of a drop reason (0 if never seen).
    pub fn drop_count(&self, label: &str) -> u64 {
        self.drops.iter().find(|(l, _)| l == label).map_or(0, |(_, n)| *n)
    }

    /// The value of a NAT counter.
    pub fn nat_count(&self, name: &str) -> u64 {
        self.nat.iter().find(|(l, _)| l == name).map_or(0, |(_, n)| *n)
    }
}
