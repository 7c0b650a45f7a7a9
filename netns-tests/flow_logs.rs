//! VPC Flow Logs in real namespaces: records written by the running gateway,
//! parsed by an independent parser (PyPI's flowlogs-reader), whose packet
//! and byte counts equal what the test sent; AWS's NAT gateway addresses
//! (`pkt-srcaddr`, `pkt-dstaddr`; the Elastic IP never shows); the stateless
//! asymmetry of a network ACL (ACCEPT for the request, REJECT for the reply).

use crate::harness::*;
use natgw::flowlog::stable_id;
use std::time::Duration;

const FIELDS: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${pkt-srcaddr} ${pkt-dstaddr} ${flow-direction}";

/// Every record of `path`, parsed by flowlogs-reader, as JSON objects.
fn parse(path: &str) -> Vec<serde_json::Value> {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv/bin/python");
    let script = r#"
import json, sys
from flowlogs_reader import FlowRecord
fields = tuple(w[2:-1].replace('-', '_') for w in sys.argv[2].split())
for line in open(sys.argv[1]):
    if line.strip():
        d = FlowRecord.from_cwl_event({'message': line.strip()}, fields=fields).to_dict()
        print(json.dumps({k: (v if isinstance(v, (int, str)) or v is None else str(v)) for k, v in d.items()}))
"#;
    let o = std::process::Command::new(python)
        .args(["-c", script, path, FIELDS])
        .output()
        .expect("python (scripts/setup makes target/pyenv)");
    assert!(o.status.success(), "flowlogs-reader: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Sums packets and bytes of the records that match every (field, value).
fn total(records: &[serde_json::Value], want: &[(&str, serde_json::Value)]) -> (u64, u64) {
    records
        .iter()
        .filter(|r| want.iter().all(|(k, v)| r[*k] == *v))
        .fold((0, 0), |(p, b), r| (p + r["packets"].as_u64().unwrap(), b + r["bytes"].as_u64().unwrap()))
}

fn flow_log_config(name: &str, extra: &[(&str, &str)]) -> (String, String) {
    let log = format!("/run/natgw/test-{name}.log");
    let _ = std::fs::remove_file(&log);
    let section = format!(
        "\n[flow_logs]\npath = \"{log}\"\ninterval = 2\nformat = \"{FIELDS}\"\n\n[[route_tables]]\nname = \"public\""
    );
    let mut edits: Vec<(&str, &str)> = vec![("[[route_tables]]\nname = \"public\"", &section)];
    edits.extend_from_slice(extra);
    (lab_config(name, &edits), log)
}

/// Sends `n` UDP datagrams of 100 bytes from app's port 45000 to web:port.
fn send_udp(lab: &TestLab, n: usize, port: u16) {
    let script = format!(
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.0.1.10', 45000))\nfor i in range({n}): s.sendto(b'x' * 100, ('198.51.100.10', {port}))"
    );
    let (ok, out) = lab.exec("app", &["python3", "-c", &script]);
    assert!(ok, "{out}");
}

/// Waits for the interval to end and the writer to write (interval 2 s, writer every 0.5 s).
fn wait_records(log: &str) -> Vec<serde_json::Value> {
    std::thread::sleep(Duration::from_millis(3500));
    for _ in 0..20 {
        if std::fs::metadata(log).is_ok_and(|m| m.len() > 0) {
            std::thread::sleep(Duration::from_millis(2600)); // a second interval, for records that straddled one
            return parse(log);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("no flow log records in {log}");
}

#[test]
fn flow_log_records_count_exactly_what_was_sent() {
    if !require_root() {
        return;
    }
    let (cfg, log) = flow_log_config("flowlog", &[]);
    let lab = TestLab::up("flowlog", &["--config", &cfg]);
    let sink = lab.spawn("web", &["socat", "-u", "UDP4-RECV:9,bind=198.51.100.10", "/dev/null"]);
    lab.wait_listen("web", "-lun", 9);
    send_udp(&lab, 5, 9);
    let records = wait_records(&log);
    finish(sink);
    let (app, nat) = (stable_id("eni", "app"), stable_id("eni", "nat-1"));
    let udp = |eni: &str, src: &str, dst: &str, sport: u16| {
        total(
            &records,
            &[
                ("interface_id", eni.into()),
                ("srcaddr", src.into()),
                ("dstaddr", dst.into()),
                ("srcport", sport.into()),
                ("dstport", 9.into()),
                ("protocol", 17.into()),
                ("action", "ACCEPT".into()),
            ],
        )
    };
    // 5 datagrams of 20 + 8 + 100 bytes.
    assert_eq!(udp(&app, "10.0.1.10", "198.51.100.10", 45000), (5, 640), "app's interface: {records:#?}");
    assert_eq!(udp(&nat, "10.0.1.10", "10.0.0.5", 45000), (5, 640), "into the NAT gateway: {records:#?}");
    let out: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["interface_id"] == nat.as_str() && r["srcaddr"] == "10.0.0.5").collect();
    assert_eq!(
        out.iter().map(|r| r["packets"].as_u64().unwrap()).sum::<u64>(),
        5,
        "out of the NAT gateway: {records:#?}"
    );
    assert!(out.iter().all(|r| r["dstaddr"] == "198.51.100.10" && r["pkt_srcaddr"] == "10.0.0.5"), "{out:#?}");
    let into = records.iter().find(|r| r["interface_id"] == nat.as_str() && r["dstaddr"] == "10.0.0.5").unwrap();
    assert_eq!(into["pkt_dstaddr"], "198.51.100.10", "pkt-dstaddr is the real destination: {into}");
    assert_eq!(into["flow_direction"], "ingress");
    assert!(records.iter().all(|r| !r.to_string().contains("203.0.113.5")), "the Elastic IP never shows");
    let flows: Vec<&serde_json::Value> = records.iter().filter(|r| r["log_status"] != "NODATA").collect();
    assert!(flows.iter().all(|r| r["version"] == 5 && r["log_status"] == "OK"), "{records:#?}");
    // bastion sent nothing: each ended interval has its NODATA record (AWS's), no flow.
    let bastion = stable_id("eni", "bastion");
    assert!(
        records.iter().any(|r| r["interface_id"] == bastion.as_str() && r["log_status"] == "NODATA"),
        "{records:#?}"
    );
    assert!(flows.iter().all(|r| r["interface_id"] != bastion.as_str()), "{records:#?}");
    // natgw flow-logs prints the same records.
    let o = natgw(&["flow-logs", "--lab", &lab.name]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&app), "{}", text(&o));
}

#[test]
fn a_nacl_that_drops_the_reply_logs_accept_for_the_request_and_reject_for_the_reply() {
    if !require_root() {
        return;
    }
    let acl = "\n[[network_acls]]\nname = \"no-ephemeral\"\noutbound = [ { rule = 100, action = \"allow\", protocol = \"all\", cidr = \"0.0.0.0/0\" } ]\ninbound = [ { rule = 100, action = \"allow\", protocol = \"tcp\", cidr = \"10.0.0.0/16\", ports = \"22\" } ]\n";
    let (cfg, log) = flow_log_config(
        "flowacl",
        &[
            ("route_table = \"private\"", "route_table = \"private\"\nnetwork_acl = \"no-ephemeral\""),
            ("[internet_gateway]", &format!("{acl}\n[internet_gateway]")),
        ],
    );
    let lab = TestLab::up("flowacl", &["--config", &cfg]);
    let echo = lab.spawn("web", &["socat", "UDP4-RECVFROM:7,bind=198.51.100.10,fork", "EXEC:cat"]);
    lab.wait_listen("web", "-lun", 7);
    send_udp(&lab, 3, 7);
    let records = wait_records(&log);
    finish(echo);
    let app = stable_id("eni", "app");
    let request = total(
        &records,
        &[("interface_id", app.as_str().into()), ("srcaddr", "10.0.1.10".into()), ("action", "ACCEPT".into())],
    );
    let reply = total(
        &records,
        &[("interface_id", app.as_str().into()), ("srcaddr", "198.51.100.10".into()), ("action", "REJECT".into())],
    );
    assert_eq!(request, (3, 384), "the request: ACCEPT at app's interface: {records:#?}");
    assert_eq!(reply, (3, 384), "the reply: REJECT at app's interface (the ACL is stateless): {records:#?}");
}
