//! `natgw metrics` against a running gateway: the exposition parses with an
//! independent parser (PyPI's prometheus-client, the Prometheus project's)
//! and counts the real pings the test sent, printed once and served at
//! /metrics on the host's loopback.

use crate::harness::*;
use std::collections::HashMap;

/// (metric sample name with its labels, value) of an exposition, as
/// prometheus-client's parser reads it.
pub fn parse(exposition: &str) -> HashMap<String, f64> {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv/bin/python");
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(json.dumps([f"{s.name}{{{labels}}}", s.value]))
"#;
    use std::io::Write;
    let mut c = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python (scripts/setup makes target/pyenv)");
    c.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "prometheus-client refused the exposition: {}\n{exposition}", text(&o));
    String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str::<(String, f64)>(l).unwrap()).collect()
}

#[test]
fn metrics_count_real_traffic_printed_and_served() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("metrics", &[]);
    let (ok, out) = lab.exec("app", &["ping", "-c", "3", "-i", "0.2", "-W", "2", "198.51.100.10"]);
    assert!(ok, "ping through the NAT: {out}");
    let o = natgw(&["metrics", "--lab", &lab.name]);
    assert!(o.status.success(), "{}", text(&o));
    let m = parse(&String::from_utf8_lossy(&o.stdout));
    let rx = m.get("natgw_interface_receive_packets_total{interface=\"app\"}").copied().unwrap_or(0.0);
    assert!(rx >= 3.0, "app's three echo requests: {rx}");
    assert!(m.contains_key("natgw_drops_total{reason=\"no_route\"}"), "every drop reason is listed");
    assert!(m.get("natgw_nat_gateway_mappings{nat_gateway=\"nat-1\"}").is_some_and(|v| *v >= 1.0), "{m:?}");
    // The CloudWatch-named NAT metrics count exactly the three echoes each way.
    for name in ["natgw_nat_packets_out_to_destination_total{}", "natgw_nat_packets_in_from_destination_total{}"] {
        assert_eq!(m.get(name).copied(), Some(3.0), "{name}: {m:?}");
    }

    // Served on the host's loopback, one scrape.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let server = std::process::Command::new(NATGW)
        .args(["metrics", "--lab", &lab.name, "--listen", &listen, "--count", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut scraped = String::new();
    for _ in 0..50 {
        let o = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "2", &format!("http://{listen}/metrics")])
            .output()
            .unwrap();
        if o.status.success() {
            scraped = String::from_utf8_lossy(&o.stdout).into_owned();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = finish(server);
    let served = parse(&scraped);
    let rx2 = served.get("natgw_interface_receive_packets_total{interface=\"app\"}").copied().unwrap_or(0.0);
    assert!(rx2 >= rx, "a scrape counts what the print did: {rx2} < {rx}; {log}");
}
