//! Runs one established TCP flow through the pipeline N times (default
//! 100,000), or with `new` as second argument N new flows (N at most 60,000,
//! and an optional third argument: rounds of them): a fixed workload
//! for instruction-level profiling, e.g.
//! `valgrind --tool=callgrind target/release/examples/hot_loop 100000 new`.
//! `NATGW_HOT_CONFIG=FILE` runs it on another VPC file with the same hosts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a profiling driver: a panic is a failure

use natgw::Timestamp;
use natgw::control::config;
use natgw::pipeline::{Action, PacketBuf};

/// A SYN from app (10.0.1.10) port `sport` to web (198.51.100.10) port 443.
fn syn(sport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 1, 10], [198, 51, 100, 10], 64)
        .tcp(sport, 443, 0, 64240)
        .syn()
        .write(&mut v, &[])
        .unwrap();
    v
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let src = match std::env::var("NATGW_HOT_CONFIG") {
        Ok(path) => std::fs::read_to_string(path).unwrap(),
        Err(_) => config::DEFAULT_LAB.to_string(),
    };
    let gw = config::parse("hot.toml", &src).unwrap().build();
    let mut pipe = gw.pipeline();
    let app = gw.topology().interfaces.iter().position(|i| i.name == "app").unwrap() as u16;
    let now = Timestamp::from_secs(1000);
    let first = syn(40000);
    let mut b = PacketBuf::with_capacity(65536);
    b.buffer_mut()[..first.len()].copy_from_slice(&first);
    b.set_len(first.len());
    assert!(matches!(pipe.process(now, app, &mut b), Action::Forward(_)));
    // The SYN-ACK back to the port the NAT chose: the connection is established.
    let ext = u16::from_be_bytes([b.bytes()[20], b.bytes()[21]]);
    let internet = gw.topology().interfaces.iter().position(|i| i.name == "internet").unwrap() as u16;
    let mut synack = Vec::new();
    etherparse::PacketBuilder::ipv4([198, 51, 100, 10], [203, 0, 113, 5], 64)
        .tcp(443, ext, 0, 64240)
        .syn()
        .ack(1)
        .write(&mut synack, &[])
        .unwrap();
    b.buffer_mut()[..synack.len()].copy_from_slice(&synack);
    b.set_len(synack.len());
    assert!(matches!(pipe.process(now, internet, &mut b), Action::Forward(_)));
    let mut ack = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 1, 10], [198, 51, 100, 10], 64)
        .tcp(40000, 443, 1, 64240)
        .ack(1)
        .write(&mut ack, &[0u8; 24])
        .unwrap();
    let mut fwd = 0;
    if std::env::args().nth(2).as_deref() == Some("new") {
        // Rounds of up to 60,000 new flows (one port each); between rounds
        // every session expires and its port ends its hold-down, so later
        // rounds meet warm tables.
        let syns: Vec<Vec<u8>> = (0..n.min(60_000)).map(|i| syn(1024 + i as u16)).collect();
        let rounds: u32 = std::env::args().nth(3).and_then(|a| a.parse().ok()).unwrap_or(1);
        let mut secs = 2000u64;
        for round in 0..rounds {
            let t = std::time::Instant::now();
            for syn in &syns {
                b.buffer_mut()[..syn.len()].copy_from_slice(syn);
                b.set_len(syn.len());
                if let Action::Forward(_) = pipe.process(Timestamp::from_secs(secs), app, &mut b) {
                    fwd += 1;
                }
            }
            let ns = t.elapsed().as_nanos() as f64 / syns.len() as f64;
            println!("round {round}: {ns:.0} ns a new flow");
            for nat in gw.nats() {
                nat.expire((secs + 100_000) as u32, usize::MAX);
                nat.expire((secs + 200_000) as u32, usize::MAX);
            }
            secs += 300_000;
        }
        println!("{fwd} new flows forwarded");
        return;
    }
    for _ in 0..n {
        b.buffer_mut()[..ack.len()].copy_from_slice(&ack);
        b.set_len(ack.len());
        if let Action::Forward(_) = pipe.process(now, app, &mut b) {
            fwd += 1;
        }
    }
    println!("{fwd} forwarded");
}
