//! The in-memory pipeline, measured with criterion:
//! - an established TCP flow through NAT, 64-byte and 1500-byte packets;
//! - a new flow (port allocation and session creation);
//! - the network ACL with 20 and 100 rules (the packet matches the last one);
//! - security groups: an established flow between two hosts with groups, and
//!   a new flow that evaluates 5 groups of 20 rules and matches the last one;
//! - the flow table with 1M sessions against a plain `dashmap` baseline.
//!
//! Before the timed part it prints the memory of 1M sessions. `bench/micro`
//! runs it and writes bench/results/micro.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench code: a panic is a failure

#[path = "util.rs"]
mod util;
use util::rss_bytes;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use natgw::acl::{Acl, AclDirection, AclPacket, AclRule, RuleAction, RuleProtocol};
use natgw::conntrack::FlowKey;
use natgw::control::config;
use natgw::nat::{NatConfig, NatGateway};
use natgw::pipeline::{Action, PacketBuf, Pipeline};
use natgw::{Gateway, Timestamp};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const APP: [u8; 4] = [10, 0, 1, 10];
const WEB: [u8; 4] = [198, 51, 100, 10];

fn lab() -> (Arc<Gateway>, Pipeline, u16) {
    lab_with(true)
}

/// The default lab, with the worker's flow cache on or off. One host sends
/// every new flow here, so `fair_share` is off: with it, a lone host may map
/// three quarters of the pool (48,384 ports) and a chunk of 60,000 SYNs
/// would end in refusals.
fn lab_with(flow_cache: bool) -> (Arc<Gateway>, Pipeline, u16) {
    lab_with_and(flow_cache, false)
}

/// Gateway endpoints for S3 and DynamoDB in the private route table (and
/// their services): the bar is that they leave the fast path as it is.
const ENDPOINTS: &str = r#"
[[services]]
service = "s3"
address = "192.0.2.10"

[[services]]
service = "dynamodb"
address = "192.0.2.20"

[[endpoints]]
id = "vpce-1a2b3c4d"
service = "s3"
type = "gateway"
route_tables = ["private"]

[[endpoints]]
id = "vpce-0d0d0d0d"
service = "dynamodb"
type = "gateway"
route_tables = ["private"]
"#;

fn lab_with_and(flow_cache: bool, endpoints: bool) -> (Arc<Gateway>, Pipeline, u16) {
    let mut src = config::DEFAULT_LAB.replace("profile = \"aws\"", "profile = \"aws\"\nseed = 1\nfair_share = false");
    src.push_str(&format!("\n[gateway]\nflow_cache = {flow_cache}\n"));
    if endpoints {
        src.push_str(ENDPOINTS);
    }
    let gw = config::parse("bench.toml", &src).unwrap().build();
    let pipe = gw.pipeline();
    let app = gw.topology().interfaces.iter().position(|i| i.name == "app").unwrap() as u16;
    (gw, pipe, app)
}

/// The default lab with security groups: app carries five groups of 20
/// outbound rules each, and only the fifth group's last rule (TCP 443 to
/// anywhere) allows its traffic; bastion admits TCP 443 from the private subnet.
fn lab_with_groups() -> (Arc<Gateway>, Pipeline, u16) {
    lab_with_groups_and(false)
}

/// The same, with VPC Flow Logs on (records counted per packet, written nowhere: no writer runs here).
fn lab_with_groups_and(flow_logs: bool) -> (Arc<Gateway>, Pipeline, u16) {
    let mut src = config::DEFAULT_LAB.replace("profile = \"aws\"", "profile = \"aws\"\nseed = 1\nfair_share = false");
    src = src
        .replace("elastic_ip = \"203.0.113.10\"", "elastic_ip = \"203.0.113.10\"\nsecurity_groups = [\"bastion-sg\"]");
    src = src.replace(
        "ip = \"10.0.1.10\"",
        "ip = \"10.0.1.10\"\nsecurity_groups = [\"g1\", \"g2\", \"g3\", \"g4\", \"g5\"]",
    );
    src.push_str("\n[[security_groups]]\nname = \"bastion-sg\"\ninbound = [ { protocol = \"tcp\", ports = \"443\", source = \"10.0.1.0/24\" } ]\n");
    for g in 1..=5 {
        src.push_str(&format!("\n[[security_groups]]\nname = \"g{g}\"\ninbound = []\noutbound = [\n"));
        for r in 0..20 {
            if g == 5 && r == 19 {
                src.push_str("  { protocol = \"tcp\", ports = \"443\", destination = \"0.0.0.0/0\" },\n");
            } else {
                src.push_str(&format!(
                    "  {{ protocol = \"tcp\", ports = \"{}\", destination = \"192.0.2.{r}/32\" }},\n",
                    1000 + g * 20 + r
                ));
            }
        }
        src.push_str("]\n");
    }
    if flow_logs {
        src.push_str("\n[flow_logs]\npath = \"/dev/null\"\ninterval = 60\n");
    }
    let gw = config::parse("bench.toml", &src).unwrap().build();
    let pipe = gw.pipeline();
    let app = gw.topology().interfaces.iter().position(|i| i.name == "app").unwrap() as u16;
    (gw, pipe, app)
}

