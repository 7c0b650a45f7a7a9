//! `natgw trace`: what the gateway would do with a packet and with its
//! reply, hop by hop, in the manner of AWS Reachability Analyzer.
//!
//! The prediction is the pipeline itself: a gateway is built from the VPC
//! (the file, or the running gateway's current VPC) with fresh state, the
//! probe (a TCP SYN, a UDP datagram, an ICMP echo request) goes through
//! `Pipeline::process` with the decision record on, and the reply (built
//! from what left: a SYN-ACK, a datagram back, an echo reply) goes back
//! through the same gateway. The running gateway's tables are never touched.
//! A trace predicts for a new flow: mappings the running gateway holds do
//! not enter it.

use super::config::Vpc;
use crate::Timestamp;
use crate::pipeline::record::Hop;
use crate::pipeline::{Action, PacketBuf};
use crate::wire::build;
use crate::wire::ipv4::protocol;
use crate::wire::tcp::flags;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// What to trace: `SRC DST PROTO [PORT]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// A host's name, or an address (inside the VPC: its host; outside: the internet).
    pub src: String,
    /// A host's name (its private address), or an address.
    pub dst: String,
    pub proto: String,
    /// Destination port (TCP, UDP).
    pub port: Option<u16>,
    /// Source port (TCP, UDP) or ICMP identifier.
    pub sport: Option<u16>,
}

/// One direction's walk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Leg {
    /// The packet as it entered, and the interface it entered on.
    pub packet: String,
    pub ingress: String,
    pub hops: Vec<Hop>,
    /// `forwarded`, `dropped (reason)`, `answered (reason)`.
    pub verdict: String,
    /// Where it left and as what, when forwarded.
    pub egress: Option<String>,
    pub out: Option<String>,
}

/// A trace: the request, and the reply if the request got through.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub request: Leg,
    pub reply: Option<Leg>,
    /// One sentence.
    pub summary: String,
}

use build::describe;

/// Resolves a query's end: a host name, or an address.
fn address(vpc: &Vpc, what: &str, word: &str) -> Result<Ipv4Addr, String> {
    if let Some(h) = vpc.parts.hosts.iter().find(|h| h.name == word) {
        return Ok(h.ip);
    }
    word.parse().map_err(|_| {
        let names: Vec<&str> = vpc.parts.hosts.iter().map(|h| h.name.as_str()).collect();
        format!("{what} `{word}` is neither a host ({}) nor an IPv4 address", names.join(", "))
    })
}

/// Runs the trace on a gateway built from `vpc`.
pub fn trace(vpc: &Vpc, q: &Query) -> Result<Report, String> {
    let proto = match q.proto.to_ascii_lowercase().as_str() {
        "tcp" => protocol::TCP,
        "udp" => protocol::UDP,
        "icmp" | "ping" => protocol::ICMP,
        other => return Err(format!("protocol `{other}`: trace tcp, udp or icmp")),
    };
    let port = match (proto, q.port) {
        (protocol::ICMP, Some(_)) => return Err("icmp has no port: leave it out".into()),
        (protocol::ICMP, None) => 0,
        (_, Some(p)) => p,
        (_, None) => return Err(format!("{} needs a destination port, e.g. `tcp 80`", q.proto)),
    };
    let src = address(vpc, "source", &q.src)?;
    let dst = address(vpc, "destination", &q.dst)?;
    let gw = vpc.build();
    let topo = gw.topology();
    // A host named: its interface (VPCs may overlap, so its address may not
    // say which host); an address: the first VPC's host that has it.
    let named = topo.hosts.iter().position(|h| h.name == q.src).map(|h| h as u16);
    let ingress = match named.or_else(|| topo.host_anywhere(u32::from(src))) {
        Some(h) => topo.hosts[usize::from(h)].interface,
        None if topo.vpc_cidrs.iter().any(|c| c.contains(src)) => {
            return Err(format!("no host has the address {src}: give a host's name or address"));
        }
        None => match &topo.internet {
            Some(i) => i.interface,
            None => return Err(format!("{src} is outside the VPC and the VPC has no internet side")),
        },
    };
    let sport = q.sport.unwrap_or(if proto == protocol::ICMP { 1 } else { 40000 });
    let mut pipe = gw.pipeline();
    pipe.set_recording(true);
    let now = Timestamp::from_secs(1000);
    let name = |i: u16| topo.interfaces.get(usize::from(i)).map_or("?".to_string(), |i| i.name.clone());

    let mut walk = |bytes: Vec<u8>, ingress: u16| -> (Leg, Option<(u16, Vec<u8>)>) {
        let packet = describe(&bytes);
        let mut buf = PacketBuf::from_slice(&bytes);
        let action = pipe.process(now, ingress, &mut buf);
        let hops = pipe.take_record();
        let (verdict, egress, out, next) = match action {
            Action::Forward(e) => {
                ("forwarded".to_string(), Some(name(e)), Some(describe(buf.bytes())), Some((e, buf.bytes().to_vec())))
            }
            Action::Reply { egress, cause } => {
                (format!("answered ({cause}): {}", describe(buf.bytes())), Some(name(egress)), None, None)
            }
            Action::Drop(r) => (format!("dropped ({r})"), None, None, None),
            Action::Held => ("held (a fragment)".to_string(), None, None, None),
        };
        (Leg { packet, ingress: name(ingress), hops, verdict, egress, out }, next)
    };
    let syn = if proto == protocol::TCP { flags::SYN } else { 0 };
    let (request, out) = walk(build::probe(proto, src.octets(), dst.octets(), sport, port, syn), ingress);
    let reply = out.map(|(egress, bytes)| {
        let (p, s, d, sp, dp) = build::fields(&bytes).unwrap_or((proto, [0; 4], [0; 4], 0, 0));
        let back = match p {
            protocol::TCP => build::probe(p, d, s, dp, sp, flags::SYN | flags::ACK),
            protocol::ICMP => build::probe(p, d, s, sp, dp, 1),
            _ => build::probe(p, d, s, dp, sp, 0),
        };
        walk(back, egress).0
    });
    let summary = match &reply {
        None => format!("the request does not get through: {}", request.verdict),
        Some(r) if r.verdict == "forwarded" => {
            format!("the request reaches {dst} and its reply comes back to {}", q.src)
        }
        Some(r) => format!("the request gets through, its reply does not: {}", r.verdict),
    };
    Ok(Report { request, reply, summary })
}

/// The report in words.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    for (title, leg) in [("request", Some(&r.request)), ("reply", r.reply.as_ref())] {
        let Some(leg) = leg else { continue };
        let _ = writeln!(out, "{title}: {} (in on {})", leg.packet, leg.ingress);
        for (i, h) in leg.hops.iter().enumerate() {
            let _ = writeln!(out, "  {:>2}. {:<26} {}", i + 1, h.step, h.detail);
        }
        match (&leg.egress, &leg.out) {
            (Some(e), Some(o)) => {
                let _ = writeln!(out, "  => forwarded out of {e} as {o}");
            }
            _ => {
                let _ = writeln!(out, "  => {}", leg.verdict);
            }
        }
    }
    let _ = writeln!(out, "verdict: {}", r.summary);
    out
}
