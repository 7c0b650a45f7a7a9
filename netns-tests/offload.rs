//! Issue 5: frames that cross natgw with TUN offloads (TSO, checksum
//! offload) leave with checksums that are right for their translated addresses.
//!
//! A receiving namespace trusts a partial checksum without checking it, so a
//! working download proves nothing. Instead, tcpdump records what natgw writes
//! on the internet side, and every TCP segment must have either a complete,
//! correct checksum, or (offloaded) a field holding exactly the pseudo-header
//! sum of its own, translated, addresses and length.

use crate::harness::*;
use natgw::wire::checksum;

/// The IPv4 packets of a pcap file with link type RAW.
fn pcap_packets(bytes: &[u8]) -> Vec<Vec<u8>> {
    assert!(bytes.len() >= 24, "pcap too short");
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    assert!(magic == 0xa1b2_c3d4 || magic == 0xa1b2_3c4d, "little-endian pcap expected");
    let link = u32::from_le_bytes(bytes[20..24].try_into().unwrap());
    assert!(link == 101 || link == 12 || link == 228, "raw IP link type expected, got {link}");
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= bytes.len() {
        let incl = u32::from_le_bytes(bytes[i + 8..i + 12].try_into().unwrap()) as usize;
        let orig = u32::from_le_bytes(bytes[i + 12..i + 16].try_into().unwrap()) as usize;
        i += 16;
        if i + incl > bytes.len() {
            break;
        }
        if incl == orig {
            out.push(bytes[i..i + incl].to_vec());
        }
        i += incl;
    }
    out
}

/// (complete and correct, partial and right for the addresses) for a TCP segment.
fn tcp_checksum_state(p: &[u8]) -> Option<(bool, bool)> {
    let ip = natgw::wire::Ipv4Packet::new_checked(p).ok()?;
    if ip.protocol() != 6 || ip.is_fragment() {
        return None;
    }
    assert!(ip.verify_checksum(), "bad IPv4 header checksum");
    let seg = ip.payload();
    let pseudo = checksum::pseudo_header_sum(ip.src_bytes(), ip.dst_bytes(), 6, seg.len() as u16);
    let complete = checksum::fold(pseudo + checksum::sum(seg)) == 0xffff;
    let field = u16::from_be_bytes([seg[16], seg[17]]);
    let partial = field == checksum::fold(pseudo) || (field == 0xffff && checksum::fold(pseudo) == 0);
    Some((complete, partial))
}

/// The TCP packets natgw writes into web during an upload from app (only
/// the packets entering web: `-Q in`).
fn capture_upload(lab: &TestLab) -> Vec<Vec<u8>> {
    let dev = lab.device("web");
    let pcap = format!("/run/natgw/test-{}.pcap", lab.name);
    let _ = std::fs::remove_file(&pcap);
    let server = lab.spawn("web", &["iperf3", "-s", "-1", "-B", "198.51.100.10"]);
    lab.wait_listen("web", "-ltn", 5201);
    let cap = lab.spawn("web", &["tcpdump", "-n", "-s", "0", "-Q", "in", "-c", "400", "-i", &dev, "-w", &pcap, "tcp"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (ok, out) = lab.exec("app", &["iperf3", "-c", "198.51.100.10", "-t", "2"]);
    assert!(ok, "{out}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    finish(cap);
    finish(server);
    pcap_packets(&std::fs::read(&pcap).expect("pcap"))
}

#[test]
fn with_offloads_every_checksum_is_right_for_the_translated_addresses() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("offload", &[]);
    let packets = capture_upload(&lab);
    assert!(packets.len() >= 50, "too few packets captured: {}", packets.len());
    let (mut complete, mut partial, mut big) = (0, 0, 0);
    for p in &packets {
        let Some((c, pa)) = tcp_checksum_state(p) else { continue };
        let src = std::net::Ipv4Addr::from([p[12], p[13], p[14], p[15]]);
        assert_eq!(src.to_string(), "203.0.113.5", "only translated packets on the internet side");
        assert!(c || pa, "a segment of {} bytes whose checksum is neither complete nor a correct partial sum", p.len());
        complete += usize::from(c);
        partial += usize::from(pa && !c);
        big += usize::from(p.len() > 1500);
    }
    eprintln!(
        "{} segments: {complete} complete checksums, {partial} partial (offloaded), {big} larger than the MTU (TSO)",
        packets.len()
    );
    assert!(partial > 0 && big > 0, "offloads were expected in use: {partial} partial, {big} large frames");
}

#[test]
fn without_offloads_every_checksum_is_complete() {
    if !require_root() {
        return;
    }
    let lab = TestLab::up("no-offload", &["--no-offload"]);
    let packets = capture_upload(&lab);
    assert!(packets.len() >= 50, "too few packets captured: {}", packets.len());
    for p in &packets {
        if let Some((c, _)) = tcp_checksum_state(p) {
            assert!(c, "without offload every checksum must be complete ({} bytes)", p.len());
            assert!(p.len() <= 1500, "no large frames without offload");
        }
    }
}
