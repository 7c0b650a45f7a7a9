//! Issue 12 in real namespaces: security groups with curl, socat and ping:
//! a rule admits, no rule denies (a counted drop naming the interface), a
//! group reference admits members (a new member with no rule change), the
//! reply of an allowed flow through the NAT, a removed rule that leaves a
//! tracked connection alive, and a network ACL next to a group.

use crate::harness::*;
use std::time::Duration;

const WEB: &str = "198.51.100.10";
const BASTION_EIP: &str = "203.0.113.10";
const BASTION: &str = "10.0.0.10";
const APP: &str = "10.0.1.10";

/// The default lab with groups, and app2 (10.0.1.11, the default group).
/// bastion admits TCP 8080 from the company (web's 198.51.100.0/24); app
/// admits TCP 8080 from bastion's group only.
fn groups_config(name: &str, edits: &[(&str, &str)]) -> String {
    let groups = r#"
[[hosts]]
name = "app2"
subnet = "private"
ip = "10.0.1.11"

[[security_groups]]
name = "bastion-sg"
inbound = [
  { protocol = "tcp", ports = "8080", source = "198.51.100.0/24", description = "the company" },
  { protocol = "icmp", icmp_type = 8, source = "198.51.100.0/24", description = "ping" },
]

[[security_groups]]
name = "app-sg"
inbound = [ { protocol = "tcp", ports = "8080", source = "bastion-sg", description = "from the bastion" } ]
"#;
    let mut all = vec![
        ("elastic_ip = \"203.0.113.10\"", "elastic_ip = \"203.0.113.10\"\nsecurity_groups = [\"bastion-sg\"]"),
        ("ip = \"10.0.1.10\"", "ip = \"10.0.1.10\"\nsecurity_groups = [\"app-sg\"]"),
    ];
    let tail = format!("{groups}\n[[route_tables]]\nname = \"public\"");
    all.push(("[[route_tables]]\nname = \"public\"", &tail));
    all.extend_from_slice(edits);
    lab_config(name, &all)
}

fn http(lab: &TestLab, host: &str, bind: &str, port: u16) -> std::process::Child {
    let s = lab
        .spawn(host, &["python3", "-u", "-m", "http.server", &port.to_string(), "--bind", bind, "--directory", "/etc"]);
    lab.wait_listen(host, "-ltn", port);
    s
}

fn curl_ok(lab: &TestLab, host: &str, url: &str) -> bool {
    lab.exec(host, &["curl", "-sS", "-o", "/dev/null", "--max-time", "2", url]).0
}

/// (inbound, outbound) packets the groups of `interface` denied.
fn sg_denied(lab: &TestLab, interface: &str) -> (u64, u64) {
    let s = lab.stats_json();
    s["totals"]["sg_denied"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e[0] == interface)
        .map_or((0, 0), |e| (e[1].as_u64().unwrap(), e[2].as_u64().unwrap()))
}

fn reload(lab: &TestLab, file: &str) {
    let o = natgw(&["reload", "--lab", &lab.name, file]);
    assert!(o.status.success(), "reload: {}", text(&o));
}

#[test]
fn security_groups_admit_deny_and_reference_members() {
    if !require_root() {
        return;
    }
    let cfg = groups_config("groups", &[]);
    let lab = TestLab::up("groups", &["--config", &cfg]);
    let b8080 = http(&lab, "bastion", BASTION, 8080);
    let b9090 = http(&lab, "bastion", BASTION, 9090);
    let a8080 = http(&lab, "app", "0.0.0.0", 8080);
    let web = http(&lab, "web", WEB, 80);

    // A rule admits; no rule, no entry (and the drop names bastion's interface).
    assert!(curl_ok(&lab, "web", &format!("http://{BASTION_EIP}:8080/hostname")), "8080 is allowed");
    assert!(!curl_ok(&lab, "web", &format!("http://{BASTION_EIP}:9090/hostname")), "9090 has no rule");
    let (inbound, _) = sg_denied(&lab, "bastion");
    assert!(inbound >= 1, "bastion's groups denied {inbound}");
    let (ok, out) = lab.exec("web", &["ping", "-c", "2", "-i", "0.2", "-W", "2", BASTION_EIP]);
    assert!(ok, "ping is allowed: {out}");

    // A group as the source: bastion is a member, app2 (same subnet as app,
    // where no ACL applies) is not.
    assert!(curl_ok(&lab, "bastion", &format!("http://{APP}:8080/hostname")), "bastion-sg members get in");
    assert!(!curl_ok(&lab, "app2", &format!("http://{APP}:8080/hostname")), "app2 is no member");
    assert!(sg_denied(&lab, "app").0 >= 1);

    // app's outbound is a new group's default (all): it reaches web through
    // the NAT, and the replies come back although app-sg admits nothing from
    // the internet (the flow is tracked).
    assert!(curl_ok(&lab, "app", &format!("http://{WEB}/hostname")), "app goes out through the NAT");
    // The NAT flow is tracked by its NAT session (listed with nat=nat-1);
    // the flows through the Elastic IP by the security groups' tracker.
    let ct = lab.conntrack();
    let nat_line = ct.lines().find(|l| l.contains(&format!("src={APP} dst={WEB}"))).unwrap_or_default();
    assert!(nat_line.contains("nat=nat-1") && !nat_line.contains("zone="), "{ct}");
    assert!(ct.contains("rewrite=\"elastic-ip 203.0.113.10\""), "web -> bastion goes through its Elastic IP: {ct}");
    let ports = text(&natgw(&["ports", "--lab", &lab.name]));
    assert!(ports.contains("203.0.113.5") && ports.contains(APP) && ports.contains("latest mappings"), "{ports}");

    // app2 joins bastion-sg: no rule changes, and app admits it.
    let joined =
        groups_config("groups", &[("ip = \"10.0.1.11\"", "ip = \"10.0.1.11\"\nsecurity_groups = [\"bastion-sg\"]")]);
    reload(&lab, &joined);
    assert!(curl_ok(&lab, "app2", &format!("http://{APP}:8080/hostname")), "a new member gets in");
    for c in [b8080, b9090, a8080, web] {
        finish(c);
    }
}

