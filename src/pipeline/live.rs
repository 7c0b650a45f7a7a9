//! `natgw trace --live`: the recorded decisions of the next real packets
//! that match a filter, bounded in count (the control plane bounds the time).
//!
//! Off (the usual case), it costs each packet one relaxed load. Armed, a
//! packet that matches the filter skips the flow cache and takes the walk
//! with the decision record on; its record joins the results, and the count
//! left goes down; at zero the trace disarms itself.

use super::record::Hop;
use crate::wire::build;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};

/// Which packets to trace: every given part must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub proto: Option<u8>,
    /// The source or the destination.
    pub addr: Option<u32>,
    /// The source or the destination port (ICMP: the identifier).
    pub port: Option<u16>,
}

impl Filter {
    /// Parses words such as `tcp 198.51.100.10 port 80`.
    pub fn parse(words: &[String]) -> Result<Filter, String> {
        let mut f = Filter::default();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            match w.to_ascii_lowercase().as_str() {
                "tcp" => f.proto = Some(6),
                "udp" => f.proto = Some(17),
                "icmp" => f.proto = Some(1),
                "port" => {
                    let p = it.next().ok_or("`port` needs a number: `port 80`")?;
                    f.port = Some(p.parse().map_err(|_| format!("`{p}` is not a port"))?);
                }
                other => match other.parse::<std::net::Ipv4Addr>() {
                    Ok(a) => f.addr = Some(u32::from(a)),
                    Err(_) => {
                        return Err(format!(
                            "`{other}` in the filter: write tcp, udp or icmp, an IPv4 address, and `port N`"
                        ));
                    }
                },
            }
        }
        Ok(f)
    }

    /// Whether packet `b` matches; an empty filter matches every packet,
    /// also one that does not parse.
    pub fn matches(&self, b: &[u8]) -> bool {
        if *self == Filter::default() {
            return true;
        }
        let Some((proto, src, dst, sport, dport)) = build::fields(b) else { return false };
        let (src, dst) = (u32::from_be_bytes(src), u32::from_be_bytes(dst));
        self.proto.is_none_or(|p| p == proto)
            && self.addr.is_none_or(|a| a == src || a == dst)
            && self.port.is_none_or(|p| p == sport || p == dport)
    }
}

/// One traced packet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Traced {
    pub packet: String,
    pub ingress: String,
    pub hops: Vec<Hop>,
}

/// The gateway's live trace.
#[derive(Debug, Default)]
pub struct Live {
    armed: AtomicBool,
    left: AtomicU32,
    filter: Mutex<Filter>,
    results: Mutex<Vec<Traced>>,
}

impl Live {
    /// Arms the trace for the next `count` matching packets.
    pub fn arm(&self, filter: Filter, count: u32) {
        *self.filter.lock() = filter;
        self.results.lock().clear();
        self.left.store(count, Relaxed);
        self.armed.store(count > 0, Relaxed);
    }

    pub fn disarm(&self) {
        self.armed.store(false, Relaxed);
    }

    #[inline]
    pub fn armed(&self) -> bool {
        self.armed.load(Relaxed)
    }

    /// Whether packet `b` is one to trace (and takes one of the count).
    pub fn wants(&self, b: &[u8]) -> bool {
        if !self.filter.lock().matches(b) {
            return false;
        }
        let taken = self.left.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1)).is_ok();
        if self.left.load(Relaxed) == 0 {
            self.armed.store(false, Relaxed);
        }
        taken
    }

    pub fn push(&self, t: Traced) {
        self.results.lock().push(t);
    }

    /// The packets traced so far.
    pub fn results(&self) -> Vec<Traced> {
        self.results.lock().clone()
    }

    /// Packets still to trace.
    pub fn left(&self) -> u32 {
        self.left.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_match() {
        let w = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let f = Filter::parse(&w("tcp 198.51.100.10 port 80")).unwrap();
        let syn = build::probe(6, [10, 0, 1, 10], [198, 51, 100, 10], 40000, 80, 2);
        let reply = build::probe(6, [198, 51, 100, 10], [10, 0, 1, 10], 80, 40000, 0x12);
        let other = build::probe(17, [10, 0, 1, 10], [198, 51, 100, 10], 40000, 80, 0);
        assert!(f.matches(&syn) && f.matches(&reply) && !f.matches(&other));
        assert!(Filter::parse(&w("port")).unwrap_err().contains("needs a number"));
        assert!(Filter::parse(&w("sctp")).unwrap_err().contains("in the filter"));
        let live = Live::default();
        live.arm(f, 1);
        assert!(live.armed() && live.wants(&syn));
        assert!(!live.armed() && !live.wants(&reply), "one packet, then disarmed");
    }
}
