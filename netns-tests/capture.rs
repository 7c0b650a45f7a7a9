//! `natgw capture`: a NAT gateway's packets before and after translation,
//! as pcapng read back by Debian's tshark, and text lines for a host.

use crate::harness::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const WEB: &str = "198.51.100.10";

/// Starts `natgw capture ARGS` and waits until it says it is capturing.
fn capture(lab: &TestLab, args: &[&str]) -> std::process::Child {
    let mut c = Command::new(NATGW)
        .args(["capture", "--lab", &lab.name])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stderr.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("capturing"), "{line}");
    c
}

#[test]
fn a_nat_gateways_capture_shows_each_packet_before_and_after_translation_in_tshark() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("capture", &[]);
    let echo = lab.spawn("web", &["socat", &format!("UDP4-RECVFROM:7,bind={WEB},fork"), "SYSTEM:cat"]);
    lab.wait_listen("web", "-lun", 7);
    let file = format!("/run/natgw/labs/{}/nat.pcapng", lab.name);
    let cap = capture(&lab, &["nat-1", "udp", "port", "7", "-w", &file, "--count", "2", "--seconds", "20"]);
    let (ok, out) = lab.sh("app", &format!("echo hello | socat -T2 - UDP4:{WEB}:7"));
    assert!(ok && out.contains("hello"), "{out}");
    let o = cap.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("2 packets") && text(&o).contains("0 dropped"), "{}", text(&o));
    finish(echo);

    let t = Command::new("tshark")
        .args(["-r", &file, "-T", "fields", "-E", "separator=|"])
        .args(["-e", "frame.interface_name", "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport"])
        .args(["-e", "frame.comment", "-e", "udp.payload"])
        .output()
        .unwrap();
    assert!(t.status.success(), "tshark: {}", text(&t));
    let rows: Vec<Vec<String>> =
        String::from_utf8_lossy(&t.stdout).lines().map(|l| l.split('|').map(String::from).collect()).collect();
    assert_eq!(rows.len(), 4, "two packets, each as read and as written: {rows:?}");
    let ct = lab.conntrack();
    let line = ct.lines().find(|l| l.contains("dport=7 ")).unwrap_or_else(|| panic!("{ct}"));
    let field =
        |k: &str, nth: usize| line.split_whitespace().filter_map(|w| w.strip_prefix(k)).nth(nth).unwrap().to_string();
    let (inside, outside) = (field("sport=", 0), field("dport=", 1));
    let want = [
        ["app", "10.0.1.10", &inside, WEB, "7"],
        ["internet", "203.0.113.5", &outside, WEB, "7"],
        ["internet", WEB, "7", "203.0.113.5", &outside],
        ["app", WEB, "7", "10.0.1.10", &inside],
    ];
    for (row, want) in rows.iter().zip(want) {
        assert_eq!(&row[..5], want, "before on one side, after on the other: {rows:?}\n{ct}");
    }
    assert!(
        rows[0][5].contains("natgw read this on app") && rows[1][5].contains("natgw wrote this on internet"),
        "{rows:?}"
    );
    let hello = "68656c6c6f0a";
    assert!(rows.iter().all(|r| r[6] == hello), "the payload, unchanged: {rows:?}");

    // A host's capture as text lines; an unknown target names the choices.
    let cap = capture(&lab, &["app", "icmp", "--count", "2", "--seconds", "20"]);
    let (ok, _) = lab.exec("app", &["ping", "-c", "1", "-W", "2", WEB]);
    assert!(ok);
    let o = cap.wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        lines.contains("app -> internet  icmp 10.0.1.10 -> 198.51.100.10") && lines.contains("=>  icmp 203.0.113.5"),
        "{lines}"
    );
    let o = natgw(&["capture", "--lab", &lab.name, "nat-9"]);
    assert!(!o.status.success() && text(&o).contains("nat-1"), "{}", text(&o));
}