fn tcp(sport: u16, dst: [u8; 4], payload: usize) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ipv4(APP, dst, 64)
        .tcp(sport, 443, 1, 64240)
        .ack(1)
        .write(&mut v, &vec![0x5a; payload])
        .unwrap();
    v
}

/// A SYN from `APP:sport` to `WEB:443`: the first packet of a flow.
fn syn(sport: u16) -> Vec<u8> {
    syn_to(sport, WEB)
}

fn syn_to(sport: u16, dst: [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ipv4(APP, dst, 64).tcp(sport, 443, 0, 64240).syn().write(&mut v, &[]).unwrap();
    v
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    // `_walk`: the same packets with the flow cache off, every one taking the
    // whole walk (the figure before the cache; the ratio is the cache's gain).
    // `_endpoints`: the same flow (through the NAT gateway) with gateway
    // endpoints for both services in app's route table.
    for (name, payload, cache, endpoints) in [
        ("established_64B", 64 - 40, true, false),
        ("established_1500B", 1500 - 40, true, false),
        ("established_64B_walk", 64 - 40, false, false),
        ("established_64B_endpoints", 64 - 40, true, true),
    ] {
        let (gw, mut pipe, app) = lab_with_and(cache, endpoints);
        let now = Timestamp::from_secs(1000);
        let mut b = PacketBuf::from_slice(&syn(40000));
        assert!(matches!(pipe.process(now, app, &mut b), Action::Forward(_)));
        // The SYN-ACK back to the port the NAT chose: the connection is established.
        let ext = u16::from_be_bytes([b.bytes()[20], b.bytes()[21]]);
        let internet = gw.topology().interfaces.iter().position(|i| i.name == "internet").unwrap() as u16;
        let mut synack = Vec::new();
        etherparse::PacketBuilder::ipv4(WEB, [203, 0, 113, 5], 64)
            .tcp(443, ext, 0, 64240)
            .syn()
            .ack(1)
            .write(&mut synack, &[])
            .unwrap();
        let mut b = PacketBuf::from_slice(&synack);
        assert!(matches!(pipe.process(now, internet, &mut b), Action::Forward(_)));
        let state = gw.nats()[0].sessions(1000)[0].state.clone();
        assert_eq!(state.as_deref(), Some("SYN_RECV"), "the first ACK completes the handshake");
        let pkt = tcp(40000, WEB, payload);
        g.throughput(Throughput::Elements(1));
        // One reused buffer, as a worker has; refilling it is part of the
        // loop, and measured alone below (`refill_*`) to be subtracted.
        let mut buf = PacketBuf::with_capacity(65536);
        g.bench_function(name, |bch| {
            bch.iter(|| {
                buf.buffer_mut()[..pkt.len()].copy_from_slice(&pkt);
                buf.set_len(pkt.len());
                black_box(pipe.process(now, app, &mut buf))
            })
        });
        if !cache || endpoints {
            continue; // same refill as the cached 64-byte run
        }
        g.bench_function(format!("refill_{}", &name["established_".len()..]), |bch| {
            bch.iter(|| {
                buf.buffer_mut()[..pkt.len()].copy_from_slice(black_box(&pkt));
                buf.set_len(pkt.len());
                black_box(buf.len())
            })
        });
    }
    // `established_64B_via_endpoint`: app -> S3's address through the gateway
    // endpoint (no NAT, no groups): the cache's path for a plain routed flow.
    {
        let (gw, mut pipe, app) = lab_with_and(true, true);
        let now = Timestamp::from_secs(1000);
        let s3 = [192, 0, 2, 10];
        let door = gw.topology().interfaces.iter().position(|i| i.name == "vpce-1a2b3c4d").unwrap() as u16;
        let mut b = PacketBuf::from_slice(&syn_to(40000, s3));
        assert_eq!(pipe.process(now, app, &mut b), Action::Forward(door));
        let pkt = tcp(40000, s3, 64 - 40);
        let mut buf = PacketBuf::with_capacity(65536);
        g.bench_function("established_64B_via_endpoint", |bch| {
            bch.iter(|| {
                buf.buffer_mut()[..pkt.len()].copy_from_slice(&pkt);
                buf.set_len(pkt.len());
                black_box(pipe.process(now, app, &mut buf))
            })
        });
    }
    // `established_64B_groups`: app -> bastion, both with groups, a tracked
    // flow (no NAT): the cache carries the tracker's entry. `_flowlogs`: the
    // same with flow logs on (two records a packet: app's and bastion's).
    for (name, flow_logs) in [("established_64B_groups", false), ("established_64B_groups_flowlogs", true)] {
        let (gw, mut pipe, app) = lab_with_groups_and(flow_logs);
        let now = Timestamp::from_secs(1000);
        let bastion_ip = [10, 0, 0, 10];
        let bastion = gw.topology().interfaces.iter().position(|i| i.name == "bastion").unwrap() as u16;
        let mut b = PacketBuf::from_slice(&syn_to(40000, bastion_ip));
        assert_eq!(pipe.process(now, app, &mut b), Action::Forward(bastion));
        let mut synack = Vec::new();
        etherparse::PacketBuilder::ipv4(bastion_ip, APP, 64)
            .tcp(443, 40000, 0, 64240)
            .syn()
            .ack(1)
            .write(&mut synack, &[])
            .unwrap();
        let mut b = PacketBuf::from_slice(&synack);
        assert_eq!(pipe.process(now, bastion, &mut b), Action::Forward(app));
        assert_eq!(gw.tracker().len(), 1);
        let pkt = tcp(40000, bastion_ip, 64 - 40);
        let mut buf = PacketBuf::with_capacity(65536);
        g.bench_function(name, |bch| {
            bch.iter(|| {
                buf.buffer_mut()[..pkt.len()].copy_from_slice(&pkt);
                buf.set_len(pkt.len());
                black_box(pipe.process(now, app, &mut buf))
            })
        });
    }
    g.finish();
}

fn new_flow(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));
    // Each new flow takes a port: a gateway has 64,512, so run in chunks of
    // 60,000 SYNs (distinct source ports), timing only the packets. Each SYN
    // is copied into one reused buffer, as a worker reads into one (the copy,
    // ~2 ns, is left in).
    let syns: Vec<u8> = (0..60_000u16).flat_map(|i| syn(1024 + i)).collect();
    let chunk = |pipe: &mut Pipeline, app: u16, now: Timestamp, n: usize| {
        let mut b = PacketBuf::with_capacity(65536);
        let t = Instant::now();
        for p in syns.chunks_exact(40).take(n) {
            b.buffer_mut()[..40].copy_from_slice(p);
            b.set_len(40);
            black_box(pipe.process(now, app, &mut b));
        }
        t.elapsed()
    };
    // `new_flow`: a fresh gateway for every chunk, so its tables, its session
    // memory and the heap are touched for the first time (page faults).
    g.bench_function("new_flow", |bch| {
        bch.iter_custom(|iters| {
            let (mut total, mut left) = (Duration::ZERO, iters);
            while left > 0 {
                let (_gw, mut pipe, app) = lab();
                let n = left.min(60_000) as usize;
                total += chunk(&mut pipe, app, Timestamp::from_secs(1000), n);
                left -= n as u64;
            }
            total
        })
    });
    // `new_flow_warm_*`: one gateway that has held as many flows before;
    // after each chunk its sessions expire and their ports end their
    // hold-down (untimed), so the next chunk meets warm tables, as a gateway
    // does once flows come and go. `_60k`: 60,000 sessions live by the end
    // of a chunk; `_1k`: 1,000 (a small site: its tables stay in cache).
    // `new_flow_groups_warm_1k`: the same with app's five groups of 20
    // rules, matched at the last (the NAT session tracks the flow).
    for (name, live, groups) in [
        ("new_flow_warm_60k", 60_000usize, false),
        ("new_flow_warm_1k", 1_000, false),
        ("new_flow_groups_warm_1k", 1_000, true),
    ] {
        let (gw, mut pipe, app) = if groups { lab_with_groups() } else { lab() };
        let mut secs = 1000u32;
        let recycle = |secs: &mut u32| {
            for nat in gw.nats() {
                nat.expire(*secs + 100_000, usize::MAX);
                nat.expire(*secs + 200_000, usize::MAX); // hold-downs over
                assert_eq!(nat.session_count(), 0);
            }
            gw.tracker().expire(*secs + 100_000, usize::MAX);
            assert!(gw.tracker().is_empty());
            *secs += 300_000;
        };
        chunk(&mut pipe, app, Timestamp::from_secs(u64::from(secs)), live);
        // Every SYN was forwarded; with groups, tracked by its NAT session.
        assert_eq!(gw.nats()[0].session_count(), live);
        assert!(gw.tracker().is_empty());
        recycle(&mut secs);
        g.bench_function(name, |bch| {
            bch.iter_custom(|iters| {
                let (mut total, mut left) = (Duration::ZERO, iters);
                while left > 0 {
                    let n = left.min(live as u64) as usize;
                    total += chunk(&mut pipe, app, Timestamp::from_secs(u64::from(secs)), n);
                    recycle(&mut secs);
                    left -= n as u64;
                }
                total
            })
        });
    }
    g.finish();
}

