//! Holding up under load and abuse (issue 15): connection churn, and one host
//! that cannot starve the others of ports.

use crate::harness::*;
use std::time::{Duration, Instant};

const WEB: &str = "198.51.100.10";

/// A counter of `natgw stats --json` totals: `section` (`io`, `nat`, ...) and name.
fn total(lab: &TestLab, section: &str, name: &str) -> u64 {
    let v = lab.stats_json();
    v["totals"][section]
        .as_array()
        .and_then(|a| a.iter().find(|p| p[0] == name))
        .and_then(|p| p[1].as_u64())
        .unwrap_or_else(|| panic!("no counter {section}.{name} in {v}"))
}

/// Starts nginx on web's first address (a fast server that answers and
/// closes with `Connection: close`); the config lives in the lab's file
/// that the guard removes.
fn nginx(lab: &TestLab) -> std::process::Child {
    let conf = format!("/run/natgw/test-{}.conf", lab.name);
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1; pid /run/natgw/test-{}.pid; error_log /dev/null; daemon off;\n\
             events {{ worker_connections 4096; }}\n\
             http {{ access_log off; server {{ listen {WEB}:80 backlog=4096; location / {{ return 200 \"ok\\n\"; }} }} }}\n",
            lab.name
        ),
    )
    .unwrap();
    let server = lab.spawn("web", &["nginx", "-c", &conf]);
    lab.wait_listen("web", "-ltn", 80);
    server
}

/// The requests wrk says it completed.
fn wrk_requests(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.trim().split_once(" requests in ").map(|(n, _)| n.trim().parse().unwrap_or(0)))
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{out}"))
}

/// A server that answers and closes sends its last data and a bare FIN a few
/// microseconds apart. natgw delivers them as one segment when it reads both
/// in a row, so the client sees the FIN with the answer and does not close
/// first: without that, 5-30 % of wrk's connections ended in a TIME_WAIT on
/// the client's own port (0.1-0.4 % through the kernel), and under steady
/// churn those filled the client's ephemeral range until `connect()` stalled.
#[test]
fn a_servers_answer_and_its_fin_reach_the_client_together() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("churn", &[]);
    let server = nginx(&lab);
    let (ok, out) =
        lab.exec("app", &["wrk", "-t1", "-c50", "-d3s", "-H", "Connection: close", &format!("http://{WEB}/")]);
    assert!(ok, "{out}");
    let requests = wrk_requests(&out);
    let (_, tw) = lab.exec("app", &["ss", "-Htan", "state", "time-wait"]);
    let client_closed_first = tw.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    let merged = total(&lab, "io", "fin_merged");
    finish(server);
    eprintln!("{requests} requests, {client_closed_first} closed first by the client, {merged} FINs merged");
    assert!(requests > 1000, "wrk completed only {requests} requests:\n{out}");
    assert!(merged > 0, "no FIN joined its data");
    assert!(
        client_closed_first * 100 < requests * 3,
        "{client_closed_first} of {requests} connections were closed first by the client (TIME_WAIT in app)"
    );
}

/// The default lab with a second private host, `app2` (10.0.1.11).
fn two_private_hosts(name: &str, nat_options: &str) -> TestLab {
    let config = lab_config(
        name,
        &[
            (
                "[[nat_gateways]]",
                "[[hosts]]\nname = \"app2\"\nsubnet = \"private\"\nip = \"10.0.1.11\"\n\n[[nat_gateways]]",
            ),
            ("profile = \"aws\"", &format!("profile = \"aws\"\n{nat_options}")),
        ],
    );
    TestLab::up(name, &["--config", &config])
}

/// app's new connection through the NAT gateway, given one second.
fn app_connects(lab: &TestLab) -> Result<(), String> {
    let (ok, out) = lab.exec(
        "app",
        &["curl", "-sS", "--max-time", "1", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{WEB}/")],
    );
    if ok && out.trim() == "200" { Ok(()) } else { Err(out) }
}

/// The sweep: app2 opens TCP connections from 64,600 source ports (1024-65535, then a few below 1024: more than the pool of 64,512 holds)
/// (`hping3 -S`); every one takes a port and holds it (the RST from web keeps
/// the session 350 s, then the port waits 120 s). With the fair share the
/// sweep stops with a quarter of the pool left, counted as
/// ErrorPortAllocation, and app still connects at once, during the sweep and
/// after it.
#[test]
fn one_hosts_port_sweep_does_not_starve_the_other_hosts() {
    if !require_root() {
        return;
    }
    let lab = two_private_hosts("sweep", "");
    let server = nginx(&lab);
    app_connects(&lab).expect("app connects before the sweep");
    let sweep = lab.spawn(
        "app2",
        &["timeout", "30", "hping3", "-q", "-S", "-s", "1024", "-p", "80", "-i", "u20", "-c", "64600", "198.51.100.11"],
    );
    // Until the share refuses the sweep its first port.
    let deadline = Instant::now() + Duration::from_secs(30);
    while total(&lab, "nat", "error_port_allocation") == 0 {
        assert!(Instant::now() < deadline, "the sweep never ran the pool short");
        std::thread::sleep(Duration::from_millis(200));
    }
    let during = app_connects(&lab);
    let sweep_out = finish(sweep);
    let after = app_connects(&lab);
    let stats = lab.stats_json();
    finish(server);
    during.unwrap_or_else(|e| panic!("app could not connect during the sweep: {e}\n{sweep_out}"));
    after.unwrap_or_else(|e| panic!("app could not connect after the sweep: {e}"));
    let ports = stats["nat"][0]["ports_in_use"][0][2].as_u64().unwrap_or(0);
    let refused = total(&lab, "nat", "error_port_allocation");
    eprintln!("sweep: {ports} ports in use, {refused} new flows refused");
    assert!(refused > 100, "ErrorPortAllocation: {refused}");
    assert!(
        (48_000..64_512 - 2_016).contains(&ports),
        "ports in use {ports}: the sweep should stop at 3/4 of the pool"
    );
}

/// Only root may use the control socket (its mode is 0600, and the gateway
/// checks each client's credentials); the gateway keeps answering root.
#[test]
fn the_control_socket_is_roots_only() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("socket", &[]);
    let sock = format!("/run/natgw/labs/{}/control.sock", lab.name);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "{sock}: mode {mode:o}");
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", NATGW, "stats", "--lab", &lab.name])
        .output()
        .unwrap();
    assert!(!o.status.success(), "nobody read the stats:\n{}", text(&o));
    assert!(text(&o).contains("Permission denied"), "{}", text(&o));
    // A client that connects and says nothing does not keep root waiting.
    let idle = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let t = Instant::now();
    assert!(lab.stats_json()["workers"].as_u64().is_some());
    assert!(t.elapsed() < Duration::from_secs(1), "stats took {:?} behind an idle client", t.elapsed());
    drop(idle);
}

/// A full session table (`max_sessions = 200`) filled by SYNs that nobody
/// answers (web drops port 81): a new flow of another host still gets in,
/// in place of the oldest unanswered session (early drop), at once.
#[test]
fn a_full_table_of_unanswered_syns_still_lets_a_new_flow_in() {
    if !require_root() {
        return;
    }
    let lab = two_private_hosts("sessions", "max_sessions = 200");
    let server = nginx(&lab);
    let (ok, out) = lab.sh(
        "web",
        "nft add table inet t && nft add chain inet t in '{ type filter hook input priority 0; }' \
         && nft add rule inet t in tcp dport 81 drop",
    );
    assert!(ok, "{out}");
    let (_, out) = lab.exec(
        "app2",
        &["timeout", "20", "hping3", "-q", "-S", "-s", "2000", "-p", "81", "-i", "u500", "-c", "300", "198.51.100.11"],
    );
    let stats = lab.stats_json();
    let (sessions, dropped) =
        (stats["nat"][0]["sessions"].as_u64().unwrap(), stats["nat"][0]["early_drops"].as_u64().unwrap());
    assert_eq!(sessions, 200, "the table holds max_sessions\n{out}");
    assert!(dropped >= 90, "early drops: {dropped}");
    app_connects(&lab).unwrap_or_else(|e| panic!("app could not connect with the table full: {e}"));
    finish(server);
}

/// SIGHUP reloads the file the gateway started from, as `natgw reload`
/// does; a broken file is refused and the gateway runs as it was.
#[test]
fn sighup_reloads_the_gateways_file_and_refuses_a_broken_one() {
    if !require_root() {
        return;
    }
    let path = lab_config("hup", &[]);
    let lab = TestLab::up("hup", &["--config", &path]);
    let routes = || text(&natgw(&["routes", "--lab", "t-hup"]));
    assert!(!routes().contains("192.0.2.0/24"), "{}", routes());
    let good = std::fs::read_to_string(&path).unwrap().replacen(
        "{ destination = \"0.0.0.0/0\", target = \"nat-1\" },",
        "{ destination = \"0.0.0.0/0\", target = \"nat-1\" },\n  { destination = \"192.0.2.0/24\", target = \"blackhole\" },",
        1,
    );
    std::fs::write(&path, &good).unwrap();
    signal(lab.gateway_pid(), nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !routes().contains("192.0.2.0/24") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(routes().lines().any(|l| l.contains("192.0.2.0/24") && l.contains("blackhole")), "{}", routes());
    // A broken file: refused, said in the log, the running tables unchanged.
    std::fs::write(&path, good.replacen("cidr = \"10.0.1.0/24\"", "cidr = \"10.0.1.5/24\"", 1)).unwrap();
    signal(lab.gateway_pid(), nix::sys::signal::Signal::SIGHUP);
    let log = "/run/natgw/labs/t-hup/gateway.log";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(log).unwrap_or_default().contains("SIGHUP: refused") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let text_log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(text_log.contains("SIGHUP: refused") && text_log.contains("host bits"), "{text_log}");
    assert!(routes().contains("192.0.2.0/24"), "{}", routes());
    let (ok, out) = lab.exec("app", &["ping", "-c", "1", "-W", "2", "198.51.100.10"]);
    assert!(ok, "the gateway still forwards: {out}");
}
