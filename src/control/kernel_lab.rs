//! The kernel reference: the same VPC built from Linux itself, for
//! side-by-side comparisons (docs/LAB.md "Measuring performance").
//!
//! A router namespace is joined to every host namespace and to the internet
//! namespace by veth pairs (created inside the namespaces, never in the root
//! one). Forwarding is on in the router namespace only. nftables does what
//! natgw does: masquerade for private subnets leaving towards the internet,
//! 1:1 SNAT/DNAT for hosts with an Elastic IP, and nothing from the internet
//! opens a connection to a host without one. Addresses are the lab's own, so
//! the same clients and servers run unchanged on either lab.

use super::config::Vpc;
use crate::io::netns::{self, NetnsError};
use std::fmt::Write;
use std::process::Stdio;

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    netns::ip(args).map(|_| ())
}

/// The device of host attachment `i` on the router side, and inside the host.
fn router_dev(i: usize) -> String {
    format!("k{i}")
}

const HOST_DEV: &str = "eth0";

/// The router namespace of a kernel lab with this prefix.
pub fn router_namespace(prefix: &str) -> String {
    format!("{prefix}-router")
}

/// Builds the kernel version of `vpc` in namespaces `prefix-*` (which must
/// exist already, the router's included). Hosts come before the internet side
/// in `vpc.attachments`, so their Elastic IPs are known when the internet
/// link is set up. Returns the nftables ruleset it loaded.
pub fn build(vpc: &Vpc, prefix: &str) -> Result<String, NetnsError> {
    let router = router_namespace(prefix);
    netns::sysctl(&router, "net.ipv4.ip_forward", "1")?;
    // Hosts of one subnet reach each other through the router, as in natgw.
    netns::sysctl(&router, "net.ipv4.conf.all.proxy_arp", "1")?;
    netns::sysctl(&router, "net.ipv4.conf.default.proxy_arp", "1")?;
    let mut masq_sources = Vec::new();
    let mut eips = Vec::new();
    let mut internet_dev = None;
    for (i, a) in vpc.attachments.iter().enumerate() {
        // The kernel reference has no VPC resolver (its namespace stays empty).
        // Nor gateway endpoints' doors (it has no services).
        if a.interface == "dns" || vpc.endpoints.iter().any(|e| e.id == a.interface) {
            continue;
        }
        let host_ns = format!("{prefix}-{}", a.namespace);
        let dev = router_dev(i);
        ip(&[
            "-n",
            &router,
            "link",
            "add",
            &dev,
            "mtu",
            &a.mtu.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            HOST_DEV,
            "netns",
            &host_ns,
        ])?;
        ip(&["-n", &host_ns, "link", "set", HOST_DEV, "mtu", &a.mtu.to_string(), "up"])?;
        ip(&["-n", &router, "link", "set", &dev, "up"])?;
        for (addr, len) in &a.addresses {
            ip(&["-n", &host_ns, "addr", "add", &format!("{addr}/{len}"), "dev", HOST_DEV])?;
        }
        ip(&["-n", &host_ns, "route", "replace", "default", "via", &a.gateway.to_string(), "dev", HOST_DEV, "onlink"])?;
        match vpc.parts.hosts.iter().find(|h| h.name == a.interface) {
            Some(h) => {
                let subnet = &vpc.parts.subnets[usize::from(h.subnet)];
                // The router answers as the subnet's .1, like the VPC router.
                let _ = ip(&["-n", &router, "addr", "add", &format!("{}/32", subnet.router()), "dev", &dev]);
                ip(&["-n", &router, "route", "replace", &format!("{}/32", h.ip), "dev", &dev, "scope", "link"])?;
                match h.elastic_ip {
                    Some(e) => eips.push((h.ip, e)),
                    None if !subnet.public => masq_sources.push(h.ip),
                    None => {}
                }
            }
            None => {
                // The internet side: the NAT gateways' public addresses live here,
                // the first one as the primary, which masquerade picks.
                internet_dev = Some(dev.clone());
                for n in &vpc.parts.nat_gateways {
                    for e in &n.public_ips {
                        ip(&["-n", &router, "addr", "add", &format!("{e}/32"), "dev", &dev])?;
                    }
                }
                for (_, e) in &eips {
                    let _ = ip(&["-n", &router, "addr", "add", &format!("{e}/32"), "dev", &dev]);
                }
                let _ = ip(&["-n", &router, "addr", "add", &format!("{}/32", a.gateway), "dev", &dev]);
                for (addr, len) in &a.addresses {
                    let net = crate::route::Prefix::new(*addr, *len);
                    ip(&["-n", &router, "route", "replace", &net.to_string(), "dev", &dev, "scope", "link"])?;
                }
            }
        }
    }
    let Some(inet) = internet_dev else { return Ok(String::new()) };
    let mut rules = String::new();
    let _ = writeln!(rules, "table ip natgw_ref {{");
    let _ = writeln!(rules, "  chain pre {{ type nat hook prerouting priority dstnat; policy accept;");
    for (host, e) in &eips {
        let _ = writeln!(rules, "    iifname \"{inet}\" ip daddr {e} dnat to {host}");
    }
    let _ = writeln!(rules, "  }}");
    let _ = writeln!(rules, "  chain post {{ type nat hook postrouting priority srcnat; policy accept;");
    for (host, e) in &eips {
        let _ = writeln!(rules, "    oifname \"{inet}\" ip saddr {host} snat to {e}");
    }
    for s in &masq_sources {
        let _ = writeln!(rules, "    oifname \"{inet}\" ip saddr {s} masquerade");
    }
    let _ = writeln!(rules, "  }}");
    let _ = writeln!(rules, "  chain inbound {{ type filter hook forward priority filter; policy accept;");
    let _ = writeln!(rules, "    iifname \"{inet}\" ct state established,related accept");
    let _ = writeln!(rules, "    iifname \"{inet}\" ct status dnat accept");
    let _ = writeln!(rules, "    iifname \"{inet}\" drop");
    let _ = writeln!(rules, "  }}");
    let _ = writeln!(rules, "}}");
    let mut child = netns::command(&router, &["nft".into(), "-f".into(), "-".into()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetnsError::Spawn { cmd: "nft -f -".into(), source })?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        let _ = stdin.write_all(rules.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| NetnsError::Spawn { cmd: "nft -f -".into(), source })?;
    if !out.status.success() {
        return Err(NetnsError::Failed {
            cmd: "nft -f -".into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(rules)
}
