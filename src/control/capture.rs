//! `natgw capture HOST|igw|NAT-GATEWAY`: what the gateway read and wrote,
//! before and after translation, as pcapng (one interface block per natgw
//! interface, so Wireshark shows the packet as read on one side and as
//! written on the other) or as text lines.
//!
//! The gateway keeps the packets in a bounded ring ([`crate::pipeline::capture`]);
//! this side asks for them every 100 ms, and the capture stops when asked
//! or 5 s after its reader last asked.

use crate::pipeline::capture::{Outcome, Record, Select};
use crate::pipeline::live::Filter;
use crate::pipeline::{IfKind, Topology};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

/// What `target` names in `topo`: a host (its interface), the internet
/// gateway (the internet interface), or a NAT gateway (what it translated).
pub fn select(topo: &Topology, igw_name: &str, target: &str) -> Result<Select, String> {
    let internet = topo.interfaces.iter().position(|i| i.kind == IfKind::Internet);
    if let Some(i) = topo.interfaces.iter().position(|i| i.name == target && matches!(i.kind, IfKind::Host(_))) {
        return Ok(Select::Interface(i as u16));
    }
    if target == igw_name || target == "igw" || target == "internet" {
        return internet.map(|i| Select::Interface(i as u16)).ok_or("this VPC has no internet gateway".to_string());
    }
    if let Some(n) = topo.nat_gateways.iter().find(|n| n.name == target) {
        let internet = internet.ok_or("this VPC has no internet gateway for the NAT gateway to use")?;
        return Ok(Select::Nat {
            internet: internet as u16,
            elastic_ips: n.public_ips.iter().map(|a| u32::from(*a)).collect(),
        });
    }
    let mut known: Vec<String> =
        topo.interfaces.iter().filter(|i| matches!(i.kind, IfKind::Host(_))).map(|i| i.name.clone()).collect();
    if internet.is_some() {
        known.push(igw_name.to_string());
    }
    known.extend(topo.nat_gateways.iter().map(|n| n.name.clone()));
    Err(format!(
        "nothing to capture is called `{target}`: capture a host, the internet gateway or a NAT gateway ({})",
        known.join(", ")
    ))
}

/// One captured packet as the control socket carries it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Captured {
    /// The gateway's clock when it was read.
    pub t_ns: u64,
    pub ingress: String,
    /// Where it, or the gateway's answer, was written.
    pub egress: Option<String>,
    /// `forwarded`, `answered (reason)`, `dropped (reason)`, `held`.
    pub outcome: String,
    /// Base64 of its head as read, and its length.
    pub before: String,
    pub before_len: usize,
    /// Base64 of its head as written (empty: nothing was written).
    pub after: String,
    pub after_len: usize,
}

impl Captured {
    pub fn of(r: &Record, topo: &Topology) -> Captured {
        let name = |i: u16| topo.interfaces.get(usize::from(i)).map_or_else(|| i.to_string(), |i| i.name.clone());
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let outcome = match r.outcome {
            Outcome::Forwarded(_) => "forwarded".to_string(),
            Outcome::Answered { cause, .. } => format!("answered ({})", cause.label()),
            Outcome::Dropped(reason) => format!("dropped ({})", reason.label()),
            Outcome::Held => "held".to_string(),
        };
        Captured {
            t_ns: r.t_ns,
            ingress: name(r.ingress),
            egress: r.outcome.egress().map(name),
            outcome,
            before: b64(&r.before),
            before_len: r.before_len,
            after: b64(&r.after),
            after_len: r.after_len,
        }
    }

    fn bytes(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default()
    }

