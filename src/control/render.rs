//! Text output of `natgw conntrack`, `natgw stats` and `natgw routes`, in the
//! style of conntrack(8) and of the AWS console.

use super::socket::{NatSessions, RouteTableView, Stats};
use crate::conntrack::key::proto_name;
use std::fmt::Write;

/// `conntrack -L` style: protocol, number, seconds to expiry, TCP state, the
/// original tuple, the reply tuple (where the public address shows), flags.
pub fn conntrack(nats: &[NatSessions], tracked: &[crate::control::flows::TrackedFlow]) -> String {
    let mut out = String::new();
    let mut total = 0;
    for n in nats {
        for s in &n.sessions {
            total += 1;
            entry(&mut out, s);
            let _ = writeln!(out, " nat={}", n.name);
        }
    }
    for t in tracked {
        entry(&mut out, &t.flow);
        out.push_str(" zone=security-groups");
        if t.rewrite.is_empty() {
            out.push_str(" rewrite=none\n");
        } else {
            let _ = writeln!(out, " rewrite=\"{}\"", t.rewrite);
        }
    }
    let _ = writeln!(
        out,
        "natgw: {} flow entries have been shown ({total} NAT sessions, {} flows tracked by security groups).",
        total + tracked.len(),
        tracked.len()
    );
    out
}

/// `natgw ports`: per NAT gateway, its pools, its hosts, its latest mappings.
pub fn ports(nats: &[crate::nat::gateway::PortReport]) -> String {
    let mut out = String::new();
    for n in nats {
        let _ = writeln!(out, "NAT gateway {}", n.name);
        let _ = writeln!(
            out,
            "  {:<16} {:<5} {:<12} {:>8} {:>8} {:>8}",
            "Elastic IP", "proto", "range", "in use", "held", "free"
        );
        for p in &n.pools {
            let _ = writeln!(
                out,
                "  {:<16} {:<5} {:<12} {:>8} {:>8} {:>8}",
                p.addr,
                proto_name(p.proto),
                p.range,
                p.in_use,
                p.held,
                p.free
            );
        }
        if n.pools.is_empty() {
            let _ = writeln!(out, "  (no port taken yet)");
        }
        let _ = writeln!(out, "  {:<16} {:>8} {:>8}", "host", "ports", "sessions");
        for (h, ports, sessions) in &n.hosts {
            let _ = writeln!(out, "  {h:<16} {ports:>8} {sessions:>8}");
        }
        let _ = writeln!(out, "  latest mappings:");
        for (at, proto, i, e) in &n.latest {
            let _ = writeln!(out, "    {at:>8} s  {:<4} {i} -> {e}", proto_name(*proto));
        }
    }
    out
}

/// One event as `conntrack -E` prints it.
pub fn event(e: &crate::conntrack::events::Event) -> String {
    use crate::conntrack::events::Kind;
    let kind = match e.kind {
        Kind::New => "    [NEW]",
        Kind::Update => " [UPDATE]",
        Kind::Destroy => "[DESTROY]",
    };
    let mut out = format!("{kind} {:<8} {:<2} ", proto_name(e.orig.proto), e.orig.proto);
    if let Some(st) = &e.state {
        let _ = write!(out, "{st} ");
    }
    let (sp, dp) = if e.orig.proto == 1 { ("id", "id") } else { ("sport", "dport") };
    let (o, r) = (&e.orig, &e.reply);
    let _ = write!(
        out,
        "src={} dst={} {sp}={} {dp}={} src={} dst={} {sp}={} {dp}={}",
        o.src_addr(),
        o.dst_addr(),
        o.sport,
        o.dport,
        r.src_addr(),
        r.dst_addr(),
        r.sport,
        r.dport
    );
    if e.zone == "security-groups" {
        out.push_str(" zone=security-groups");
    } else {
        let _ = write!(out, " nat={}", e.zone);
    }
    if let Some(reason) = &e.reason {
        let _ = write!(out, " reason={reason}");
    }
    out
}