#[test]
fn a_removed_rule_leaves_a_tracked_connection_alive() {
    if !require_root() {
        return;
    }
    let cfg = groups_config("sgtrack", &[]);
    let lab = TestLab::up("sgtrack", &["--config", &cfg]);
    let echo = lab.spawn("bastion", &["socat", &format!("TCP-LISTEN:8080,bind={BASTION},fork,reuseaddr"), "EXEC:cat"]);
    lab.wait_listen("bastion", "-ltn", 8080);
    // One connection, a line now and a line after the rule is gone.
    let client = lab.spawn(
        "web",
        &["sh", "-c", &format!("(echo before; sleep 2; echo after; sleep 1) | socat -T5 - TCP:{BASTION_EIP}:8080")],
    );
    std::thread::sleep(Duration::from_millis(700));
    let removed = groups_config(
        "sgtrack",
        &[(
            "  { protocol = \"tcp\", ports = \"8080\", source = \"198.51.100.0/24\", description = \"the company\" },\n",
            "",
        )],
    );
    reload(&lab, &removed);
    std::thread::sleep(Duration::from_millis(3000));
    let out = finish(client);
    assert!(out.contains("before") && out.contains("after"), "the tracked connection carried on: {out:?}");
    // A new connection needs the rule.
    let (ok, out) = lab.sh("web", &format!("echo new | socat -T2 - TCP:{BASTION_EIP}:8080,connect-timeout=2"));
    assert!(!ok || !out.contains("new"), "a new connection got in without a rule: {out}");
    assert!(sg_denied(&lab, "bastion").0 >= 1);
    finish(echo);
}

#[test]
fn an_interfaces_connection_tracking_timeouts_show_in_conntrack() {
    if !require_root() {
        return;
    }
    // bastion's interface keeps established TCP 60 s (AWS's minimum), not 5 days.
    let own = "security_groups = [\"bastion-sg\"]\nconnection_tracking = { tcp_established_timeout = 60 }";
    let cfg = groups_config("sgtimeout", &[("security_groups = [\"bastion-sg\"]", own)]);
    let lab = TestLab::up("sgtimeout", &["--config", &cfg]);
    let echo = lab.spawn("bastion", &["socat", &format!("TCP-LISTEN:8080,bind={BASTION},fork,reuseaddr"), "EXEC:cat"]);
    lab.wait_listen("bastion", "-ltn", 8080);
    let client = lab.spawn("web", &["sh", "-c", &format!("(echo hi; sleep 3) | socat -T5 - TCP:{BASTION_EIP}:8080")]);
    std::thread::sleep(Duration::from_millis(1000));
    let ct = lab.conntrack();
    let line = ct
        .lines()
        .find(|l| l.contains("ESTABLISHED") && l.contains("dport=8080") && l.contains("zone=security-groups"))
        .unwrap_or_else(|| panic!("no established flow to bastion: {ct}"));
    // `tcp 6 SECONDS ESTABLISHED ...`: what remains of bastion's 60 s.
    let left: u32 = line.split_whitespace().nth(2).and_then(|t| t.parse().ok()).unwrap_or(u32::MAX);
    assert!((50..=60).contains(&left), "bastion's own timeout applies: {line}");
    let out = finish(client);
    assert!(out.contains("hi"), "{out:?}");
    finish(echo);
}