    /// `build::describe` of a kept head: one cut short (a packet longer than
    /// the snap length) is described as if it ended there.
    fn describe(s: &str, len: usize) -> String {
        let mut b = Self::bytes(s);
        if b.len() < len && b.len() >= 20 {
            // At most the snap length: it fits.
            let kept = b.len() as u16;
            let mut ip = crate::wire::ipv4::Ipv4Packet::new_unchecked(&mut b[..]);
            ip.set_total_len(kept);
            ip.fill_checksum();
            return format!("{} ({len} bytes, {} kept)", crate::wire::build::describe(&b), b.len());
        }
        crate::wire::build::describe(&b)
    }

    /// One line: when, where, as read, as written.
    pub fn line(&self, wall: SystemTime) -> String {
        let t = humantime::format_rfc3339_micros(wall);
        let before = Self::describe(&self.before, self.before_len);
        match &self.egress {
            Some(e) if self.outcome == "forwarded" => {
                let after = Self::describe(&self.after, self.after_len);
                if after == before {
                    format!("{t} {} -> {e}  {before}", self.ingress)
                } else {
                    format!("{t} {} -> {e}  {before}  =>  {after}", self.ingress)
                }
            }
            Some(e) => format!(
                "{t} {}  {before}  {}, out of {e}: {}",
                self.ingress,
                self.outcome,
                Self::describe(&self.after, self.after_len)
            ),
            None => format!("{t} {}  {before}  {}", self.ingress, self.outcome),
        }
    }
}

/// A pcapng file being written: an interface block for each natgw
/// interface as it first appears.
pub struct PcapNg<W: Write> {
    w: pcap_file::pcapng::PcapNgWriter<W>,
    interfaces: HashMap<String, u32>,
}

const IN: u32 = 0b01;
const OUT: u32 = 0b10;

impl<W: Write> PcapNg<W> {
    pub fn new(out: W) -> Result<PcapNg<W>, String> {
        let w = pcap_file::pcapng::PcapNgWriter::new(out).map_err(|e| format!("writing the capture: {e}"))?;
        Ok(PcapNg { w, interfaces: HashMap::new() })
    }

    fn interface(&mut self, name: &str) -> Result<u32, String> {
        if let Some(i) = self.interfaces.get(name) {
            return Ok(*i);
        }
        use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
        let idb = InterfaceDescriptionBlock {
            linktype: pcap_file::DataLink::IPV4,
            snaplen: crate::pipeline::capture::SNAPLEN as u32,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(name.to_string())),
                InterfaceDescriptionOption::IfDescription(Cow::Owned(format!("natgw's interface {name}"))),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        self.w.write_pcapng_block(idb).map_err(|e| format!("writing the capture: {e}"))?;
        let id = self.interfaces.len() as u32;
        self.interfaces.insert(name.to_string(), id);
        Ok(id)
    }

    fn packet(
        &mut self,
        on: &str,
        wall: SystemTime,
        data: &[u8],
        len: usize,
        flags: u32,
        comment: String,
    ) -> Result<(), String> {
        use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
        let interface_id = self.interface(on)?;
        let epb = EnhancedPacketBlock {
            interface_id,
            timestamp: wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default(),
            original_len: len as u32,
            data: Cow::Borrowed(data),
            options: vec![EnhancedPacketOption::Flags(flags), EnhancedPacketOption::Comment(Cow::Owned(comment))],
        };
        self.w.write_pcapng_block(epb).map_err(|e| format!("writing the capture: {e}"))?;
        Ok(())
    }