fn acl(c: &mut Criterion) {
    let mut g = c.benchmark_group("acl");
    g.throughput(Throughput::Elements(1));
    for n in [20u16, 100] {
        let mut rules: Vec<AclRule> = (1..n)
            .map(|i| AclRule {
                number: i,
                action: RuleAction::Deny,
                protocol: RuleProtocol::Number(6),
                cidr: format!("192.0.2.{}/32", i % 250).parse().unwrap(),
                ports: Some((1000 + i, 1000 + i)),
                icmp_type: None,
                icmp_code: None,
            })
            .collect();
        rules.push(AclRule {
            number: 32000,
            action: RuleAction::Allow,
            protocol: RuleProtocol::All,
            cidr: "0.0.0.0/0".parse().unwrap(),
            ports: None,
            icmp_type: None,
            icmp_code: None,
        });
        let a = Acl::new("bench", rules.clone(), rules);
        let p = AclPacket {
            proto: 6,
            src: u32::from(Ipv4Addr::new(198, 51, 100, 10)),
            dst: u32::from(Ipv4Addr::new(10, 0, 1, 10)),
            dport: Some(40000),
            icmp: None,
        };
        assert_eq!(a.evaluate(AclDirection::Inbound, &p).action, RuleAction::Allow);
        g.bench_function(format!("{n}_rules"), |b| {
            b.iter(|| black_box(a.evaluate(AclDirection::Inbound, black_box(&p))))
        });
    }
    g.finish();
}

