//! The VPC's resolver with real clients: dig and nslookup (dnsutils), over
//! UDP and TCP, at 10.0.0.2 and 169.254.169.253; DNS support and hostnames
//! on and off; a flood over the rate limit; 10,000 malformed queries.

use crate::harness::*;
use std::time::Duration;

const PRIVATE_NAME: &str = "ip-10-0-1-10.ap-northeast-2.compute.internal";
const BASTION_PUBLIC_NAME: &str = "ec2-203-0-113-10.ap-northeast-2.compute.amazonaws.com";

fn dns_stats(lab: &TestLab) -> serde_json::Value {
    lab.stats_json()["dns"].clone()
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no counter {k} in {v}"))
}

#[test]
fn dig_and_nslookup_ask_the_vpc_resolver() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("dns-dig", &[]);
    // The host's resolv.conf points at the VPC's base + 2.
    let (_, conf) = lab.exec("app", &["cat", "/etc/resolv.conf"]);
    assert!(conf.contains("nameserver 10.0.0.2") && conf.contains("search ap-northeast-2.compute.internal"), "{conf}");
    let (ok, out) = lab.exec("app", &["dig", "+short", "+time=2", PRIVATE_NAME]);
    assert!(ok && out.trim() == "10.0.1.10", "{out}");
    let (ok, out) = lab.exec("app", &["dig", "@169.254.169.253", "+short", "+time=2", "bastion"]);
    assert!(ok && out.trim() == "10.0.0.10", "{out}");
    let (ok, out) = lab.exec("bastion", &["dig", "+tcp", "+short", "+time=2", "-x", "10.0.1.10"]);
    assert!(ok && out.trim() == format!("{PRIVATE_NAME}."), "{out}");
    // Inside the VPC a public name answers the private address (AWS).
    let (ok, out) = lab.exec("app", &["nslookup", BASTION_PUBLIC_NAME]);
    assert!(ok && out.contains("Address: 10.0.0.10") && out.contains("Server:\t\t10.0.0.2"), "{out}");
    // The search domain: a short name through the C library's resolver.
    let (ok, out) = lab.exec("app", &["getent", "ahostsv4", "ip-10-0-0-10"]);
    assert!(ok && out.contains("10.0.0.10"), "{out}");
    // Nothing is forwarded outside the lab.
    let (_, out) = lab.exec("app", &["dig", "+time=2", "s3.amazonaws.com"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    let s = dns_stats(&lab);
    assert!(n(&s, "udp_queries") >= 5 && n(&s, "tcp_queries") >= 1, "{s}");
    assert!(n(&s, "nxdomain") >= 1 && n(&s, "answered") >= 4, "{s}");
    // The internet side has no VPC resolver.
    let (_, conf) = lab.exec("internet", &["cat", "/etc/resolv.conf"]);
    assert!(!conf.contains("10.0.0.2"), "{conf}");
}

#[test]
fn dns_support_and_hostnames_switch_as_on_aws() {
    if !require_root() {
        return;
    }
    let cfg = lab_config("dns-off", &[("enable_dns_hostnames = true", "enable_dns_hostnames = false")]);
    {
        let lab = TestLab::up("dns-hostnames-off", &["--config", &cfg]);
        let (_, out) = lab.exec("app", &["dig", "+short", "+time=2", PRIVATE_NAME]);
        assert_eq!(out.trim(), "10.0.1.10", "private names need only DNS support");
        let (_, out) = lab.exec("app", &["dig", "+time=2", BASTION_PUBLIC_NAME]);
        assert!(out.contains("status: NXDOMAIN"), "no public names without DNS hostnames: {out}");
    }
    let cfg = lab_config(
        "dns-off",
        &[("enable_dns_support = true\nenable_dns_hostnames = true", "enable_dns_support = false")],
    );
    let lab = TestLab::up("dns-support-off", &["--config", &cfg]);
    let (ok, out) = lab.exec("app", &["dig", "+time=1", "+tries=1", PRIVATE_NAME]);
    assert!(!ok && out.contains("timed out"), "the resolver does not answer: {out}");
    let s = lab.stats_json();
    assert!(s["dns"].is_null(), "no resolver: {s}");
    let dropped =
        s["totals"]["drops"].as_array().unwrap().iter().find(|d| d[0] == "dns_disabled").map(|d| d[1].clone());
    assert_eq!(dropped, Some(serde_json::json!(1)), "the query is dropped and counted: {s}");
    assert!(!lab.state()["namespaces"].to_string().contains("-dns\""), "no resolver namespace");
}

/// A valid A query for `name`, id `id` (RFC 1035 §4.1).
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Writes datagrams for `send.py`: each a 2-byte length and the bytes.
fn write_datagrams(path: &str, d: &[Vec<u8>]) {
    let mut out = Vec::new();
    for q in d {
        out.extend_from_slice(&(q.len() as u16).to_be_bytes());
        out.extend_from_slice(q);
    }
    std::fs::write(path, out).unwrap();
}

/// Sends the datagrams of `path` to the resolver as fast as it can, from one socket.
/// With a second argument N, it pauses 1 ms after every N datagrams.
const SEND: &str = "import socket,sys,time\nb=open(sys.argv[1],'rb').read()\npace=int(sys.argv[2]) if len(sys.argv)>2 else 0\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ni=0\nk=0\nwhile i<len(b):\n n=int.from_bytes(b[i:i+2],'big'); s.sendto(b[i+2:i+2+n],('10.0.0.2',53)); i+=2+n; k+=1\n if pace and k%pace==0: time.sleep(0.001)\n";

/// Packets the host's own device dropped on the way out (its queue was
/// full: the host sent faster than the gateway read), as `ip -s` shows.
fn host_tx_dropped(lab: &TestLab, host: &str) -> u64 {
    let dev = lab.device(host);
    let (_, out) = lab.exec(host, &["ip", "-s", "-j", "link", "show", &dev]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
    v[0]["stats64"]["tx"]["dropped"].as_u64().expect("tx dropped")
}

/// The malformed queries: each a valid query broken one way (a fuzzer's
/// mutations, seeded so every run sends the same 10,000).
fn malformed(count: usize) -> Vec<Vec<u8>> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let base = query(7, PRIVATE_NAME);
    (0..count)
        .map(|i| {
            let mut q = base.clone();
            let r = next();
            match i % 8 {
                // Cut anywhere, header included.
                0 => q.truncate((r as usize) % q.len()),
                // Flip bytes past the id.
                1 => {
                    for k in 0..1 + r % 6 {
                        let at = 2 + ((r >> (8 * k)) as usize) % (q.len() - 2);
                        q[at] ^= (next() as u8) | 1;
                    }
                }
                // Counts that promise more than there is.
                2 => q[4..12].copy_from_slice(&(r.to_be_bytes())),
                // A compression pointer to itself.
                3 => {
                    q.truncate(12);
                    q.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
                }
                // A label longer than 63 bytes, or running past the end.
                4 => q[12] = 64 + (r as u8 % 190),
                // A response, or another opcode.
                5 => q[2] = (r as u8) | 0x80,
                6 => q[2] = ((1 + r as u8 % 15) << 3) | 1,
                // Garbage of any length.
                _ => q = (0..(r % 600)).map(|_| next() as u8).collect(),
            }
            q
        })
        .collect()
}

#[test]
fn a_query_flood_is_rate_limited_and_malformed_queries_change_nothing() {
    if !require_root() {
        return;
    }
    // The sender script, removed with each lab (TestLab's drop).
    let send = |lab: &str| {
        let py = format!("/run/natgw/test-{lab}.conf");
        std::fs::write(&py, SEND).unwrap();
        py
    };
    // A flood from one interface: AWS's 1024 a second, the rest counted.
    {
        let lab = TestLab::up("dns-flood", &[]);
        let py = send("dns-flood");
        let flood: Vec<Vec<u8>> = (0..5000).map(|i| query(i as u16, PRIVATE_NAME)).collect();
        write_datagrams("/run/natgw/test-dns-flood.pcap", &flood);
        let (ok, out) = lab.exec("app", &["python3", &py, "/run/natgw/test-dns-flood.pcap"]);
        assert!(ok, "{out}");
        std::thread::sleep(Duration::from_millis(300));
        let s = dns_stats(&lab);
        // Each datagram is counted somewhere: at app's own device (a full
        // queue), at the resolver's socket buffer, or by the resolver.
        let lost_before = host_tx_dropped(&lab, "app") + n(&s, "rcvbuf_errors");
        assert_eq!(n(&s, "udp_queries") + lost_before, 5000, "every datagram counted: {s}");
        // Sent within at most two of the limiter's seconds.
        assert!(n(&s, "answered") <= 2048, "{s}");
        assert_eq!(n(&s, "answered") + n(&s, "rate_limited"), n(&s, "udp_queries"), "{s}");
        assert!(n(&s, "rate_limited") >= 5000 - 2048 - lost_before, "{s}");
        // A second later the host is answered again.
        std::thread::sleep(Duration::from_millis(1100));
        let (ok, out) = lab.exec("app", &["dig", "+short", "+time=2", PRIVATE_NAME]);
        assert!(ok && out.trim() == "10.0.1.10", "{out}");
    }
    // 10,000 malformed queries with the limit off: each is answered with an
    // error or counted, none crashes or wedges the resolver.
    let cfg = lab_config("dns-fuzz", &[("[[subnets]]", "[dns]\nrate_limit = 0\n\n[[subnets]]")]);
    let lab = TestLab::up("dns-fuzz", &["--config", &cfg]);
    let py = send("dns-fuzz");
    write_datagrams("/run/natgw/test-dns-fuzz.pcap", &malformed(10_000));
    let (ok, out) = lab.exec("app", &["python3", &py, "/run/natgw/test-dns-fuzz.pcap", "50"]);
    assert!(ok, "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let (ok, out) = lab.exec("app", &["dig", "+short", "+time=2", PRIVATE_NAME]);
    assert!(ok && out.trim() == "10.0.1.10", "still answering: {out}");
    let s = dns_stats(&lab);
    let outcomes: u64 = ["answered", "nodata", "nxdomain", "formerr", "notimp", "refused", "short", "not_a_query"]
        .iter()
        .map(|k| n(&s, k))
        .sum();
    assert_eq!(outcomes, n(&s, "udp_queries"), "every query has one outcome: {s}");
    let lost_before = host_tx_dropped(&lab, "app") + n(&s, "rcvbuf_errors");
    assert_eq!(n(&s, "udp_queries") + lost_before, 10_001, "{s}");
    assert!(n(&s, "udp_queries") > 9_900, "paced, nearly all reach the resolver: {s}");
    assert!(n(&s, "formerr") > 1000 && n(&s, "short") > 100 && n(&s, "not_a_query") > 100, "{s}");
    assert!(lab.gateway_pid() > 0 && std::path::Path::new(&format!("/proc/{}", lab.gateway_pid())).exists());
}
