//! Black-box tests in real network namespaces with real tools: ping, curl,
//! socat, traceroute, iperf3, tcpdump. Root only (see harness.rs).
//!
//! Every test builds its own lab with `natgw lab up --name t-...`, and a
//! guard takes it down again, also when the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod capture;
mod dns;
mod endpoints;
mod flow_logs;
mod groups;
mod harness;
mod hold_up;
mod metrics;
mod nat_behaviour;
mod offload;
mod vpc;
mod web;
use harness::*;

use std::time::{Duration, Instant};

const WEB: &str = "198.51.100.10";
const NAT_IP: &str = "203.0.113.5";
const APP: &str = "10.0.1.10";

#[test]
fn ping_http_and_udp_cross_the_nat() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("basic", &[]);
    let (ok, out) = lab.exec("app", &["ping", "-c", "3", "-i", "0.2", "-W", "2", WEB]);
    assert!(ok && out.contains(" 0% packet loss"), "{out}");
    let s = lab.stats_json();
    assert_eq!(s["steering"], if cores() >= 2 { "auto (now cpu)" } else { "flow" }, "the default: {s}");
    let read: u64 = per_worker(&lab).iter().sum();
    assert_eq!(read, 6, "3 requests and 3 replies read, whichever worker: {s}");

    // HTTP: a real server in web; its log says who the client was.
    let server = lab.spawn("web", &["python3", "-u", "-m", "http.server", "80", "--bind", WEB, "--directory", "/etc"]);
    lab.wait_listen("web", "-ltn", 80);
    let (ok, out) = lab.exec(
        "app",
        &["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", &format!("http://{WEB}/hostname")],
    );
    assert!(ok && out.contains("200"), "{out}");
    // The connection is in the table while the lab is up.
    let ct = lab.conntrack();
    assert!(ct.contains(&format!("src={APP} dst={WEB}")) && ct.contains(&format!("dst={NAT_IP} sport=80")), "{ct}");
    let log = finish(server);
    let line = log.lines().find(|l| l.contains("GET /hostname")).unwrap_or_default();
    assert!(line.starts_with(&format!("{NAT_IP} ")), "web must see {NAT_IP}: {log}");
    assert!(!log.contains(APP), "web saw the private address: {log}");

    // UDP: a service that answers with the address and port it saw.
    let udp = lab.spawn(
        "web",
        &[
            "socat",
            "-T2",
            &format!("UDP4-RECVFROM:7,bind={WEB},fork"),
            "SYSTEM:echo \"$SOCAT_PEERADDR:$SOCAT_PEERPORT\"",
        ],
    );
    lab.wait_listen("web", "-lun", 7);
    let (ok, out) = lab.sh("app", &format!("echo hi | socat -T2 - UDP4:{WEB}:7"));
    let seen = out.trim();
    let (addr, port) = seen.rsplit_once(':').expect("addr:port");
    let port: u16 = port.parse().expect("port");
    assert!(ok && addr == NAT_IP && port >= 1024, "web saw {seen}");
    finish(udp);
}

#[test]
fn traceroute_shows_the_gateway_hop() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("trace", &[]);
    let (_, out) = lab.exec("app", &["traceroute", "-n", "-q", "1", "-w", "2", "-m", "5", WEB]);
    let hops: Vec<&str> = out.lines().skip(1).collect();
    assert!(hops.first().is_some_and(|l| l.contains("10.0.1.1 ")), "hop 1 must be the VPC router:\n{out}");
    // The NAT gateway is a hop of its own: its private address answers (AWS).
    assert!(hops.get(1).is_some_and(|l| l.contains("10.0.0.5 ")), "hop 2 must be the NAT gateway:\n{out}");
    assert!(hops.get(2).is_some_and(|l| l.contains(WEB)), "hop 3 must be web (its reply translated back):\n{out}");
}