/// 1M sessions and the same keys in a plain dashmap, built once, on first use.
struct Million {
    nat: NatGateway,
    keys: Vec<FlowKey>,
    plain: dashmap::DashMap<FlowKey, u64>,
}

fn million() -> &'static Million {
    static M: std::sync::OnceLock<Million> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        const FLOWS: usize = 1_000_000;
        // 8 public addresses, 16,000 internal endpoints, 63 destinations each.
        // The key list is the bench's, not the gateway's: allocated and
        // touched before the first reading.
        let mut keys = vec![FlowKey::new(0, Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::UNSPECIFIED, 0); FLOWS];
        keys.clear();
        let before = rss_bytes();
        let cfg = NatConfig {
            public_ips: (1..=8).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect(),
            max_sessions: 2 * FLOWS,
            seed: Some(1),
            ..NatConfig::default()
        };
        let nat = NatGateway::new("bench", cfg);
        let t = Instant::now();
        'fill: for host in 0..64u32 {
            for port in 0..250u32 {
                for d in 0..63u32 {
                    if keys.len() == FLOWS {
                        break 'fill;
                    }
                    let k = FlowKey::new(
                        6,
                        Ipv4Addr::from(0x0a00_0000 | (host << 8) | 10),
                        1024 + port as u16,
                        Ipv4Addr::from(0xc633_6400 + d),
                        443,
                    );
                    nat.outbound(1000, &k, 0x02, 60).unwrap();
                    keys.push(k);
                }
            }
        }
        let build = t.elapsed();
        let bytes = rss_bytes().saturating_sub(before);
        println!(
            "FLOWS-SETUP sessions={} mappings={} build_ms={:.0} rss_bytes={} bytes_per_session={:.0}",
            nat.session_count(),
            nat.mapping_count(),
            build.as_secs_f64() * 1e3,
            bytes,
            bytes as f64 / nat.session_count() as f64
        );
        assert_eq!(nat.session_count(), FLOWS);
        // The plain baseline: dashmap with its default hasher, key -> u64.
        let plain = dashmap::DashMap::with_capacity(2 * FLOWS);
        for (i, k) in keys.iter().enumerate() {
            plain.insert(*k, i as u64);
        }
        Million { nat, keys, plain }
    })
}

fn flow_table(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_table_1M");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("natgw_hit", |b| {
        let m = million();
        b.iter(|| {
            i = (i + 7919) % m.keys.len();
            black_box(m.nat.outbound(1000, black_box(&m.keys[i]), 0x10, 60).is_ok())
        })
    });
    let mut j = 0usize;
    g.bench_function("dashmap_get", |b| {
        let m = million();
        b.iter(|| {
            j = (j + 7919) % m.keys.len();
            black_box(m.plain.get(black_box(&m.keys[j])).map(|v| *v))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    // The flow table first: its memory is read in a process that has not
    // freed memory yet (freed memory would be reused unseen by the reading).
    targets = flow_table, established, new_flow, acl
}
criterion_main!(benches);
