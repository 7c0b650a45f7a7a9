//! `natgw lab up --web`: the live page in a real browser (Debian's headless
//! Chromium, driven by netns-tests/browser.py), and /metrics of the same
//! server parsed by the Prometheus project's parser.

use crate::harness::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const WEB: &str = "198.51.100.10";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn curl(url: &str) -> (bool, String) {
    let o = Command::new("curl").args(["-sS", "--max-time", "5", url]).output().unwrap();
    (o.status.success(), text(&o))
}

#[test]
fn the_live_page_shows_the_vpc_and_a_flow_with_its_translation_until_it_closes() {
    if !require_root() {
        return;
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let lab = TestLab::up("web", &["--web", &listen]);
    let base = format!("http://{listen}");

    // A TCP connection from app through nat-1 that stays open until the test closes it.
    let server = lab.spawn("web", &["socat", &format!("TCP-LISTEN:7000,bind={WEB},reuseaddr,fork"), "EXEC:cat"]);
    lab.wait_listen("web", "-ltn", 7000);
    let client =
        lab.spawn("app", &["sh", "-c", &format!("while :; do echo hi; sleep 0.5; done | socat - TCP:{WEB}:7000")]);

    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv/bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/netns-tests/browser.py");
    let mut browser = Command::new(python)
        .args([script, &format!("{base}/"), &format!("{WEB}:7000")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python (scripts/setup makes target/pyenv with selenium)");
    let mut out = BufReader::new(browser.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    if line.trim().is_empty() {
        let _ = browser.wait();
        let mut err = String::new();
        std::io::Read::read_to_string(browser.stderr.as_mut().unwrap(), &mut err).unwrap();
        panic!(
            "the browser saw no flow: {err}\nweb log: {:?}",
            std::fs::read_to_string(format!("/run/natgw/labs/{}/web.log", lab.name))
        );
    }
    let seen: serde_json::Value = serde_json::from_str(&line).unwrap();

    // The drawn topology: the default lab's subnets, hosts, gateways and addresses.
    let names =
        |k: &str| seen[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(names("subnets"), ["public", "private"], "{seen}");
    assert_eq!(names("hosts"), ["bastion", "app"], "{seen}");
    assert_eq!(names("nat_gateways"), ["nat-1"], "{seen}");
    let topo = seen["topology"].as_str().unwrap();
    for t in [
        "the internet",
        "igw",
        "10.0.0.0/24",
        "10.0.1.0/24",
        "Elastic IP 203.0.113.5",
        "Elastic IP 203.0.113.10",
        "private 10.0.1.10",
    ] {
        assert!(topo.contains(t), "the drawing lacks {t:?}:\n{topo}");
    }
    let routes = seen["routes"].as_str().unwrap();
    assert!(routes.contains("private (main)") && routes.contains("0.0.0.0/0 nat-1 active"), "{routes}");

    // The flow's translation equals what `natgw conntrack` shows.
    let source = seen["source"].as_str().unwrap();
    let (src_ip, sport) = source.rsplit_once(':').unwrap();
    assert_eq!(src_ip, "10.0.1.10", "{seen}");
    assert_eq!(seen["via"], "nat-1", "{seen}");
    let o = natgw(&["conntrack", "--lab", &lab.name, "--json"]);
    let ct: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let session = ct["nat"][0]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["orig_sport"].as_u64() == sport.parse().ok() && s["orig_dport"] == 7000)
        .unwrap_or_else(|| panic!("no session from {source} in {ct}"))
        .clone();
    let external = format!("{}:{}", session["reply_dst"].as_str().unwrap(), session["reply_dport"]);
    assert_eq!(seen["translated"].as_str().unwrap(), external, "the page and natgw conntrack agree");
    assert!(external.starts_with("203.0.113.5:"), "{external}");

    // A click showed the flow's trace.
    let trace = seen["trace"].as_str().unwrap();
    assert!(
        trace.contains("NAT gateway") && trace.contains("nat-1") && trace.contains("verdict: the request reaches"),
        "{trace}"
    );

    // /metrics of the same server parses and counts the connection's packets.
    let (ok, exposition) = curl(&format!("{base}/metrics"));
    assert!(ok, "{exposition}");
    let m = crate::metrics::parse(&exposition);
    let sessions = m.get("natgw_nat_gateway_sessions{nat_gateway=\"nat-1\"}").copied().unwrap_or(0.0);
    assert!(sessions >= 1.0, "{m:?}");

    // The test closes the flow: it leaves the page without a reload.
    finish(client);
    writeln!(browser.stdin.as_mut().unwrap(), "closed").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let after: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let _ = browser.wait();
    finish(server);
    assert_eq!(after["gone"], true, "the closed flow is still listed: {after}");
    assert_eq!(after["reloaded"], false, "{after}");
    assert_ne!(after["closing"], "0", "the closed flow is counted as closing: {after}");

    // Bad input gets a clear answer.
    let (_, e) = curl(&format!("{base}/api/flows?limit=0"));
    assert!(e.contains("1 to 1000"), "{e}");
    let (_, e) = curl(&format!("{base}/api/trace?src=app"));
    assert!(e.contains("dst= is missing"), "{e}");

    // `lab down` stops the page's server.
    let pid = lab.state()["web_pid"].as_i64().unwrap() as i32;
    drop(lab);
    // Gone, or a zombie waiting for its reaper.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next().unwrap_or('?'));
    assert!(stat.is_empty() || state == Some('Z'), "natgw web outlived its lab: {stat}");
    assert!(std::net::TcpStream::connect(&listen).is_err(), "{listen} still answers");
}
