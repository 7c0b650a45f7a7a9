//! VPC endpoints and the lab's services with real clients: the aws CLI
//! (awscli), curl, nslookup, traceroute. The scenarios (groups.rs runs them
//! all) cover the notes' experiments; these tests cover what they do not:
//! multipart uploads and ranged reads through a gateway endpoint, the
//! address the service sees, an interface endpoint's policy, hostile input
//! at a door.

use crate::harness::*;

const AWS: &str = "/usr/bin/aws";
const S3_NAME: &str = "s3.ap-northeast-2.amazonaws.com";

/// A scenario's file with edits, written for `--config`.
fn scenario_config(name: &str, scenario: &str, edits: &[(&str, &str)]) -> String {
    config_from(name, &format!("scenarios/{scenario}.toml"), edits)
}

fn door_logs(lab: &TestLab) -> String {
    let dir = format!("/run/natgw/labs/{}", lab.state()["name"].as_str().unwrap());
    let mut all = String::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("service-") {
            all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    all
}

#[test]
fn twelve_megabytes_through_a_gateway_endpoint_and_the_address_the_service_sees() {
    if !require_root() {
        return;
    }
    // vpce-1a2b3c4d's endpoint policy admits lab-bucket only.
    let cfg = scenario_config(
        "ep-gw",
        "bucket-policy-vpce",
        &[
            ("}\'\'\' },\n]", "}\'\'\' },\n  { name = \"other-bucket\" },\n]"),
            (
                "route_tables = [\"private\"]",
                "route_tables = [\"private\"]\npolicy = '{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:*\",\"Resource\":[\"arn:aws:s3:::lab-bucket\",\"arn:aws:s3:::lab-bucket/*\"]}]}'",
            ),
        ],
    );
    let lab = TestLab::up("ep-gw", &["--config", &cfg]);
    // A file above the CLI's 8 MB multipart threshold, up and down again.
    let (ok, out) = lab.sh(
        "app",
        &format!(
            "head -c 12000000 /dev/urandom > /tmp/natgw-ep-big && {AWS} s3 cp /tmp/natgw-ep-big s3://lab-bucket/big --only-show-errors && {AWS} s3 cp s3://lab-bucket/big /tmp/natgw-ep-back --only-show-errors && cmp /tmp/natgw-ep-big /tmp/natgw-ep-back && echo same; rm -f /tmp/natgw-ep-big /tmp/natgw-ep-back"
        ),
    );
    assert!(ok && out.contains("same"), "{out}");
    let (ok, out) = lab.exec("app", &[AWS, "s3api", "head-object", "--bucket", "lab-bucket", "--key", "big"]);
    assert!(ok && out.contains("\"ContentLength\": 12000000") && out.contains("-2\\\""), "multipart ETag: {out}");
    // s3 to s3: above the threshold a multipart copy (UploadPartCopy),
    // then a move (CopyObject, DeleteObject) to a key with spaces.
    let (ok, out) = lab.sh(
        "app",
        &format!(
            "{AWS} s3 cp s3://lab-bucket/big s3://lab-bucket/big-copy --only-show-errors && {AWS} s3 mv s3://lab-bucket/big-copy 's3://lab-bucket/a dir/moved copy' --only-show-errors && {AWS} s3 cp 's3://lab-bucket/a dir/moved copy' /tmp/natgw-ep-moved --only-show-errors && {AWS} s3 cp s3://lab-bucket/big /tmp/natgw-ep-orig --only-show-errors && cmp /tmp/natgw-ep-moved /tmp/natgw-ep-orig && echo same; rm -f /tmp/natgw-ep-moved /tmp/natgw-ep-orig"
        ),
    );
    assert!(ok && out.contains("same"), "{out}\n{}", door_logs(&lab));
    let (ok, out) = lab.exec("app", &[AWS, "s3", "ls", "--recursive", "s3://lab-bucket"]);
    assert!(ok && out.contains(" a dir/moved copy") && !out.contains("big-copy"), "{out}");
    // What the store does not implement says so, never answers another question.
    let (ok, out) = lab.exec("app", &[AWS, "s3api", "get-object-acl", "--bucket", "lab-bucket", "--key", "big"]);
    assert!(!ok && out.contains("NotImplemented"), "{out}");
    // A ranged read with plain curl, by the service's name.
    let (ok, out) = lab.exec(
        "app",
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-r",
            "100-199",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            &format!("http://{S3_NAME}/lab-bucket/big"),
        ],
    );
    assert!(ok && out.trim() == "206 100", "{out}");
    let (ok, out) = lab.exec("app", &[AWS, "s3api", "get-bucket-policy", "--bucket", "lab-bucket"]);
    assert!(ok && out.contains("Access-to-specific-VPCE-only"), "{out}");
    // The endpoint's policy: the other bucket is refused through it, and
    // reachable through worker's endpoint (default policy, no bucket policy).
    let (ok, out) = lab.exec("app", &[AWS, "s3", "ls", "s3://other-bucket"]);
    assert!(!ok && out.contains("AccessDenied") && out.contains("endpoint's policy"), "{out}");
    let (ok, out) = lab.exec("worker", &[AWS, "s3", "ls", "s3://other-bucket"]);
    assert!(ok, "{out}");
    // worker goes through the other endpoint: denied, and the door saw its
    // private address (no NAT on the way) and which endpoint it came through.
    let (ok, out) = lab.exec("worker", &[AWS, "s3", "ls", "s3://lab-bucket"]);
    assert!(!ok && out.contains("AccessDenied"), "{out}");
    let logs = door_logs(&lab);
    assert!(
        logs.lines().any(|l| l.contains("denied") && l.contains("peer=10.0.2.10") && l.contains("vpce-5e6f7a8b")),
        "{logs}"
    );
    // The console's view of the table.
    let routes = text(&natgw(&["routes", "--lab", "t-ep-gw"]));
    assert!(routes.lines().any(|l| l.starts_with("  pl-") && l.contains("vpce-1a2b3c4d")), "{routes}");
}