#[test]
fn iperf3_tcp_through_the_nat_and_web_sees_only_the_public_address() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("iperf", &[]);
    let dev = lab.device("web");
    let capture = lab.spawn("web", &["tcpdump", "-l", "-n", "-c", "200", "-i", &dev, "ip"]);
    let server = lab.spawn("web", &["iperf3", "-s", "-1", "-B", WEB]);
    lab.wait_listen("web", "-ltn", 5201);
    std::thread::sleep(Duration::from_millis(300));
    let (ok, out) = lab.exec("app", &["iperf3", "-c", WEB, "-t", "3", "-J"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 json");
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0);
    assert!(bps > 1e6, "iperf3 moved {bps} bit/s");
    let server_out = finish(server);
    assert!(server_out.contains(&format!("Accepted connection from {NAT_IP}")), "{server_out}");
    let cap = finish(capture);
    let lines: Vec<&str> = cap.lines().filter(|l| l.contains(" IP ")).collect();
    assert!(lines.len() >= 10, "capture too small:\n{cap}");
    assert!(lines.iter().all(|l| !l.contains(APP)), "the private address leaked:\n{cap}");
    assert!(lines.iter().any(|l| l.contains(&format!("{NAT_IP}."))), "{cap}");
    eprintln!("iperf3 through natgw: {:.2} Gbit/s", bps / 1e9);
}

#[test]
fn nothing_from_the_internet_reaches_app() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("inbound", &[]);
    let server =
        lab.spawn("app", &["python3", "-u", "-m", "http.server", "8080", "--bind", "0.0.0.0", "--directory", "/etc"]);
    lab.wait_listen("app", "-ltn", 8080);
    // app makes a mapping first: an open port on the NAT must not let strangers in.
    let (ok, _) = lab.exec("app", &["ping", "-c", "1", "-W", "2", WEB]);
    assert!(ok);
    for url in [format!("http://{APP}:8080/"), format!("http://{NAT_IP}:8080/")] {
        let (ok, out) = lab.exec("web", &["curl", "-sS", "--max-time", "2", &url]);
        assert!(!ok, "{url} answered from the internet: {out}");
    }
    let log = finish(server);
    assert!(!log.contains("GET"), "app's server was reached: {log}");
    let s = lab.stats_json();
    let drops = s["totals"]["drops"].as_array().unwrap();
    let count = |label: &str| drops.iter().find(|d| d[0] == label).and_then(|d| d[1].as_u64()).unwrap_or(0);
    assert!(count("nat_no_session") >= 1 && count("no_route") >= 1, "{drops:?}");
}

#[test]
fn bastion_is_reachable_through_its_elastic_ip() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("eip", &[]);
    let server = lab.spawn(
        "bastion",
        &["python3", "-u", "-m", "http.server", "8080", "--bind", "10.0.0.10", "--directory", "/etc"],
    );
    lab.wait_listen("bastion", "-ltn", 8080);
    let (ok, out) = lab.exec(
        "web",
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "http://203.0.113.10:8080/hostname",
        ],
    );
    assert!(ok && out.contains("200"), "{out}");
    let log = finish(server);
    assert!(log.contains(&format!("{WEB} - -")), "bastion sees web's real address: {log}");
    // And bastion goes out as its Elastic IP.
    let web = lab.spawn("web", &["python3", "-u", "-m", "http.server", "80", "--bind", WEB, "--directory", "/etc"]);
    lab.wait_listen("web", "-ltn", 80);
    let (ok, _) =
        lab.exec("bastion", &["curl", "-sS", "-o", "/dev/null", "--max-time", "5", &format!("http://{WEB}/hostname")]);
    assert!(ok);
    let log = finish(web);
    assert!(log.lines().any(|l| l.starts_with("203.0.113.10 ")), "{log}");
}