#[test]
fn a_network_acl_and_a_group_decide_side_by_side() {
    if !require_root() {
        return;
    }
    // The public subnet's ACL admits 8080 but forgot the ephemeral range on
    // the way out: the group admits the request, the ACL drops the reply
    // (stateless), and the counters say which.
    let acl = "\n[[network_acls]]\nname = \"no-ephemeral\"\ninbound = [ { rule = 100, action = \"allow\", protocol = \"all\", cidr = \"0.0.0.0/0\" } ]\noutbound = [ { rule = 100, action = \"allow\", protocol = \"tcp\", cidr = \"0.0.0.0/0\", ports = \"80\" } ]\n";
    let cfg = groups_config(
        "sgacl",
        &[
            ("route_table = \"public\"", "route_table = \"public\"\nnetwork_acl = \"no-ephemeral\""),
            (
                "[[security_groups]]\nname = \"bastion-sg\"",
                &format!("{acl}\n[[security_groups]]\nname = \"bastion-sg\""),
            ),
        ],
    );
    let lab = TestLab::up("sgacl", &["--config", &cfg]);
    let b8080 = http(&lab, "bastion", BASTION, 8080);
    assert!(!curl_ok(&lab, "web", &format!("http://{BASTION_EIP}:8080/hostname")), "the reply dies at the ACL");
    let s = lab.stats_json();
    let drops = s["totals"]["drops"].as_array().unwrap();
    let count = |label: &str| drops.iter().find(|d| d[0] == label).and_then(|d| d[1].as_u64()).unwrap_or(0);
    assert!(count("acl_deny") >= 1 && count("sg_deny") == 0, "the ACL, not the group: {drops:?}");
    finish(b8080);
}

/// `natgw trace --json` against the running lab.
fn trace(lab: &TestLab, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["trace", "--lab", &lab.name, "--json"];
    a.extend_from_slice(args);
    let o = natgw(&a);
    assert!(o.status.success(), "trace: {}", text(&o));
    serde_json::from_slice(&o.stdout).expect("trace json")
}

fn drop_count(lab: &TestLab, label: &str) -> u64 {
    let s = lab.stats_json();
    s["totals"]["drops"].as_array().unwrap().iter().find(|d| d[0] == label).and_then(|d| d[1].as_u64()).unwrap_or(0)
}

/// The number of entries `natgw conntrack` lists.
fn entries(lab: &TestLab) -> usize {
    lab.conntrack().lines().filter(|l| l.contains(" src=")).count()
}

