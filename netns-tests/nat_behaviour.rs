//! Issue 3 in real namespaces: what a real RFC 5780 client measures, the
//! same ICMP identifier from two hosts, path-MTU discovery, port exhaustion.

use crate::harness::*;

const WEB: &str = "198.51.100.10";

fn classify(name: &str, edits: &[(&str, &str)], flags: &[&str]) -> String {
    let cfg = lab_config(name, edits);
    let lab = TestLab::up(name, &["--config", &cfg]);
    rfc5780(&lab, "app", flags)
}

#[test]
fn rfc5780_client_sees_the_configured_mapping_and_filtering() {
    if !require_root() {
        return;
    }
    let v = classify("r5780-default", &[], &["-m", "-f"]);
    assert!(v.contains("Endpoint Independent Mapping") && v.contains("Address and Port Dependent Filtering"), "{v}");
    // RFC 4787 REQ-10: no ALG touches the payload (MAPPED-ADDRESS is not rewritten).
    assert!(v.contains("No ALG"), "{v}");
    let v = classify(
        "r5780-eif",
        &[("filtering = \"address-and-port-dependent\"", "filtering = \"endpoint-independent\"")],
        &["-m", "-f", "-H"],
    );
    assert!(v.contains("Endpoint Independent Mapping") && v.contains("Endpoint Independent Filtering"), "{v}");
    assert!(v.contains("successful hairpinning"), "hairpinning (RFC 4787 REQ-9): {v}");
    let v = classify(
        "r5780-adf",
        &[("filtering = \"address-and-port-dependent\"", "filtering = \"address-dependent\"")],
        &["-f"],
    );
    assert!(v.contains("Address Dependent Filtering"), "{v}");
    let v = classify(
        "r5780-apdm",
        &[("mapping = \"endpoint-independent\"", "mapping = \"address-and-port-dependent\"")],
        &["-m"],
    );
    assert!(v.contains("Address and Port Dependent Mapping"), "{v}");
}

#[test]
fn two_hosts_ping_with_the_same_icmp_identifier() {
    if !require_root() {
        return;
    }
    let cfg = lab_config(
        "sameid",
        &[(
            "[[nat_gateways]]",
            "[[hosts]]\nname = \"app2\"\nsubnet = \"private\"\nip = \"10.0.1.11\"\n\n[[nat_gateways]]",
        )],
    );
    let lab = TestLab::up("sameid", &["--config", &cfg]);
    let a = lab.spawn("app", &["ping", "-e", "4242", "-c", "4", "-i", "0.2", "-W", "2", WEB]);
    let b = lab.spawn("app2", &["ping", "-e", "4242", "-c", "4", "-i", "0.2", "-W", "2", WEB]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let ct = lab.conntrack();
    let (oa, ob) = (finish(a), finish(b));
    assert!(oa.contains(" 0% packet loss") && ob.contains(" 0% packet loss"), "{oa}\n{ob}");
    let ids: Vec<&str> = ct
        .lines()
        .filter(|l| l.starts_with("icmp") && l.contains("id=4242"))
        .filter_map(|l| l.split_whitespace().filter(|w| w.starts_with("id=")).nth(2))
        .collect();
    assert_eq!(ids.len(), 2, "{ct}");
    assert_ne!(ids[0], ids[1], "two hosts with id 4242 must map to two external ids:\n{ct}");
}

#[test]
fn path_mtu_discovery_with_a_smaller_public_mtu() {
    if !require_root() {
        return;
    }
    let cfg = lab_config("pmtu", &[("namespace = \"web\"", "namespace = \"web\"\nmtu = 1400")]);
    let lab = TestLab::up("pmtu", &["--config", &cfg]);
    // Too big with DF: the gateway answers "fragmentation needed, mtu 1400".
    let (ok, out) = lab.exec("app", &["ping", "-M", "do", "-s", "1472", "-c", "1", "-W", "2", WEB]);
    assert!(!ok && (out.contains("mtu = 1400") || out.contains("mtu=1400")), "{out}");
    // The host learnt the path MTU.
    let (_, route) = lab.exec("app", &["ip", "route", "get", WEB]);
    assert!(route.contains("mtu 1400"), "{route}");
    let (ok, out) = lab.exec("app", &["ping", "-M", "do", "-s", "1372", "-c", "2", "-W", "2", WEB]);
    assert!(ok, "{out}");
    // TCP moves a large file both ways over the smaller path.
    let server =
        lab.spawn("web", &["python3", "-u", "-m", "http.server", "80", "--bind", WEB, "--directory", "/usr/bin"]);
    lab.wait_listen("web", "-ltn", 80);
    let (ok, out) = lab.exec(
        "app",
        &["sh", "-c", &format!("curl -sS --max-time 10 http://{WEB}/ip | cmp - /usr/bin/ip && echo SAME")],
    );
    finish(server);
    assert!(ok && out.contains("SAME"), "{out}");
}

#[test]
fn exhaustion_answers_and_old_flows_keep_working() {
    if !require_root() {
        return;
    }
    let cfg =
        lab_config("exhaust", &[("port_range = \"1024-65535\"", "port_range = \"20000-20003\"\nport_parity = false")]);
    let lab = TestLab::up("exhaust", &["--config", &cfg]);
    let echo = lab.spawn("web", &["socat", "TCP4-LISTEN:7000,bind=198.51.100.10,fork,reuseaddr", "EXEC:cat"]);
    lab.wait_listen("web", "-ltn", 7000);
    let script = format!(
        r#"
import socket, errno
conns = []
for i in range(4):
    s = socket.create_connection(("{WEB}", 7000), timeout=3)
    conns.append(s)
try:
    socket.create_connection(("{WEB}", 7000), timeout=3)
    print("FIFTH CONNECTED")
except OSError as e:
    print("FIFTH REFUSED", errno.errorcode.get(e.errno, e.errno))
for i, s in enumerate(conns):
    s.sendall(b"ping%d" % i)
    print("OLD", i, s.recv(16).decode())
"#
    );
    let (ok, out) = lab.exec("app", &["python3", "-c", &script]);
    finish(echo);
    assert!(ok, "{out}");
    assert!(out.contains("FIFTH REFUSED EHOSTUNREACH"), "the fifth connection gets ICMP 3/13 (EHOSTUNREACH):\n{out}");
    for i in 0..4 {
        assert!(out.contains(&format!("OLD {i} ping{i}")), "{out}");
    }
    let s = lab.stats_json();
    let nat = s["totals"]["nat"].as_array().unwrap();
    let epa = nat.iter().find(|d| d[0] == "error_port_allocation").and_then(|d| d[1].as_u64()).unwrap();
    assert!(epa >= 1, "{nat:?}");
}

#[test]
fn the_kernel_reference_lab_runs_the_same_clients() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("kernel", &["--kernel"]);
    let (ok, out) = lab.exec("app", &["ping", "-c", "2", "-i", "0.2", "-W", "2", WEB]);
    assert!(ok, "{out}");
    let v = rfc5780(&lab, "app", &["-m", "-f"]);
    assert!(v.contains("Mapping") && v.contains("Filtering"), "{v}");
    let (ok, _) = lab.exec("web", &["curl", "-sS", "--max-time", "2", "http://10.0.1.10/"]);
    assert!(!ok, "the kernel reference must not let the internet in either");
}