#[test]
fn a_second_lab_with_the_same_name_is_refused_and_down_leaves_nothing() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("twice", &[]);
    let prefix = lab.prefix();
    assert_eq!(namespaces_with(&prefix).len(), 4, "app, bastion, web, dns");
    let o = natgw(&["lab", "up", "--name", &lab.name]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("already up") && t.contains("natgw lab down"), "{t}");
    assert_eq!(namespaces_with(&prefix).len(), 4, "the refused run must not touch the running lab");
    let name = lab.name.clone();
    drop(lab);
    assert!(namespaces_with(&prefix).is_empty(), "namespaces left: {:?}", namespaces_with(&prefix));
    assert!(!std::path::Path::new(&format!("/run/natgw/labs/{name}")).exists());
    assert!(!std::path::Path::new(&format!("/etc/netns/{prefix}-app")).exists());
}

#[test]
fn a_second_gateway_on_the_same_namespaces_is_refused_before_it_touches_them() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("second", &[]);
    let prefix = lab.prefix();
    let sock = format!("/run/natgw/test-second-{}.sock", std::process::id());
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/default-lab.toml");
    // Without a refusal, TUNSETIFF would attach this run's queues to the lab's devices.
    let o = natgw(&["run", "--config", config, "--netns-prefix", &prefix, "--socket", &sock]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("exists already") && t.contains("another natgw"), "{t}");
    assert!(!std::path::Path::new(&sock).exists(), "the refused run left its socket");
    let (ok, out) = lab.exec("app", &["ping", "-c", "3", "-i", "0.2", "-W", "1", WEB]);
    assert!(ok, "the running gateway must keep working: {out}");
}