#[test]
fn trace_predicts_what_real_traffic_then_does() {
    if !require_root() {
        return;
    }
    // The private subnet's ACL forgot the ephemeral range.
    let acl = "\n[[network_acls]]\nname = \"no-ephemeral\"\noutbound = [ { rule = 100, action = \"allow\", protocol = \"all\", cidr = \"0.0.0.0/0\" } ]\ninbound = [ { rule = 100, action = \"allow\", protocol = \"tcp\", cidr = \"10.0.0.0/16\", ports = \"22\" } ]\n";
    let cfg = groups_config(
        "sgtrace",
        &[
            ("route_table = \"private\"", "route_table = \"private\"\nnetwork_acl = \"no-ephemeral\""),
            (
                "[[security_groups]]\nname = \"bastion-sg\"",
                &format!("{acl}\n[[security_groups]]\nname = \"bastion-sg\""),
            ),
        ],
    );
    let lab = TestLab::up("sgtrace", &["--config", &cfg]);
    let web = http(&lab, "web", WEB, 80);
    let b8080 = http(&lab, "bastion", BASTION, 8080);
    let b9090 = http(&lab, "bastion", BASTION, 9090);
    assert!(curl_ok(&lab, "bastion", &format!("http://{WEB}/hostname")), "a flow in the table first");
    let before = entries(&lab);
    assert!(before >= 1);

    // 1. The NACL: the request passes, the reply dies at rule * of the
    // private subnet's inbound ACL; then curl does exactly that.
    let t = trace(&lab, &["app", WEB, "tcp", "80"]);
    assert_eq!(t["request"]["verdict"], "forwarded", "{t}");
    assert_eq!(t["reply"]["verdict"], "dropped (acl_deny)", "{t}");
    let acl_hops: Vec<&str> = t["reply"]["hops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["step"] == "network ACL")
        .map(|h| h["detail"].as_str().unwrap())
        .collect();
    assert_eq!(acl_hops.last(), Some(&"no-ephemeral (subnet private) inbound: rule * deny"), "{t}");
    assert_eq!(entries(&lab), before, "a trace leaves the table as it was");
    let acl_before = drop_count(&lab, "acl_deny");
    assert!(!curl_ok(&lab, "app", &format!("http://{WEB}/hostname")), "the reply is lost, as predicted");
    assert!(drop_count(&lab, "acl_deny") > acl_before, "and counted at the ACL");

    // 2. The group: 9090 has no rule on bastion-sg, 8080 has one.
    let t = trace(&lab, &[WEB, BASTION_EIP, "tcp", "9090"]);
    assert_eq!(t["request"]["verdict"], "dropped (sg_deny)", "{t}");
    let hops = t["request"]["hops"].to_string();
    assert!(hops.contains("bastion inbound: no rule of bastion-sg allows it"), "{hops}");
    let denied_before = sg_denied(&lab, "bastion").0;
    assert!(!curl_ok(&lab, "web", &format!("http://{BASTION_EIP}:9090/")));
    assert!(sg_denied(&lab, "bastion").0 > denied_before, "denied where the trace said");
    let t = trace(&lab, &[WEB, BASTION_EIP, "tcp", "8080"]);
    assert_eq!(t["reply"]["verdict"], "forwarded", "{t}");
    assert!(
        t["request"]["hops"]
            .to_string()
            .contains("group bastion-sg inbound rule 1 (tcp port 8080 from 198.51.100.0/24) allows"),
        "{t}"
    );
    assert!(curl_ok(&lab, "web", &format!("http://{BASTION_EIP}:8080/hostname")), "and it gets in");
    for c in [web, b8080, b9090] {
        finish(c);
    }
}

/// Every scenario of `natgw lab scenario list`, run as a user runs it: each
/// checks that `natgw trace` predicted what real traffic then did (verdicts,
/// the ACL rule number, the group), and leaves no namespace behind.
#[test]
fn every_lab_scenario_runs_and_checks_itself() {
    if !require_root() {
        return;
    }
    let _guard = machine_lock();
    let list = text(&natgw(&["lab", "scenario", "list"]));
    let names: Vec<&str> = list.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.len() >= 5, "{list}");
    for name in names {
        let o = natgw(&["lab", "scenario", "run", name]);
        let out = text(&o);
        assert!(o.status.success() && out.contains("every check passed"), "scenario {name}:\n{out}");
        assert!(!out.contains("FAILED"), "{out}");
        let prefix = out.split("Tearing down the lab (").nth(1).and_then(|s| s.split("-*").next()).unwrap_or("?");
        assert!(namespaces_with(prefix).is_empty(), "scenario {name} left {:?}", namespaces_with(prefix));
    }
}

#[test]
fn trace_live_prints_the_decisions_of_real_packets() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("tracelive", &[]);
    let web = http(&lab, "web", WEB, 80);
    let tracer = lab.spawn(
        "web",
        &[NATGW, "trace", "--live", "--lab", &lab.name, "--count", "2", "--seconds", "10", "tcp", "port", "80"],
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(curl_ok(&lab, "app", &format!("http://{WEB}/hostname")));
    let out = finish_waiting(tracer);
    assert!(out.contains("natgw: 2 packet(s) traced"), "{out}");
    assert!(out.contains("tcp 10.0.1.10:") && out.contains("nat-1: new mapping"), "the SYN's walk: {out}");
    assert!(out.contains("nat-1: the session's reply"), "its reply's walk: {out}");
    finish(web);
}

/// Waits (at most 15 s) for a child to end, then reads what it wrote.
fn finish_waiting(mut c: std::process::Child) -> String {
    for _ in 0..150 {
        if c.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    finish(c)
}

#[test]
fn conntrack_events_follow_a_real_connection() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("ctevents", &[]);
    let web = http(&lab, "web", WEB, 80);
    let listener = lab.spawn("web", &[NATGW, "conntrack", "--events", "--lab", &lab.name, "--count", "3"]);
    std::thread::sleep(Duration::from_millis(800));
    assert!(curl_ok(&lab, "app", &format!("http://{WEB}/hostname")));
    let out = finish_waiting(listener);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 3, "{out}");
    assert!(lines[0].contains("[NEW]") && lines[0].contains("SYN_SENT") && lines[0].contains("nat=nat-1"), "{out}");
    assert!(
        lines[0].contains(&format!("src={APP} dst={WEB}")) && lines[0].contains("dst=203.0.113.5"),
        "both tuples: {out}"
    );
    assert!(lines[1].contains("[UPDATE]") && lines[1].contains("SYN_RECV"), "{out}");
    assert!(lines[2].contains("[UPDATE]") && lines[2].contains("ESTABLISHED"), "{out}");
    finish(web);
}