/// One flow in conntrack(8)'s words, without the line's end.
fn entry(out: &mut String, s: &crate::conntrack::SessionView) {
    let _ = write!(out, "{:<8} {:<2} {:<6} ", proto_name(s.proto), s.proto, s.expires_in);
    if let Some(st) = &s.state {
        let _ = write!(out, "{st} ");
    }
    let (sp, dp) = if s.proto == 1 { ("id", "id") } else { ("sport", "dport") };
    let _ = write!(
        out,
        "src={} dst={} {sp}={} {dp}={} packets={} bytes={} src={} dst={} {sp}={} {dp}={} packets={} bytes={}",
        s.orig_src,
        s.orig_dst,
        s.orig_sport,
        s.orig_dport,
        s.packets[0],
        s.bytes[0],
        s.reply_src,
        s.reply_dst,
        s.reply_sport,
        s.reply_dport,
        s.packets[1],
        s.bytes[1],
    );
    if s.assured {
        out.push_str(" [ASSURED]");
    }
}

/// One line per session saying what the NAT did, for people new to NAT.
pub fn translations(nats: &[NatSessions]) -> String {
    let mut out = String::new();
    for n in nats {
        for s in &n.sessions {
            let what = if s.proto == 1 { "ICMP id" } else { proto_name(s.proto) };
            let _ = writeln!(
                out,
                "{what:>7} {}:{} -> {}:{}   is seen outside as   {}:{} -> {}:{}   ({})",
                s.orig_src,
                s.orig_sport,
                s.orig_dst,
                s.orig_dport,
                s.reply_dst,
                s.reply_dport,
                s.orig_dst,
                s.orig_dport,
                n.name
            );
        }
    }
    out
}

/// `natgw stats`.
pub fn stats(s: &Stats) -> String {
    let mut out = String::new();
    let _ = write!(out, "natgw: up {} s, {} worker(s), TUN offload: {}", s.uptime_secs, s.workers, s.offload);
    if !s.steering.is_empty() {
        let _ = write!(out, ", steering: {}", s.steering);
    }
    out.push('\n');
    if s.per_worker.len() > 1 {
        let each: Vec<String> = s.per_worker.iter().enumerate().map(|(i, n)| format!("{i}: {n}")).collect();
        let _ = writeln!(out, "packets read per worker: {}", each.join(", "));
    }
    let _ = writeln!(
        out,
        "\n{:<12} {:>12} {:>14} {:>12} {:>14}",
        "interface", "rx packets", "rx bytes", "tx packets", "tx bytes"
    );
    for (name, rp, rb, tp, tb) in &s.totals.interfaces {
        let _ = writeln!(out, "{name:<12} {rp:>12} {rb:>14} {tp:>12} {tb:>14}");
    }
    for n in &s.nat {
        let ports: Vec<String> =
            n.ports_in_use.iter().map(|(a, p, c)| format!("{} {a}: {c}", proto_name(*p))).collect();
        let _ = writeln!(
            out,
            "\nNAT gateway {} ({}, profile {}): {} sessions, {} mappings, {} idle timeouts, {} early drops; ports in use: {}",
            n.name,
            n.public_ips.join(", "),
            n.profile,
            n.sessions,
            n.mappings,
            n.idle_timeouts,
            n.early_drops,
            if ports.is_empty() { "none".to_string() } else { ports.join(", ") }
        );
    }
    let _ = writeln!(out, "\nNAT metrics (AWS CloudWatch names):");
    for (k, v) in &s.totals.nat {
        let _ = writeln!(out, "  {:<32} {v}", aws_name(k));
    }
    let _ = writeln!(out, "\ndrops by reason:");
    if s.totals.drops.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for (k, v) in &s.totals.drops {
        let _ = writeln!(out, "  {k:<32} {v}");
    }
    let _ = writeln!(out, "\nsent by the gateway:");
    for (k, v) in &s.totals.generated {
        let _ = writeln!(out, "  {k:<32} {v}");
    }
    let _ = writeln!(out, "\nflow cache (packets that skipped the walk):");
    for (k, v) in &s.totals.cache {
        let _ = writeln!(out, "  {k:<32} {v}");
    }
    let _ = writeln!(out, "\nI/O:");
    for (k, v) in &s.totals.io {
        let _ = writeln!(out, "  {k:<32} {v}");
    }
    if let Some(d) = &s.dns {
        let _ = writeln!(out, "\nVPC DNS resolver:");
        for (k, v) in d.fields() {
            let _ = writeln!(out, "  {k:<32} {v}");
        }
    }
    out
}