#[test]
fn an_interface_endpoints_policy_and_private_dns() {
    if !require_root() {
        return;
    }
    let cfg = scenario_config(
        "ep-if",
        "endpoint-private-dns",
        &[
            (
                "buckets = [ { name = \"lab-bucket\" } ]",
                "buckets = [ { name = \"lab-bucket\" }, { name = \"open-bucket\" } ]",
            ),
            (
                "private_dns = false",
                "private_dns = true\npolicy = '{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:*\",\"Resource\":[\"arn:aws:s3:::open-bucket\",\"arn:aws:s3:::open-bucket/*\"]}]}'",
            ),
        ],
    );
    let lab = TestLab::up("ep-if", &["--config", &cfg]);
    let (ok, out) = lab.exec("app", &["nslookup", S3_NAME]);
    assert!(ok && out.contains("Address: 10.0.1.254"), "{out}");
    let (ok, out) = lab.exec("bastion", &[AWS, "s3", "cp", "/etc/hostname", "s3://open-bucket/h"]);
    assert!(ok, "the endpoint's policy allows open-bucket: {out}");
    let (ok, out) = lab.exec("app", &[AWS, "s3", "ls", "s3://open-bucket"]);
    assert!(ok && out.contains(" h"), "{out}");
    let (ok, out) = lab.exec("app", &[AWS, "s3", "ls", "s3://lab-bucket"]);
    assert!(!ok && out.contains("AccessDenied") && out.contains("endpoint's policy"), "{out}");
    // The endpoint's group admits HTTP only: its other ports see nothing.
    let (ok, out) = lab.exec("app", &["curl", "-sS", "--max-time", "2", "http://10.0.1.254:8080/"]);
    assert!(!ok, "{out}");
    // Counted as the group's drop (the name alone is in every stats reply).
    let stats = lab.stats_json();
    let sg_deny = stats["totals"]["drops"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p[0] == "sg_deny"))
        .and_then(|p| p[1].as_u64())
        .unwrap_or(0);
    assert!(sg_deny > 0, "{stats}");
}

#[test]
fn hostile_input_at_a_door_does_not_stop_the_service() {
    if !require_root() {
        return;
    }
    let cfg = scenario_config("ep-bad", "gateway-endpoint", &[("route_tables = []", "route_tables = [\"private\"]")]);
    let lab = TestLab::up("ep-bad", &["--config", &cfg]);
    // 300 connections of junk, truncated requests and oversized headers.
    let script = r#"
import os, socket
for i in range(300):
    s = socket.create_connection(("192.0.2.10", 80), timeout=2)
    kind = i % 3
    if kind == 0:
        s.sendall(os.urandom(512))
    elif kind == 1:
        s.sendall(b"PUT /lab-bucket/x HTTP/1.1\r\nHost: s3\r\nContent-Length: 999999999\r\n\r\nabc")
    else:
        s.sendall(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: s3\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    try:
        s.recv(4096)
    except OSError:
        pass
    s.close()
print("sent")
"#;
    let (ok, out) = lab.exec("app", &["python3", "-c", script]);
    assert!(ok && out.contains("sent"), "{out}");
    let (ok, out) = lab.exec("app", &[AWS, "s3", "ls"]);
    assert!(ok && out.contains("lab-bucket"), "{out}");
    let (ok, out) = lab.exec("app", &[AWS, "s3", "ls", "s3://no-such-bucket"]);
    assert!(!ok && out.contains("NoSuchBucket"), "{out}");
}
