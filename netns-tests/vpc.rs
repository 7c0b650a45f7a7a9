//! Issue 4 in real namespaces: network ACLs, blackhole routes, a middlebox
//! route, a deleted NAT gateway, route changes under traffic on a full table.

use crate::harness::*;

const WEB: &str = "198.51.100.10";

fn http_server(lab: &TestLab) -> std::process::Child {
    let s = lab.spawn("web", &["python3", "-u", "-m", "http.server", "80", "--bind", WEB, "--directory", "/etc"]);
    lab.wait_listen("web", "-ltn", 80);
    s
}

fn curl_ok(lab: &TestLab, host: &str, url: &str) -> bool {
    lab.exec(host, &["curl", "-sS", "-o", "/dev/null", "--max-time", "3", url]).0
}

fn ping_ok(lab: &TestLab, host: &str, to: &str) -> bool {
    lab.exec(host, &["ping", "-c", "1", "-W", "2", to]).0
}

#[test]
fn an_acl_denies_ping_but_allows_http() {
    if !require_root() {
        return;
    }
    let acl = "\n[[network_acls]]\nname = \"no-ping\"\noutbound = [\n  { rule = 100, action = \"deny\", protocol = \"icmp\", cidr = \"0.0.0.0/0\", icmp_type = 8 },\n  { rule = 200, action = \"allow\", protocol = \"all\", cidr = \"0.0.0.0/0\" },\n]\ninbound = [ { rule = 100, action = \"allow\", protocol = \"all\", cidr = \"0.0.0.0/0\" } ]\n";
    let cfg = lab_config(
        "acl-ping",
        &[
            ("route_table = \"private\"", "route_table = \"private\"\nnetwork_acl = \"no-ping\""),
            ("[[route_tables]]\nname = \"public\"", &format!("{acl}\n[[route_tables]]\nname = \"public\"")),
        ],
    );
    let lab = TestLab::up("acl-ping", &["--config", &cfg]);
    let server = http_server(&lab);
    assert!(!ping_ok(&lab, "app", WEB), "ping must be denied");
    assert!(curl_ok(&lab, "app", &format!("http://{WEB}/hostname")), "HTTP must pass");
    finish(server);
}

#[test]
fn an_acl_without_the_ephemeral_range_breaks_replies_and_natgw_warns() {
    if !require_root() {
        return;
    }
    let acl = "\n[[network_acls]]\nname = \"ssh-only\"\noutbound = [ { rule = 100, action = \"allow\", protocol = \"all\", cidr = \"0.0.0.0/0\" } ]\ninbound = [ { rule = 100, action = \"allow\", protocol = \"tcp\", cidr = \"0.0.0.0/0\", ports = \"22\" } ]\n";
    let cfg = lab_config(
        "acl-eph",
        &[
            ("route_table = \"private\"", "route_table = \"private\"\nnetwork_acl = \"ssh-only\""),
            ("[[route_tables]]\nname = \"public\"", &format!("{acl}\n[[route_tables]]\nname = \"public\"")),
        ],
    );
    let check = natgw(&["check", &cfg]);
    assert!(text(&check).contains("ephemeral"), "{}", text(&check));
    let lab = TestLab::up("acl-eph", &["--config", &cfg]);
    let server = http_server(&lab);
    assert!(!curl_ok(&lab, "app", &format!("http://{WEB}/hostname")), "replies to the ephemeral port are denied");
    finish(server);
    let s = lab.stats_json();
    let drops = s["totals"]["drops"].as_array().unwrap();
    assert!(drops.iter().any(|d| d[0] == "acl_deny"), "{drops:?}");
}