/// The CloudWatch metric a counter stands for, or the counter's own name.
fn aws_name(k: &str) -> String {
    crate::pipeline::counters::cloudwatch_name(k).unwrap_or(k).to_string()
}

/// `natgw routes`: each table as the AWS console lists it.
pub fn routes(tables: &[RouteTableView]) -> String {
    let mut out = String::new();
    for t in tables {
        let subnets = if t.subnets.is_empty() { "none".to_string() } else { t.subnets.join(", ") };
        match &t.transit {
            Some(g) => {
                let _ = writeln!(out, "Transit gateway route table {} of {g} (associations: {subnets})", t.name);
            }
            None => {
                let _ =
                    writeln!(out, "Route table {}{} (subnets: {subnets})", t.name, if t.main { " [main]" } else { "" });
            }
        }
        // Columns as wide as their widest entry (a prefix list's is long).
        let dw = t.routes.iter().map(|(d, _, _)| d.len()).max().unwrap_or(0).max(20);
        let tw = t.routes.iter().map(|(_, tg, _)| tg.len()).max().unwrap_or(0).max(12);
        let _ = writeln!(out, "  {:<dw$} {:<tw$} Status", "Destination", "Target");
        for (d, tg, st) in &t.routes {
            let _ = writeln!(out, "  {d:<dw$} {tg:<tw$} {st}");
        }
        out.push('\n');
    }
    out
}

/// `natgw eni list`: every interface, its addresses and groups, and its instance.
pub fn enis(enis: &[crate::control::config::EniView]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<9} {:<12} {:<15} {:<16} Groups",
        "Interface", "Kind", "Instance", "Private IP", "Elastic IP"
    );
    for e in enis {
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:<12} {:<15} {:<16} {}",
            e.name,
            if e.primary { "primary" } else { "secondary" },
            e.instance.as_deref().unwrap_or("(detached)"),
            e.ip,
            e.elastic_ip.as_deref().unwrap_or("-"),
            if e.groups.is_empty() { "-".to_string() } else { e.groups.join(", ") }
        );
    }
    out
}

/// `natgw eip list`: every Elastic IP, what it is associated with, and
/// what an idle one costs.
pub fn eips(eips: &[crate::control::config::EipView]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<20} {:<16} Association", "Allocation", "Address");
    for e in eips {
        let assoc = e.association.as_deref().unwrap_or("-  (idle: allocated, associated with nothing)");
        let _ = writeln!(out, "{:<20} {:<16} {assoc}", e.allocation_id, e.address);
    }
    let idle = eips.iter().filter(|e| e.association.is_none()).count();
    let _ = writeln!(
        out,
        "{} of {} Elastic IPs allocated (AWS's default quota a region).",
        eips.len(),
        crate::control::config::EIP_REGION_LIMIT
    );
    if idle > 0 {
        let _ = writeln!(
            out,
            "{idle} idle: AWS bills an allocated Elastic IP whether or not it is associated ($0.005 an hour for any public IPv4 address since February 2024; before, only an idle one), so an idle one is cost without use: associate it or release it."
        );
    }
    out
}

/// `natgw events`: the abuse-tracing log, one record a line.
pub fn events(nats: &[(String, Vec<crate::nat::gateway::NatEvent>)]) -> String {
    let mut out = String::new();
    let mut n = 0;
    for (name, evs) in nats {
        for e in evs {
            n += 1;
            let _ = writeln!(
                out,
                "{:>8}s {name} {:<16} {:<4} internal {:<21} external {}",
                e.at,
                format!("{:?}", e.kind),
                proto_name(e.proto),
                e.internal,
                e.external
            );
        }
    }
    if n == 0 {
        out.push_str("no events (set port_block, or log_mappings = true, in the NAT gateway's options)\n");
    }
    out
}