    /// The packet as read on its ingress, and as written on its egress.
    pub fn write(&mut self, c: &Captured, wall: SystemTime) -> Result<(), String> {
        let before = Captured::bytes(&c.before);
        let then = match &c.egress {
            Some(e) => format!("{}, out of {e}", c.outcome),
            None => c.outcome.clone(),
        };
        self.packet(&c.ingress, wall, &before, c.before_len, IN, format!("natgw read this on {} ({then})", c.ingress))?;
        if let Some(e) = &c.egress {
            let after = Captured::bytes(&c.after);
            let what = if c.outcome == "forwarded" { "this" } else { "this answer" };
            self.packet(
                e,
                wall,
                &after,
                c.after_len,
                OUT,
                format!("natgw wrote {what} on {e} (read on {})", c.ingress),
            )?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), String> {
        self.w.get_mut().flush().map_err(|e| format!("writing the capture: {e}"))
    }
}

/// The wall-clock time of a packet read at `t_ns` by a gateway whose clock
/// read `now_ns` when it answered (at about `answered`).
pub fn wall_time(t_ns: u64, now_ns: u64, answered: SystemTime) -> SystemTime {
    answered.checked_sub(Duration::from_nanos(now_ns.saturating_sub(t_ns))).unwrap_or(answered)
}

/// What `natgw capture` was asked for.
pub struct Options {
    pub target: String,
    /// `natgw trace --live`'s filter words: `tcp 198.51.100.10 port 80`.
    pub filter: Vec<String>,
    /// Write pcapng here (`-`: standard output); None: text lines.
    pub write: Option<std::path::PathBuf>,
    /// Stop after this many packets, or seconds.
    pub count: u64,
    pub seconds: u64,
}

/// How a capture went.
pub struct Summary {
    pub packets: u64,
    /// Selected while the gateway's ring was full.
    pub dropped: u64,
}

/// Captures from the gateway behind `socket` until `o`'s bounds or `stop`.
pub fn run(socket: &std::path::Path, o: &Options, stop: &std::sync::atomic::AtomicBool) -> Result<Summary, String> {
    use super::socket::{Reply, Request, request};
    let ask = |r: &Request| match request(socket, r).map_err(|e| e.to_string())? {
        Reply::Error { message } => Err(message),
        other => Ok(other),
    };
    let filter = Filter::parse(&o.filter)?;
    let mut file = match &o.write {
        Some(p) if p.as_os_str() == "-" => Some(PcapNg::new(Box::new(std::io::stdout()) as Box<dyn Write>)?),
        Some(p) => {
            let f = std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(PcapNg::new(Box::new(std::io::BufWriter::new(f)) as Box<dyn Write>)?)
        }
        None => None,
    };
    let deadline = std::time::Instant::now()
        .checked_add(Duration::from_secs(o.seconds))
        .ok_or_else(|| format!("--seconds {}: too many", o.seconds))?;
    let Reply::CaptureStarted { generation } = ask(&Request::CaptureStart { target: o.target.clone(), filter })? else {
        return Err("the gateway answered something else".to_string());
    };
    let what = if o.filter.is_empty() { String::new() } else { format!(" ({})", o.filter.join(" ")) };
    eprintln!("natgw capture: capturing {}{what}: up to {} packets or {} s", o.target, o.count, o.seconds);
    let mut sum = Summary { packets: 0, dropped: 0 };
    let mut stdout = std::io::stdout();
    let mut busy = 0;
    let result = (|| {
        let mut last = false;
        while sum.packets < o.count && !last {
            // One more read after the bound: what reached the ring since the last.
            last = std::time::Instant::now() >= deadline || stop.load(std::sync::atomic::Ordering::Relaxed);
            if !last {
                std::thread::sleep(Duration::from_millis(100));
            }
            let (packets, dropped, now_ns) = match ask(&Request::CaptureRead { generation }) {
                Ok(Reply::Captured { packets, dropped, now_ns }) => (packets, dropped, now_ns),
                Ok(_) => return Err("the gateway answered something else".to_string()),
                // The gateway answers a few requests at once: ask again (the
                // capture runs on for 5 s without an ask).
                Err(e) if e.contains("try again") && busy < 20 => {
                    busy += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            busy = 0;
            let answered = SystemTime::now();
            sum.dropped = dropped;
            for p in packets.iter().take((o.count - sum.packets) as usize) {
                let wall = wall_time(p.t_ns, now_ns, answered);
                match &mut file {
                    Some(f) => f.write(p, wall)?,
                    None => match writeln!(stdout, "{}", p.line(wall)) {
                        Ok(()) => {}
                        // The reader went away (`| head`): stop as asked.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                        Err(e) => return Err(format!("writing: {e}")),
                    },
                }
                sum.packets += 1;
            }
            if let Some(f) = &mut file {
                f.flush()?;
            }
        }
        Ok(())
    })();
    let _ = ask(&Request::CaptureStop { generation });
    result.map(|()| sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::DropReason;
    use crate::wire::build;

    #[test]
    fn targets_resolve_and_an_unknown_one_lists_the_choices() {
        let vpc = crate::control::config::parse("lab.toml", crate::control::config::DEFAULT_LAB).unwrap();
        let topo = Topology::new(vpc.parts.clone());
        assert!(matches!(select(&topo, &vpc.igw_name, "app"), Ok(Select::Interface(_))));
        assert!(matches!(select(&topo, &vpc.igw_name, "igw"), Ok(Select::Interface(_))));
        match select(&topo, &vpc.igw_name, "nat-1") {
            Ok(Select::Nat { elastic_ips, .. }) => assert_eq!(elastic_ips, [u32::from_be_bytes([203, 0, 113, 5])]),
            other => panic!("{other:?}"),
        }
        let e = select(&topo, &vpc.igw_name, "nat-9").unwrap_err();
        assert!(e.contains("app") && e.contains("nat-1") && e.contains("igw"), "{e}");
    }

    #[test]
    fn a_forwarded_packet_is_written_on_both_sides_and_a_dropped_one_once() {
        let vpc = crate::control::config::parse("lab.toml", crate::control::config::DEFAULT_LAB).unwrap();
        let topo = Topology::new(vpc.parts.clone());
        let app = topo.interfaces.iter().position(|i| i.name == "app").unwrap() as u16;
        let internet = topo.interfaces.iter().position(|i| i.name == "internet").unwrap() as u16;
        let out = build::probe(17, [10, 0, 1, 10], [198, 51, 100, 10], 5000, 7, 0);
        let translated = build::probe(17, [203, 0, 113, 5], [198, 51, 100, 10], 40000, 7, 0);
        let rec = |outcome, after: &[u8]| Record {
            t_ns: 5,
            ingress: app,
            outcome,
            before: out.clone(),
            before_len: out.len(),
            after: after.to_vec(),
            after_len: after.len(),
        };
        let forwarded = Captured::of(&rec(Outcome::Forwarded(internet), &translated), &topo);
        let dropped = Captured::of(&rec(Outcome::Dropped(DropReason::AclDeny), &[]), &topo);
        assert_eq!((forwarded.egress.as_deref(), dropped.outcome.as_str()), (Some("internet"), "dropped (acl_deny)"));
        let line = forwarded.line(SystemTime::UNIX_EPOCH);
        assert!(line.contains("app -> internet") && line.contains("203.0.113.5:40000"), "{line}");
        let mut file = PcapNg::new(Vec::new()).unwrap();
        file.write(&forwarded, SystemTime::UNIX_EPOCH).unwrap();
        file.write(&dropped, SystemTime::UNIX_EPOCH).unwrap();
        let bytes = file.w.into_inner();
        let mut r = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
        let mut blocks = Vec::new();
        while let Some(b) = r.next_block() {
            blocks.push(b.unwrap().into_owned());
        }
        use pcap_file::pcapng::Block;
        let idbs = blocks.iter().filter(|b| matches!(b, Block::InterfaceDescription(_))).count();
        let epbs: Vec<_> = blocks
            .iter()
            .filter_map(|b| match b {
                Block::EnhancedPacket(e) => Some((e.interface_id, e.data.to_vec())),
                _ => None,
            })
            .collect();
        assert_eq!(idbs, 2, "app and internet");
        assert_eq!(
            epbs,
            [(0, out.clone()), (1, translated), (0, out)],
            "before on app, after on internet; the drop once"
        );
    }
}