#[test]
fn blackhole_route_added_and_removed_at_run_time() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("blackhole", &[]);
    assert!(ping_ok(&lab, "app", "198.51.100.11"));
    let o = natgw(&["route", "add", "--lab", &lab.name, "--table", "private", "198.51.100.11/32", "blackhole"]);
    assert!(o.status.success(), "{}", text(&o));
    let routes = text(&natgw(&["routes", "--lab", &lab.name]));
    assert!(routes.contains("198.51.100.11/32") && routes.contains("blackhole"), "{routes}");
    assert!(!ping_ok(&lab, "app", "198.51.100.11"), "blackholed");
    assert!(ping_ok(&lab, "app", WEB), "the rest still flows");
    let o = natgw(&["route", "delete", "--lab", &lab.name, "--table", "private", "198.51.100.11/32"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(ping_ok(&lab, "app", "198.51.100.11"));
}

#[test]
fn a_deleted_nat_gateway_turns_its_routes_into_blackholes() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("natdel", &[]);
    assert!(ping_ok(&lab, "app", WEB));
    let o = natgw(&["nat-gateway", "delete", "--lab", &lab.name, "nat-1"]);
    assert!(o.status.success(), "{}", text(&o));
    let routes = text(&natgw(&["routes", "--lab", &lab.name]));
    assert!(
        routes.lines().any(|l| l.contains("0.0.0.0/0") && l.contains("nat-1") && l.contains("blackhole")),
        "{routes}"
    );
    assert!(!ping_ok(&lab, "app", WEB));
    assert!(ping_ok(&lab, "bastion", WEB), "the public subnet still has its internet gateway");
}

#[test]
fn a_middlebox_route_sends_subnet_traffic_through_a_firewall_host() {
    if !require_root() {
        return;
    }
    let cfg = lab_config(
        "middlebox",
        &[
            (
                "[[hosts]]\nname = \"bastion\"",
                "[[subnets]]\nname = \"inspection\"\ncidr = \"10.0.2.0/24\"\nroute_table = \"inspection\"\n\n[[hosts]]\nname = \"fw\"\nsubnet = \"inspection\"\nip = \"10.0.2.10\"\nsource_dest_check = false\n\n[[hosts]]\nname = \"bastion\"",
            ),
            (
                "{ destination = \"0.0.0.0/0\", target = \"igw\" },\n]",
                "{ destination = \"0.0.0.0/0\", target = \"igw\" },\n  { destination = \"10.0.1.0/24\", target = \"fw\" },\n]\n\n[[route_tables]]\nname = \"inspection\"\nroutes = []",
            ),
            (
                "{ destination = \"0.0.0.0/0\", target = \"nat-1\" },",
                "{ destination = \"0.0.0.0/0\", target = \"nat-1\" },\n  { destination = \"10.0.0.0/24\", target = \"fw\" },",
            ),
        ],
    );
    let lab = TestLab::up("middlebox", &["--config", &cfg]);
    // The firewall appliance forwards (in its own namespace only).
    let (ok, out) = lab.exec("fw", &["sysctl", "-w", "net.ipv4.ip_forward=1"]);
    assert!(ok, "{out}");
    let dev = lab.device("fw");
    let capture = lab.spawn("fw", &["tcpdump", "-l", "-n", "-c", "4", "-i", &dev, "icmp"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (ok, out) = lab.exec("bastion", &["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.1.10"]);
    let cap = finish(capture);
    assert!(ok, "{out}");
    assert!(cap.contains("10.0.0.10 > 10.0.1.10"), "the firewall saw the traffic:\n{cap}");
}

#[test]
fn route_changes_on_a_full_table_do_not_stop_traffic() {
    if !require_root() {
        return;
    }
    let table = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/ris-ipv4-20260511.txt.gz");
    if !std::path::Path::new(table).exists() {
        eprintln!("SKIPPED: {table} is not beside this checkout");
        return;
    }
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/internet-table.toml");
    let lab = TestLab::up("fulltable", &["--config", cfg]);
    let ping = lab.spawn("bastion", &["ping", "-q", "-c", "300", "-i", "0.01", "-W", "1", WEB]);
    for _ in 0..3 {
        let o = natgw(&["route", "add", "--lab", &lab.name, "--table", "public", "192.0.2.0/24", "blackhole"]);
        assert!(o.status.success(), "{}", text(&o));
        let o = natgw(&["route", "delete", "--lab", &lab.name, "--table", "public", "192.0.2.0/24"]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let mut ping = ping;
    let status = ping.wait().unwrap();
    let out = finish(ping);
    assert!(status.success() && out.contains(" 0% packet loss"), "{out}");
}