#[test]
fn a_killed_lab_is_cleaned_by_the_next_run() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("crash", &[]);
    let prefix = lab.prefix();
    let pid = lab.gateway_pid();
    // The gateway dies without cleaning up.
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(namespaces_with(&prefix).len(), 4, "leftovers exist before the next run");
    // Any next `lab up` removes them.
    let o = natgw(&["lab", "up", "--name", "t-crash2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(namespaces_with(&prefix).is_empty(), "leftovers of a dead lab were not removed");
    assert!(!std::path::Path::new(&format!("/run/natgw/labs/{}", lab.name)).exists());
    let o = natgw(&["lab", "down", "--name", "t-crash2"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn ctrl_c_during_the_demo_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let _guard = machine_lock();
    let mut child = std::process::Command::new(NATGW)
        .args(["lab", "demo"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the demo to be in the middle of its traffic steps.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    use std::io::BufRead;
    while Instant::now() < deadline {
        line.clear();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        seen.push_str(&line);
        if line.starts_with("[3/8]") {
            break;
        }
    }
    assert!(seen.contains("[3/8]"), "demo did not get going:\n{seen}");
    let prefix = seen
        .split_whitespace()
        .find(|w| w.starts_with("ngw") && w.ends_with("-app"))
        .map(|w| w.trim_end_matches("-app").to_string())
        .expect("prefix");
    signal(child.id() as i32, nix::sys::signal::Signal::SIGINT);
    let mut rest = String::new();
    use std::io::Read;
    let _ = stdout.read_to_string(&mut rest);
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted demo must not report success");
    assert!(rest.contains("Tearing down"), "{rest}");
    assert!(namespaces_with(&prefix).is_empty(), "left behind: {:?}", namespaces_with(&prefix));
}

/// Packets read by each worker, from `natgw stats --json`.
fn per_worker(lab: &TestLab) -> Vec<u64> {
    lab.stats_json()["per_worker"].as_array().expect("per_worker").iter().map(|v| v.as_u64().unwrap()).collect()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn two_cores() -> bool {
    if cores() < 2 {
        eprintln!("one core: nothing to steer, skipping");
    }
    cores() >= 2
}

/// The cores each worker may run on (`Cpus_allowed_list` of its thread), by worker.
fn worker_cores(lab: &TestLab) -> Vec<Vec<usize>> {
    let mut cores = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{}/task", lab.gateway_pid())).unwrap() {
        let task = entry.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap();
        let Some(i) = comm.trim().strip_prefix("natgw-worker-") else { continue };
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string();
        let mut mine = Vec::new();
        for range in list.split(',') {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            mine.extend(lo.parse::<usize>().unwrap()..=hi.parse::<usize>().unwrap());
        }
        cores.push((i.parse::<usize>().unwrap(), mine));
    }
    cores.sort();
    cores.into_iter().map(|(_, c)| c).collect()
}

/// Worker `i` of two runs only on cores `c` with `c % 2 == i`.
fn pinned_to_their_queues(cores: &[Vec<usize>]) -> bool {
    cores.len() == 2 && cores.iter().enumerate().all(|(i, c)| !c.is_empty() && c.iter().all(|c| c % 2 == i))
}

#[test]
fn cpu_steering_keeps_a_cores_packets_on_that_cores_worker() {
    if !require_root() || !two_cores() {
        return;
    }
    // `steering = "cpu"` in the file does the same (config unit tests, bench/run).
    let lab = TestLab::up("steer", &["--workers", "2", "--steering", "cpu"]);
    let s = lab.stats_json();
    assert_eq!(s["steering"], "cpu", "{s}");
    let cores = worker_cores(&lab);
    assert!(pinned_to_their_queues(&cores), "worker i pinned to the cores of queue i: {cores:?}");
    // Four pings at once (four ICMP flows) from core 0, then from core 1:
    // the flow's hash would spread them; the core keeps them on one worker,
    // requests and replies (the reply is made on the worker's own core).
    for core in [0usize, 1] {
        let before = per_worker(&lab);
        let (ok, out) = lab.sh(
            "app",
            &format!("taskset -c {core} sh -c 'for i in 1 2 3 4; do ping -c 3 -i 0.05 -W 2 {WEB} & done; wait'"),
        );
        assert!(ok && out.matches(" 0% packet loss").count() == 4, "{out}");
        let after = per_worker(&lab);
        let delta: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        assert_eq!(delta[core], 24, "core {core}: 12 requests and 12 replies on worker {core}: {delta:?}");
        assert_eq!(delta[1 - core], 0, "core {core}: nothing on the other worker: {delta:?}");
    }
}

/// Polls `natgw stats` for up to `secs` until the steering reads `want`.
fn steering_becomes(lab: &TestLab, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let now = lab.stats_json()["steering"].as_str().unwrap_or_default().to_string();
        if now == want || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn auto_steering_follows_the_load() {
    if !require_root() || !two_cores() {
        return;
    }
    // The default steering is `auto`.
    let lab = TestLab::up("auto", &["--workers", "2"]);
    assert_eq!(steering_becomes(&lab, "auto (now cpu)", 0), "auto (now cpu)", "light traffic: CPU steering");
    assert!(pinned_to_their_queues(&worker_cores(&lab)), "{:?}", worker_cores(&lab));
    // Heavy: ~60,000 packets a second for 3 s.
    let server = lab.spawn("web", &["iperf3", "-s", "-1", "-B", WEB]);
    lab.wait_listen("web", "-ltn", 5201);
    let client = lab.spawn("app", &["iperf3", "-c", WEB, "-u", "-b", "48M", "-l", "100", "-t", "3"]);
    assert_eq!(steering_becomes(&lab, "auto (now flow)", 2), "auto (now flow)", "heavy traffic: flow steering");
    let cores = worker_cores(&lab);
    assert!(cores.iter().all(|c| c.len() >= 2), "workers free to run anywhere: {cores:?}");
    finish(client);
    finish(server);
    // Quiet again: back to CPU steering (after half a second without load).
    assert_eq!(steering_becomes(&lab, "auto (now cpu)", 3), "auto (now cpu)", "light again: CPU steering");
    assert!(pinned_to_their_queues(&worker_cores(&lab)), "{:?}", worker_cores(&lab));
}
